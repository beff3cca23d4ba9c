"""The Blocktrust API simulator: SPEC §1's endpoints with switchable faults (``server.py``),
the fault language (``faults.py``) and the ``simulate`` command (``cli.py``). For tests, the
benchmark and ``make demo``; never part of a production exporter's wiring."""

"""The demo kit: what ``make demo`` and the tests need to run the exporter with nothing to set up.

``runner.py`` is ``blocktrust-exporter demo``; ``devchain.py`` runs a local anvil chain with the
project's contracts; ``simulator/`` is the Blocktrust API simulator (``blocktrust-exporter
simulate``). Only the ``demo`` and ``simulate`` commands import this package: the exporter's
runtime never does (a test walks the imports to keep it so).
"""

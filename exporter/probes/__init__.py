"""Probing the Blocktrust API and the listener: one module per kind of check.

Start at ``round.py`` (``CheckRound``: run a round, record results), ``registry.py`` (kind ->
probe), ``defaults.py`` (the nine checks of SPEC §1) and ``conditions.py`` (the condition
language of ``checks.items``). Kept import-free so that ``exporter.config`` can import the
condition parser without pulling in the probes.
"""

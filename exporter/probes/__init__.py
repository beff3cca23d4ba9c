"""Probing the Blocktrust API and the listener.

Start at ``runner.py`` (``CheckRound``: run a round of checks, record results), then ``kinds/``
(one module per kind of check, all with the signature of ``probe.py``, and the table from kind to
probe), ``session.py`` (the shared JWT session), ``httpclient.py`` (bounded HTTP exchanges) and
``conditions.py`` (the condition language of ``checks.items``). The checks themselves are
configuration: ``exporter.config.checks``.
"""

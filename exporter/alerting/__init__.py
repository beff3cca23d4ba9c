"""Alerting: when to notify (``engine``, decisions only), what is recorded of it (``ledger``: the
incidents in ``monitor_incidents``), how to say it (``alert``), where to send it (``channels/``, one
module per channel), how to send it (``sender``, ``notifier``) and when to keep quiet
(``maintenance``). Nothing here runs checks or reads check results from the store; secret masking
is ``exporter.redact``."""

"""Alerting: when to notify (``engine``), how to say it (``alert``), where to send it (one module per
channel), how to send it (``sender``, ``notifier``), when to keep quiet (``maintenance``) and what never
to say (``redact``). Nothing here runs checks or reads results from the store."""

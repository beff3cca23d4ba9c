"""The alert channels, one module each (Slack, Telegram, a generic webhook): pure builders from an
``Alert`` to the request its API expects. Sending (timeouts, retries, redaction) is
``exporter.alerting.sender``, shared by all of them."""

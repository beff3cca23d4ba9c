"""The generic JSON webhook: the request for one alert (SPEC §5), signed when a secret is set.

Pure: builds the request and its signature header (``signing.py``), sends nothing. The body is
machine-readable (state ``firing``, ``resolved`` or ``retracted``, ISO 8601 times) so a receiver can
route or deduplicate by ``check`` and ``incident_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from exporter.alerting.alert import Alert, render_text
from exporter.alerting.answer import Verdict, judge_http
from exporter.alerting.signing import SIGNATURE_HEADER, signature


@dataclass(frozen=True)
class WebhookChannel:
    url: str = field(repr=False)  # may embed a token, so treated as a secret
    send_resolved: bool = True
    name: str = "webhook"
    signing_secret: str | None = field(default=None, repr=False)

    def build_request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        return self.url, {
            "check": alert.check_name,
            "severity": alert.severity,
            "state": alert.state,
            "title": alert.title,
            "detail": alert.detail,
            "time": alert.at.astimezone(UTC).isoformat(),
            "since": alert.since.astimezone(UTC).isoformat(),
            "reminder": alert.reminder,
            "provisional": alert.provisional,
            "incident_id": alert.incident_id,
            "dashboard_url": alert.dashboard_url,
            "text": render_text(alert),
        }

    def headers(self, body: bytes, at: float) -> dict[str, str]:
        """The signature of ``body`` sent at ``at`` (unix seconds), when a signing secret is set."""
        if not self.signing_secret:
            return {}
        return {SIGNATURE_HEADER: signature(self.signing_secret, body, int(at))}

    def judge(self, status: int, body: str, retry_after: float | None) -> Verdict:
        """Any 2xx is a delivery (a webhook's contract is HTTP's)."""
        return judge_http(status, body, retry_after)

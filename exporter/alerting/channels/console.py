"""The console: each notice as one log line, so it shows in the terminal (``make demo``) or in a
PaaS's log viewer when no chat channel is set up (``alerting.console.enabled``).

Like the other channels, a pure rendering of an ``Alert``; it needs no HTTP, so the notifier hands
the alert to ``deliver`` (a log call, masked like every log line) instead of the sender. A firing
notice is a warning, a resolved one is info.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from exporter.alerting.alert import Alert, body_lines, headline
from exporter.alerting.answer import Verdict, judge_http

CONSOLE_URL = "console:"  # not a network address: the log of this process

_log = logging.getLogger("exporter.alerting.console")


def render_line(alert: Alert) -> str:
    """``🚨 [CRIT] API stats unavailable | HTTP 500 | Since 2026-01-01 12:30:05 UTC``."""
    return " | ".join([headline(alert), *body_lines(alert)])


@dataclass(frozen=True)
class ConsoleChannel:
    send_resolved: bool = True
    name: str = "console"
    logger: logging.Logger = field(default=_log, repr=False, compare=False)

    def build_request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        return CONSOLE_URL, {"text": render_line(alert)}

    def headers(self, body: bytes, at: float) -> dict[str, str]:
        """Never asked (nothing goes over HTTP)."""
        return {}

    def judge(self, status: int, body: str, retry_after: float | None) -> Verdict:
        """Never asked (nothing goes over HTTP); HTTP's rule, like a webhook's, for completeness."""
        return judge_http(status, body, retry_after)

    def deliver(self, alert: Alert) -> bool:
        """Write the notice to the log; True (a log line cannot be refused)."""
        level = logging.INFO if alert.state == "resolved" else logging.WARNING
        self.logger.log(level, "notice: %s", render_line(alert))
        return True

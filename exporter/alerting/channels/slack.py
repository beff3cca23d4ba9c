"""Slack incoming webhooks: the request for one alert (SPEC §5: POST ``{"text": ...}`` to the webhook).

Pure: builds the request, sends nothing (``sender`` does). The webhook URL is the whole address, so a
test or a proxy points it at any base by configuring a different URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.alerting.alert import Alert, render_text


@dataclass(frozen=True)
class SlackChannel:
    webhook_url: str = field(repr=False)  # a secret: whoever holds it can post to the channel
    send_resolved: bool = True
    name: str = "slack"

    def build_request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        # Slack's mrkdwn treats only &, < and > specially; escaping them keeps a detail such as
        # "<html>" from becoming a link or a mention.
        return self.webhook_url, {"text": escape_mrkdwn(render_text(alert))}


def escape_mrkdwn(text: str) -> str:
    """Slack's documented escaping for message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

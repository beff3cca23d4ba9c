"""Slack incoming webhooks: the request for one alert (SPEC §5: POST ``{"text": ...}`` to the webhook),
and what Slack's answer means.

An incoming webhook answers ``200`` with the body ``ok`` when it posted the message; otherwise an
error text such as ``invalid_payload``, ``no_text``, ``channel_not_found``, ``channel_is_archived``
or ``no_service`` (usually with a 4xx, sometimes with a 200). A Web API style endpoint answers JSON
``{"ok": false, "error": "..."}``. Only ``ok`` (or ``{"ok": true}``) is a delivery.

Pure: builds the request, sends nothing (``sender`` does). The webhook URL is the whole address, so a
test or a proxy points it at any base by configuring a different URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from exporter.alerting.alert import Alert, render_text
from exporter.alerting.answer import DELIVERED, Verdict, judge_http


@dataclass(frozen=True)
class SlackChannel:
    webhook_url: str = field(repr=False)  # a secret: whoever holds it can post to the channel
    send_resolved: bool = True
    name: str = "slack"

    def build_request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        # Slack's mrkdwn treats only &, < and > specially; escaping them keeps a detail such as
        # "<html>" from becoming a link or a mention.
        return self.webhook_url, {"text": escape_mrkdwn(render_text(alert))}

    def headers(self, body: bytes, at: float) -> dict[str, str]:
        """No headers of its own (the secret is in the URL)."""
        return {}

    def judge(self, status: int, body: str, retry_after: float | None) -> Verdict:
        return judge_slack(status, body, retry_after)


def judge_slack(status: int, body: str, retry_after: float | None) -> Verdict:
    """Slack's answer: delivered only on ``ok``; an error text (even with 200) is a refusal."""
    text = body.strip()
    payload = _json_object(text)
    if payload is not None and isinstance(payload.get("ok"), bool):
        if payload["ok"] and 200 <= status < 300:
            return DELIVERED
        error = payload.get("error")
        text = error if isinstance(error, str) and error else text
    elif 200 <= status < 300 and text == "ok":
        return DELIVERED
    if 200 <= status < 300:
        # A 200 whose body is not "ok": Slack's error text (invalid_payload, no_text, ...) or a page from
        # something in between. Either way the message was not posted.
        return Verdict(False, False, f"HTTP {status}: {text[:200] or 'empty answer'}", "rejected")
    verdict = judge_http(status, text, retry_after)
    return verdict


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets
        return None
    return value if isinstance(value, dict) else None


def escape_mrkdwn(text: str) -> str:
    """Slack's documented escaping for message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

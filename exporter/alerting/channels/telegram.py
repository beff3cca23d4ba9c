"""Telegram Bot API: the ``sendMessage`` request for one alert.

Pure: builds the request and judges the answer, sends nothing (``sender`` does). The Bot API
answers JSON ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": 400, "description":
"...", "parameters": {"migrate_to_chat_id": ..., "retry_after": ...}}``: ``ok`` decides,
``migrate_to_chat_id`` means the group became a supergroup (send there instead), ``retry_after`` is
flood control (wait that long). The text uses parse mode HTML, the mode with the smallest escaping
rules (``&``, ``<``, ``>``), so a detail can never break the markup.
"""

from __future__ import annotations

import dataclasses
import html
import json
from dataclasses import dataclass, field
from typing import Any

from exporter.alerting.alert import Alert, body_lines, headline
from exporter.alerting.answer import DELIVERED, Verdict, judge_http, wait_seconds

DEFAULT_BASE_URL = "https://api.telegram.org"


@dataclass(frozen=True)
class TelegramChannel:
    bot_token: str = field(repr=False)  # a secret; it is part of the request URL
    chat_id: str
    base_url: str = DEFAULT_BASE_URL
    send_resolved: bool = True
    name: str = "telegram"

    def build_request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        url = f"{self.base_url.rstrip('/')}/bot{self.bot_token}/sendMessage"
        return url, {
            "chat_id": self.chat_id,
            "text": render_html(alert),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }

    def headers(self, body: bytes, at: float) -> dict[str, str]:
        """No headers of its own (the secret is in the URL)."""
        return {}

    def judge(self, status: int, body: str, retry_after: float | None) -> Verdict:
        return judge_telegram(status, body, retry_after)

    def moved_to(self, chat_id: str) -> TelegramChannel:
        """The same channel, sending to ``chat_id`` (where the group migrated)."""
        return dataclasses.replace(self, chat_id=chat_id)


def judge_telegram(status: int, body: str, retry_after: float | None) -> Verdict:
    """The Bot API's answer: its JSON ``ok`` decides, whatever the status."""
    try:
        payload = json.loads(body) if body.strip().startswith("{") else None
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("ok"), bool):
        verdict = judge_http(status, body, retry_after)
        if verdict.delivered:  # a 2xx that is not the Bot API's answer (a proxy, a captive portal)
            return Verdict(False, False, f"HTTP {status}: not a Bot API answer", "bad_answer")
        return verdict
    if payload["ok"]:
        return DELIVERED
    code = payload.get("error_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else status
    description = payload.get("description")
    reason = f"Telegram error {code}: {description if isinstance(description, str) else 'no description'}"
    parameters = payload.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    migrate = parameters.get("migrate_to_chat_id")
    if isinstance(migrate, int | str) and not isinstance(migrate, bool) and str(migrate).strip():
        return Verdict(False, False, f"{reason}; migrated to chat {migrate}", "migrated", migrate_to=str(migrate))
    wait = wait_seconds(parameters.get("retry_after"))  # None when absent or not a usable number
    if wait is not None:
        return Verdict(False, True, reason, "rate_limited", wait)
    if code == 429:
        return Verdict(False, True, reason, "rate_limited", retry_after)
    if code >= 500:
        return Verdict(False, True, reason, "server_error", retry_after)
    return Verdict(False, False, reason, "rejected")


# Telegram refuses (400 "message is too long") a text over 4096 characters after entity parsing;
# it counts UTF-16 code units, so an emoji counts two.
TEXT_LIMIT = 4096


def render_html(alert: Alert) -> str:
    """The message in Telegram's HTML subset: a bold headline, then escaped plain lines. A detail (or
    title) too long for one message is shortened with a note saying how much was left out, so the
    notice is delivered rather than refused; the rest of the lines always stay."""
    alert = fit_to_limit(alert, TEXT_LIMIT)
    lines = [f"<b>{escape_html(headline(alert))}</b>"]
    lines.extend(escape_html(line) for line in body_lines(alert))
    return "\n".join(lines)


def visible_length(text: str) -> int:
    """The length Telegram measures: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def fit_to_limit(alert: Alert, limit: int) -> Alert:
    """``alert`` with its detail, then its title, cut so that the visible text is at most ``limit``."""
    for part in ("detail", "title"):
        over = visible_length("\n".join([headline(alert), *body_lines(alert)])) - limit
        if over <= 0:
            break
        text: str = getattr(alert, part)
        # Room for the note: its count has at most as many digits as the text's length.
        note_room = visible_length(_cut_note(len(text)))
        kept = _prefix_within(text, visible_length(text) - over - note_room)
        shortened = kept + _cut_note(len(text) - len(kept))
        if part == "detail":
            alert = dataclasses.replace(alert, detail=shortened)
        else:
            alert = dataclasses.replace(alert, title=shortened)
    return alert


def _cut_note(left_out: int) -> str:
    return f"… ({left_out} more characters; the exporter's log has them all)"


def _prefix_within(text: str, units: int) -> str:
    """The longest prefix of ``text`` of at most ``units`` UTF-16 code units (never half a pair)."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > units:
            return text[:index]
    return text


def escape_html(text: str) -> str:
    """Telegram's HTML mode needs exactly ``&``, ``<`` and ``>`` escaped (quotes may stay)."""
    return html.escape(text, quote=False)

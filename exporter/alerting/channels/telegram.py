"""Telegram Bot API: the ``sendMessage`` request for one alert.

Pure: builds the request, sends nothing (``sender`` does, and honours Telegram's
``parameters.retry_after``). The text uses parse mode HTML, the mode with the smallest escaping
rules (``&``, ``<``, ``>``), so a detail can never break the markup.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from exporter.alerting.alert import Alert, body_lines, headline

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


def render_html(alert: Alert) -> str:
    """The message in Telegram's HTML subset: a bold headline, then escaped plain lines."""
    lines = [f"<b>{escape_html(headline(alert))}</b>"]
    lines.extend(escape_html(line) for line in body_lines(alert))
    return "\n".join(lines)


def escape_html(text: str) -> str:
    """Telegram's HTML mode needs exactly ``&``, ``<`` and ``>`` escaped (quotes may stay)."""
    return html.escape(text, quote=False)

"""The alert a channel delivers, and its human-readable text (SPEC §5).

An ``Alert`` is a value: the engine creates it, the notifier hands it to each channel's pure
``build_request``. Not for deciding *when* to alert (``engine``) nor for any transport.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

# "retracted": a provisional notice of a contract event that a chain reorganisation removed.
AlertState = Literal["firing", "resolved", "retracted"]

SEVERITY_EMOJI = {"info": "ℹ️", "warn": "⚠️", "crit": "🚨"}
RESOLVED_EMOJI = "✅"
RETRACTED_EMOJI = "↩️"


@dataclass(frozen=True)
class Alert:
    """One notice about one incident: it fired, it is still firing (``reminder``), or it resolved."""

    check_name: str
    severity: str
    state: AlertState
    title: str
    detail: str
    since: datetime  # when the incident opened (aware UTC)
    at: datetime  # when this notice was decided (aware UTC)
    incident_id: int | None = None
    reminder: bool = False
    dashboard_url: str | None = None
    not_before: datetime | None = None  # held back until then (a maintenance window); None: at once
    provisional: bool = False  # about a contract event not yet final: a reorg may retract it

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (times as ISO 8601), for the outbox. Holds no channel credential."""
        data: dict[str, Any] = dataclasses.asdict(self)
        for key in ("since", "at", "not_before"):
            value = data[key]
            data[key] = None if value is None else value.astimezone(UTC).isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        """The alert ``to_json`` wrote; unknown keys (a newer version's) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("since", "at", "not_before"):
            if values.get(key) is not None:
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


def format_time(moment: datetime) -> str:
    """``2026-01-01 12:30:05 UTC``: unambiguous for a reader in any time zone."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``: how long an incident lasted, at a glance."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m" if not secs else f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def headline(alert: Alert) -> str:
    """``🚨 [CRIT] API /health unavailable``; ``✅ [RESOLVED] ...`` once it is over; ``↩️ [RETRACTED] ...``
    for a provisional notice whose event a reorg removed."""
    if alert.state == "resolved":
        return f"{RESOLVED_EMOJI} [RESOLVED] {alert.title}"
    if alert.state == "retracted":
        return f"{RETRACTED_EMOJI} [RETRACTED] {alert.title}"
    emoji = SEVERITY_EMOJI.get(alert.severity, SEVERITY_EMOJI["warn"])
    prefix = "Reminder: " if alert.reminder else "Provisional: " if alert.provisional else ""
    return f"{emoji} [{alert.severity.upper()}] {prefix}{alert.title}"


def body_lines(alert: Alert) -> list[str]:
    """The lines after the headline: detail, since when (and for how long), dashboard link."""
    lines = [alert.detail] if alert.detail else []
    lasted = format_duration((alert.at - alert.since).total_seconds())
    if alert.state == "retracted":
        lines.append(f"Retracted at {format_time(alert.at)}")
    elif alert.state == "resolved":
        lines.append(f"Resolved at {format_time(alert.at)} after {lasted} (since {format_time(alert.since)})")
    elif alert.reminder:
        lines.append(f"Failing since {format_time(alert.since)} ({lasted})")
    else:
        lines.append(f"Since {format_time(alert.since)}")
    if alert.dashboard_url:
        lines.append(f"Dashboard: {encode_url(alert.dashboard_url)}")
    return lines


# What may stay as it is in a URL (RFC 3986's reserved and unreserved characters, and "%" of an
# existing escape); anything else (a space, "<", ">", '"', non-ASCII) is percent-encoded, so that a
# chat client links the whole URL and a "<!channel>" in it never reaches Slack as markup.
_URL_SAFE = ":/?#[]@!$&'()*+,;=-._~%"


def encode_url(url: str) -> str:
    """``url`` with every character that may not appear in a URL percent-encoded (UTF-8)."""
    return urllib.parse.quote(url, safe=_URL_SAFE)


def render_text(alert: Alert) -> str:
    """The plain-text message: headline, then one line per fact."""
    return "\n".join([headline(alert), *body_lines(alert)])

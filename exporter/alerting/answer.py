"""What a channel's answer means: delivered, or why not and what to do about it.

Each channel's API documents its own success, so each channel judges its answers (``judge`` on the
channel: Slack's body, Telegram's ``ok``); ``judge_http`` is the rule for a plain webhook (2xx is
success) and the fallback for answers a channel does not recognise. Pure functions of (status, body,
``Retry-After``); the ``sender`` does the HTTP and the retrying. Reasons are raw: redact before
logging them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

# The bounded set of failure reasons, a label of the delivery-failure counters.
ReasonClass = Literal["network", "server_error", "rate_limited", "rejected", "bad_answer", "migrated", "internal"]
REASON_CLASSES: tuple[ReasonClass, ...] = (
    "network",
    "server_error",
    "rate_limited",
    "rejected",
    "bad_answer",
    "migrated",
    "internal",
)


@dataclass(frozen=True)
class Verdict:
    """One answer judged. ``retryable``: worth another try within the same delivery (a transient
    failure); a permanent one (``rejected``: the channel refused this request as it is) waits for the
    outbox's next round instead. ``retry_after``: seconds the channel asked us to wait.
    ``migrate_to``: the channel moved (a Telegram group became a supergroup) and names where to."""

    delivered: bool
    retryable: bool = False
    reason: str = "ok"
    reason_class: ReasonClass | None = None
    retry_after: float | None = None
    migrate_to: str | None = None


DELIVERED = Verdict(True)

# The longest wait a channel can ask for that we keep as a number (a year): anything longer means the
# same ("not within the outbox's give-up horizon") and stays far from datetime's range.
WAIT_CEILING_SECONDS = 366 * 86400.0
_DELTA_SECONDS = re.compile(r"[0-9]+")


def wait_seconds(value: object) -> float | None:
    """A wait a channel asked for in JSON (Telegram's ``retry_after``), as seconds: a finite,
    non-negative number, capped at ``WAIT_CEILING_SECONDS``. None for anything else (``1e400`` read as
    infinity, ``NaN``, ``-5``, ``true``, ``"7"``): the caller then backs off as without the hint."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return float(min(value, int(WAIT_CEILING_SECONDS))) if value >= 0 else None
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, WAIT_CEILING_SECONDS)


def delta_seconds(text: str) -> float | None:
    """``Retry-After``'s delta-seconds form (RFC 9110 §10.2.3: decimal digits only), capped at
    ``WAIT_CEILING_SECONDS``; None for anything else (``inf``, ``nan``, ``1e3``, ``-5``, ``5s``)."""
    text = text.strip()
    if not _DELTA_SECONDS.fullmatch(text):
        return None
    return WAIT_CEILING_SECONDS if len(text) > 12 else min(float(int(text)), WAIT_CEILING_SECONDS)


def judge_http(status: int, body: str, retry_after: float | None) -> Verdict:
    """A plain HTTP endpoint: 2xx is success; 429 and 5xx are transient (honouring ``retry_after``);
    anything else (a redirect, a 4xx) is a refusal that retrying at once will not change."""
    if 200 <= status < 300:
        return DELIVERED
    reason = f"HTTP {status}"
    snippet = body[:200].strip()
    if snippet:
        reason += f": {snippet}"
    if status == 429:
        return Verdict(False, True, reason, "rate_limited", retry_after)
    if status >= 500:
        return Verdict(False, True, reason, "server_error", retry_after)
    return Verdict(False, False, reason, "rejected")

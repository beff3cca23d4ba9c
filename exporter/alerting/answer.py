"""What a channel's answer means: delivered, or why not and what to do about it.

Each channel's API documents its own success, so each channel judges its answers (``judge`` on the
channel: Slack's body, Telegram's ``ok``); ``judge_http`` is the rule for a plain webhook (2xx is
success) and the fallback for answers a channel does not recognise. Pure functions of (status, body,
``Retry-After``); the ``sender`` does the HTTP and the retrying. Reasons are raw: redact before
logging them.
"""

from __future__ import annotations

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

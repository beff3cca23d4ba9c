"""Signed webhook notices: an HMAC-SHA256 over the exact body, with a timestamp against replays
(Stripe's scheme, which Slack's request signing resembles).

The header is ``X-Blocktrust-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
HMAC-SHA256(secret, ``"<t>." + body``) and body is the exact bytes sent. A receiver recomputes it over
the bytes it received, compares in constant time and refuses a ``t`` too far from its own clock
(``verify``; docs/alerting.md shows the same in a dozen lines for a receiver). Each try of a delivery
is signed anew, so a retry is never refused for its age.

Pure functions: no I/O, no clock of their own. Not for sending (``sender.py``).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Blocktrust-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300.0  # how old (or how far ahead) a signed notice a receiver accepts


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds): ``t=<ts>,v1=<hex>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},{SCHEME}={digest}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> bool:
    """Whether ``header`` signs exactly ``body`` with ``secret``, at a time within ``tolerance``
    seconds of ``now`` (unix seconds). False for anything malformed; never raises."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, body, timestamp).partition(f",{SCHEME}=")[2]
    return any(hmac.compare_digest(expected, given) for given in fields.get(SCHEME, []))

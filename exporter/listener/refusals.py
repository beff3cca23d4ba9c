"""What a JSON-RPC provider meant when it answered with something other than a result.

``classify`` turns one failed answer (the HTTP status, the ``Retry-After`` header, the JSON-RPC
``error`` object or the raw body) into a ``Refusal`` of one of five kinds:

* ``range``: the provider will not serve that ``eth_getLogs`` block range; ``suggested`` is the
  range it proposed (``[from, to]`` in the message or ``error.data``) and ``max_blocks`` the width
  it named ("limited to a 10,000 range", "range 2999 exceeds limit of 2000"); ``max_results`` is set
  when the refusal is for the logs in the range, not its width (a *result cap*: "query returned more
  than 10000 results", "a cap of 10K logs"): the number it named, 0 when it named none;
* ``rate_limit``: a quota or throughput limit; ``retry_after`` (seconds) when the provider said;
* ``transient``: 5xx, a node behind its load balancer, a lost upstream: try again or elsewhere;
* ``permanent``: anything else the node refused (bad params, unknown method);
* ``batch``: the provider refuses JSON-RPC batches (send single calls instead).

Providers reuse codes: Infura answers -32005 both for "daily request count exceeded" and for "query
returned more than 10000 results", Alchemy -32602 for both bad params and a too-wide range; the
message (or ``error.data``) tells them apart, so phrases are checked before codes. A getLogs that
times out, overflows the byte cap or gets a 502/504 (a gateway giving up on a heavy query) is a range
refusal too: a narrower range is the likeliest cure. The answers this is tested against, one per
provider shape with its source, are ``tests/data/rpc_refusals.yaml``.

Pure: no I/O and no clock of its own (``now`` is given). Not for acting on a refusal: the endpoint
pool (``endpoints.py``) and the range sizer (``ranges.py``) do that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

Kind = Literal["range", "rate_limit", "transient", "permanent", "batch"]
Failure = Literal["timeout", "oversize", "connection", "garbled"]
LOGS_METHOD = "eth_getLogs"

_RATE = re.compile(
    r"rate.?limit|too many requests|exceeded .*capacity|capacity (limit|exceeded)|compute units?|"
    r"request count exceeded|requests? rate exceeded|credits?|quota|throughput|"
    r"(daily|monthly) (request )?limit|request limit reached|exceeded the (number|limit) of requests|"
    r"limit reached|over rate|throttl",
    re.IGNORECASE,
)
_BATCH = re.compile(
    r"batch.*(not (supported|allowed|available)|unsupported|disabled|too (large|big|many)|"
    r"limit|exceed|more than|maximum|only)|(not support|unsupported|disallow)\w*.*batch",
    re.IGNORECASE,
)
# Widths named in a refusal, tried in order: the first group is the width in blocks.
_WIDTHS = (
    re.compile(r"range \d+ exceeds limit of ([\d,.]+)", re.IGNORECASE),  # Infura (2025-)
    re.compile(r"limited to an? ([\d,.]+)(?: block)? range", re.IGNORECASE),  # QuickNode, 1RPC, Blast
    re.compile(r"limited to ([\d,.]+) blocks?", re.IGNORECASE),  # BlockPI
    re.compile(r"maximum block range:? ([\d,.]+)", re.IGNORECASE),  # PublicNode
    re.compile(r"max(?:imum)? (?:block )?range:? ([\d,.]+)", re.IGNORECASE),  # Cloudflare
    re.compile(r"query exceeds max block range ([\d,.]+)", re.IGNORECASE),
    re.compile(r"block range (?:is too wide )?\(?(?:maximum|max)[: ]+([\d,.]+)", re.IGNORECASE),
    re.compile(r"maximum allowed number of requested blocks is ([\d,.]+)", re.IGNORECASE),  # thirdweb
    re.compile(r"up to an? ([\d,.]+)[ -]?(?:k )?block range", re.IGNORECASE),  # Alchemy, Aurora
    re.compile(r"at most ([\d,.]+) blocks", re.IGNORECASE),  # Coinbase
    re.compile(r"block range (?:greater than|exceeds) ([\d,.]+)", re.IGNORECASE),
    re.compile(r"exceeds the range allowed for your plan \(\d+ > ([\d,.]+)\)", re.IGNORECASE),  # Blast
    re.compile(r"maximum \[from, to\] blocks distance: (\d+)", re.IGNORECASE),  # Ankr
    re.compile(r"maximum is set to (\d+)", re.IGNORECASE),  # Avalanche
)
# Result caps (logs per answer), tried in order: the first group is the cap, a "k" after it thousands.
_RESULT_CAPS = (
    re.compile(r"more than ([\d,.]+) (?:results|logs)", re.IGNORECASE),  # Infura, Polygon bor
    re.compile(r"cap of ([\d,.]+)\s*(k?) logs", re.IGNORECASE),  # Alchemy
    re.compile(r"max(?:imum)? results:? ([\d,.]+)", re.IGNORECASE),  # Ankr
    re.compile(r"logs matched by query exceeds limit of ([\d,.]+)", re.IGNORECASE),  # Arbitrum, Nitro
    re.compile(r"(?:results|logs) (?:limit|cap)(?: of| is|:)? ([\d,.]+)", re.IGNORECASE),
)
# A result cap that names no number.
_RESULTS_UNNAMED = re.compile(
    r"too many (?:results|logs)|more than \S+ (?:results|logs)|response (?:size|too large)|max results|"
    r"logs matched",
    re.IGNORECASE,
)
_SUGGESTED = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")
_RANGE = re.compile(
    r"more than \d+ results|query returned more than|range.*(too (large|wide|big)|exceeds?)|"
    r"too many (results|logs|blocks)|response size|exceeds? (the )?max(imum)?|limit exceeded|"
    r"query exceeds|logs matched by query|block range|response too large|query timeout|"
    r"context deadline exceeded|timed? ?out|query (is )?too (large|heavy|broad)|"
    r"should not greater than|max results|size exceeded",
    re.IGNORECASE,
)
# Words that make a "limit" message about the query, not the quota ("block range limit reached").
_ABOUT_RANGE = re.compile(r"\brange\b|\bresults\b|\blogs\b|\bblocks?\b|response size", re.IGNORECASE)
_TRANSIENT = re.compile(
    r"header not found|unknown block|no backend|upstream|temporar|try again|unavailable|"
    r"internal error|timeout|timed out|busy|overloaded|not (yet )?synced|syncing|bad gateway|"
    r"service unavailable|connection (reset|refused|closed)|please retry|retry later",
    re.IGNORECASE,
)
_RANGE_CODES = frozenset({-32005, -32614})
_RATE_CODES = frozenset({429, -32029, -32090})  # Alchemy's 429 code; -32029/-32090 on some gateways
_TRANSIENT_HTTP = frozenset({408, 425, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529, 530})
_SHRINK_HTTP = frozenset({502, 504})
_QUOTA_HTTP = frozenset({402, 403})


@dataclass(frozen=True)
class Refusal:
    """One classified refusal. ``reason`` is a one-line description without the URL."""

    kind: Kind
    reason: str
    suggested: tuple[int, int] | None = None  # a block range the provider proposed
    max_blocks: int | None = None  # a range width (blocks) the provider named as its limit
    max_results: int | None = None  # a result cap: the logs per answer it named (0: unnamed); None: not one
    retry_after: float | None = None  # seconds, as the provider asked

    def suggested_range(self, start: int) -> tuple[int, int] | None:
        """The range to try next from ``start``: the provider's own, else ``start`` plus its width."""
        if self.suggested is not None:
            return self.suggested
        if self.max_blocks is not None and self.max_blocks >= 1:
            return start, start + self.max_blocks - 1
        return None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds: delta-seconds ("120") or an HTTP date; None if absent/unreadable.

    A date in the past is 0. ``now`` must be timezone-aware (UTC).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def classify(
    method: str,
    *,
    status: int = 200,
    error: dict[str, Any] | None = None,
    body: str = "",
    retry_after: str | None = None,
    batch: bool = False,
    now: datetime | None = None,
) -> Refusal:
    """Classify one failed answer to ``method``.

    ``status``: the HTTP status; ``error``: the JSON-RPC ``error`` object if the body had one; ``body``:
    the body's text otherwise (HTML, plain text: at most a few hundred characters are looked at);
    ``retry_after``: the header's raw value; ``batch``: the request was a JSON-RPC batch; ``now``: for
    an HTTP-date ``Retry-After`` (UTC now if omitted).
    """
    code = error.get("code") if error is not None else None
    message = _text(error) if error is not None else body[:300]
    data = error.get("data") if error is not None else None
    text = f"{method}: " + (f"error {code}: {message[:200]}" if error is not None else f"HTTP {status}")
    wait = parse_retry_after(retry_after, now or datetime.now(UTC))
    if wait is None:
        wait = _backoff_seconds(data)
    logs = method == LOGS_METHOD

    about_range = logs and (_width_or_range(message, data) or bool(_ABOUT_RANGE.search(message)))
    if status == 429 or code in _RATE_CODES or (_RATE.search(message) and not about_range):
        return Refusal("rate_limit", text, retry_after=wait)
    if status in _QUOTA_HTTP and _RATE.search(message):
        return Refusal("rate_limit", text, retry_after=wait)
    if batch and (_BATCH.search(message) or (error is not None and code == -32600) or 400 <= status < 500):
        return Refusal("batch", text)
    if logs and (code in _RANGE_CODES or _RANGE.search(message) or _width_or_range(message, data)):
        results = _result_cap(message)
        # A result cap's message may name a width it would serve uncapped (Alchemy's "up to a 2K
        # block range"): that is an alternative, not the limit of the range asked for.
        width = _width(message) if results is None else None
        return Refusal("range", text, suggested=_suggested(message, data), max_blocks=width, max_results=results)
    if logs and status in _SHRINK_HTTP:
        return Refusal("range", text)
    if status in _TRANSIENT_HTTP or status >= 500 or _TRANSIENT.search(message):
        return Refusal("transient", text, retry_after=wait)
    if error is None and status == 200:
        return Refusal("transient", f"{method}: answer is not a JSON-RPC response")
    return Refusal("permanent", text)


def classify_failure(method: str, failure: Failure, *, width: int = 1) -> Refusal:
    """A call that got no usable answer: a ``timeout``, an answer over the byte cap (``oversize``), a
    ``connection`` failure or ``garbled`` JSON. A wide getLogs that timed out or overflowed is a range
    refusal (narrower is the cure); everything else is transient."""
    text = f"{method}: {failure}"
    if method == LOGS_METHOD and width > 1 and failure in ("timeout", "oversize"):
        return Refusal("range", text)
    return Refusal("transient", text)


def _text(error: dict[str, Any]) -> str:
    """The message, plus ``data`` when it is text or holds a message (some providers put the reason there)."""
    parts = [str(error.get("message", ""))]
    data = error.get("data")
    if isinstance(data, str):
        parts.append(data)
    elif isinstance(data, dict):
        parts += [str(data[k]) for k in ("message", "reason", "details", "error") if isinstance(data.get(k), str)]
    return " ".join(p for p in parts if p)


def _suggested(message: str, data: object) -> tuple[int, int] | None:
    if isinstance(data, dict):
        start, end = data.get("from"), data.get("to")
        if isinstance(start, str) and isinstance(end, str):
            try:
                return int(start, 16), int(end, 16)
            except ValueError:
                pass
    match = _SUGGESTED.search(message)
    return (int(match.group(1), 16), int(match.group(2), 16)) if match else None


def _width(message: str) -> int | None:
    for pattern in _WIDTHS:
        match = pattern.search(message)
        if match:
            digits = re.sub(r"[,.]", "", match.group(1))
            if digits.isdigit() and int(digits) >= 1:
                width = int(digits)
                return width * 1000 if re.search(re.escape(match.group(1)) + r"\s*k\b", message, re.I) else width
    return None


def _result_cap(message: str) -> int | None:
    """The logs-per-answer cap a refusal names (0 if it is one but names no number), else None."""
    for pattern in _RESULT_CAPS:
        match = pattern.search(message)
        if match:
            digits = re.sub(r"[,.]", "", match.group(1))
            if digits.isdigit() and int(digits) >= 1:
                thousands = len(match.groups()) > 1 and match.group(2).lower() == "k"
                return int(digits) * (1000 if thousands else 1)
    return 0 if _RESULTS_UNNAMED.search(message) else None


def _width_or_range(message: str, data: object) -> bool:
    return _width(message) is not None or _suggested(message, data) is not None


def _backoff_seconds(data: object) -> float | None:
    """Infura's ``data.rate.backoff_seconds`` (its rate-limit answers carry no Retry-After)."""
    rate = data.get("rate") if isinstance(data, dict) else None
    value = rate.get("backoff_seconds") if isinstance(rate, dict) else None
    return float(value) if isinstance(value, int | float) and value > 0 else None

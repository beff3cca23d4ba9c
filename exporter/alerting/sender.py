"""Delivering one request to one channel: timeouts, bounded retries with exponential back-off on
connection errors, 5xx and 429 (honouring ``Retry-After`` and Telegram's ``parameters.retry_after``),
and the outcome counted in ``blocktrust_alerts_sent_total{channel,outcome}``.

Shared by every channel; knows no channel's format (each builds its own request). Waiting uses the
injected ``Clock``, so tests see each back-off in ``FakeClock.slept`` instead of sleeping. Not for
queueing: the ``notifier`` calls this from its worker threads, off the check path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests
import urllib3

from exporter.alerting.alert import Alert
from exporter.clock import Clock
from exporter.metrics import Metrics
from exporter.redact import no_redaction

log = logging.getLogger(__name__)

# Of a refused alert's answer we only need the status, Retry-After and Telegram's retry_after: the start
# of the body is plenty, and reading no more keeps a channel that answers with megabytes cheap.
MAX_BODY_BYTES = 64 * 1024
_READ_PIECE = 4096


class Channel(Protocol):
    """A destination: a name for metrics and logs, and a pure request builder."""

    @property
    def name(self) -> str: ...

    @property
    def send_resolved(self) -> bool: ...

    def build_request(self, alert: Alert) -> tuple[str, dict[str, Any]]: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int = 5
    timeout: float = 10.0  # per request: connect, each read, and in all the reading of an answer's body
    backoff: float = 1.0  # first wait; doubled after every failed try
    backoff_max: float = 60.0
    retry_after_max: float = 300.0  # a longer Retry-After means "not now": give up instead of blocking

    def backoff_for(self, failed_tries: int) -> float:
        return float(min(self.backoff * 2 ** (failed_tries - 1), self.backoff_max))


@dataclass(frozen=True)
class _Try:
    delivered: bool
    retryable: bool
    reason: str
    retry_after: float | None = None


class HttpSender:
    """POSTs JSON with retries; ``send`` returns True once the channel accepted the alert."""

    def __init__(
        self,
        session: requests.Session,
        clock: Clock,
        metrics: Metrics,
        policy: RetryPolicy | None = None,
        redact: Callable[[str], str] = no_redaction,
    ) -> None:
        self._session = session
        self._clock = clock
        self._metrics = metrics
        self._policy = policy or RetryPolicy()
        self._redact = redact

    def send(self, channel: str, url: str, body: dict[str, Any], *, deadline: float | None = None) -> bool:
        """Deliver ``body`` to ``url``; ``deadline`` (``clock.monotonic()`` seconds) stops retrying early,
        e.g. when the notifier is shutting down."""
        policy = self._policy
        for attempt in range(1, policy.max_tries + 1):
            outcome = self._try(url, body)
            if outcome.delivered:
                self._metrics.alerts_sent.labels(channel=channel, outcome="success").inc()
                return True
            if not outcome.retryable or attempt == policy.max_tries:
                return self._give_up(channel, attempt, outcome.reason)
            wait = outcome.retry_after if outcome.retry_after is not None else policy.backoff_for(attempt)
            if wait > policy.retry_after_max:
                return self._give_up(channel, attempt, f"{outcome.reason}; asked to wait {wait:.0f}s")
            if deadline is not None and self._clock.monotonic() + wait > deadline:
                return self._give_up(channel, attempt, f"{outcome.reason}; no time left to retry")
            log.warning(
                "alert to %s: try %d/%d failed (%s); retrying in %.1fs",
                channel,
                attempt,
                policy.max_tries,
                outcome.reason,
                wait,
            )
            self._clock.sleep(wait)
        raise AssertionError("unreachable: the last try always returns")  # pragma: no cover

    def _give_up(self, channel: str, tries: int, reason: str) -> bool:
        log.error("alert to %s not delivered after %d tries: %s", channel, tries, reason)
        self._metrics.alerts_sent.labels(channel=channel, outcome="failure").inc()
        return False

    def _try(self, url: str, body: dict[str, Any]) -> _Try:
        try:
            # No redirects: a webhook that moved is a configuration error to surface, and following
            # one would turn the POST into a GET (or hand the alert to another host).
            # A real-time bound (not the domain clock): it limits how long a socket can hold a worker.
            deadline = time.monotonic() + self._policy.timeout
            # stream=True: the body is read by _read_body, capped and within the deadline.
            with self._session.post(
                url, json=body, timeout=self._policy.timeout, allow_redirects=False, stream=True
            ) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return _Try(delivered=True, retryable=False, reason="ok")  # the body is not needed
                text = _read_body(response, deadline)
                reason = f"HTTP {status}"
                snippet = self._redact(text[:200].strip())
                if snippet:
                    reason += f": {snippet}"
                if status == 429 or status >= 500:
                    return _Try(False, True, reason, self._retry_after(response, text))
                return _Try(False, False, reason)
        except requests.RequestException as exc:
            # The message names the URL, which may hold a token: mask before it goes anywhere.
            return _Try(False, True, self._redact(f"{type(exc).__name__}: {exc}"))

    def _retry_after(self, response: requests.Response, text: str) -> float | None:
        """Seconds the server asked us to wait: the ``Retry-After`` header (seconds or an HTTP date),
        else Telegram's JSON ``{"parameters": {"retry_after": N}}``."""
        header = response.headers.get("Retry-After")
        if header:
            text = header.strip()
            try:
                return max(float(text), 0.0)
            except ValueError:
                pass
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
                return max((when - self._clock.now()).total_seconds(), 0.0)
        try:
            payload = json.loads(text)
        except ValueError:
            return None
        parameters = payload.get("parameters") if isinstance(payload, dict) else None
        value = parameters.get("retry_after") if isinstance(parameters, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return max(float(value), 0.0)
        return None


def _read_body(response: requests.Response, deadline: float) -> str:
    """At most ``MAX_BODY_BYTES`` of the body, read until ``deadline`` (``time.monotonic()``) at the latest.

    ``requests`` only bounds each read, so a peer trickling a byte a second would hold the worker (and
    every alert queued behind it) for as long as it likes. ``read1`` returns whatever has arrived, and
    each wait is cut to the time left; what arrived by then is enough to report the failure.
    """
    raw = response.raw
    data = bytearray()
    try:
        while len(data) < MAX_BODY_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock = getattr(raw.connection, "sock", None)
            if sock is not None:
                sock.settimeout(left)
            piece = raw.read1(min(_READ_PIECE, MAX_BODY_BYTES - len(data)), decode_content=True)
            if not piece:
                break
            data += piece
    except (OSError, urllib3.exceptions.HTTPError):
        pass  # a body cut short (timeout, reset) still leaves the status to report
    return bytes(data).decode(response.encoding or "utf-8", errors="replace")

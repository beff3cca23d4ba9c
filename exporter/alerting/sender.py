"""Delivering one request to one channel: timeouts, bounded retries with exponential back-off on
connection errors, 5xx and 429 (honouring ``Retry-After`` and Telegram's ``parameters.retry_after``),
and the outcome counted in ``blocktrust_alerts_sent_total{channel,outcome}``.

Shared by every channel; knows no channel's format (each builds its own request). Waiting uses the
injected ``Clock``, so tests see each back-off in ``FakeClock.slept`` instead of sleeping. Not for
queueing: the ``notifier`` calls this from its worker threads, off the check path.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests
import urllib3

from exporter.alerting.alert import Alert
from exporter.alerting.answer import Verdict, delta_seconds, judge_http, wait_seconds
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

    def headers(self, body: bytes, at: float) -> dict[str, str]:
        """Extra headers for the exact ``body`` sent at ``at`` (unix seconds): a signature, or none."""
        ...

    def judge(self, status: int, body: str, retry_after: float | None) -> Verdict:
        """What the channel's answer means, as its API documents it (see ``answer.py``)."""
        ...


Judge = Callable[[int, str, float | None], Verdict]
Headers = Callable[[bytes, float], dict[str, str]]


def no_headers(body: bytes, at: float) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int = 5
    timeout: float = 10.0  # per request: connect, each read, and in all the reading of an answer's body
    backoff: float = 1.0  # first wait; doubled after every failed try
    backoff_max: float = 60.0
    retry_after_max: float = 300.0  # a longer Retry-After means "not now": give up instead of blocking

    def backoff_for(self, failed_tries: int) -> float:
        return float(min(self.backoff * 2 ** (failed_tries - 1), self.backoff_max))

    def wait_budget(self) -> float:
        """The most one delivery waits between its tries, in all: the sum of its back-offs, but at least
        one wait of ``min(backoff_max, retry_after_max)`` (room for a short Retry-After). A wait the
        channel asks for beyond what is left of it ends the delivery; the outbox retries no sooner."""
        backoffs = sum(self.backoff_for(i) for i in range(1, self.max_tries))
        return float(max(backoffs, min(self.backoff_max, self.retry_after_max)))

    def longest_delivery(self) -> float:
        """An upper bound (seconds) of one delivery: every try's connect and read (``timeout`` each, the
        body within the read's) plus the wait budget. What an outbox lease must cover."""
        return float(self.max_tries * 2 * self.timeout + self.wait_budget())


@dataclass(frozen=True)
class Delivery:
    """The outcome of ``send``: true when the channel accepted the notice. Otherwise ``reason``
    (redacted) and ``reason_class`` say why, ``permanent`` whether the last answer was a refusal
    rather than a transient failure, and ``migrate_to`` where a moved channel now lives."""

    delivered: bool
    tries: int
    reason: str = "ok"
    reason_class: str | None = None
    permanent: bool = False
    migrate_to: str | None = None
    retry_after: float | None = None  # seconds the channel asked us to wait (longer than we would here)
    interrupted: bool = False  # the sender was stopped during the delivery (the notice is to be released)
    status: int | None = None  # the last answer's HTTP status (None: no answer)
    answer: str = ""  # the start of the last answer's body (raw: redact before showing), when it was read

    def __bool__(self) -> bool:
        return self.delivered


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
        self._stop = threading.Event()

    def stop(self) -> None:
        """End every wait between tries at once (shutdown): deliveries in progress return ``interrupted``."""
        self._stop.set()

    def send(
        self,
        channel: str,
        url: str,
        body: dict[str, Any],
        *,
        deadline: float | None = None,
        judge: Judge = judge_http,
        headers: Headers = no_headers,
    ) -> Delivery:
        """Deliver ``body`` to ``url``, the answers read by ``judge`` (the channel's own rule; a plain
        webhook's by default). Transient failures are retried with back-off; a refusal, a migration or
        a wait longer than ``retry_after_max`` end the delivery at once. ``headers(body, at)`` adds
        headers for the exact bytes sent, at each try (a webhook's signature). ``deadline``
        (``clock.monotonic()`` seconds) stops retrying early, e.g. when the notifier is shutting down.
        Every try is counted (``blocktrust_alert_delivery_attempts_total``), every failed one by reason
        class (``blocktrust_alert_delivery_failures_total``) and logged with the channel and reason."""
        policy = self._policy
        budget = policy.wait_budget()
        # The exact bytes sent (and signed): requests' own json= encoding, done once here.
        data = json.dumps(body, allow_nan=False).encode()
        for attempt in range(1, policy.max_tries + 1):
            verdict, answered = self._try(url, data, judge, headers)
            self._metrics.alert_delivery_attempts.labels(channel=channel).inc()
            if verdict.delivered:
                self._metrics.alerts_sent.labels(channel=channel, outcome="success").inc()
                return Delivery(True, attempt, status=answered[0], answer=answered[1])
            reason = self._redact(verdict.reason)
            reason_class = verdict.reason_class or "internal"
            self._metrics.alert_delivery_failures.labels(channel=channel, reason=reason_class).inc()
            if verdict.migrate_to is not None:
                log.warning("alert to %s: the channel moved (%s)", channel, reason)
                return Delivery(False, attempt, reason, "migrated", migrate_to=verdict.migrate_to)
            if not verdict.retryable or attempt == policy.max_tries:
                gave_up = self._give_up(channel, attempt, reason, reason_class, permanent=not verdict.retryable)
                # The outbox honours retry_after.
                return dataclasses.replace(
                    gave_up, retry_after=verdict.retry_after, status=answered[0], answer=answered[1]
                )
            wait = verdict.retry_after if verdict.retry_after is not None else policy.backoff_for(attempt)
            if wait > policy.retry_after_max or wait > budget:
                gave_up = self._give_up(channel, attempt, f"{reason}; asked to wait {wait:.0f}s", reason_class)
                return dataclasses.replace(gave_up, retry_after=wait)
            budget -= wait
            if deadline is not None and self._clock.monotonic() + wait > deadline:
                return self._give_up(channel, attempt, f"{reason}; no time left to retry", reason_class)
            log.warning(
                "alert to %s: try %d/%d failed (%s: %s); retrying in %.1fs",
                channel,
                attempt,
                policy.max_tries,
                reason_class,
                reason,
                wait,
            )
            if self._clock.wait(self._stop, wait):
                gave_up = self._give_up(channel, attempt, f"{reason}; stopped while waiting to retry", reason_class)
                return dataclasses.replace(gave_up, interrupted=True)
        raise AssertionError("unreachable: the last try always returns")  # pragma: no cover

    def _give_up(
        self, channel: str, tries: int, reason: str, reason_class: str, *, permanent: bool = False
    ) -> Delivery:
        kind = "refused" if permanent else "failed"
        log.error("alert to %s not delivered after %d tries (%s, %s): %s", channel, tries, kind, reason_class, reason)
        self._metrics.alerts_sent.labels(channel=channel, outcome="failure").inc()
        return Delivery(False, tries, reason, reason_class, permanent=permanent)

    def _try(self, url: str, data: bytes, judge: Judge, headers: Headers) -> tuple[Verdict, tuple[int | None, str]]:
        """The verdict of one try, and the answer's (status, start of the body) when one came."""
        try:
            # No redirects: a webhook that moved is a configuration error to surface, and following
            # one would turn the POST into a GET (or hand the alert to another host).
            # A real-time bound (not the domain clock): it limits how long a socket can hold a worker.
            deadline = time.monotonic() + self._policy.timeout
            # stream=True: the body is read by _read_body, capped and within the deadline.
            sent = {"Content-Type": "application/json", **headers(data, self._clock.now().timestamp())}
            with self._session.post(
                url, data=data, headers=sent, timeout=self._policy.timeout, allow_redirects=False, stream=True
            ) as response:
                status = response.status_code
                text = "" if judge is judge_http and 200 <= status < 300 else _read_body(response, deadline)
                return judge(status, text, self._retry_after(response, text)), (status, text[:200])
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            # A failed exchange, or an answer HTTP cannot parse (an over-long header line, a broken chunk)
            # that escaped requests' own wrapping. The message names the URL, which may hold a token:
            # mask before it goes anywhere.
            return Verdict(False, True, self._redact(f"{type(exc).__name__}: {exc}"), "network"), (None, "")

    def _retry_after(self, response: requests.Response, text: str) -> float | None:
        """Seconds the server asked us to wait: the ``Retry-After`` header (seconds or an HTTP date),
        else Telegram's JSON ``{"parameters": {"retry_after": N}}``."""
        header = response.headers.get("Retry-After")
        if header:
            text = header.strip()
            seconds = delta_seconds(text)
            if seconds is not None:
                return seconds
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, OverflowError, IndexError):
                when = None
            if when is not None:
                when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
                return wait_seconds(max((when - self._clock.now()).total_seconds(), 0.0))
            return None  # not a Retry-After we understand (``nan``, ``inf``, ``-1``): back off as usual
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: a body of deeply nested brackets
            return None
        parameters = payload.get("parameters") if isinstance(payload, dict) else None
        return wait_seconds(parameters.get("retry_after")) if isinstance(parameters, dict) else None


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

"""Retrying one JSON-RPC call: exponential back-off with full jitter, on the injected clock.

``Backoff`` is pure (it only computes waits, honouring a server's ``Retry-After``), so it is
unit-tested on its own; ``Retrier`` runs a call, waits on the injected ``Clock`` between tries
(a stop request cuts the wait short) and gives up after a few attempts. Not for deciding what is
transient: ``rpc.py`` classifies errors; not for range sizing: ``ranges.py``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from exporter.clock import Clock
from exporter.listener.rpc import TransientRpcError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class FetchCancelledError(Exception):
    """The poll gave up (the store failed, or a stop was requested) while RPC work was pending."""


class Backoff:
    """Exponential back-off with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        rng: random.Random | None = None,
        *,
        max_retry_after: float | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        # A server's Retry-After is honoured whole up to this (listener.max_retry_after), not cut
        # to ``cap``: retrying a rate-limited provider early only prolongs the limit.
        self.max_retry_after = cap if max_retry_after is None else max_retry_after
        # Jitter only spreads retries of many clients; it needs no cryptographic randomness.
        self._rng = rng or random.Random()  # noqa: S311

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based); at least ``retry_after`` (seconds,
        up to ``max_retry_after``) when the server asked for it."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        wait = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(self.max_retry_after, retry_after))
        return wait


class Retrier:
    """Runs one RPC call, retrying transient failures with back-off on the injected clock.

    Retrying per call (not per range) matters: a range near the head takes a header batch and a
    getLogs, and restarting the whole range on every 429 would make progress ever less likely.
    Setting ``stop`` (the listener's stop request) ends any retry loop at once, even mid-wait.
    """

    def __init__(
        self, backoff: Backoff, clock: Clock, *, stop: threading.Event | None = None, max_attempts: int = 5
    ) -> None:
        self._backoff = backoff
        self._clock = clock
        self._stop = stop or threading.Event()
        self._max_attempts = max_attempts

    def __call__(self, call: Callable[[], _T], cancel: threading.Event | None = None) -> _T:
        attempt = 0
        while True:
            if self._stop.is_set() or (cancel is not None and cancel.is_set()):
                raise FetchCancelledError()
            try:
                return call()
            except TransientRpcError as exc:
                attempt += 1
                if attempt >= self._max_attempts:
                    raise
                wait = self._backoff.delay(attempt, exc.retry_after)
                log.info("listener: %s; retry %d in %.2fs", exc, attempt, wait)
                self._clock.wait(self._stop, wait)  # a stop request cuts the wait short

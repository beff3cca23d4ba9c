"""Back-off and retries: the pure ``Backoff``, and ``Retrier`` waiting on the injected clock."""

from __future__ import annotations

import random
import threading

import pytest

from exporter.clock import FakeClock, SystemClock
from exporter.listener.retry import Backoff, FetchCancelledError, Retrier
from exporter.listener.rpc import TransientRpcError


def test_backoff_is_exponential_with_full_jitter_and_a_cap() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        waits = [backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # jitter spans the whole interval
        assert len(set(waits)) > 100


def test_backoff_honours_retry_after_within_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=5.0, rng=random.Random(2))
    assert backoff.delay(1, retry_after=3.0) == 3.0
    assert backoff.delay(1, retry_after=60.0) == 5.0


class _Flaky:
    """Fails with a transient error ``failures`` times, then answers; can set ``stop`` as it fails."""

    def __init__(self, failures: int, stop: threading.Event | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self._stop = stop

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            if self._stop is not None:
                self._stop.set()
            raise TransientRpcError("HTTP 429", "rate_limited", retry_after=2.0)
        return "answer"


def test_retrier_waits_on_the_injected_clock_between_tries() -> None:
    clock = FakeClock()
    retry = Retrier(Backoff(base=0.5, cap=30.0, rng=random.Random(3)), clock, max_attempts=5)
    assert retry(_Flaky(failures=2)) == "answer"
    assert len(clock.slept) == 2 and all(wait >= 2.0 for wait in clock.slept)  # Retry-After honoured


def test_retrier_gives_up_after_its_attempts() -> None:
    clock = FakeClock()
    flaky = _Flaky(failures=10)
    with pytest.raises(TransientRpcError):
        Retrier(Backoff(rng=random.Random(4)), clock, max_attempts=3)(flaky)
    assert flaky.calls == 3 and len(clock.slept) == 2


def test_a_stop_request_cuts_the_wait_short_and_ends_the_retries() -> None:
    clock, stop = FakeClock(), threading.Event()
    flaky = _Flaky(failures=1, stop=stop)  # the stop comes while the first try fails
    with pytest.raises(FetchCancelledError):
        Retrier(Backoff(rng=random.Random(5)), clock, stop=stop)(flaky)
    assert flaky.calls == 1 and clock.slept == []  # no time passed waiting


def test_the_system_clock_wait_returns_as_soon_as_the_event_is_set() -> None:
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert SystemClock().wait(event, 30.0) is True

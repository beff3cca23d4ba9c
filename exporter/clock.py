"""Time as an injected dependency.

Every component that reads the time or waits takes a ``Clock``, so tests can run a day of
checks in milliseconds with ``FakeClock`` instead of sleeping.

A clock has two parts that move independently on a real machine, and each question uses one:

- ``monotonic()`` for every interval, deadline, schedule, token lifetime and back-off: it never
  jumps, whatever NTP, an operator or a VM resume does to the wall clock;
- ``now()`` (wall time, UTC) only for timestamps (rows, notices, metrics) and calendar questions
  (maintenance windows, the SLO window over stored rows).

``FakeClock.step`` and ``ManualClock.step`` move the wall part alone, as a clock step does.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock just advances)."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``event`` is set, whichever comes first; True if it is set.
        A fake clock advances by ``seconds`` unless the event is already set."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly. Thread-safe.

    ``advance`` moves both parts (time passes); ``step`` moves the wall clock alone."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if not event.is_set():
            self.sleep(seconds)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def step(self, seconds: float) -> None:
        """The wall clock jumps by ``seconds`` (negative: back); the monotonic clock does not move."""
        with self._lock:
            self._now += timedelta(seconds=seconds)


class ManualClock:
    """A clock driven by a test while other threads run on it (a scheduler, jobs): ``wait`` and ``sleep``
    block, in real time, until the event is set or the test has ``advance``d the monotonic clock past
    the deadline. ``step`` moves the wall clock alone. Thread-safe.

    Unlike ``FakeClock`` nothing moves by itself, so a thread that waits on it stays put until told.
    """

    _POLL_SECONDS = 0.005  # how soon a blocked wait notices its event (Event.set notifies no one else)

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0
        self._moved = threading.Condition()

    def now(self) -> datetime:
        with self._moved:
            return self._now

    def monotonic(self) -> float:
        with self._moved:
            return self._mono

    def sleep(self, seconds: float) -> None:
        self.wait(threading.Event(), seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._moved:
            deadline = self._mono + max(0.0, seconds)
            while not event.is_set() and self._mono < deadline:
                self._moved.wait(self._POLL_SECONDS)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        """Time passes: both parts move by ``seconds``, and waits whose deadline passed return."""
        with self._moved:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds
            self._moved.notify_all()

    def step(self, seconds: float) -> None:
        """The wall clock jumps by ``seconds`` (negative: back); the monotonic clock does not move."""
        with self._moved:
            self._now += timedelta(seconds=seconds)


def utc_naive(moment: datetime) -> datetime:
    """UTC wall time without tzinfo: the form stored in the TIMESTAMP columns of SPEC §2."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)

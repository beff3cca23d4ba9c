"""What the process tells a person watching its log: one line per check round, and, while the
listener works through a backlog, a progress line every few seconds with an ETA.

    round 12: 9/9 ok, slowest api.events 14 ms
    round 13: 8/9 ok (failing: api.stats), slowest api.events 15 ms
    listener catching up: block 41200 of 50000, 1200 blocks done, 8800 to go, 310 events/s, ETA 2m05s
    listener caught up at block 50000: 10000 blocks, 31000 events in 3m40s

Pure bookkeeping fed by the runtime (check results, and the numbers of each listener commit); time
comes from the injected clock. Not for failures (the check round logs each) nor for metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from exporter.clock import Clock
from exporter.store.base import CheckResult

log = logging.getLogger("exporter.progress")

PROGRESS_EVERY_SECONDS = 5.0
# Blocks behind the head that still count as "at the head": a confirmations depth or a safe/finalized
# tag keeps the listener that far back on purpose.
AT_HEAD_MARGIN_BLOCKS = 50


def format_duration(seconds: float) -> str:
    """``45s``, ``2m05s``, ``3h05m``: an elapsed time or an ETA at a glance."""
    total = max(round(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def round_line(number: int, results: Sequence[CheckResult]) -> str:
    """``round 12: 9/9 ok, slowest api.events 14 ms`` (failing checks named, sorted)."""
    ok = sum(1 for result in results if result.ok)
    line = f"round {number}: {ok}/{len(results)} ok"
    failing = sorted(result.check_name for result in results if not result.ok)
    if failing:
        line += f" (failing: {', '.join(failing)})"
    if results:
        slowest = max(results, key=lambda result: result.latency_ms)
        line += f", slowest {slowest.check_name} {slowest.latency_ms} ms"
    return line


class RoundReporter:
    """Counts check rounds and logs one line per round, at info when every check passed, at warning
    when one failed (like the failed check's own line); a ``CheckRound`` result sink."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._rounds = 0
        self._lock = threading.Lock()

    def __call__(self, results: Sequence[CheckResult]) -> None:
        with self._lock:
            self._rounds += 1
            number = self._rounds
        level = logging.INFO if all(result.ok for result in results) else logging.WARNING
        self._log.log(level, "%s", round_line(number, results))


class CatchUpReporter:
    """Follows the listener's polls; while it is more than ``margin`` blocks behind the head, logs
    progress at most every ``every`` seconds, and one line when it has caught up."""

    def __init__(
        self,
        clock: Clock,
        *,
        margin: int = AT_HEAD_MARGIN_BLOCKS,
        every: float = PROGRESS_EVERY_SECONDS,
        logger: logging.Logger = log,
    ) -> None:
        self._clock = clock
        self._margin = margin
        self._every = every
        self._log = logger
        self._start: tuple[float, int] | None = None  # (monotonic seconds, processed block) of the backlog
        self._events = 0
        self._last_line: float | None = None

    def observe(self, head: int, processed: int, events: int) -> None:
        """One commit of the listener: the chain head, the last stored block, the events it stored."""
        now = self._clock.monotonic()
        behind = head - processed
        if behind <= self._margin:
            if self._start is not None:
                started, first = self._start
                self._events += events
                self._log.info(
                    "listener caught up at block %d: %d blocks, %d events in %s",
                    processed,
                    processed - first,
                    self._events,
                    format_duration(now - started),
                )
                self._start, self._events, self._last_line = None, 0, None
            return
        if self._start is None:  # a backlog begins: rates are measured from here
            self._start, self._events, self._last_line = (now, processed), 0, None
        else:
            self._events += events
        if self._last_line is not None and now - self._last_line < self._every:
            return
        self._last_line = now
        self._log.info("%s", self._progress(now, head, processed, behind))

    def _progress(self, now: float, head: int, processed: int, behind: int) -> str:
        assert self._start is not None
        started, first = self._start
        elapsed = now - started
        done = processed - first
        line = f"listener catching up: block {processed} of {head}, {done} blocks done, {behind} to go"
        if elapsed <= 0 or done <= 0:
            return line + ", ETA unknown yet"
        events_per_second = self._events / elapsed
        eta = behind / (done / elapsed)
        rate = f"{events_per_second:.1f}" if events_per_second < 10 else f"{events_per_second:.0f}"
        return line + f", {rate} events/s, ETA {format_duration(eta)}"

"""Maintenance windows: is a check's notification held back at a given moment?

Results are still recorded and incidents still opened during a window; only notifications wait
(the engine sends what is still relevant when the window ends). Not for validation: the config
rejects malformed windows before this module sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from fnmatch import fnmatchcase

from exporter.config import MaintenanceWindow, parse_clock_time, parse_instant

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class _Window:
    patterns: tuple[str, ...]  # empty = every check
    start: datetime | None = None  # fixed window [start, end)
    end: datetime | None = None
    weekdays: frozenset[int] = frozenset()  # weekly window: the days it *starts* on (Monday = 0)
    from_time: time = time.min
    to_time: time = time.max

    def cover_end(self, at: datetime) -> datetime:
        """The end of the occurrence covering ``at`` (only meaningful when ``covers(at)``)."""
        if self.start is not None and self.end is not None:
            return self.end
        day = at.date()
        if not self.from_time < self.to_time and at.weekday() in self.weekdays and at.time() >= self.from_time:
            day += timedelta(days=1)  # the evening part ends the next morning
        end = datetime.combine(day, self.to_time, tzinfo=UTC)
        return end + timedelta(microseconds=1) if self.to_time == time.max else end

    def applies_to(self, check_name: str) -> bool:
        return not self.patterns or any(fnmatchcase(check_name, p) for p in self.patterns)

    def covers(self, at: datetime) -> bool:
        if self.start is not None and self.end is not None:
            return self.start <= at < self.end
        now = at.time()
        if self.from_time < self.to_time:
            return at.weekday() in self.weekdays and self.from_time <= now < self.to_time
        # Past midnight: the evening part belongs to a listed day, the morning part to the day after.
        yesterday = (at - timedelta(days=1)).weekday()
        return (at.weekday() in self.weekdays and now >= self.from_time) or (
            yesterday in self.weekdays and now < self.to_time
        )


def _compile(window: MaintenanceWindow) -> _Window:
    patterns = tuple(window.checks)
    if window.start is not None and window.end is not None:
        return _Window(patterns, start=parse_instant(window.start), end=parse_instant(window.end))
    assert window.from_ is not None and window.to is not None  # guaranteed by the config validator
    return _Window(
        patterns,
        weekdays=frozenset(_WEEKDAYS.index(day) for day in window.days),
        from_time=parse_clock_time(window.from_),
        to_time=parse_clock_time(window.to),
    )


class MaintenanceCalendar:
    """The configured windows, asked one question: is ``check_name`` in maintenance at ``at``?"""

    def __init__(self, windows: Sequence[MaintenanceWindow] = ()) -> None:
        self._windows = tuple(_compile(w) for w in windows)

    def active(self, check_name: str, at: datetime) -> bool:
        moment = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return any(w.applies_to(check_name) and w.covers(moment) for w in self._windows)

    def ends(self, check_name: str, at: datetime) -> datetime:
        """The first moment from ``at`` on when ``check_name`` is out of maintenance (``at`` itself when it
        is not in maintenance); back-to-back or overlapping windows count as one."""
        moment = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
        for _ in range(64):  # windows chained back to back; a week of them at most in practice
            ends = [w.cover_end(moment) for w in self._windows if w.applies_to(check_name) and w.covers(moment)]
            if not ends:
                return moment
            moment = max(ends)
        return moment

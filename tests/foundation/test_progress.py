"""What the process tells a person (issue 17, item 3): one line per check round, and the listener's
catch-up progress with blocks done, events/s and an ETA, every few seconds of the injected clock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from exporter.clock import FakeClock
from exporter.progress import CatchUpReporter, RoundReporter, format_duration, round_line
from exporter.store.base import CheckResult

TS = datetime(2026, 1, 5, tzinfo=UTC)


def result(name: str, ok: bool = True, latency_ms: int = 5) -> CheckResult:
    return CheckResult(check_name=name, ok=ok, latency_ms=latency_ms, details={}, ts=TS, uid=name)


def test_a_round_line_counts_names_the_slowest_and_the_failing() -> None:
    healthy = [result("api.health", latency_ms=3), result("api.events", latency_ms=14), result("api.stats")]
    assert round_line(12, healthy) == "round 12: 3/3 ok, slowest api.events 14 ms"
    failing = [result("api.stats", ok=False, latency_ms=2), result("api.health", ok=False), result("api.events")]
    assert round_line(13, failing) == "round 13: 1/3 ok (failing: api.health, api.stats), slowest api.health 5 ms"
    assert round_line(1, []) == "round 1: 0/0 ok"


def test_rounds_are_numbered_from_one(caplog: pytest.LogCaptureFixture) -> None:
    reporter = RoundReporter()
    with caplog.at_level(logging.INFO, logger="exporter.progress"):
        for _ in range(3):
            reporter([result("api.health")])
    assert [r.getMessage() for r in caplog.records] == [
        f"round {n}: 1/1 ok, slowest api.health 5 ms" for n in (1, 2, 3)
    ]


def test_catch_up_progress_is_rate_limited_and_ends_with_a_caught_up_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(TS)
    reporter = CatchUpReporter(clock, margin=10, every=5.0)
    with caplog.at_level(logging.INFO, logger="exporter.progress"):
        reporter.observe(head=10_000, processed=1_000, events=50)  # the backlog starts here
        clock.advance(2)
        reporter.observe(head=10_000, processed=1_400, events=200)  # within 5 s: no line
        clock.advance(3)
        reporter.observe(head=10_000, processed=2_000, events=300)  # 5 s in: 1000 blocks, 500 events
        clock.advance(45)
        reporter.observe(head=10_000, processed=9_995, events=4000)  # within the margin: caught up
        reporter.observe(head=10_001, processed=10_001, events=1)  # at the head: quiet
    assert [r.getMessage() for r in caplog.records] == [
        "listener catching up: block 1000 of 10000, 0 blocks done, 9000 to go, ETA unknown yet",
        "listener catching up: block 2000 of 10000, 1000 blocks done, 8000 to go, 100 events/s, ETA 40s",
        "listener caught up at block 9995: 8995 blocks, 4500 events in 50s",
    ]


def test_a_listener_at_the_head_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(TS)
    reporter = CatchUpReporter(clock, margin=10)
    with caplog.at_level(logging.INFO, logger="exporter.progress"):
        for block in range(100, 110):
            clock.advance(10)
            reporter.observe(head=block + 3, processed=block, events=2)
    assert caplog.records == []


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (45, "45s"), (125, "2m05s"), (3 * 3600 + 300, "3h05m")])
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_round_line_with_a_failure_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Issue: failures were logged at info; the round line agrees with the failed check's own line."""
    reporter = RoundReporter()
    with caplog.at_level(logging.INFO, logger="exporter.progress"):
        reporter([result("api.health")])
        reporter([result("api.health", ok=False)])
        reporter([result("api.health")])
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING, logging.INFO]

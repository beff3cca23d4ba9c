"""The store queries behind the status page, on PostgreSQL and SQLite: the newest row per check,
runs and failures bucketed in the database, and events stored per type since a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from exporter.store import Checkpoint, CheckResult, EventRecord, ResultBucket, Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def row(name: str, ok: bool, at: datetime, latency_ms: int = 10) -> CheckResult:
    return CheckResult(name, ok, latency_ms, {"n": latency_ms}, at, uuid.uuid4().hex)


def test_latest_results_gives_the_newest_row_of_each_named_check(store: Store) -> None:
    store.write_results(
        [
            row("a", True, T0, 1),
            row("a", False, T0 + timedelta(minutes=5), 2),
            row("a", True, T0 + timedelta(minutes=1), 3),
            row("b", True, T0 - timedelta(days=20), 4),
            row("c", False, T0 + timedelta(hours=1), 5),
        ]
    )
    latest = store.latest_results(["a", "b", "missing", "a"])
    assert set(latest) == {"a", "b"}
    assert (latest["a"].ok, latest["a"].latency_ms, latest["a"].ts) == (False, 2, T0 + timedelta(minutes=5))
    assert latest["b"].details == {"n": 4} and latest["b"].ts == T0 - timedelta(days=20)
    assert store.latest_results([]) == {}


def test_result_buckets_count_runs_and_failures_per_bucket_inside_the_window(store: Store) -> None:
    since, until = T0, T0 + timedelta(hours=2)
    store.write_results(
        [
            row("a", True, since),  # bucket 0, at its very start
            row("a", False, since + timedelta(minutes=29, seconds=59)),  # still bucket 0
            row("a", True, since + timedelta(minutes=30)),  # bucket 1
            row("a", False, since + timedelta(minutes=95)),  # bucket 3
            row("b", False, since + timedelta(minutes=61)),  # bucket 2
            row("a", False, since - timedelta(microseconds=1)),  # before the window
            row("a", False, until),  # the window is half-open
        ]
    )
    buckets = store.result_buckets(since, until, 1800)
    assert sorted(buckets, key=lambda b: (b.check_name, b.index)) == [
        ResultBucket("a", 0, 2, 1),
        ResultBucket("a", 1, 1, 0),
        ResultBucket("a", 3, 1, 1),
        ResultBucket("b", 2, 1, 1),
    ]
    with pytest.raises(ValueError, match="bucket_seconds"):
        store.result_buckets(since, until, 0)


def test_event_counts_count_stored_events_by_type_since_a_time(store: Store) -> None:
    events = [EventRecord("Minted", {}, 1, "0x01", "0xa1", i) for i in range(3)]
    events.append(EventRecord("FailSafeTriggered", {}, 2, "0x02", "0xa2", 0))
    store.commit_blocks("main", events, Checkpoint(2, "0x02"))
    now = datetime.now(UTC)
    assert store.event_counts(now - timedelta(hours=1)) == {"FailSafeTriggered": 1, "Minted": 3}
    assert store.event_counts(now + timedelta(hours=1)) == {}

"""Scheduler: a failing job is logged and counted and never stops the others; stop waits for runs in flight."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.metrics import Metrics
from exporter.scheduler import Job, Scheduler


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_raising_job_is_counted_and_the_others_keep_running(registry: CollectorRegistry, metrics: Metrics) -> None:
    scheduler = Scheduler(metrics)
    runs = {"good": 0, "bad": 0}

    def good() -> None:
        runs["good"] += 1

    def bad() -> None:
        runs["bad"] += 1
        raise RuntimeError("boom")

    scheduler.add(Job("good", good, 0.05))
    scheduler.add(Job("bad", bad, 0.05))
    scheduler.start()
    _wait(lambda: runs["bad"] >= 3 and runs["good"] >= 3)
    assert scheduler.stop(5)
    errors = registry.get_sample_value("blocktrust_job_runs_total", {"task": "bad", "outcome": "error"})
    successes = registry.get_sample_value("blocktrust_job_runs_total", {"task": "good", "outcome": "success"})
    assert errors is not None and errors >= 3
    assert successes is not None and successes >= 3


def test_stop_waits_for_the_run_in_flight(metrics: Metrics) -> None:
    scheduler = Scheduler(metrics)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.set()

    scheduler.add(Job("slow", slow, 60))
    scheduler.start()
    assert started.wait(5)
    threading.Timer(0.3, release.set).start()
    assert scheduler.stop(5)
    assert finished.is_set()
    assert not scheduler.running


def test_stop_gives_up_after_its_deadline(metrics: Metrics) -> None:
    scheduler = Scheduler(metrics)
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(10)

    scheduler.add(Job("stuck", stuck, 60))
    scheduler.start()
    assert started.wait(5)
    assert scheduler.stop(0.2) is False
    release.set()


def test_a_job_never_overlaps_itself(metrics: Metrics) -> None:
    scheduler = Scheduler(metrics)
    active, overlaps, runs = [0], [0], [0]
    lock = threading.Lock()

    def job() -> None:
        with lock:
            active[0] += 1
            overlaps[0] = max(overlaps[0], active[0])
        time.sleep(0.15)  # longer than the interval: max_instances=1 must skip, not stack
        with lock:
            active[0] -= 1
            runs[0] += 1

    scheduler.add(Job("long", job, 0.05))
    scheduler.start()
    _wait(lambda: runs[0] >= 3)
    scheduler.stop(5)
    assert overlaps[0] == 1


def test_listener_lag_keeps_growing_when_nothing_updates_it(registry: CollectorRegistry) -> None:
    from exporter.clock import FakeClock

    clock = FakeClock()
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="t", now=lambda: clock.now().timestamp())
    assert registry.get_sample_value("blocktrust_listener_lag_seconds") is None  # no heartbeat seen yet
    metrics.heartbeat_seen(clock.now().timestamp() - 5)
    assert registry.get_sample_value("blocktrust_listener_lag_seconds") == 5
    clock.advance(100)  # the listener died: no one updates anything, the lag still shows it
    assert registry.get_sample_value("blocktrust_listener_lag_seconds") == 105
    metrics.heartbeat_seen(clock.now().timestamp() - 200)  # an older heartbeat never moves it back
    assert registry.get_sample_value("blocktrust_listener_lag_seconds") == 105


def test_a_job_not_run_at_start_runs_one_interval_later(metrics: Metrics) -> None:
    scheduler = Scheduler(metrics)
    ran = threading.Event()
    scheduler.add(Job("later", ran.set, 0.2, run_at_start=False))
    scheduler.start()
    try:
        assert ran.wait(10), "a job added with run_at_start=False must still run"
    finally:
        scheduler.stop(5)


def test_a_store_outage_in_a_job_is_one_line_and_a_bug_keeps_its_traceback(
    metrics: Metrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue: the slo and retention jobs logged a full traceback for an expected store outage."""
    from exporter.store import StoreError

    done = {"slo": threading.Event(), "bug": threading.Event()}

    def slo() -> None:
        done["slo"].set()
        raise StoreError("connection to server at 127.0.0.1 port 5432 failed: Connection refused")

    def bug() -> None:
        done["bug"].set()
        raise KeyError("a bug")

    scheduler = Scheduler(metrics)
    scheduler.add(Job("slo", slo, 60))
    scheduler.add(Job("bug", bug, 60))
    with caplog.at_level(logging.INFO, logger="exporter.scheduler"):
        scheduler.start()
        assert done["slo"].wait(10) and done["bug"].wait(10)
        assert scheduler.stop(5)
    by_job = {
        record.getMessage().split()[2]: record for record in caplog.records if "job failed" in record.getMessage()
    }
    outage, crash = by_job["job=slo"], by_job["job=bug"]
    # (A redacting log handler left by another test turns exc_info into exc_text.)
    assert outage.levelno == logging.ERROR and outage.exc_info is None and not outage.exc_text
    assert "Connection refused" in outage.getMessage() and "\n" not in outage.getMessage()
    assert crash.levelno == logging.ERROR  # a real bug keeps its traceback:
    assert crash.exc_info is not None or "KeyError" in (crash.exc_text or "")
    assert registry.get_sample_value("blocktrust_job_runs_total", {"task": "slo", "outcome": "error"}) == 1


def test_a_job_asking_to_run_again_runs_back_to_back_without_skips(
    registry: CollectorRegistry, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener catching up: every run takes longer than the interval and asks for the next at once;
    the next starts when it ends (never overlapping), none is reported skipped, and the re-runs are
    counted. With an interval of a minute, only re-runs can make three runs happen in this test."""
    scheduler = Scheduler(metrics)
    active, overlaps, runs = [0], [0], [0]

    def catching_up() -> int:
        active[0] += 1
        overlaps[0] += active[0] > 1
        time.sleep(0.1)
        active[0] -= 1
        runs[0] += 1
        return runs[0]

    scheduler.add(Job("listener", catching_up, 60.0, again=lambda run: isinstance(run, int) and run < 4))
    with caplog.at_level(logging.INFO, logger="exporter.scheduler"):
        scheduler.start()
        _wait(lambda: runs[0] >= 4)
        assert scheduler.stop(5)
    assert runs[0] == 4  # the fourth said "no more": the job is back on its (one-minute) grid
    assert overlaps[0] == 0
    assert not [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert registry.get_sample_value("blocktrust_scheduler_job_reruns_total", {"task": "listener"}) == 3


def test_a_run_overrunning_its_interval_without_asking_again_is_reported_skipped(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """The counterpart: the same overrunning job on its grid misses runs, and says so."""
    scheduler = Scheduler(metrics)
    runs = [0]

    def overrunning() -> None:
        time.sleep(0.25)
        runs[0] += 1

    scheduler.add(Job("overrunning", overrunning, 0.1))
    with caplog.at_level(logging.WARNING, logger="exporter.scheduler"):
        scheduler.start()
        _wait(lambda: runs[0] >= 2)
        assert scheduler.stop(5)
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]


def test_a_back_to_back_job_whose_last_run_overran_starts_again_at_its_end_without_skips(
    registry: CollectorRegistry, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener's last catching-up poll (it asks for no more) outlasts several intervals: that is its
    budget, not a fault. The next run starts as it ends, and nothing is reported skipped or re-run."""
    scheduler = Scheduler(metrics)
    starts: list[float] = []
    ends: list[float] = []

    def long_last_poll() -> bool:
        starts.append(time.monotonic())
        if len(starts) == 1:
            time.sleep(0.5)  # five intervals
        ends.append(time.monotonic())
        return False

    scheduler.add(Job("listener", long_last_poll, 0.1, again=bool))
    with caplog.at_level(logging.INFO, logger="exporter.scheduler"):
        scheduler.start()
        _wait(lambda: len(starts) >= 3)
        assert scheduler.stop(5)
    assert not [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(ends) >= 2 and starts[1] >= ends[0]  # never overlapping
    assert registry.get_sample_value("blocktrust_scheduler_job_reruns_total", {"task": "listener"}) is None

"""Time (issue 13, kind 3; acceptance 3): schedules run on monotonic time, so wall-clock steps change no
cadence and no health answer; a job that stops completing makes ``/healthz`` and ``/readyz`` fail, named.

The scheduler runs on a ``ManualClock``: its monotonic part moves only when the test advances it, while
the test steps the wall part back and forward as NTP or an operator would. After each second of fake
time the test waits (real time, bounded) until no job is due or running, so every run is seen at the
monotonic second it was due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.alerting.engine import AlertEngine
from exporter.clock import FakeClock, ManualClock
from exporter.config import AlertingSettings, load_config
from exporter.metrics import Metrics
from exporter.runtime import Runtime, build_runtime, http_server, shutdown
from exporter.scheduler import STALL_INTERVALS, Job, Scheduler, stall_limit
from exporter.server import HttpServer
from exporter.store import open_store
from exporter.web import load_web_config
from tests.alerting.kit import RecordingSink, result
from tests.support.exporter_process import free_port
from tests.support.http_receiver import HttpReceiver

# The issue's example: the wall clock goes back a minute at t=30 s and is put right 12 s later.
ISSUE_STEPS = {30: -60.0, 42: +60.0}
STEP_SCENARIOS = {
    "back 1 min, put right 12 s later": ISSUE_STEPS,
    "forward 1 h": {30: +3600.0},
    "back 1 h": {30: -3600.0},
    "back 1 day, then forward 2 days": {20: -86_400.0, 95: +172_800.0},
}


def _wait(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Real-time bound on a hang only; the fake clock does not move meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what}"
        time.sleep(0.002)


def _settle(scheduler: Scheduler, clock: ManualClock, wedged: str = "") -> None:
    """Wait until every run due now has ended (except ``wedged``'s, which never does)."""
    _wait(lambda: set(scheduler.busy()) <= {wedged}, f"the runs due at t={clock.monotonic()} ran")


def _run_seconds(
    scheduler: Scheduler, clock: ManualClock, seconds: int, steps: dict[int, float], each: Callable[[], None]
) -> None:
    """Advance the monotonic clock one second at a time, stepping the wall clock as ``steps`` says
    (offsets from the start), and call ``each`` after every second once the scheduler has settled."""
    start = clock.monotonic()
    _settle(scheduler, clock)
    each()
    for _ in range(seconds):
        clock.advance(1)
        offset = round(clock.monotonic() - start)
        if offset in steps:
            clock.step(steps[offset])
        _settle(scheduler, clock)
        each()


@pytest.mark.parametrize("steps", list(STEP_SCENARIOS.values()), ids=list(STEP_SCENARIOS))
def test_wall_clock_steps_change_no_cadence(metrics: Metrics, steps: dict[int, float]) -> None:
    clock = ManualClock()
    start = clock.monotonic()
    runs: dict[str, list[float]] = {"checks": [], "alerts": [], "store": []}

    def job(name: str) -> Callable[[], None]:
        return lambda: runs[name].append(clock.monotonic() - start)

    scheduler = Scheduler(metrics, clock)
    scheduler.add(Job("checks", job("checks"), 60))
    scheduler.add(Job("alerts", job("alerts"), 15, run_at_start=False))
    scheduler.add(Job("store", job("store"), 5, run_at_start=False))
    scheduler.start()
    health: list[tuple[bool, str]] = []
    try:
        _run_seconds(scheduler, clock, 300, steps, lambda: health.append(scheduler.health()))
    finally:
        assert scheduler.stop(5)
    assert runs["checks"] == [0, 60, 120, 180, 240, 300]
    assert runs["alerts"] == [15.0 * n for n in range(1, 21)]
    assert runs["store"] == [5.0 * n for n in range(1, 61)]
    assert set(health) == {(True, "ok")}


@pytest.mark.parametrize(
    ("overrun_until", "expected"),
    [
        (14, [0, 14, 20]),  # 4 s late, within half an interval: the delayed run starts when the first ends
        (17, [0, 20]),  # 7 s late: that run is skipped, the job keeps its grid
    ],
)
def test_a_run_that_overruns_delays_or_skips_the_next_and_keeps_the_grid(
    metrics: Metrics, overrun_until: int, expected: list[float]
) -> None:
    clock = ManualClock()
    start = clock.monotonic()
    release = threading.Event()
    runs: list[float] = []

    def slow() -> None:
        runs.append(clock.monotonic() - start)
        if len(runs) == 1:
            release.wait(10)

    scheduler = Scheduler(metrics, clock)
    scheduler.add(Job("slow", slow, 10))
    scheduler.start()
    try:
        _wait(lambda: runs == [0], "the first run started")
        clock.advance(overrun_until)  # due at 10 while still running: never started twice
        assert runs == [0]
        release.set()
        _settle(scheduler, clock)
        clock.advance(20 - overrun_until)
        _settle(scheduler, clock)
        assert runs == expected
    finally:
        release.set()
        assert scheduler.stop(5)


# ------------------------------------------------------------------------------ the whole process
CONFIG = """\
server:
  listen: 127.0.0.1:{port}
store:
  sqlite_path: {db}
checks:
  include_defaults: false
  interval: 60s
  items:
    - name: site.home
      url: {url}/
"""


@pytest.fixture
def site() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


def _runtime(tmp_path: Path, site: HttpReceiver, clock: ManualClock) -> Runtime:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(port=free_port(), db=tmp_path / "store.db", url=site.url))
    return build_runtime(load_config(path, env={}), clock=clock)


def _probe(server: HttpServer, path: str) -> tuple[int, str]:
    answer = requests.get(f"http://127.0.0.1:{server.port}{path}", timeout=5)
    return answer.status_code, answer.text.strip()


def test_check_rounds_keep_their_cadence_and_the_process_stays_ready_through_clock_steps(
    tmp_path: Path, site: HttpReceiver
) -> None:
    clock = ManualClock()
    rt = _runtime(tmp_path, site, clock)
    server = http_server(rt, load_web_config(None))
    server.start()
    rt.scheduler.start()
    start = clock.monotonic()
    rounds: list[float] = []  # monotonic offsets at which a round probed the site
    answers: set[tuple[str, int, str]] = set()

    def look() -> None:
        if len(site.requests) > len(rounds):
            rounds.append(clock.monotonic() - start)
        for path in ("/healthz", "/readyz"):
            answers.add((path, *_probe(server, path)))

    try:
        _run_seconds(rt.scheduler, clock, 185, ISSUE_STEPS, look)
    finally:
        shutdown(rt, server, time.monotonic() + 9)
    assert rounds == [0, 60, 120, 180]
    assert answers == {("/healthz", 200, "ok"), ("/readyz", 200, "ready")}
    assert len(site.requests) == 4


def test_a_wedged_job_makes_healthz_and_readyz_fail_naming_it(tmp_path: Path, site: HttpReceiver) -> None:
    clock = ManualClock()
    rt = _runtime(tmp_path, site, clock)
    release = threading.Event()
    started = threading.Event()

    def wedged() -> None:
        started.set()
        release.wait(30)

    interval = 60.0
    rt.scheduler.add(Job("wedged", wedged, interval, run_at_start=False))
    server = http_server(rt, load_web_config(None))
    server.start()
    rt.scheduler.start()
    limit = stall_limit(interval)
    assert limit == STALL_INTERVALS * interval
    try:
        for _ in range(int(limit)):  # the other jobs keep running meanwhile
            clock.advance(1)
            _settle(rt.scheduler, clock, wedged="wedged")
        assert started.is_set()
        assert _probe(server, "/healthz") == (200, "ok")  # exactly at the limit: not yet
        clock.advance(1)
        status, text = _probe(server, "/healthz")
        assert status == 503
        assert "job wedged completed no run for 181s" in text, text
        assert "checks" not in text and "store" not in text  # the jobs that still run are not named
        status, text = _probe(server, "/readyz")
        assert status == 503 and "job wedged" in text, text
        release.set()  # it returns: live again
        _wait(lambda: _probe(server, "/healthz") == (200, "ok"), "healthz recovered")
        assert _probe(server, "/readyz") == (200, "ready")
    finally:
        release.set()
        shutdown(rt, server, time.monotonic() + 9)


def test_job_metrics_name_the_job_in_the_task_label(registry: CollectorRegistry, metrics: Metrics) -> None:
    clock = ManualClock()
    scheduler = Scheduler(metrics, clock)
    scheduler.add(Job("store", lambda: None, 5))
    scheduler.add(Job("broken", lambda: 1 / 0, 5))
    scheduler.start()
    try:
        _settle(scheduler, clock)
    finally:
        assert scheduler.stop(5)
    last_success = "blocktrust_scheduler_job_last_success_timestamp_seconds"
    assert registry.get_sample_value(last_success, {"task": "store"}) == clock.now().timestamp()
    assert registry.get_sample_value(last_success, {"task": "broken"}) is None  # never succeeded
    interval = "blocktrust_scheduler_job_interval_seconds"
    assert registry.get_sample_value(interval, {"task": "broken"}) == 5


# ------------------------------------------------------------------------------ reminders, maintenance
def _engine(tmp_path: Path, clock: FakeClock, metrics: Metrics, **settings: Any) -> tuple[AlertEngine, RecordingSink]:
    store = open_store(f"sqlite:///{tmp_path}/alerts.db")
    store.migrate()
    sink = RecordingSink()
    engine = AlertEngine(store, sink, clock, metrics, AlertingSettings.model_validate(settings))
    return engine, sink


def test_reminders_count_monotonic_time_whatever_the_wall_clock_does(tmp_path: Path, metrics: Metrics) -> None:
    clock = FakeClock(datetime(2026, 1, 5, 10, 0, tzinfo=UTC))
    engine, sink = _engine(tmp_path, clock, metrics, reminder_interval="10m", failure_threshold=1)
    engine.observe([result("api.events", False, clock.now())])
    assert sink.kinds() == [("api.events", "firing", False)]

    clock.step(+2 * 3600)  # two hours forward: no reminder is due, only a step has happened
    clock.advance(60)
    engine.tick()
    assert len(sink.alerts) == 1
    clock.advance(9 * 60 - 1)
    engine.tick()
    assert len(sink.alerts) == 1
    clock.advance(1)  # ten minutes of real time since the notice
    engine.tick()
    assert sink.kinds()[1:] == [("api.events", "firing", True)]

    clock.step(-3 * 3600)  # three hours back: the next reminder still comes ten minutes later
    clock.advance(10 * 60)
    engine.tick()
    assert sink.kinds()[2:] == [("api.events", "firing", True)]


def test_a_notice_from_before_a_restart_counts_from_its_wall_time_once(tmp_path: Path, metrics: Metrics) -> None:
    clock = FakeClock(datetime(2026, 1, 5, 10, 0, tzinfo=UTC))
    first, sink = _engine(tmp_path, clock, metrics, reminder_interval="10m", failure_threshold=1)
    first.observe([result("api.events", False, clock.now())])
    assert sink.kinds() == [("api.events", "firing", False)]
    clock.advance(4 * 60)
    second, resumed = _engine(tmp_path, clock, metrics, reminder_interval="10m", failure_threshold=1)
    second.tick()  # sees the notice of four minutes ago
    clock.step(-3600)  # after that, wall steps no longer matter
    clock.advance(6 * 60 - 1)
    second.tick()
    assert resumed.alerts == []
    clock.advance(1)
    second.tick()
    assert resumed.kinds() == [("api.events", "firing", True)]


def test_maintenance_windows_follow_the_wall_clock(tmp_path: Path, metrics: Metrics) -> None:
    """A window is a calendar fact (``from: "02:00"`` means what the wall clock says), so a step into
    a window holds notices back and a step out of it releases them at the next tick."""
    clock = FakeClock(datetime(2026, 1, 5, 1, 0, tzinfo=UTC))  # a Monday, 01:00
    window = {"days": ["mon"], "from": "02:00", "to": "03:00"}
    engine, sink = _engine(tmp_path, clock, metrics, failure_threshold=1, maintenance=[window])
    clock.step(+3600)  # 02:00: inside
    engine.observe([result("api.events", False, clock.now())])
    assert sink.alerts == []
    clock.step(-3600)  # put back to 01:00: outside again
    clock.advance(15)
    engine.tick()
    assert sink.kinds() == [("api.events", "firing", False)]

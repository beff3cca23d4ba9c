"""Issue #13 kinds 4 and 6 at the alert engine's edges, on both stores: replicas with different
configurations (a rolling deploy) leave each other's incidents alone, and the SLO report judges only
the checks its process runs; once started, the engine's store calls run on its own thread, so the
check round handing in results never waits for a store (even uncontended), decisions stay in order,
and a full queue is loud."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting.engine import REMOVED_CHECK_REASON, AlertEngine
from exporter.clock import FakeClock
from exporter.config import AlertingSettings, SloSettings
from exporter.metrics import Metrics
from exporter.slo import SloReporter
from exporter.store import Store, open_store
from tests.alerting.kit import RecordingSink, result

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ROUND = 60.0
GRACE = 3 * ROUND  # three check intervals, as runtime.py passes it


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def stores(store_url: str) -> Iterator[Any]:
    opened: list[Store] = []

    def open_one() -> Store:
        opened.append(open_store(store_url))
        opened[-1].migrate()
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="test")


def configured(*names: str) -> Any:
    def known(check_name: str) -> bool:
        return check_name.removeprefix("slo.") in names

    return known


# --------------------------------------------------------------- replicas, different configurations
def test_a_replica_without_a_check_leaves_its_live_incident_to_the_replica_that_runs_it(
    stores: Any, clock: FakeClock
) -> None:
    store_a, store_b = stores(), stores()
    sink_a, sink_b = RecordingSink(), RecordingSink()
    a = AlertEngine(
        store_a,
        sink_a,
        clock,
        metrics(),
        AlertingSettings(),
        known=configured("api.health", "x.fail"),
        removed_after=GRACE,
    )
    for _ in range(2):  # A runs x.fail (failing); its results reach monitor_metrics as the writer would
        rows = [result("x.fail", False, clock.now())]
        store_a.write_results(rows)
        a.observe(rows)
        clock.advance(ROUND)
    assert sink_a.kinds() == [("x.fail", "firing", False)]
    # B starts (a rolling deploy) with a configuration without x.fail: the incident is A's, still live.
    b = AlertEngine(
        store_b, sink_b, clock, metrics(), AlertingSettings(), known=configured("api.health"), removed_after=GRACE
    )
    b.tick()
    assert [i.check_name for i in store_b.open_incidents()] == ["x.fail"]
    assert sink_b.alerts == []
    # B's SLO report judges only what B runs: no slo.x.fail of its own.
    SloReporter(store_b, metrics(), SloSettings(), clock, engine=b, checks=["api.health"]).run_once()
    assert [i.check_name for i in store_b.open_incidents()] == ["x.fail"]
    # A keeps it: still failing, then recovering, one voice throughout.
    for ok in (False, True, True):
        rows = [result("x.fail", ok, clock.now())]
        store_a.write_results(rows)
        a.observe(rows)
        a.tick()
        b.tick()
        clock.advance(ROUND)
    assert sink_a.kinds() == [("x.fail", "firing", False), ("x.fail", "resolved", False)]
    assert sink_b.alerts == []


def test_an_incident_of_a_check_no_replica_runs_is_resolved_with_the_reason(stores: Any, clock: FakeClock) -> None:
    store = stores()
    incident = store.open_incident("x.gone", "warn", "Check x.gone failing", "Status code: 503", clock.now())
    store.mark_notified(incident.id, clock.now())
    store.write_results([result("x.gone", False, clock.now())])  # its last result, from a replica now gone
    sink = RecordingSink()
    engine = AlertEngine(
        store, sink, clock, metrics(), AlertingSettings(), known=configured("api.health"), removed_after=GRACE
    )
    assert [i.check_name for i in store.open_incidents()] == ["x.gone"]  # ran recently: left alone
    clock.advance(GRACE + ROUND)  # no replica has run it since
    engine.tick()
    assert store.open_incidents() == []
    assert [(a.check_name, a.state, a.detail) for a in sink.alerts] == [("x.gone", "resolved", REMOVED_CHECK_REASON)]


# ------------------------------------------------------------------- the engine's own thread
class BlockingStore:
    """The store, with incident writes that block (a stalled PostgreSQL) until released."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.blocked = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_incident(self, *args: Any, **kwargs: Any) -> Any:
        self.blocked.set()
        self.release.wait(30)
        return self.inner.open_incident(*args, **kwargs)


def test_observe_never_waits_for_a_store_call_even_uncontended(stores: Any, clock: FakeClock) -> None:
    store = BlockingStore(stores())
    sink = RecordingSink()
    engine = AlertEngine(store, sink, clock, metrics(), AlertingSettings())
    engine.start()
    try:
        rounds = [[result("api.events", False, clock.now())], [result("api.events", False, clock.now())]]
        rounds += [[result("api.events", True, clock.now())]] * 2
        done = threading.Event()

        def check_thread() -> None:
            for batch in rounds:
                engine.observe(batch)
            done.set()

        threading.Thread(target=check_thread, daemon=True).start()
        assert store.blocked.wait(10)
        assert done.wait(10), "observe() waited for the engine's store write"
        assert sink.alerts == []
    finally:
        store.release.set()
    assert engine.flush(10)
    assert sink.kinds() == [("api.events", "firing", False), ("api.events", "resolved", False)]  # in order
    engine.stop(5)


def test_a_full_engine_queue_is_loud(stores: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    store = BlockingStore(stores())
    registry = CollectorRegistry()
    engine = AlertEngine(
        store,
        RecordingSink(),
        clock,
        Metrics(registry, slo_latency_seconds=0.8, version="test"),
        AlertingSettings(failure_threshold=1),
        queue_size=1,
    )
    engine.start()
    try:
        engine.observe([result("api.events", False, clock.now())])
        assert store.blocked.wait(10)
        with caplog.at_level(logging.ERROR):
            for _ in range(3):
                engine.observe([result("api.events", False, clock.now())])
        assert registry.get_sample_value("blocktrust_alert_engine_queue_full_total") == 2
        assert [r.getMessage() for r in caplog.records if "queue is full" in r.getMessage()]
    finally:
        store.release.set()
    engine.stop(5)

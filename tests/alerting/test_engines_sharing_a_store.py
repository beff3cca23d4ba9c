"""Several engines on one store (the main process, the ``listen`` process, a replica), on PostgreSQL and
SQLite: each tick reconciles with the store, so an incident resolved elsewhere is no longer reminded,
one opened elsewhere is adopted without a second firing notice, reminders are not doubled, and
``owned`` keeps each process to its own incidents. ``resolve`` works for immediate incidents."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting.alert import render_text
from exporter.alerting.engine import AlertEngine, owned_checks
from exporter.clock import FakeClock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics
from exporter.store import Store, open_store
from tests.alerting.kit import RecordingSink, result, table_rows

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ROUND = 60.0
REORG = "listener.reorg"


class Process:
    """One engine as one process would have it: its own store connection, sink and registry."""

    def __init__(
        self,
        store_url: str,
        clock: FakeClock,
        owned: Callable[[str], bool] | None = None,
        known: Callable[[str], bool] | None = None,
        **settings: Any,
    ) -> None:
        self.store = open_store(store_url)
        self.store.migrate()
        self.sink = RecordingSink()
        self.registry = CollectorRegistry()
        metrics = Metrics(self.registry, slo_latency_seconds=0.8, version="test")
        alerting = AlertingSettings.model_validate(settings)
        self.engine = AlertEngine(self.store, self.sink, clock, metrics, alerting, owned=owned, known=known)

    def open_gauge(self, severity: str) -> float | None:
        return self.registry.get_sample_value("blocktrust_incidents_open", {"severity": severity})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def processes(store_url: str, clock: FakeClock) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(
        owned: Callable[[str], bool] | None = None, known: Callable[[str], bool] | None = None, **settings: Any
    ) -> Process:
        started.append(Process(store_url, clock, owned, known, **{"reminder_interval": "10m", **settings}))
        return started[-1]

    yield start
    for process in started:
        process.store.close()


def run(clock: FakeClock, minutes: int, *steps: Callable[[], None]) -> None:
    """``minutes`` rounds; in each, every step in order, then the clock moves on a minute."""
    for _ in range(minutes):
        for step in steps:
            step()
        clock.advance(ROUND)


def test_an_incident_resolved_by_another_engine_is_no_longer_reminded(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    a = processes()
    run(clock, 2, lambda: a.engine.observe([result("api.events", False, clock.now())]))
    b = processes()  # starts while the incident is open: it resumes it
    assert b.open_gauge("warn") == 1
    run(clock, 2, lambda: a.engine.observe([result("api.events", True, clock.now())]))
    assert a.sink.kinds() == [("api.events", "firing", False), ("api.events", "resolved", False)]
    run(clock, 30, b.engine.tick)
    assert b.sink.alerts == []
    assert b.open_gauge("warn") == 0


def test_an_incident_opened_elsewhere_is_adopted_and_reminded_without_a_second_firing_notice(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    a, b = processes(), processes()
    run(clock, 2, lambda: a.engine.observe([result("api.events", False, clock.now())]), b.engine.tick)
    assert a.sink.kinds() == [("api.events", "firing", False)]
    assert b.sink.alerts == [] and b.open_gauge("warn") == 1
    # Both alive for 25 minutes: one reminder every 10 minutes between them, not one each.
    run(clock, 25, a.engine.tick, b.engine.tick)
    reminders = sorted(alert.at for alert in a.sink.alerts + b.sink.alerts if alert.reminder)
    assert [at.minute for at in reminders] == [11, 21]
    # A goes away: B keeps reminding, as reminders only.
    run(clock, 20, b.engine.tick)
    assert [(state, reminder) for _, state, reminder in b.sink.kinds()][-2:] == [("firing", True)] * 2
    assert all(alert.reminder for alert in b.sink.alerts)


def test_each_process_manages_only_the_incidents_it_owns(processes: Callable[..., Process], clock: FakeClock) -> None:
    main = processes(owned_checks(exclude=[REORG]))
    run(clock, 2, lambda: main.engine.observe([result("api.events", False, clock.now())]))
    listen = processes(owned_checks([REORG]))
    listen.engine.raise_critical(REORG, "Reorg deeper than 64 blocks", "Block 1200: hash mismatch")
    run(clock, 30, main.engine.tick, listen.engine.tick)
    assert {alert.check_name for alert in main.sink.alerts} == {"api.events"}
    assert {alert.check_name for alert in listen.sink.alerts} == {REORG}
    assert sum(alert.reminder for alert in listen.sink.alerts) == 2  # the listen process reminds about its own
    assert (main.open_gauge("crit"), listen.open_gauge("warn")) == (0, 0)
    listen.engine.resolve(REORG)
    assert listen.sink.kinds()[-1] == (REORG, "resolved", False)
    assert [i.check_name for i in main.store.open_incidents()] == ["api.events"]


def test_resolve_closes_an_immediate_incident_opened_by_an_earlier_or_another_engine(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    first = processes(owned_checks([REORG]))
    elsewhere = processes()  # started before the incident existed, and no tick since
    first.engine.raise_critical(REORG, "Reorg deeper than 64 blocks", "Block 1200: hash mismatch")
    clock.advance(ROUND)
    elsewhere.engine.resolve(REORG)  # e.g. the listener, through the wiring, once ingestion resumes
    assert elsewhere.sink.kinds() == [(REORG, "resolved", False)]
    assert elsewhere.store.open_incidents() == []

    first.engine.raise_critical(REORG, "Reorg deeper than 64 blocks", "Block 1300: hash mismatch")
    restarted = processes(owned_checks([REORG]))  # the listen process after a restart
    clock.advance(ROUND)
    restarted.engine.resolve(REORG)
    assert restarted.sink.kinds() == [(REORG, "resolved", False)]
    assert restarted.store.open_incidents() == []
    first.engine.resolve(REORG)  # already resolved elsewhere: not announced twice
    run(clock, 30, first.engine.tick)
    # The first engine announced both reorgs (the second although it still held the first one, resolved
    # elsewhere meanwhile) and nothing more: no reminder, no second "resolved".
    assert first.sink.kinds() == [(REORG, "firing", False)] * 2


class CountingStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        if name == "open_incidents":
            self.reads += 1
        return getattr(self.inner, name)


def test_reconciling_costs_one_query_per_tick(processes: Callable[..., Process], clock: FakeClock) -> None:
    process = processes()
    counting = CountingStore(process.store)
    metrics = Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="test")
    engine = AlertEngine(counting, process.sink, clock, metrics, AlertingSettings())
    assert counting.reads == 1
    run(clock, 5, engine.tick, lambda: engine.observe([result("api.events", False, clock.now())]))
    assert counting.reads == 1 + 5  # observe() reads nothing


# ------------------------------------------------------------------ issue #13 kind 6: two replicas, one voice
def test_two_replicas_watching_one_check_send_one_firing_one_resolved_and_one_reminder_per_interval(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    a, b = processes(), processes()
    flip = [False]

    def both(ok: bool) -> Callable[[], None]:
        def step() -> None:
            # Both replicas run the same check and see the same result; which one gets there first
            # changes from round to round.
            first, second = (b, a) if flip[0] else (a, b)
            flip[0] = not flip[0]
            for replica in (first, second):
                replica.engine.observe([result("api.events", ok, clock.now())])
                replica.engine.tick()

        return step

    run(clock, 27, both(False))  # fails from 10:00; fires at 10:01; reminders due at 10:11 and 10:21
    run(clock, 2, both(True))  # recovers: resolved at 10:28
    run(clock, 20, a.engine.tick, b.engine.tick)
    notices = sorted(a.sink.alerts + b.sink.alerts, key=lambda alert: alert.at)
    assert [(n.state, n.reminder, n.at.strftime("%H:%M")) for n in notices] == [
        ("firing", False, "10:01"),
        ("firing", True, "10:11"),
        ("firing", True, "10:21"),
        ("resolved", False, "10:28"),
    ]
    assert a.store.open_incidents() == []
    assert a.open_gauge("warn") == b.open_gauge("warn") == 0


def test_replicas_resolving_the_same_incident_announce_it_once(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    a, b = processes(), processes()

    def both(ok: bool) -> Callable[[], None]:
        def step() -> None:
            for replica in (a, b):
                replica.engine.observe([result("api.events", ok, clock.now())])

        return step

    run(clock, 2, both(False))
    assert a.sink.kinds() + b.sink.kinds() == [("api.events", "firing", False)]
    # No tick in between: each replica resolves the incident it holds in memory, on the results alone.
    run(clock, 2, both(True))
    assert a.sink.kinds()[1:] + b.sink.kinds() == [("api.events", "resolved", False)]
    assert a.store.open_incidents() == []


def test_an_incident_of_a_check_no_longer_configured_is_resolved_at_start_with_the_reason(
    processes: Callable[..., Process], clock: FakeClock, store_url: str
) -> None:
    before = processes()
    run(clock, 2, lambda: before.engine.observe([result("api.renamed", False, clock.now())]))
    run(clock, 2, lambda: before.engine.observe([result("api.events", False, clock.now())]))
    assert [kind for kind in before.sink.kinds() if not kind[2]] == [
        ("api.renamed", "firing", False),
        ("api.events", "firing", False),
    ]
    before.store.close()

    configured = {"api.events"}
    after = processes(known=lambda name: name in configured)  # the configuration no longer has api.renamed
    assert after.sink.kinds() == [("api.renamed", "resolved", False)]
    notice = after.sink.alerts[0]
    assert notice.detail == "Check removed from configuration"
    assert "Check removed from configuration" in render_text(notice)
    assert [i.check_name for i in after.store.open_incidents()] == ["api.events"]
    reasons = {row[0]: row[1] for row in _reasons(store_url)}
    assert reasons == {"api.renamed": "Check removed from configuration", "api.events": None}
    again = processes(known=lambda name: name in configured)  # a second replica or a restart: no repeat
    run(clock, 30, after.engine.tick, again.engine.tick)
    assert [k for k in after.sink.kinds() + again.sink.kinds() if k[1] == "resolved"] == [
        ("api.renamed", "resolved", False)
    ]


def _reasons(store_url: str) -> list[tuple[Any, ...]]:
    return table_rows(store_url, "monitor_incidents", "check_name, resolve_reason")


class StallingStore:
    """A store whose ``open_incidents`` stalls (a PostgreSQL that stopped answering) until released."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.stall = False
        self.stalled = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name != "open_incidents":
            return attribute

        def stalling() -> Any:
            if self.stall:
                self.stalled.set()
                self.release.wait(30)
            return attribute()

        return stalling


def test_a_stalled_store_call_never_blocks_the_thread_handing_in_results(
    processes: Callable[..., Process], clock: FakeClock
) -> None:
    process = processes()
    stalling = StallingStore(process.store)
    metrics = Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="test")
    engine = AlertEngine(stalling, process.sink, clock, metrics, AlertingSettings())
    stalling.stall = True
    ticking = threading.Thread(target=engine.tick, daemon=True)  # the scheduler's alert job
    ticking.start()
    try:
        assert stalling.stalled.wait(10)
        observing = threading.Thread(  # the check round handing in its results meanwhile
            target=lambda: engine.observe([result("api.events", False, clock.now())] * 2), daemon=True
        )
        observing.start()
        observing.join(10)
        assert not observing.is_alive(), "observe() waited for the engine's store call"
        assert not ticking.is_alive() or process.sink.alerts == []  # nothing decided while the store stalls
    finally:
        stalling.stall = False
        stalling.release.set()
    ticking.join(10)
    assert not ticking.is_alive()
    # The results handed in were accounted by the thread that held the engine, once it was free.
    assert process.sink.kinds() == [("api.events", "firing", False)]

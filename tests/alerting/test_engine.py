"""The alert engine's decisions, table-driven, on a real (SQLite) store with a recording sink:
thresholds, severities, incidents, reminders, immediate incidents, store outages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting.engine import AlertEngine, check_policies, describe_failure
from exporter.clock import FakeClock
from exporter.config import HEARTBEAT_CHECK, AlertingSettings, CheckSpec
from exporter.metrics import Metrics
from exporter.store import Store, StoreError
from tests.alerting.kit import RecordingSink, result, table_rows

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ROUND = 60.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def engine_for(store: Any, sink: RecordingSink, clock: FakeClock, metrics: Metrics, **settings: Any) -> AlertEngine:
    specs = [CheckSpec.model_validate(s) for s in settings.pop("checks", [])]
    alerting = AlertingSettings.model_validate(settings)
    return AlertEngine(store, sink, clock, metrics, alerting, policies=check_policies(alerting, specs))


def rounds(engine: AlertEngine, clock: FakeClock, pattern: str, check: str = "api.events") -> None:
    """One round per character: ``x`` a failure, ``o`` a success; the clock moves one interval each."""
    for mark in pattern:
        engine.observe([result(check, mark == "o", clock.now())])
        engine.tick()
        clock.advance(ROUND)


@pytest.mark.parametrize(
    ("thresholds", "pattern", "expected"),
    [
        ((2, 2), "xoxoxoxoxo", []),
        ((2, 2), "x", []),
        ((2, 2), "xx", ["firing"]),
        ((2, 2), "xxxxx", ["firing"]),
        ((2, 2), "xxxo", ["firing"]),
        ((2, 2), "xxxoxo", ["firing"]),  # a success streak broken by a failure does not resolve
        ((2, 2), "xxxoo", ["firing", "resolved"]),
        ((2, 2), "xxxooxx", ["firing", "resolved", "firing"]),
        ((1, 1), "xoxo", ["firing", "resolved", "firing", "resolved"]),
        ((3, 1), "xxoxxx", ["firing"]),
    ],
)
def test_thresholds_decide_firing_and_resolving(
    db: Store,
    sink: RecordingSink,
    clock: FakeClock,
    metrics: Metrics,
    thresholds: tuple[int, int],
    pattern: str,
    expected: list[str],
) -> None:
    engine = engine_for(db, sink, clock, metrics, failure_threshold=thresholds[0], success_threshold=thresholds[1])
    rounds(engine, clock, pattern)
    assert [a.state for a in sink.alerts] == expected
    assert len(db.open_incidents()) == (1 if expected and expected[-1] == "firing" else 0)


def test_firing_notice_carries_severity_title_detail_and_first_failure_time(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    engine = engine_for(db, sink, clock, metrics, dashboard_url="https://grafana.example/d/bt")
    rounds(engine, clock, "oxx", check="api.health")
    [alert] = sink.alerts
    assert (alert.check_name, alert.severity, alert.state, alert.title) == (
        "api.health",
        "crit",
        "firing",
        "API /health unavailable",
    )
    assert alert.detail == "Status code: 503; status 503 not in [200]"
    assert alert.since == START.replace(minute=1)  # the first failure, not the threshold crossing
    assert alert.dashboard_url == "https://grafana.example/d/bt"
    [incident] = db.open_incidents()
    assert (incident.check_name, incident.severity, incident.opened_at) == ("api.health", "crit", alert.since)
    assert incident.last_notified_at == START.replace(minute=2)


@pytest.mark.parametrize(
    ("check", "spec", "severity", "fires_after"),
    [
        ("api.health", None, "crit", 2),
        ("listener.lag", None, "crit", 2),
        ("api.stats", None, "warn", 2),
        ("api.health", {"severity": "info"}, "info", 2),
        ("api.health", {}, "crit", 2),  # listed without a severity: keeps its default
        ("custom.ping", {"failure_threshold": 4, "severity": "crit"}, "crit", 4),
    ],
)
def test_per_check_severity_and_threshold(
    db: Store,
    sink: RecordingSink,
    clock: FakeClock,
    metrics: Metrics,
    check: str,
    spec: dict[str, Any] | None,
    severity: str,
    fires_after: int,
) -> None:
    checks = [] if spec is None else [{"name": check, "path": "/x", **spec}]
    engine = engine_for(db, sink, clock, metrics, checks=checks)
    rounds(engine, clock, "x" * (fires_after - 1), check=check)
    assert sink.alerts == []
    rounds(engine, clock, "x", check=check)
    assert [(a.severity, a.state) for a in sink.alerts] == [(severity, "firing")]


def test_reminders_repeat_while_open_and_stop_once_resolved(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    engine = engine_for(db, sink, clock, metrics, reminder_interval="10m")
    rounds(engine, clock, "x" * 25)  # 25 minutes of failure: fired at minute 1, reminders at 11 and 21
    assert [(a.state, a.reminder, a.at.minute) for a in sink.alerts] == [
        ("firing", False, 1),
        ("firing", True, 11),
        ("firing", True, 21),
    ]
    rounds(engine, clock, "oo" + "o" * 20)
    assert [(a.state, a.reminder) for a in sink.alerts[3:]] == [("resolved", False)]


def test_listener_heartbeat_rows_never_alert(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    engine = engine_for(db, sink, clock, metrics)
    rounds(engine, clock, "xxxx", check=HEARTBEAT_CHECK)
    assert sink.alerts == [] and db.open_incidents() == []


def test_raise_critical_fires_at_once_and_only_once(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    engine = engine_for(db, sink, clock, metrics)
    engine.raise_critical("listener.reorg", "Reorg deeper than 64 blocks", "Block 1200: hash mismatch")
    engine.raise_critical("listener.reorg", "Reorg deeper than 64 blocks", "again")
    assert sink.kinds() == [("listener.reorg", "firing", False)]
    assert sink.alerts[0].severity == "crit"
    assert registry.get_sample_value("blocktrust_incidents_open", {"severity": "crit"}) == 1
    clock.advance(30)
    engine.resolve("listener.reorg")
    engine.resolve("listener.reorg")
    assert sink.kinds()[1:] == [("listener.reorg", "resolved", False)]
    assert registry.get_sample_value("blocktrust_incidents_open", {"severity": "crit"}) == 0


def test_incidents_open_gauge_follows_severities(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    engine = engine_for(db, sink, clock, metrics)
    for _ in range(2):
        engine.observe([result("api.health", False, clock.now()), result("api.stats", False, clock.now())])
    gauge = {s: registry.get_sample_value("blocktrust_incidents_open", {"severity": s}) for s in ("crit", "warn")}
    assert gauge == {"crit": 1, "warn": 1}


def test_restart_resumes_without_a_second_notice_and_resolves_later(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    rounds(engine_for(db, sink, clock, metrics), clock, "xx")
    restarted_sink = RecordingSink()
    restarted = engine_for(db, restarted_sink, clock, metrics)
    rounds(restarted, clock, "xxx")
    assert restarted_sink.alerts == []
    rounds(restarted, clock, "oo")
    assert restarted_sink.kinds() == [("api.events", "resolved", False)]


class FlakyStore:
    """A store whose incident calls fail while ``down`` is set (everything else delegated)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = True
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("open_incidents", "open_incident", "resolve_incident", "mark_notified") and self.down:

            def refuse(*args: Any) -> Any:
                self.refused += 1
                raise StoreError("connection refused")

            return refuse
        return attr


def test_a_store_outage_never_silences_an_alert_and_the_incident_is_recorded_afterwards(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    flaky = FlakyStore(db)
    engine = engine_for(flaky, sink, clock, metrics)
    rounds(engine, clock, "xxxx")
    assert sink.kinds() == [("api.events", "firing", False)]
    flaky.down = False
    rounds(engine, clock, "xx")
    assert len(sink.alerts) == 1
    [incident] = db.open_incidents()
    assert (incident.opened_at, incident.last_notified_at) == (START, START.replace(minute=1))
    rounds(engine, clock, "oo")
    assert sink.kinds()[1:] == [("api.events", "resolved", False)]
    assert db.open_incidents() == []


def test_incidents_that_began_and_ended_during_a_store_outage_are_recorded_in_order(
    db: Store, sqlite_url: str, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    flaky = FlakyStore(db)
    engine = engine_for(flaky, sink, clock, metrics)
    rounds(engine, clock, "xxooxx")  # fired, resolved, fired again: all while the store is down
    assert [a.state for a in sink.alerts] == ["firing", "resolved", "firing"]
    flaky.down = False
    engine.tick()
    rows = [(r[2], r[6]) for r in table_rows(sqlite_url, "monitor_incidents")]  # resolved_at, check_name
    assert [(resolved is not None, check) for resolved, check in rows] == [(True, "api.events"), (False, "api.events")]
    [still_open] = db.open_incidents()
    assert still_open.last_notified_at == START.replace(minute=5)
    rounds(engine, clock, "x")
    assert len(sink.alerts) == 3  # nothing announced twice


def test_with_the_store_down_a_round_waits_for_at_most_one_store_call(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    flaky = FlakyStore(db)
    engine = engine_for(flaky, sink, clock, metrics)
    checks = ["api.health", "api.events", "api.stats", "api.contracts", "synthetic.hash"]
    for _ in range(4):
        before = flaky.refused
        engine.observe([result(name, False, clock.now()) for name in checks])
        engine.tick()
        assert flaky.refused - before <= 1  # each refused call may have cost a connect timeout
        clock.advance(ROUND)
    assert sorted(a.check_name for a in sink.alerts) == sorted(checks)  # all announced anyway
    flaky.down = False
    engine.tick()
    assert sorted(i.check_name for i in db.open_incidents()) == sorted(checks)
    assert all(i.last_notified_at == START + timedelta(seconds=ROUND) for i in db.open_incidents())


@pytest.mark.parametrize(
    ("details", "text"),
    [
        (
            {"status_code": 503, "error": "bad_status", "reason": "status 503 not in [200]"},
            "Status code: 503; status 503 not in [200]",
        ),
        ({"status_code": None, "error": "timeout", "reason": ""}, "timeout"),
        ({}, "Check failed"),
        ({"reason": "x" * 900}, "x" * 499 + "…"),
    ],
)
def test_failure_detail_for_humans(details: dict[str, Any], text: str) -> None:
    assert describe_failure(details) == text


def test_inside_a_window_reminders_wait_and_a_resolved_notice_waits_for_its_end(
    db: Store, sink: RecordingSink, clock: FakeClock, metrics: Metrics
) -> None:
    window = {"start": "2026-01-05T10:05:00Z", "end": "2026-01-05T10:30:00Z"}
    engine = engine_for(db, sink, clock, metrics, reminder_interval="10m", maintenance=[window])
    rounds(engine, clock, "xx")  # fired at 10:01, before the window
    rounds(engine, clock, "x" * 18)  # until 10:19: the 10:11 reminder is held back
    assert sink.kinds() == [("api.events", "firing", False)]
    rounds(engine, clock, "oo")  # resolved at 10:21, inside the window
    assert db.open_incidents() == []
    # Handed over at once (to the notifier's persisted outbox, so a restart cannot lose it), held until
    # the window ends.
    assert sink.kinds()[1:] == [("api.events", "resolved", False)]
    assert sink.alerts[1].at == START.replace(minute=21)
    assert sink.alerts[1].not_before == START.replace(minute=30)
    rounds(engine, clock, "o" * 9)  # 10:30 comes round: nothing more from the engine
    assert len(sink.alerts) == 2

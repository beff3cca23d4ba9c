"""Dependency-aware suppression: the default map, resolution (unknown names, cycles), and the engine's
three rules on a real store (both backends where rows are read): suppression touches notices only, a
resolution is never suppressed (but only what was notified is announced resolved), and suppression
passes through the real state of the check in between."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting.dependencies import (
    LOGIN,
    check_dependencies,
    default_dependencies,
    find_cycle,
    login_result,
    resolve_dependencies,
)
from exporter.alerting.engine import AlertEngine, check_policies
from exporter.clock import FakeClock
from exporter.config import CHAIN_KINDS, AlertingSettings, CheckSpec, ConfigError, default_checks
from exporter.metrics import Metrics
from exporter.store import Store, open_store
from tests.alerting.kit import RecordingSink, result, table_rows

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ROUND = 60.0
# The checks that reach the API: all default checks but the chain's (chain.head, listener.*).
API_CHECKS = [spec.name for spec in default_checks() if spec.name.startswith(("api.", "synthetic."))]
# The default checks of an exporter without an RPC URL: chain.head (a chain kind) is not run there.
WITHOUT_RPC = [spec for spec in default_checks() if spec.kind not in CHAIN_KINDS]
DEPENDANTS = [name for name in API_CHECKS if name != "api.health"]
LOGIN_FAILED: dict[str, Any] = {
    "status_code": 503,
    "error": "login_failed",
    "reason": "login answered HTTP 503",
    "bytes": 20,
}


# ------------------------------------------------------------------------------------ the map
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("api.health", ()),
        ("api.events", ("api.health", LOGIN)),
        ("api.anything_new", ("api.health", LOGIN)),
        ("synthetic.hash", ("api.health", LOGIN)),
        (LOGIN, ("api.health",)),
        ("listener.lag", ("chain.head",)),
        ("listener.progress", ("chain.head",)),
        ("chain.head", ()),
        ("site.home", ()),
    ],
)
def test_default_dependencies(name: str, expected: tuple[str, ...]) -> None:
    assert default_dependencies([name]) == {name: expected}


def test_api_checks_are_the_seven_api_and_synthetic_defaults() -> None:
    assert len(API_CHECKS) == 7 and len(DEPENDANTS) == 6
    assert [spec.name for spec in default_checks() if spec.name not in API_CHECKS] == [
        "chain.head",
        "listener.lag",
        "listener.progress",
    ]


def test_defaults_of_the_ten_checks_with_chain_head_configured() -> None:
    specs = default_checks()  # chain.head is a default check (run whenever an RPC URL is configured)
    graph = check_dependencies(specs)
    assert set(graph) == {*(spec.name for spec in specs), LOGIN}
    assert graph["api.health"] == graph["chain.head"] == ()
    assert all(graph[name] == ("api.health", LOGIN) for name in DEPENDANTS)
    assert graph[LOGIN] == ("api.health",)
    assert graph["listener.lag"] == graph["listener.progress"] == ("chain.head",)


def test_a_dependency_not_configured_is_no_dependency_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.alerting.dependencies")
    graph = check_dependencies(WITHOUT_RPC)  # no chain.head configured (no RPC URL: chain kinds are off)
    assert graph["listener.lag"] == graph["listener.progress"] == ()
    lines = [r.getMessage() for r in caplog.records if "chain.head" in r.getMessage()]
    assert lines == [
        "check listener.lag: depends on chain.head, which is not configured here: no dependency on it",
        "check listener.progress: depends on chain.head, which is not configured here: no dependency on it",
    ]


def test_no_login_dependency_without_a_check_that_logs_in() -> None:
    specs = [spec for spec in default_checks() if not spec.auth]
    graph = check_dependencies(specs)
    assert LOGIN not in graph
    assert graph["api.health"] == ()


def test_depends_on_replaces_the_defaults_and_an_empty_list_means_none() -> None:
    graph = resolve_dependencies(
        {"api.health": None, "api.events": ["api.health"], "api.stats": [], "site.home": ["api.health"]}, login=False
    )
    assert graph == {"api.health": (), "api.events": ("api.health",), "api.stats": (), "site.home": ("api.health",)}


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": ("b",), "b": ("a",)}, ["a", "b", "a"]),
        ({"a": ("a",)}, ["a", "a"]),
        ({"a": ("b",), "b": ("c",), "c": ("b",)}, ["b", "c", "b"]),
        ({"a": ("b", "c"), "b": ("c",), "c": ()}, None),
    ],
)
def test_find_cycle(graph: dict[str, tuple[str, ...]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


def test_a_cycle_through_a_default_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_dependencies({"api.health": ["api.events"], "api.events": None}, login=False, source="c.yaml")
    assert (
        str(caught.value) == "c.yaml: checks: depends_on goes round in a circle: api.events -> api.health -> api.events"
    )


def test_login_result_from_a_round() -> None:
    graph = check_dependencies(default_checks())
    now = START
    failed = login_result([result("api.health", True, now), result("api.events", False, now, **LOGIN_FAILED)], graph)
    assert failed is not None and not failed.ok
    assert failed.check_name == LOGIN and failed.details["reason"] == "login answered HTTP 503"
    passed = login_result([result("api.events", False, now)], graph)  # a 503 after logging in
    assert passed is not None and passed.ok
    assert login_result([result("api.health", False, now)], graph) is None  # nothing relied on the login


# ---------------------------------------------------------------------------------- the engine
class Scenario:
    """An engine with the default dependencies of ``specs``, fed whole rounds of results."""

    def __init__(self, store: Store, specs: Sequence[CheckSpec] | None = None) -> None:
        self.clock = FakeClock(START)
        self.sink = RecordingSink()
        self.registry = CollectorRegistry()
        metrics = Metrics(self.registry, slo_latency_seconds=0.8, version="test")
        graph = check_dependencies(list(specs) if specs is not None else default_checks())
        self.engine = AlertEngine(store, self.sink, self.clock, metrics, AlertingSettings(), dependencies=graph)

    def round(self, failing: Sequence[str], passing: Sequence[str], **details: Any) -> None:
        now = self.clock.now()
        results = [result(name, False, now, **details) for name in failing]
        results += [result(name, True, now) for name in passing]
        self.engine.observe(results)
        self.engine.tick()
        self.clock.advance(ROUND)

    def notices(self) -> list[tuple[str, str]]:
        return [(a.check_name, a.state) for a in self.sink.alerts]

    def suppressed(self, check: str) -> float:
        value = self.registry.get_sample_value("blocktrust_alert_notices_suppressed_total", {"check": check})
        return value or 0.0


def test_an_api_outage_is_one_notice_and_seven_incidents(store_url: str) -> None:
    store = open_store(store_url)
    store.migrate()
    try:
        scene = Scenario(store)
        for _ in range(3):
            scene.round(API_CHECKS, [])
        assert scene.notices() == [("api.health", "firing")]
        rows = table_rows(store_url, "monitor_incidents", "check_name, suppressed_by, last_notified_at")
        by_check = {row[0]: row for row in rows}
        assert set(by_check) == set(API_CHECKS)  # recorded, all of them
        assert by_check["api.health"][1] is None and by_check["api.health"][2] is not None
        assert all(by_check[name][1] == "api.health" and by_check[name][2] is None for name in DEPENDANTS)
        assert all(scene.suppressed(name) == 1 for name in DEPENDANTS)
        assert scene.suppressed("api.health") == 0
        for _ in range(2):
            scene.round([], API_CHECKS)
        # Every incident resolved; only the notified one is announced as resolved.
        assert scene.notices() == [("api.health", "firing"), ("api.health", "resolved")]
        assert store.open_incidents() == []
        assert all(row[0] is not None for row in table_rows(store_url, "monitor_incidents", "resolved_at"))
    finally:
        store.close()


def test_without_dependencies_the_same_outage_is_seven_notices(db: Store, metrics: Metrics) -> None:
    clock = FakeClock(START)
    sink = RecordingSink()
    engine = AlertEngine(db, sink, clock, metrics, AlertingSettings())
    for _ in range(2):
        engine.observe([result(name, False, clock.now()) for name in API_CHECKS])
        clock.advance(ROUND)
    assert sorted(a.check_name for a in sink.alerts) == sorted(API_CHECKS)


def test_a_dependant_that_fails_first_is_notified_and_its_end_announced(db: Store) -> None:
    scene = Scenario(db)
    scene.round(["api.events"], ["api.health"])
    scene.round(["api.events"], ["api.health"])  # its own problem: notified
    scene.round(["api.events", "api.health"], [])
    scene.round(["api.events", "api.health"], [])
    assert scene.notices() == [("api.events", "firing"), ("api.health", "firing")]
    scene.round([], ["api.events", "api.health"])
    scene.round([], ["api.events", "api.health"])
    assert sorted(scene.notices()[2:]) == [("api.events", "resolved"), ("api.health", "resolved")]


def test_a_dependant_still_failing_after_its_dependency_recovered_is_notified_then(db: Store) -> None:
    scene = Scenario(db)
    scene.round(["api.health", "api.stats", "api.events"], [])
    scene.round(["api.health", "api.stats", "api.events"], [])
    assert scene.notices() == [("api.health", "firing")]
    # api.health is back; api.stats still fails (a problem of its own), api.events is recovering.
    # Like a new failure, api.stats is told only once it failed failure_threshold (2) rounds alone.
    scene.round(["api.stats"], ["api.health", "api.events"])
    assert scene.notices()[1:] == []
    scene.round(["api.stats"], ["api.health", "api.events"])
    # api.events ends quietly
    assert sorted(scene.notices()[1:]) == [("api.health", "resolved"), ("api.stats", "firing")]
    scene.round([], ["api.stats"])
    scene.round([], ["api.stats"])
    assert scene.notices()[-1] == ("api.stats", "resolved")
    assert db.open_incidents() == []


def test_a_dependant_that_fails_once_more_as_its_dependency_recovers_ends_quietly(db: Store) -> None:
    """The listener's checks read a heartbeat up to a poll old: in the round chain.head is fresh again,
    listener.progress may still fail once. That is recovery, not a problem of its own."""
    specs = [
        CheckSpec(name="chain.head", kind="chain.head"),
        CheckSpec(name="listener.progress", kind="listener.progress"),
    ]
    scene = Scenario(db, specs)
    for _ in range(3):
        scene.round(["chain.head", "listener.progress"], [])
    scene.round(["listener.progress"], ["chain.head"])  # the heartbeat predates the first new block
    scene.round([], ["chain.head", "listener.progress"])
    scene.round([], ["chain.head", "listener.progress"])
    assert scene.notices() == [("chain.head", "firing"), ("chain.head", "resolved")]
    assert db.open_incidents() == []


def test_suppression_passes_through_the_real_state_of_the_check_in_between(db: Store, metrics: Metrics) -> None:
    specs = [
        CheckSpec(name="site.db", url="http://127.0.0.1:1/db", depends_on=[]),
        CheckSpec(name="site.api", url="http://127.0.0.1:1/api", depends_on=["site.db"]),
        CheckSpec(name="site.web", url="http://127.0.0.1:1/web", depends_on=["site.api"]),
    ]
    scene = Scenario(db, specs)
    # All three down: one notice, and the top one's cause is the root (through the failing site.api).
    scene.round(["site.db", "site.api", "site.web"], [])
    scene.round(["site.db", "site.api", "site.web"], [])
    assert scene.notices() == [("site.db", "firing")]
    held = {i.check_name: i.suppressed_by for i in db.open_incidents()}
    assert held == {"site.db": None, "site.api": "site.db", "site.web": "site.db"}
    for _ in range(2):
        scene.round([], ["site.db", "site.api", "site.web"])
    assert scene.notices() == [("site.db", "firing"), ("site.db", "resolved")]

    # site.db down but site.api up: site.web's failure is not explained by site.db.
    scene.round(["site.db", "site.web"], ["site.api"])
    scene.round(["site.db", "site.web"], ["site.api"])
    assert sorted(scene.notices()[2:]) == [("site.db", "firing"), ("site.web", "firing")]


def test_the_login_is_a_derived_dependency(db: Store) -> None:
    scene = Scenario(db)
    # The API answers /health but the monitoring login fails: one notice, about the login.
    for _ in range(2):
        scene.round(DEPENDANTS, ["api.health"], **LOGIN_FAILED)
    assert scene.notices() == [(LOGIN, "firing")]
    assert scene.sink.alerts[0].title == "Monitoring account cannot log in"
    assert scene.sink.alerts[0].detail == "Status code: 503; login answered HTTP 503"
    assert {i.check_name: i.suppressed_by for i in db.open_incidents()} == {
        LOGIN: None,
        **dict.fromkeys(DEPENDANTS, LOGIN),
    }
    for _ in range(2):
        scene.round([], API_CHECKS)
    assert scene.notices()[1:] == [(LOGIN, "resolved")]
    assert db.open_incidents() == []


def test_the_login_failing_with_the_api_down_is_itself_suppressed(db: Store) -> None:
    scene = Scenario(db)
    for _ in range(2):
        scene.round(API_CHECKS, [], **LOGIN_FAILED)
    assert scene.notices() == [("api.health", "firing")]
    assert {i.check_name: i.suppressed_by for i in db.open_incidents()}[LOGIN] == "api.health"


def test_held_incidents_stay_held_across_a_restart(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    try:
        scene = Scenario(store)
        scene.round(API_CHECKS, [])
        scene.round(API_CHECKS, [])
        assert scene.notices() == [("api.health", "firing")]
        again = Scenario(store)  # a restart: a new engine on the same store
        again.clock.advance(3 * ROUND)
        again.round(API_CHECKS, [])
        again.engine.tick()
        assert again.notices() == []  # neither the held ones nor api.health (notified before) again
        for _ in range(2):
            again.round([], API_CHECKS)
        assert again.notices() == [("api.health", "resolved")]
    finally:
        store.close()


def test_order_in_the_round_and_a_lower_threshold_of_the_dependant_do_not_matter(db: Store) -> None:
    clock = FakeClock(START)
    sink = RecordingSink()
    registry = CollectorRegistry()
    specs = [
        CheckSpec(name="api.health", path="/api/health", severity="crit"),
        CheckSpec(name="api.stats", path="/api/explorer/stats", failure_threshold=1),
    ]
    alerting = AlertingSettings()
    engine = AlertEngine(
        db,
        sink,
        clock,
        Metrics(registry, slo_latency_seconds=0.8, version="test"),
        alerting,
        policies=check_policies(alerting, specs),
        dependencies=check_dependencies(specs),
    )
    # The dependant first, and its threshold reached while api.health has failed only once.
    engine.observe([result("api.stats", False, clock.now()), result("api.health", False, clock.now())])
    assert [i.suppressed_by for i in db.open_incidents()] == ["api.health"]
    clock.advance(ROUND)
    engine.observe([result("api.stats", False, clock.now()), result("api.health", False, clock.now())])
    assert [(a.check_name, a.state) for a in sink.alerts] == [("api.health", "firing")]


# ------------------------------------------------------------------ sharded replicas (run_on: shard)
def test_sharded_replicas_suppress_through_a_dependency_run_by_another_replica(store_url: str) -> None:
    """``checks.run_on: shard``: api.health runs on one replica, api.events on another (their results
    reach each other only through the store). The API outage is still one notice, not one per replica;
    once api.health recovers and api.events still fails, api.events is notified."""
    graph = check_dependencies(default_checks())
    clock = FakeClock(START)
    stores = [open_store(store_url) for _ in range(2)]
    stores[0].migrate()
    sinks = [RecordingSink(), RecordingSink()]
    engines = [
        AlertEngine(
            store,
            sink,
            clock,
            Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="test"),
            AlertingSettings(),
            dependencies=graph,
        )
        for store, sink in zip(stores, sinks, strict=True)
    ]
    runs = [["api.health"], ["api.events"]]

    def round_(failing: set[str]) -> None:
        for store, engine, names in zip(stores, engines, runs, strict=True):
            results = [result(name, name not in failing, clock.now()) for name in names]
            store.write_results(results)  # the replica's writer, before the engine decides
            engine.observe(results)
            engine.tick()
        clock.advance(ROUND)

    try:
        for _ in range(3):
            round_({"api.health", "api.events"})
        notices = [(a.check_name, a.state) for sink in sinks for a in sink.alerts]
        assert notices == [("api.health", "firing")]
        rows = {row[0]: row[1] for row in table_rows(store_url, "monitor_incidents", "check_name, suppressed_by")}
        assert rows == {"api.health": None, "api.events": "api.health"}
        for _ in range(3):
            round_({"api.events"})  # the API is back; api.events still fails: a problem of its own now
        notices = [(a.check_name, a.state) for sink in sinks for a in sink.alerts]
        assert notices == [("api.health", "firing"), ("api.health", "resolved"), ("api.events", "firing")]
    finally:
        for store in stores:
            store.close()


def test_the_config_knows_the_derived_login_by_the_same_name() -> None:
    from exporter.config.checks import DERIVED_LOGIN_CHECK

    assert DERIVED_LOGIN_CHECK == LOGIN

"""The SLO report against a hand-computed fixture, on PostgreSQL and on SQLite: uptime, p99
(continuous percentile over successful runs), failures, last failure, error budget; the gauges, the
warn incidents, the CLI output and retention."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting.engine import AlertEngine
from exporter.clock import FakeClock
from exporter.config import AlertingSettings, SloSettings
from exporter.metrics import Metrics
from exporter.retention import purge_old_results
from exporter.slo import SloReporter, add_report_arguments, compute_report, report_command
from exporter.store import Store
from tests.alerting.kit import RecordingSink, result

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=24)


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def write_fixture(store: Store) -> None:
    rows = []
    # api.health: 10 successes, 2 failures. Sorted successful latencies 80..400:
    # p99 position 0.99 * 9 = 8.91 -> 300 + 0.91 * (400 - 300) = 391.0; uptime 10/12 = 83.333…%
    for i, ms in enumerate([120, 80, 100, 300, 90, 110, 95, 105, 400, 85]):
        rows.append(result("api.health", True, at(20 - i), latency_ms=ms))
    rows.append(result("api.health", False, at(1), latency_ms=5000))  # failures never count in p99
    rows.append(result("api.health", False, at(0.5), latency_ms=5000))
    rows.append(result("api.health", False, SINCE - timedelta(seconds=1)))  # before the window
    rows.append(result("api.health", False, NOW))  # the window is [since, until)
    # api.events: always up but slow: sorted [200, 200, 900, 1000], position 2.97 -> 997.0 > 800
    rows += [result("api.events", True, at(h), latency_ms=ms) for h, ms in [(5, 200), (4, 1000), (3, 900), (2, 200)]]
    # api.stats: one run, failed: no latency to judge, uptime 0
    rows.append(result("api.stats", False, at(3)))
    # synthetic.hash: 199 of 200 up = exactly the 99.5% target, budget fully used
    rows += [result("synthetic.hash", True, at(10) + timedelta(minutes=i), latency_ms=100) for i in range(199)]
    rows.append(result("synthetic.hash", False, at(6)))
    # The listener's heartbeat is not a check.
    rows += [result("listener.tick", i % 2 == 0, at(i)) for i in range(1, 5)]
    store.write_results(rows)


EXPECTED = {
    # check: (runs, failures, uptime %, p99 ms, last failure, budget left %, uptime ok, latency ok)
    "api.events": (4, 0, 100.0, 997.0, None, 100.0, True, False),
    "api.health": (12, 2, 1000 / 12, 391.0, at(0.5), 100 * (1 - 2 / 0.06), False, True),
    "api.stats": (1, 1, 0.0, None, at(3), 100 * (1 - 1 / 0.005), False, None),  # no latency: no verdict
    "synthetic.hash": (200, 1, 99.5, 100.0, at(6), 0.0, True, True),
}


# The incident mechanics with the fixture's few runs; slo.min_runs has its own tests.
JUDGE_EVERY_RUN = SloSettings(min_runs=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def test_report_equals_the_hand_computed_fixture(store: Store, clock: FakeClock) -> None:
    write_fixture(store)
    report = compute_report(store, SloSettings(), clock)
    assert (report.since, report.until) == (SINCE, NOW)
    got = {
        line.check_name: (
            line.runs,
            line.failures,
            line.uptime_percent,
            line.p99_latency_ms,
            line.last_failure,
            line.error_budget_left_percent,
            line.uptime_ok,
            line.latency_ok,
        )
        for line in report.lines
    }
    assert got.keys() == EXPECTED.keys()
    for check, expected in EXPECTED.items():
        runs, failures, uptime, p99, last_failure, budget, uptime_ok, latency_ok = got[check]
        assert (runs, failures, last_failure, uptime_ok, latency_ok) == (
            expected[0],
            expected[1],
            expected[4],
            expected[6],
            expected[7],
        ), check
        assert uptime == pytest.approx(expected[2], abs=1e-9), check
        assert budget == pytest.approx(expected[5], abs=1e-6), check
        assert p99 == (None if expected[3] is None else pytest.approx(expected[3], abs=1e-9)), check


def test_reporter_sets_gauges_and_opens_then_resolves_warn_incidents(
    store: Store, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    write_fixture(store)
    sink = RecordingSink()
    engine = AlertEngine(store, sink, clock, metrics, AlertingSettings())
    reporter = SloReporter(store, metrics, JUDGE_EVERY_RUN, clock, engine)
    reporter.run_once()

    def gauge(name: str, check: str) -> float | None:
        return registry.get_sample_value(name, {"check": check})

    assert gauge("blocktrust_slo_uptime_ratio", "api.health") == pytest.approx(10 / 12)
    assert gauge("blocktrust_slo_latency_p99_seconds", "api.health") == pytest.approx(0.391)
    assert gauge("blocktrust_slo_latency_p99_seconds", "api.events") == pytest.approx(0.997)
    assert gauge("blocktrust_slo_latency_p99_seconds", "api.stats") is None
    assert gauge("blocktrust_slo_uptime_ratio", "listener.tick") is None
    incidents = {i.check_name: i for i in store.open_incidents()}
    assert sorted(incidents) == ["slo.api.events", "slo.api.health", "slo.api.stats"]
    assert {i.severity for i in incidents.values()} == {"warn"}
    assert incidents["slo.api.health"].detail == (
        "Uptime 83.33% < 99.5% target (2 of 12 runs failed) (as of 2026-01-05 12:00:00 UTC)"
    )
    assert incidents["slo.api.events"].detail == "p99 latency 997 ms > 800 ms objective (as of 2026-01-05 12:00:00 UTC)"
    assert [a.state for a in sink.alerts] == ["firing"] * 3

    reporter.run_once()  # still out of objective: nothing new
    assert len(sink.alerts) == 3

    # A day (and a round) later only healthy api.health runs are in the window: api.health is back
    # within, and api.events / api.stats, with no run left to judge, are over too.
    clock.advance(86_400 + 60)
    store.write_results([result("api.health", True, clock.now() - timedelta(minutes=m)) for m in range(1, 4)])
    reporter.run_once()
    assert store.open_incidents() == []
    assert sorted(sink.kinds()[3:]) == [
        ("slo.api.events", "resolved", False),
        ("slo.api.health", "resolved", False),
        ("slo.api.stats", "resolved", False),
    ]
    assert gauge("blocktrust_slo_uptime_ratio", "api.health") == 1.0
    assert gauge("blocktrust_slo_uptime_ratio", "api.events") is None  # no run left in the window
    assert gauge("blocktrust_slo_latency_p99_seconds", "api.events") is None


def test_a_restarted_reporter_resolves_slo_incidents_of_checks_gone_from_the_window(
    store: Store, clock: FakeClock, metrics: Metrics
) -> None:
    write_fixture(store)
    SloReporter(
        store, metrics, JUDGE_EVERY_RUN, clock, AlertEngine(store, RecordingSink(), clock, metrics, AlertingSettings())
    ).run_once()
    assert len(store.open_incidents()) == 3
    clock.advance(86_400 + 60)  # nothing ran since: every check is gone from the window
    sink = RecordingSink()
    engine = AlertEngine(store, sink, clock, metrics, AlertingSettings())  # a new process
    SloReporter(store, metrics, JUDGE_EVERY_RUN, clock, engine).run_once()
    assert store.open_incidents() == []
    assert sorted(sink.kinds()) == [
        ("slo.api.events", "resolved", False),
        ("slo.api.health", "resolved", False),
        ("slo.api.stats", "resolved", False),
    ]


def test_report_command_prints_a_table_or_json(store: Store, clock: FakeClock) -> None:
    write_fixture(store)
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)

    out = io.StringIO()
    assert report_command(store, JUDGE_EVERY_RUN, clock, parser.parse_args([]), out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "SLO report 2026-01-04 12:00:00 UTC .. 2026-01-05 12:00:00 UTC: uptime target 99.5%, p99 objective 800 ms"
    )
    assert lines[1].split() == [
        "check",
        "runs",
        "uptime",
        "%",
        "p99",
        "ms",
        "failures",
        "last",
        "failure",
        "budget",
        "left",
        "status",
    ]
    assert lines[3].split() == [
        "api.health",
        "12",
        "83.333",
        "391.0",
        "2",
        "2026-01-05",
        "11:30:00",
        "UTC",
        "-3233.3%",
        "BREACH",
    ]
    assert lines[5].split() == [
        "synthetic.hash",
        "200",
        "99.500",
        "100.0",
        "1",
        "2026-01-05",
        "06:00:00",
        "UTC",
        "0.0%",
        "ok",
    ]

    out = io.StringIO()
    report_command(store, SloSettings(), clock, parser.parse_args(["--window", "2h", "--format", "json"]), out)
    data = json.loads(out.getvalue())
    assert data["window_seconds"] == 7200
    assert {c["check"]: (c["runs"], c["failures"]) for c in data["checks"]} == {
        "api.events": (1, 0),
        "api.health": (2, 2),  # 10:00 .. 12:00
    }


def test_report_window_argument_is_validated() -> None:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    assert parser.parse_args(["--window", "7d"]).window == 7 * 86_400
    with pytest.raises(SystemExit):
        parser.parse_args(["--window", "soon"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--format", "xml"])


def test_retention_deletes_old_results_in_batches(store: Store, clock: FakeClock) -> None:
    old = [result("api.health", True, NOW - timedelta(days=31, minutes=i)) for i in range(7)]
    recent = [result("api.health", True, NOW - timedelta(days=29, minutes=i)) for i in range(3)]
    store.write_results(old + recent)
    assert purge_old_results(store, clock, 30 * 86_400, batch_size=3) == 7
    assert compute_report(store, SloSettings(), clock, window=40 * 86_400).lines[0].runs == 3
    assert purge_old_results(store, clock, 30 * 86_400, batch_size=3) == 0


def test_retention_stops_after_its_batch_budget(store: Store, clock: FakeClock) -> None:
    store.write_results([result("api.health", True, NOW - timedelta(days=40, minutes=i)) for i in range(10)])
    assert purge_old_results(store, clock, 30 * 86_400, batch_size=2, max_batches=3) == 6


# ------------------------------------------------------------------ slo.min_runs (issue: SLO verdicts at start)
def test_min_runs_defaults_to_the_fewest_runs_one_failure_fits_in() -> None:
    assert SloSettings().required_runs == 200  # 1 failure in 200 runs = exactly 99.5 %
    assert SloSettings(uptime_target=99.0).required_runs == 100
    assert SloSettings(uptime_target=99.9).required_runs == 1000
    assert SloSettings(min_runs=12).required_runs == 12


def test_no_slo_incident_opens_on_too_few_runs_then_one_opens_with_enough(
    store: Store, clock: FakeClock, metrics: Metrics
) -> None:
    """A fresh start: 1 failed run of 6 (the listener before its first poll) is 83 % uptime, but no
    verdict; the same share over min_runs runs is one."""
    settings = SloSettings(min_runs=20)
    store.write_results([result("listener.lag", i != 0, NOW - timedelta(minutes=6 - i)) for i in range(6)])
    sink = RecordingSink()
    reporter = SloReporter(
        store, metrics, settings, clock, AlertEngine(store, sink, clock, metrics, AlertingSettings())
    )
    report = reporter.run_once()
    (line,) = report.lines
    assert (line.runs, line.uptime_ok, line.enough_runs) == (6, False, False)
    assert store.open_incidents() == [] and sink.alerts == []
    assert report.to_table().splitlines()[2].endswith("(BREACH: too few runs)")
    assert report.to_dict()["min_runs"] == 20 and report.to_dict()["checks"][0]["enough_runs"] is False

    clock.advance(3600)
    store.write_results(
        [result("listener.lag", i % 5 != 0, clock.now() - timedelta(minutes=50 - i)) for i in range(20)]
    )
    reporter.run_once()
    (incident,) = store.open_incidents()
    assert incident.check_name == "slo.listener.lag"
    assert incident.detail == "Uptime 80.77% < 99.5% target (5 of 26 runs failed) (as of 2026-01-05 13:00:00 UTC)"


def test_an_open_slo_incident_does_not_resolve_on_too_few_runs(
    store: Store, clock: FakeClock, metrics: Metrics
) -> None:
    engine = AlertEngine(store, RecordingSink(), clock, metrics, AlertingSettings())
    store.write_results([result("api.health", i % 2 == 0, NOW - timedelta(minutes=30 - i)) for i in range(10)])
    SloReporter(store, metrics, SloSettings(min_runs=10), clock, engine).run_once()
    assert [i.check_name for i in store.open_incidents()] == ["slo.api.health"]
    # A day later: 3 good runs only (the checks were stopped for most of the day).
    clock.advance(86_400)
    store.write_results([result("api.health", True, clock.now() - timedelta(minutes=m)) for m in range(1, 4)])
    SloReporter(store, metrics, SloSettings(min_runs=10), clock, engine).run_once()
    assert [i.check_name for i in store.open_incidents()] == ["slo.api.health"]
    store.write_results([result("api.health", True, clock.now() - timedelta(minutes=m)) for m in range(4, 11)])
    SloReporter(store, metrics, SloSettings(min_runs=10), clock, engine).run_once()
    assert store.open_incidents() == []

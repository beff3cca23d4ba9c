"""Issue 15, acceptance 4 and the suppression half of 3, end to end on both stores: real check rounds
(``CheckRound``: the bundled API simulator, the listener's heartbeat rows) recorded in the store and
fed to the alert engine, notices delivered through the outbox to loopback receivers.

4. The API goes down: one notice (api.health), not seven; the six dependants' rows and metrics still
   say they failed; the SLO report is the same as without suppression.
3. (with a stand-in ``chain.head``, a plain http check, until the chain.head kind exists) the chain
   stalls: ``listener.lag``/``listener.progress`` incidents are recorded, not notified; it recovers:
   all resolve, with resolved notices only for what was notified.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.alerting.dependencies import check_dependencies
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.demo.simulator.server import BlocktrustSimulator
from exporter.probes.runner import CheckRound, resolve_checks
from exporter.slo import compute_report
from exporter.store.base import CheckResult
from tests.alerting.kit import AlertingProcess, channel_receivers, channel_settings, table_rows
from tests.support.http_receiver import HttpReceiver, Reply

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ROUND = 60.0
EMAIL, PASSWORD = "monitor@example.org", "s3cret-Pa55word"
# Every path of SPEC §1: the API is down, not just one endpoint.
API_PATHS = (
    "/api/health",
    "/api/explorer/login",
    "/api/explorer/events",
    "/api/explorer/contracts",
    "/api/explorer/stats",
    "/api/signature/hash-file",
    "/api/wallet/info",
    "/api/nft/status",
)
DEPENDANTS = (
    "api.events",
    "api.contracts",
    "api.stats",
    "synthetic.hash",
    "synthetic.wallet_info",
    "synthetic.nft_status",
)


@pytest.fixture
def receivers() -> Iterator[dict[str, HttpReceiver]]:
    with channel_receivers() as peers:
        yield peers


def notices(receivers: dict[str, HttpReceiver]) -> list[tuple[str, str]]:
    """What the webhook was told, as (check, state); Slack and Telegram must have been told as often."""
    told = [(r.json()["check"], r.json()["state"]) for r in receivers["webhook"].requests]
    assert len(receivers["slack"].requests) == len(receivers["telegram"].requests) == len(told)
    return told


class Monitor:
    """Check rounds recorded in the store and handed to the alerting process, on one FakeClock."""

    def __init__(
        self, store_url: str, config: Config, receivers: dict[str, HttpReceiver], clock: FakeClock, *, suppress: bool
    ) -> None:
        settings = channel_settings(receivers["slack"].url, receivers["telegram"].url, receivers["webhook"].url)
        graph = check_dependencies(resolve_checks(config)) if suppress else None
        self.clock = clock
        self.config = config
        self.alerting = AlertingProcess(store_url, settings, clock, dependencies=graph)
        self.checks = CheckRound(
            config,
            metrics=self.alerting.metrics,
            record=self.alerting.store.write_results,
            clock=clock,
            store=self.alerting.store,
            on_results=self.alerting.engine.observe,
        )

    def round(self) -> list[CheckResult]:
        results = self.checks.run_once()
        self.alerting.engine.tick()
        self.alerting.delivered()
        self.clock.advance(ROUND)
        return results

    def failures(self, check: str) -> float:
        return self.alerting.value("blocktrust_check_runs_total", check=check, result="failure")

    def close(self) -> None:
        self.checks.close()
        self.alerting.close()


def api_config(sim: BlocktrustSimulator) -> Config:
    return Config.model_validate(
        {
            "api": {"base_url": sim.url, "email": EMAIL, "password": PASSWORD},
            "checks": {"timeout": "2s", "interval": "10s", "concurrency": 9},
            "listener": {"enabled": False},
        }
    )


def api_outage(store_url: str, receivers: dict[str, HttpReceiver], *, suppress: bool) -> tuple[Monitor, Any]:
    """Two healthy rounds, three with the API down, three healthy again; the monitor and its SLO report."""
    clock = FakeClock(START)
    with BlocktrustSimulator(email=EMAIL, password=PASSWORD, clock=clock) as sim:
        monitor = Monitor(store_url, api_config(sim), receivers, clock, suppress=suppress)
        for _ in range(2):
            assert all(r.ok for r in monitor.round())
        for path in API_PATHS:
            sim.set_fault(path, "503")
        for _ in range(3):
            assert not any(r.ok for r in monitor.round())
        sim.clear_faults()
        for _ in range(3):
            assert all(r.ok for r in monitor.round())
    report = compute_report(monitor.alerting.store, monitor.config.slo, clock)
    return monitor, report


def slo_counts(report: Any) -> dict[str, tuple[int, int, float]]:
    return {line.check_name: (line.runs, line.failures, line.uptime_percent) for line in report.lines}


def test_an_api_outage_sends_one_notice_not_seven_and_changes_no_row_metric_or_slo(
    store_url: str, receivers: dict[str, HttpReceiver]
) -> None:
    monitor, report = api_outage(store_url, receivers, suppress=True)
    try:
        assert notices(receivers) == [("api.health", "firing"), ("api.health", "resolved")]
        # Every incident recorded, the six dependants' (and the login's, derived) held by api.health.
        rows = table_rows(store_url, "monitor_incidents", "check_name, suppressed_by, last_notified_at, resolved_at")
        held = {row[0]: row[1] for row in rows if row[2] is None}
        assert held == dict.fromkeys(DEPENDANTS, "api.health")
        assert {row[0] for row in rows} == {"api.health", *DEPENDANTS}
        assert all(row[3] is not None for row in rows)  # all resolved
        # The rows and the metrics still say the dependants failed, three times each.
        failed = table_rows(store_url, "monitor_metrics", "check_name, ok")
        for check in ("api.health", *DEPENDANTS):
            assert [ok for name, ok in failed if name == check].count(False) == 3, check
            assert monitor.failures(check) == 3
        assert monitor.alerting.value("blocktrust_alert_notices_suppressed_total", check="api.events") == 1
    finally:
        monitor.close()

    # The same outage without suppression: seven notices, and the very same SLO report.
    with channel_receivers() as others:
        plain, plain_report = api_outage(_fresh(store_url), others, suppress=False)
        try:
            firing = [check for check, state in notices(others) if state == "firing"]
            assert sorted(firing) == sorted(["api.health", *DEPENDANTS])
        finally:
            plain.close()
    assert slo_counts(report) == slo_counts(plain_report)
    assert slo_counts(report)["api.events"] == (8, 3, 62.5)


def _fresh(store_url: str) -> str:
    """Another empty store of the same backend (a new SQLite file; PostgreSQL: emptied tables)."""
    if store_url.startswith("sqlite:///"):
        return store_url.removesuffix(".db") + "-plain.db"
    import psycopg2

    with psycopg2.connect(store_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE monitor_metrics, monitor_incidents, alert_outbox RESTART IDENTITY")
    conn.close()
    return store_url


# ------------------------------------------------------------------------------ acceptance 3
def chain_config(chain_head_url: str) -> Config:
    return Config.model_validate(
        {
            "checks": {
                "include_defaults": False,
                "timeout": "2s",
                "interval": "10s",
                "items": [
                    {"name": "chain.head", "url": chain_head_url},  # the stand-in: a plain http check
                    {"name": "listener.lag", "kind": "listener.lag"},
                    {"name": "listener.progress", "kind": "listener.progress"},
                ],
            },
            # The listener runs elsewhere (this test writes its heartbeat rows): without an RPC URL
            # here, listener.* checks need that said explicitly.
            "listener": {"elsewhere": True, "max_lag": "90s", "poll_interval": "15s"},
        }
    )


def heartbeat(monitor: Monitor, processed: int, head: int) -> None:
    details = {"processed_block": processed, "head_block": head, "blocks_behind": head - processed}
    beat = CheckResult("listener.tick", True, 0, details, monitor.clock.now(), f"beat-{processed}-{head}")
    monitor.alerting.store.write_results([beat])


def test_a_stalled_chain_suppresses_the_listener_incidents(store_url: str, receivers: dict[str, HttpReceiver]) -> None:
    with HttpReceiver(default=Reply(200, {"ok": True})) as node:
        clock = FakeClock(START)
        config = chain_config(node.url + "/head")
        assert check_dependencies(resolve_checks(config))["listener.lag"] == ("chain.head",)
        monitor = Monitor(store_url, config, receivers, clock, suppress=True)
        try:
            for block in (100, 110):
                heartbeat(monitor, block, block + 5)
                assert all(r.ok for r in monitor.round())
            # The node stops producing blocks: its head goes stale, the listener's heartbeat stops
            # advancing and then ages past max_lag.
            node.script(*[Reply(503, {"error": "head too old"})] * 4)
            heartbeat(monitor, 110, 120)
            for _ in range(4):
                results = {r.check_name: r.ok for r in monitor.round()}
                assert results["chain.head"] is False
            assert results == {"chain.head": False, "listener.lag": False, "listener.progress": False}
            assert notices(receivers) == [("chain.head", "firing")]
            rows = table_rows(store_url, "monitor_incidents", "check_name, suppressed_by, last_notified_at")
            assert {row[0]: row[1] for row in rows} == {
                "chain.head": None,
                "listener.lag": "chain.head",
                "listener.progress": "chain.head",
            }
            assert [row[0] for row in rows if row[2] is not None] == ["chain.head"]
            # Mining resumes: every incident resolves; only chain.head's end is announced.
            for block in (130, 140, 150):
                heartbeat(monitor, block, block + 5)
                monitor.round()
            assert notices(receivers) == [("chain.head", "firing"), ("chain.head", "resolved")]
            assert monitor.alerting.store.open_incidents() == []
        finally:
            monitor.close()

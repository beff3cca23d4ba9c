"""Fixtures for the probe tests: a running simulator on a FakeClock, a real PostgreSQL store,
and ``harness`` that builds a ``CheckRound`` the way the exporter wires it (BufferedWriter
sink, injected registry) and reads back metrics and ``monitor_metrics`` rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg2
import pytest
from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock
from exporter.config import CheckSpec, Config
from exporter.config.checks import default_checks
from exporter.demo.simulator.server import BlocktrustSimulator
from exporter.metrics import Metrics
from exporter.probes.runner import CheckRound
from exporter.store import Store, open_store
from exporter.store.base import CheckResult
from exporter.store.buffer import BufferedWriter
from tests.support.postgres import throwaway_database

EMAIL = "monitor@example.org"
PASSWORD = "s3cret-Pa55word"  # a test-only value; tests assert it never leaks


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[BlocktrustSimulator]:
    with BlocktrustSimulator(email=EMAIL, password=PASSWORD, clock=clock, token_lifetime=3600) as running:
        yield running


@pytest.fixture(scope="session")
def probes_database() -> Iterator[str]:
    """One PostgreSQL database for this area's tests (creating one per test costs ~0.5 s each);
    ``pg_store`` empties its tables before every test."""
    with throwaway_database("bt_probes") as url:
        store = open_store(url)
        store.migrate()
        store.close()
        yield url


@pytest.fixture
def postgres_url(probes_database: str) -> str:
    """Overrides the root fixture for this area: the shared database, emptied."""
    with psycopg2.connect(probes_database) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE monitor_metrics RESTART IDENTITY")
    conn.close()
    return probes_database


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    store = open_store(postgres_url)
    try:
        yield store
    finally:
        store.close()


class Harness:
    """Builds rounds against the simulator and reads what they recorded."""

    def __init__(self, sim: BlocktrustSimulator, clock: FakeClock, store: Store, postgres_url: str) -> None:
        self.sim = sim
        self.clock = clock
        self.store = store
        self.postgres_url = postgres_url
        self.registry = CollectorRegistry()
        self.metrics = Metrics(
            self.registry, slo_latency_seconds=0.8, version="test", now=lambda: clock.now().timestamp()
        )
        self.writer = BufferedWriter(store, self.metrics, capacity=1000)
        self.rounds: list[CheckRound] = []
        self.email, self.password = EMAIL, PASSWORD

    def config(self, checks: Sequence[CheckSpec] | None = None, **api: Any) -> Config:
        tree: dict[str, Any] = {
            "api": {"base_url": self.sim.url, "email": EMAIL, "password": PASSWORD, **api},
            "checks": {"timeout": "300ms", "interval": "10s", "concurrency": 9},
            # The tests write the listener's heartbeat themselves, as a `listen` process would.
            "listener": {"elsewhere": True},
        }
        if checks is not None:
            tree["checks"]["include_defaults"] = False
            tree["checks"]["items"] = [spec.model_dump() for spec in checks]
        return Config.model_validate(tree)

    def round(self, config: Config, on_results: Any = None, record: Any = None) -> CheckRound:
        checks = CheckRound(
            config,
            metrics=self.metrics,
            record=record or self.writer.record,
            clock=self.clock,
            store=self.store,
            on_results=on_results,
        )
        self.rounds.append(checks)
        return checks

    def only(self, name: str, **api: Any) -> CheckRound:
        """A round with just the default check ``name``."""
        spec = next(spec for spec in default_checks() if spec.name == name)
        return self.round(self.config([spec], **api))

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def rows(self, check: str) -> list[tuple[bool, int, dict[str, Any]]]:
        with psycopg2.connect(self.postgres_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT ok, latency_ms, details FROM monitor_metrics WHERE check_name = %s ORDER BY id",
                (check,),
            )
            rows = cur.fetchall()
        conn.close()
        return [(bool(ok), int(latency), dict(details)) for ok, latency, details in rows]

    def assert_recorded(self, result: CheckResult, *, runs: int = 1) -> None:
        """The result's metrics and its monitor_metrics row agree with it."""
        name = result.check_name
        outcome = "success" if result.ok else "failure"
        assert self.sample("blocktrust_check_up", {"check": name}) == (1.0 if result.ok else 0.0)
        assert self.sample("blocktrust_check_runs_total", {"check": name, "result": outcome}) is not None
        assert self.sample("blocktrust_check_duration_seconds_count", {"check": name}) == runs
        assert self.sample("blocktrust_check_last_run_timestamp_seconds", {"check": name}) == (result.ts.timestamp())
        rows = self.rows(name)
        assert len(rows) == runs
        ok, latency_ms, details = rows[-1]
        assert ok == result.ok
        assert latency_ms == result.latency_ms >= 0
        assert details == result.details
        assert set(details) >= {"status_code", "error", "reason", "bytes"}
        assert PASSWORD not in str(details)

    def close(self) -> None:
        for checks in self.rounds:
            checks.close()


@pytest.fixture
def harness(sim: BlocktrustSimulator, clock: FakeClock, pg_store: Store, postgres_url: str) -> Iterator[Harness]:
    built = Harness(sim, clock, pg_store, postgres_url)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def unused_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

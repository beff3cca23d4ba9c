"""A PostgreSQL outage loses no check result and duplicates none (issue 3, acceptance 5)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from prometheus_client import CollectorRegistry

from exporter.metrics import Metrics
from exporter.store import CheckResult, Store, StoreError, open_store
from exporter.store.buffer import BufferedWriter
from exporter.store.postgres import _Pool
from tests.support.tcp_proxy import TcpProxy

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def round_of(n: int, checks: int = 5) -> list[CheckResult]:
    return [
        CheckResult(f"check.{c}", c % 2 == 0, 10 * c, {"round": n}, T0 + timedelta(minutes=n), uuid.uuid4().hex)
        for c in range(checks)
    ]


def stored_uids(postgres_url: str) -> list[str]:
    conn = psycopg2.connect(postgres_url)
    with conn.cursor() as cur:
        cur.execute("SELECT uid FROM monitor_metrics")
        uids = [r[0] for r in cur.fetchall()]
    conn.close()
    return uids


def test_results_recorded_during_an_outage_arrive_exactly_once(
    postgres_url: str, registry: CollectorRegistry, metrics: Metrics
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        store = open_store(f"postgresql://postgres@{proxy.address}/{database}", pool_size=2, connect_timeout=2)
        store.migrate()
        writer = BufferedWriter(store, metrics, capacity=1000)
        recorded: list[CheckResult] = []
        for n in range(12):
            if n == 3:
                proxy.cut()
            if n == 8:
                proxy.restore()
            batch = round_of(n)
            recorded += batch
            writer.record(batch)
            if 3 <= n < 8:
                assert len(writer) == 5 * (n - 2), "results of the outage stay queued"
        assert len(writer) == 0
        store.close()
    uids = stored_uids(postgres_url)
    assert sorted(uids) == sorted(r.uid for r in recorded)  # every row, each exactly once
    assert registry.get_sample_value("blocktrust_store_write_errors_total") == 5
    assert registry.get_sample_value("blocktrust_store_buffered_results") == 0


def test_a_full_buffer_drops_the_oldest_and_counts_them(
    postgres_url: str, registry: CollectorRegistry, metrics: Metrics
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        store = open_store(f"postgresql://postgres@{proxy.address}/{database}", connect_timeout=2)
        store.migrate()
        writer = BufferedWriter(store, metrics, capacity=12)
        proxy.cut()
        rounds = [round_of(n) for n in range(3)]  # 15 results into room for 12
        for batch in rounds:
            writer.record(batch)
        assert len(writer) == 12
        proxy.restore()
        assert writer.flush()
        store.close()
    kept = [r.uid for batch in rounds for r in batch][3:]
    assert sorted(stored_uids(postgres_url)) == sorted(kept)
    assert registry.get_sample_value("blocktrust_store_dropped_results_total") == 3


def test_the_first_write_after_a_server_side_disconnect_succeeds(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle pooled connections killed while unused (server restart, failover) are replaced, not used."""
    store = open_store(postgres_url, pool_size=2)
    store.migrate()
    store.write_results(round_of(0))
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'blocktrust-exporter'"
        )
    admin.close()
    monkeypatch.setattr(_Pool, "_PING_AFTER", 0.0)  # the connection has been idle "long enough"
    try:
        store.write_results(round_of(1))  # must not raise StoreError
    finally:
        store.close()
    assert len(stored_uids(postgres_url)) == 10


def test_a_connection_that_breaks_drops_its_idle_siblings(postgres_url: str) -> None:
    """A short cut (shorter than the idle ping's threshold) breaks the connection in use and the
    idle ones alike: once one is seen broken, the others are not handed out after the recovery."""
    database = postgres_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        store = open_store(f"postgresql://postgres@{proxy.address}/{database}", pool_size=2, connect_timeout=2)
        store.migrate()
        assert store.try_acquire_leader("main")
        store.write_results(round_of(0))  # leaves one pooled connection idle
        proxy.cut()
        with pytest.raises(StoreError):
            store.try_acquire_leader("main")  # the leader session is found broken first
        proxy.restore()
        try:
            store.write_results(round_of(1))  # a recently idle, dead connection would fail this
            assert store.try_acquire_leader("main")
        finally:
            store.close()
    assert len(stored_uids(postgres_url)) == 10


def test_the_pool_drops_idle_connections_once_one_breaks(postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        pool = _Pool(lambda: psycopg2.connect(f"postgresql://postgres@{proxy.address}/{database}"), 2)
        with pool.connection(), pool.connection():
            pass  # two connections, both idle now
        proxy.cut()
        with pytest.raises(psycopg2.Error), pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        proxy.restore()
        try:
            with pool.connection() as conn, conn.cursor() as cur:  # not the other dead one
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
        finally:
            pool.close()


class _LostAcknowledgement:
    """The real store, except that the first write commits and then reports failure, as when the
    connection dies between COMMIT and its answer."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failures_left = 1

    def write_results(self, results: Sequence[CheckResult]) -> None:
        self.store.write_results(results)
        if self.failures_left:
            self.failures_left -= 1
            raise StoreError("connection lost after COMMIT")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_batch_committed_but_reported_failed_is_not_written_twice(
    backend: str, postgres_url: str, sqlite_url: str, metrics: Metrics
) -> None:
    store = open_store(postgres_url if backend == "postgresql" else sqlite_url)
    store.migrate()
    flaky = _LostAcknowledgement(store)
    writer = BufferedWriter(flaky, metrics, capacity=100)  # type: ignore[arg-type]
    first, second = round_of(0), round_of(1)
    writer.record(first)  # committed, but the writer believes it failed and keeps it queued
    assert len(writer) == 5
    writer.record(second)  # the retry writes the first batch again, with the second
    assert len(writer) == 0
    report = store.slo_report(T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert sum(row.total for row in report) == 10  # not 15
    store.close()

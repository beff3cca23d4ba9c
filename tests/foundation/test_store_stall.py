"""A store that hangs behaves exactly like a store that is down (issue 13, acceptance 4).

PostgreSQL is stalled by a TCP proxy that keeps accepting and stops forwarding (the exporter's
sessions go silent, new ones never get an answer); SQLite by another connection holding the
database's write lock. Check rounds run on an injected clock at their cadence while the store
hangs: they never wait for it (results are written by the writer thread, never by the round), the
results are buffered and the metrics say so, every store call ends by its deadline, and after the
recovery every result is in ``monitor_metrics`` exactly once. Join timeouts only detect a hang.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting.engine import AlertEngine
from exporter.clock import FakeClock
from exporter.config import AlertingSettings, Config
from exporter.metrics import Metrics
from exporter.probes.runner import CheckRound
from exporter.store import CheckResult, Store, StoreTimeouts, open_store
from exporter.store.buffer import BufferedWriter
from tests.alerting.kit import RecordingSink
from tests.support.http_receiver import HttpReceiver
from tests.support.tcp_proxy import TcpProxy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = 10.0  # checks.interval: the cadence the injected clock advances by
FAST = StoreTimeouts(
    call=0.5, statement=0.4, lock=0.3, pool=0.5, connect=2, idle_in_transaction=5, tcp_user=1, migration=5
)
HANG = 30.0  # seconds: whatever is still waiting after this is hung, whatever the machine's load
CHECKS = ("site.a", "site.b", "site.c")


@dataclass
class StalledStore:
    """A migrated store (``FAST`` deadlines) and the means to stall it and bring it back."""

    store: Store
    stall: Callable[[], None]
    restore: Callable[[], None]
    rows: Callable[[], list[tuple[str, str, datetime]]]  # (uid, check_name, ts) of monitor_metrics


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def stalled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StalledStore]:
    if request.param == "sqlite":
        yield from _sqlite(tmp_path / "store.db")
    else:
        yield from _postgresql(str(request.getfixturevalue("postgres_url")))


def _postgresql(url: str) -> Iterator[StalledStore]:
    database = url.rsplit("/", 1)[1]

    def rows() -> list[tuple[str, str, datetime]]:
        with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT uid, check_name, ts FROM monitor_metrics")
            return [(uid, name, ts.replace(tzinfo=UTC)) for uid, name, ts in cur.fetchall()]

    with TcpProxy("127.0.0.1", 5432) as proxy:
        store = open_store(f"postgresql://postgres@{proxy.address}/{database}", timeouts=FAST)
        store.migrate()
        try:
            yield StalledStore(store, proxy.stall, proxy.restore, rows)
        finally:
            proxy.restore()
            store.close()


def _sqlite(path: Path) -> Iterator[StalledStore]:
    store = open_store(f"sqlite:///{path}", timeouts=FAST)
    store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)

    def rows() -> list[tuple[str, str, datetime]]:
        with closing(sqlite3.connect(path)) as conn:
            found = conn.execute("SELECT uid, check_name, ts FROM monitor_metrics").fetchall()
        return [(uid, name, datetime.fromisoformat(ts).replace(tzinfo=UTC)) for uid, name, ts in found]

    def take_the_write_lock() -> None:
        holder.execute("BEGIN IMMEDIATE")

    try:
        yield StalledStore(store, take_the_write_lock, holder.rollback, rows)
    finally:
        if holder.in_transaction:
            holder.rollback()
        holder.close()
        store.close()


class CallLog:
    """The store under test, noting which thread made each write."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writers: set[str] = set()

    def write_results(self, results: Sequence[CheckResult]) -> None:
        self.writers.add(threading.current_thread().name)
        self._store.write_results(results)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _within_hang(call: Callable[[], Any]) -> Any:
    """``call()`` on a thread; fails the test if it is still running after ``HANG``."""
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(call()), daemon=True)
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), f"still running after {HANG:g}s: hung"
    return done[0]


def _eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded by ``HANG``) for something another thread does."""
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {HANG:g}s"
        time.sleep(0.02)


def _config(url: str) -> Config:
    return Config.model_validate(
        {
            "checks": {
                "interval": f"{INTERVAL:g}s",
                "timeout": "5s",
                "include_defaults": False,
                "items": [{"name": name, "url": f"{url}/{name}"} for name in CHECKS],
            },
            "listener": {"enabled": False},
        }
    )


def test_check_rounds_keep_their_cadence_on_a_hanging_store_and_every_result_lands_once(
    stalled: StalledStore, registry: CollectorRegistry
) -> None:
    clock = FakeClock(T0)
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test", now=lambda: clock.now().timestamp())
    spy = CallLog(stalled.store)
    writer = BufferedWriter(spy, metrics, capacity=1000, retry_seconds=0.1)
    writer.start()
    recorded: list[CheckResult] = []
    with HttpReceiver() as site:
        checks = CheckRound(_config(site.url), metrics=metrics, record=writer.record, clock=clock)
        try:

            def one_round() -> None:
                recorded.extend(_within_hang(checks.run_once))
                clock.advance(INTERVAL)

            for _ in range(2):
                one_round()
            _eventually(lambda: len(writer) == 0, "the results before the stall written")

            stalled.stall()
            for _ in range(4):
                one_round()  # each returns although the store answers nothing
            # The writer's attempts end by their deadline (no hang) and leave the results queued.
            _eventually(
                lambda: (registry.get_sample_value("blocktrust_store_write_errors_total") or 0) >= 2,
                "failed store writes counted",
            )
            assert len(writer) == 4 * len(CHECKS)
            assert registry.get_sample_value("blocktrust_store_buffered_results") == 4 * len(CHECKS)

            stalled.restore()
            for _ in range(2):
                one_round()
            _eventually(lambda: len(writer) == 0, "the buffered results written after the recovery")
        finally:
            writer.stop()
            checks.close()

    assert spy.writers == {"store-writer"}  # never the check round's thread
    assert registry.get_sample_value("blocktrust_store_buffered_results") == 0
    rows = stalled.rows()
    assert sorted(uid for uid, _, _ in rows) == sorted(r.uid for r in recorded)  # each exactly once
    # Every round of the cadence ran and was recorded at its time, the stalled ones included.
    assert sorted({ts for _, _, ts in rows}) == [T0 + timedelta(seconds=INTERVAL * k) for k in range(8)]
    assert all(ok for ok in (r.ok for r in recorded))


def test_the_alert_engine_on_a_hanging_store_notifies_from_memory_within_the_deadline(
    stalled: StalledStore, metrics: Metrics
) -> None:
    """The engine's ledger reaches the store only through it, so every call it makes has the
    store's deadline: a failing check is announced although the incident cannot be recorded."""
    clock = FakeClock(T0)
    sink = RecordingSink()
    engine = AlertEngine(stalled.store, sink, clock, metrics, AlertingSettings())
    failure = {"status_code": 503, "error": "bad_status", "reason": "status 503 not in [200]"}
    stalled.stall()
    for k in range(2):
        results = [CheckResult("site.a", False, 5, failure, T0 + timedelta(seconds=INTERVAL * k), f"fail-{k}")]
        _within_hang(partial(engine.observe, results))
        clock.advance(INTERVAL)
    assert sink.kinds() == [("site.a", "firing", False)]
    stalled.restore()
    clock.advance(60)  # past the ledger's back-off after the failed call
    _within_hang(engine.tick)
    [incident] = stalled.store.open_incidents()  # recorded once the store answered again
    assert (incident.check_name, incident.opened_at) == ("site.a", T0)

"""Every store call has a deadline (issue 13, kind 4): a database that hangs instead of failing
fails the call like a database that is down, with ``StoreError``, on both backends.

The stall on PostgreSQL is a TCP proxy that accepts and then stops forwarding (mid-session: the
pooled and leader sessions go silent; at connect: new sessions never get an answer); on SQLite it
is another connection holding the write lock. Deadlines are small here (``FAST``); the join
timeouts only detect a hang, they measure nothing.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from exporter.config import StoreSettings
from exporter.runtime import store_timeouts
from exporter.store import Checkpoint, CheckResult, EventRecord, Store, StoreError, StoreTimeouts, open_store
from exporter.store.base import Store as StoreProtocol
from exporter.store.postgres import _Pool, connect_kwargs
from exporter.store.sql import SqlStore
from exporter.store.sqlite import SqliteStore
from tests.support.tcp_proxy import TcpProxy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAST = StoreTimeouts(
    call=0.5, statement=0.4, lock=0.3, pool=0.5, connect=2, idle_in_transaction=5, tcp_user=1, migration=0.5
)
HANG = 30.0  # seconds: a call still running after this is hung, whatever the machine's load


def _result(check: str = "check.0") -> CheckResult:
    return CheckResult(check, True, 10, {"status_code": 200}, T0, uuid.uuid4().hex)


def _event() -> EventRecord:
    return EventRecord("Minted", {"args": {}}, 5, "0xb5", "0x" + uuid.uuid4().hex, 0)


# One call of every method of the Store protocol that reaches the database (close and
# release_leader only let go of connections and locks).
CALLS: dict[str, Callable[[Store], object]] = {
    "migrate": lambda s: s.migrate(),
    "ping": lambda s: s.ping(),
    "write_results": lambda s: s.write_results([_result()]),
    "latest_result": lambda s: s.latest_result("check.0"),
    "slo_report": lambda s: s.slo_report(T0 - timedelta(days=1), T0 + timedelta(days=1)),
    "delete_results_before": lambda s: s.delete_results_before(T0, 10),
    "load_checkpoint": lambda s: s.load_checkpoint("deadlines"),
    "commit_blocks": lambda s: s.commit_blocks("deadlines", [_event()], Checkpoint(5, "0xb5"), _result()),
    "rewind": lambda s: s.rewind("deadlines", Checkpoint(4, "0xb4")),
    "newest_event_block": lambda s: s.newest_event_block(),
    "quarantined_count": lambda s: s.quarantined_count(),
    "try_acquire_leader": lambda s: s.try_acquire_leader("deadlines"),
    "open_incidents": lambda s: s.open_incidents(),
    "open_incident": lambda s: s.open_incident("check.0", "warn", "title", "detail", T0),
    "resolve_incident": lambda s: s.resolve_incident(1, T0),
    "mark_notified": lambda s: s.mark_notified(1, T0),
    "latest_results": lambda s: s.latest_results(["check.0", "check.1"]),
    "result_buckets": lambda s: s.result_buckets(T0 - timedelta(days=1), T0 + timedelta(days=1), 3600),
    "event_counts": lambda s: s.event_counts(T0 - timedelta(days=1)),
    "claim_notice": lambda s: s.claim_notice(1, T0, None),
    "enqueue_notice": lambda s: s.enqueue_notice("slack", "check.0", {"state": "firing"}, T0, T0),
    "take_notice": lambda s: s.take_notice("slack", T0, T0 + timedelta(minutes=1)),
    "take_expired_notice": lambda s: s.take_expired_notice("slack", T0, T0, T0 + timedelta(minutes=1)),
    "notice_delivered": lambda s: s.notice_delivered(1),
    "notice_failed": lambda s: s.notice_failed(1, T0, "network: refused"),
    "later_notices": lambda s: s.later_notices("slack", "check.0", 1),
    "retry_notices_now": lambda s: s.retry_notices_now("slack", T0),
    "notice_abandoned": lambda s: s.notice_abandoned(1),
    "pending_notices": lambda s: s.pending_notices(),
    "channel_overrides": lambda s: s.channel_overrides("telegram", "chat_id"),
    "save_channel_override": lambda s: s.save_channel_override("telegram", "chat_id", "-1", "-100", T0),
    "events_after": lambda s: s.events_after(0, "Minted", 10),
    "existing_event_ids": lambda s: s.existing_event_ids([1, 2]),
    "newest_event_id": lambda s: s.newest_event_id(),
    "load_rule_state": lambda s: s.load_rule_state("failsafe"),
    "save_rule_state": lambda s: s.save_rule_state("failsafe", 0, 1, {"matches": []}, T0),
    "replica_heartbeat": lambda s: s.replica_heartbeat("replica-a", T0, T0 + timedelta(seconds=45)),
    "replica_leave": lambda s: s.replica_leave("replica-a"),
}


def test_the_deadline_table_covers_every_store_method() -> None:
    """A method added to the Store protocol must join CALLS, and so the tests below."""
    methods = {name for name, _ in inspect.getmembers(StoreProtocol, inspect.isfunction) if not name.startswith("_")}
    assert methods - {"close", "release_leader"} == set(CALLS)


def _outcome(call: Callable[[], object]) -> BaseException | object:
    """What ``call`` returned or raised, run on a thread that must end well before ``HANG``."""
    done: list[BaseException | object] = []

    def run() -> None:
        try:
            done.append(call())
        except BaseException as exc:  # handed to the test to judge
            done.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), f"still waiting on the store after {HANG:g}s: hung"
    return done[0]


@contextmanager
def _proxied_store(postgres_url: str, pool_size: int = 4) -> Iterator[tuple[Store, TcpProxy]]:
    setup = open_store(postgres_url)
    setup.migrate()
    setup.close()
    database = postgres_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        store = open_store(f"postgresql://postgres@{proxy.address}/{database}", timeouts=FAST, pool_size=pool_size)
        try:
            yield store, proxy
        finally:
            proxy.restore()
            store.close()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_call_on_a_postgresql_that_goes_silent_mid_session_fails_by_its_deadline(
    name: str, postgres_url: str
) -> None:
    with _proxied_store(postgres_url) as (store, proxy):
        assert store.try_acquire_leader("deadlines")  # a leader session, and one pooled connection
        store.ping()
        proxy.stall()
        outcome = _outcome(lambda: CALLS[name](store))
        assert isinstance(outcome, StoreError), outcome
        if name != "try_acquire_leader":  # that one gives its silent session up and reconnects
            assert "no answer within 0.5s" in str(outcome)
        proxy.restore()
        store.ping()  # the store serves again: no connection cut off at its deadline is reused
        store.write_results([_result()])


def test_every_call_on_a_postgresql_that_never_answers_a_connect_fails_by_its_deadline(postgres_url: str) -> None:
    with _proxied_store(postgres_url, pool_size=len(CALLS)) as (store, proxy):
        proxy.stall()
        outcomes: dict[str, BaseException | object] = {}

        def call(name: str) -> None:
            outcomes[name] = _outcome(lambda: CALLS[name](store))

        threads = [threading.Thread(target=call, args=(name,)) for name in CALLS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG + 5)
        assert {name: type(outcome) for name, outcome in outcomes.items()} == dict.fromkeys(CALLS, StoreError)
        proxy.restore()
        store.ping()


def test_waiting_for_a_free_pooled_connection_is_bounded(postgres_url: str) -> None:
    pool = _Pool(lambda: psycopg2.connect(postgres_url), 1, wait=0.2)
    try:
        with pool.connection():
            outcome = _outcome(lambda: pool.connection().__enter__())
        assert isinstance(outcome, StoreError)
        assert "no free connection within 0.2s" in str(outcome)
        with pool.connection() as conn, conn.cursor() as cur:  # the slot came back
            cur.execute("SELECT 1")
    finally:
        pool.close()


def test_a_lock_held_by_another_postgresql_session_fails_the_write_after_lock_timeout(postgres_url: str) -> None:
    store = open_store(postgres_url, timeouts=FAST)
    store.migrate()
    holder = psycopg2.connect(postgres_url)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE monitor_metrics IN ACCESS EXCLUSIVE MODE")
        outcome = _outcome(lambda: store.write_results([_result()]))
        assert isinstance(outcome, StoreError)
        assert "lock timeout" in str(outcome)
    finally:
        holder.rollback()
        holder.close()
        store.close()


def test_the_server_side_deadlines_reach_every_session(postgres_url: str) -> None:
    timeouts = store_timeouts(StoreSettings.model_validate({"statement_timeout": "7s", "lock_timeout": "3s"}))
    with closing(psycopg2.connect(postgres_url, **connect_kwargs(timeouts))) as conn, conn.cursor() as cur:
        settings = {}
        for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "tcp_user_timeout"):
            cur.execute(f"SHOW {name}")
            settings[name] = cur.fetchone()[0]
    assert settings == {
        "statement_timeout": "7s",
        "lock_timeout": "3s",
        "idle_in_transaction_session_timeout": "1min",
        "tcp_user_timeout": "30000",  # milliseconds, shown without a unit
    }


# ------------------------------------------------------------------------------------ SQLite
@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite store whose database another connection (another process, say) holds
    the write lock of."""
    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}", timeouts=FAST)
    store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield store
    finally:
        holder.rollback()
        holder.close()
        store.close()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_call_on_a_locked_sqlite_database_fails_by_its_busy_timeout(name: str, locked_sqlite: Store) -> None:
    outcome = _outcome(lambda: CALLS[name](locked_sqlite))
    if name == "try_acquire_leader":
        assert outcome is True  # a file lock of its own, taken without waiting: not the database's
    else:
        assert isinstance(outcome, StoreError), outcome
        assert "database is locked" in str(outcome)


def test_a_sqlite_statement_running_past_the_call_deadline_is_interrupted(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/store.db", timeouts=FAST)
    assert isinstance(store, SqlStore)
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n"

    def run_endless() -> None:
        with store._tx() as cur:  # the dialect's own deadline, with a statement that never ends
            cur.execute(endless)

    try:
        outcome = _outcome(run_endless)
        assert isinstance(outcome, StoreError)
        assert "no answer within 0.5s" in str(outcome)
        store.migrate()  # the connection is usable again
    finally:
        store.close()


def test_a_sqlite_call_waiting_behind_a_hung_one_gives_up_after_pool_timeout(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/store.db", timeouts=StoreTimeouts(call=HANG, pool=0.2))
    assert isinstance(store, SqliteStore)
    store.migrate()
    inside = threading.Event()
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n"

    def hold_the_connection() -> None:
        with store._tx() as cur:
            inside.set()
            cur.execute(endless)  # until interrupted below (else at its own long deadline)

    holder = threading.Thread(target=lambda: _outcome(hold_the_connection), daemon=True)
    holder.start()
    try:
        assert inside.wait(HANG)
        outcome = _outcome(store.ping)
        assert isinstance(outcome, StoreError)
        assert "no turn within 0.2s" in str(outcome)
    finally:
        assert store._conn is not None
        store._conn.interrupt()
        holder.join(HANG)
        store.close()

"""The store contract, once per backend (real PostgreSQL, real SQLite)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from exporter.store import Checkpoint, CheckResult, EventRecord, Store, open_store
from exporter.store.schema import LATEST_VERSION, MIGRATIONS

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

SPEC_COLUMNS = {
    "events": {"id", "type", "data", "timestamp", "block_number", "block_hash", "tx_hash", "log_index"},
    "monitor_metrics": {"id", "ts", "check_name", "ok", "latency_ms", "details", "uid"},
    "monitor_incidents": {
        "id",
        "opened_at",
        "resolved_at",
        "severity",
        "title",
        "detail",
        "check_name",
        "last_notified_at",
    },
    "listener_checkpoints": {"name", "block_number", "block_hash", "recent", "updated_at"},
    "schema_migrations": {"version", "description", "applied_at"},
}
SPEC_INDEXES = {
    "idx_monitor_metrics_ts",
    "idx_monitor_metrics_check_name",
    "uq_events_tx_log",
    "uq_monitor_incidents_open",
}


def _columns_and_indexes(url: str) -> tuple[dict[str, set[str]], set[str]]:
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        conn.close()
        return columns, indexes
    pg = psycopg2.connect(url)
    with pg.cursor() as cur:
        cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema='public'")
        pg_columns: dict[str, set[str]] = {}
        for table, column in cur.fetchall():
            pg_columns.setdefault(table, set()).add(column)
        cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname='public'")
        pg_indexes = {r[0] for r in cur.fetchall()}
    pg.close()
    return pg_columns, pg_indexes


def result(check: str = "api.health", ok: bool = True, latency: int = 100, at: datetime = T0) -> CheckResult:
    return CheckResult(check, ok, latency, {"status_code": 200 if ok else 503}, at, uuid.uuid4().hex)


def test_migration_creates_spec_tables_columns_and_indexes(store: Store, store_url: str) -> None:
    columns, indexes = _columns_and_indexes(store_url)
    for table, expected in SPEC_COLUMNS.items():
        assert expected <= columns.get(table, set()), table
    assert indexes >= SPEC_INDEXES


def test_migrating_twice_is_a_no_op(store: Store, store_url: str) -> None:
    before = _columns_and_indexes(store_url)
    assert store.migrate() == LATEST_VERSION
    assert _columns_and_indexes(store_url) == before


def test_concurrent_migrate_processes_both_succeed_on_postgresql(postgres_url: str) -> None:
    cmd = [sys.executable, "-m", "exporter", "migrate", "--config", "/dev/null"]
    env = {"DATABASE_URL": postgres_url, "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert all(f"schema version {LATEST_VERSION}" in out for out, _ in outputs)
    conn = psycopg2.connect(postgres_url)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM schema_migrations")
        assert cur.fetchone() == (len(MIGRATIONS),)  # each once (the numbers need not be contiguous)
    conn.close()


def test_migration_adopts_a_seed_database_with_duplicate_events(postgres_url: str) -> None:
    """The seed stored events without our columns and resumed inclusively (duplicates)."""
    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE events (id SERIAL PRIMARY KEY, type VARCHAR(50) NOT NULL, data JSONB NOT NULL, "
            "timestamp TIMESTAMP DEFAULT NOW())"
        )
        for _ in range(2):
            cur.execute("""INSERT INTO events (type, data) VALUES ('Minted',
                '{"blockNumber": 7, "blockHash": "0xb", "transactionHash": "0xt", "logIndex": 0, "args": {}}')""")
    store = open_store(postgres_url)
    store.migrate()
    store.close()
    with conn.cursor() as cur:
        cur.execute("SELECT block_number, tx_hash, log_index FROM events")
        assert cur.fetchall() == [(7, "0xt", 0)]
    conn.close()


def test_results_with_the_same_uid_are_written_once(store: Store) -> None:
    rows = [result(at=T0 + timedelta(seconds=i)) for i in range(5)]
    store.write_results(rows)
    store.write_results(rows[2:])
    report = store.slo_report(T0, T0 + timedelta(minutes=1))
    assert [(r.check_name, r.total) for r in report] == [("api.health", 5)]


def test_latest_result_is_the_newest_row_of_that_check(store: Store) -> None:
    assert store.latest_result("listener.tick") is None
    store.write_results(
        [
            result("listener.tick", at=T0),
            result("listener.tick", at=T0 + timedelta(seconds=15)),
            result("api.health", at=T0 + timedelta(seconds=30)),
        ]
    )
    latest = store.latest_result("listener.tick")
    assert latest is not None and latest.ts == T0 + timedelta(seconds=15)
    assert latest.details == {"status_code": 200}


def test_slo_report_matches_spec_sql_semantics(store: Store) -> None:
    # 8 successes with latencies 100..800 ms, 2 failures; one row outside the window; heartbeats excluded.
    rows = [result(latency=100 * (i + 1), at=T0 + timedelta(minutes=i)) for i in range(8)]
    rows += [
        result(ok=False, latency=5000, at=T0 + timedelta(minutes=9)),
        result(ok=False, latency=5000, at=T0 + timedelta(minutes=10)),
    ]
    rows += [result(at=T0 - timedelta(days=2)), result("listener.tick", at=T0)]
    store.write_results(rows)
    (row,) = store.slo_report(T0, T0 + timedelta(hours=1), exclude=["listener.tick"])
    assert (row.check_name, row.total, row.successes, row.failures) == ("api.health", 10, 8, 2)
    assert row.uptime_percent == pytest.approx(80.0)
    # PERCENTILE_CONT(0.99) over 100..800: position 0.99*7 = 6.93 -> 700 + 0.93*100
    assert row.p99_latency_ms == pytest.approx(793.0)
    assert row.last_failure == T0 + timedelta(minutes=10)


def test_events_are_stored_once_per_tx_and_log_index_with_the_checkpoint(store: Store) -> None:
    events = [EventRecord("Minted", {"args": {"tokenId": str(i)}}, 10 + i, f"0xb{i}", "0xtx", i) for i in range(3)]
    assert store.commit_blocks("main", events, Checkpoint(12, "0xb2")) == {"Minted": 3}
    assert store.commit_blocks("main", events, Checkpoint(12, "0xb2")) == {}
    checkpoint = store.load_checkpoint("main")
    assert checkpoint is not None and (checkpoint.block_number, checkpoint.block_hash) == (12, "0xb2")
    assert store.rewind("main", Checkpoint(10, "0xb0")) == 2
    assert store.commit_blocks("main", events, Checkpoint(12, "0xb2")) == {"Minted": 2}


def test_new_events_are_counted_by_type_when_some_were_stored_already(store: Store, store_url: str) -> None:
    """A re-fetched range mixing stored and new events of several types: each type's new ones."""
    minted = [EventRecord("Minted", {"i": i}, 10 + i, f"0xb{i}", f"0xtx{i}", 0) for i in range(3)]
    proofs = [EventRecord("ProofStored", {"i": i}, 10 + i, f"0xb{i}", f"0xtx{i}", 1) for i in range(3)]
    assert store.commit_blocks("main", [minted[0], proofs[1]], Checkpoint(11, "0xb1")) == {
        "Minted": 1,
        "ProofStored": 1,
    }
    interleaved = [event for pair in zip(minted, proofs, strict=True) for event in pair]
    assert store.commit_blocks("main", interleaved, Checkpoint(12, "0xb2")) == {"Minted": 2, "ProofStored": 2}
    # The new ones got their ids in the order they were given (the chain order), after the first two.
    assert _stored_columns(store_url, "block_number, log_index") == [
        (10, 0),
        (11, 1),
        (10, 1),
        (11, 0),
        (12, 0),
        (12, 1),
    ]


def _stored_columns(store_url: str, columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of every stored event, in id order."""
    query = f"SELECT {columns} FROM events ORDER BY id"
    if store_url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite:///") :])
        rows = conn.execute(query).fetchall()
        conn.close()
        return [tuple(row) for row in rows]
    pg = psycopg2.connect(store_url)
    with pg.cursor() as cur:
        cur.execute(query)
        result = [tuple(row) for row in cur.fetchall()]
    pg.close()
    return result


def test_one_open_incident_per_check(store: Store) -> None:
    first = store.open_incident("api.health", "crit", "API /health unavailable", "Status code: 503", T0)
    again = store.open_incident("api.health", "crit", "API /health unavailable", "Status code: 503", T0)
    assert first.id == again.id
    store.mark_notified(first.id, T0 + timedelta(minutes=1))
    (open_one,) = store.open_incidents()
    assert open_one.last_notified_at == T0 + timedelta(minutes=1)
    store.resolve_incident(first.id, T0 + timedelta(minutes=5))
    assert store.open_incidents() == []
    assert store.open_incident("api.health", "crit", "t", "d", T0 + timedelta(minutes=6)).id != first.id


def test_retention_deletes_in_batches(store: Store) -> None:
    store.write_results([result(at=T0 - timedelta(days=40, seconds=i)) for i in range(5)] + [result(at=T0)])
    assert store.delete_results_before(T0 - timedelta(days=30), 2) == 2
    assert store.delete_results_before(T0 - timedelta(days=30), 10) == 3
    assert store.delete_results_before(T0 - timedelta(days=30), 10) == 0


def test_only_one_leader_at_a_time(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        assert first.try_acquire_leader("main")
        assert first.try_acquire_leader("main")  # re-entrant for the holder
        assert not second.try_acquire_leader("main")
        first.release_leader("main")
        assert second.try_acquire_leader("main")
    finally:
        first.close()
        second.close()


def test_event_data_round_trips_exactly_with_awkward_characters(store: Store, store_url: str) -> None:
    awkward = {"args": {"docHash": 'back\\slash\ttab\nnewline\r "quote" ünï ✓', "n": "1" * 78}, "logIndex": 0}
    events = [EventRecord("ProofStored", awkward, 1, "0xb1", "0xtx", 0)]
    assert store.commit_blocks("main", events, Checkpoint(1, "0xb1")) == {"ProofStored": 1}
    if store_url.startswith("sqlite:///"):
        import json
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite:///") :])
        (data,) = conn.execute("SELECT data FROM events").fetchone()
        conn.close()
        assert json.loads(data) == awkward
    else:
        pg = psycopg2.connect(store_url)
        with pg.cursor() as cur:
            cur.execute("SELECT data FROM events")
            assert cur.fetchone() == (awkward,)
        pg.close()


def test_awkward_characters_outside_the_json_round_trip_too(store: Store, store_url: str) -> None:
    """Hashes come from the RPC node: a tab, newline or backslash in one must arrive as it was."""
    hashes = ["0xb\\t1", "0xb\t2", "0xb\n3", "0xb\\\\4", "0xb\r5"]
    events = [EventRecord("Minted", {"i": i}, i, h, f"0xtx{h}", i) for i, h in enumerate(hashes)]
    assert store.commit_blocks("main", events, Checkpoint(4, "0xb4")) == {"Minted": 5}
    assert _stored_columns(store_url, "block_number, block_hash, tx_hash, log_index") == [
        (i, h, f"0xtx{h}", i) for i, h in enumerate(hashes)
    ]
    assert store.commit_blocks("main", events, Checkpoint(4, "0xb4")) == {}  # the same keys came back


def test_a_commit_redone_for_duplicates_keeps_its_pooled_connection(postgres_url: str) -> None:
    store = open_store(postgres_url, pool_size=4)
    store.migrate()
    events = [EventRecord("Minted", {"i": i}, i, f"0xb{i}", f"0xtx{i}", 0) for i in range(3)]
    try:
        store.commit_blocks("main", events[:2], Checkpoint(1, "0xb1"))
        sessions = _exporter_sessions(postgres_url)
        for _ in range(3):  # each one fails its COPY on a duplicate and is redone
            store.commit_blocks("main", events, Checkpoint(2, "0xb2"))
        assert _exporter_sessions(postgres_url) == sessions and len(sessions) == 1  # the same backend
    finally:
        store.close()


def _exporter_sessions(postgres_url: str) -> set[int]:
    conn = psycopg2.connect(postgres_url)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'blocktrust-exporter'"
        )
        pids = {int(row[0]) for row in cur.fetchall()}
    conn.close()
    return pids


def test_postgresql_connections_are_reused_not_opened_per_write(postgres_url: str) -> None:
    store = open_store(postgres_url, pool_size=4)
    store.migrate()
    for n in range(20):
        store.write_results([result(at=T0 + timedelta(seconds=n))])
    assert len(_exporter_sessions(postgres_url)) == 1  # sequential writes share one pooled connection
    store.close()

"""Adoption day: a seed database (the old listener's ``events`` table, no checkpoint) is adopted without
blocking the API's readers, the listener starts after its newest block, and a migration the database
refuses ends the process with one line and exit 1 instead of a retry for ever."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import psycopg2.errors
import pytest

from exporter.demo.devchain import DevChain
from exporter.store import StoreError, open_store
from exporter.store.base import MigrationError, StoreTimeouts
from tests.listener.conftest import chain_keys, query, stored_checkpoint
from tests.listener.spec_abi import contracts_document
from tests.support.exporter_process import ExporterProcess, free_port, run_command
from tests.support.tcp_proxy import TcpProxy

SEED_ROWS = 200_000
SEED_DUPLICATES = 10  # the seed resumed from its newest block inclusive: its last rows came twice

SEED_TABLE = (
    "CREATE TABLE events (id SERIAL PRIMARY KEY, type VARCHAR(50) NOT NULL, data JSONB NOT NULL, "
    "timestamp TIMESTAMP DEFAULT NOW())"
)


def _execute(url: str, *statements: str) -> None:
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)


def _seed(url: str, newest_block: int) -> None:
    """The old listener's table: SEED_ROWS events over blocks 1..newest_block, the last ones twice."""
    row = (
        "SELECT 'Minted', jsonb_build_object('blockNumber', 1 + g % {blocks}, 'blockHash', '0xb', "
        "'transactionHash', '0x' || to_hex(g), 'logIndex', 0, 'args', jsonb_build_object('tokenId', g)) "
        "FROM generate_series({first}, {last}) g"
    )
    _execute(
        url,
        SEED_TABLE,
        "INSERT INTO events (type, data) " + row.format(blocks=newest_block, first=1, last=SEED_ROWS),
        "INSERT INTO events (type, data) "
        + row.format(blocks=newest_block, first=SEED_ROWS - SEED_DUPLICATES + 1, last=SEED_ROWS),
    )


class Reader:
    """The API reading ``events`` throughout, on its own session with ``lock_timeout = 1s``: PostgreSQL
    itself fails a read that waits for a lock longer than that. Counts the reads made while the
    adoption was still under way (the unique index not built yet)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self.blocked: list[str] = []
        self.reads_during_adoption = 0
        self.reads = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with closing(psycopg2.connect(self._url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET lock_timeout = '1s'")
                while not self._stop.is_set():
                    try:
                        cur.execute("SELECT id, type, data, timestamp FROM events ORDER BY id DESC LIMIT 50")
                        cur.fetchall()
                        cur.execute("SELECT COUNT(*) FROM events")
                        cur.fetchone()
                    except psycopg2.errors.LockNotAvailable as exc:
                        self.blocked.append(str(exc).strip())
                        continue
                    cur.execute("SELECT to_regclass('uq_events_tx_log') IS NULL")
                    row = cur.fetchone()
                    self.reads += 1
                    self.reads_during_adoption += bool(row and row[0])


def _checkpoint(url: str) -> int | None:
    """The stored checkpoint; None also while the schema is not there yet (the adoption runs first)."""
    try:
        return stored_checkpoint(url)
    except psycopg2.errors.UndefinedTable:
        return None


@pytest.fixture
def seeded(chain: DevChain, postgres_url: str) -> Iterator[int]:
    """A chain whose first events the seed stored (fake rows up to its newest block); returns that block."""
    chain.emit_each_event()
    newest = chain.head()
    _seed(postgres_url, newest)
    yield newest


@pytest.mark.slow
def test_a_large_seed_table_is_adopted_without_blocking_readers_and_ingestion_starts_after_it(
    chain: DevChain, contracts_path: Path, postgres_url: str, seeded: int, tmp_path: Path
) -> None:
    for _ in range(2):
        chain.emit_each_event()  # what the old listener never saw
    chain.mine(3)
    head = chain.head()
    config = tmp_path / "config.yaml"
    config.write_text(f"listener:\n  contracts_config: {contracts_path}\n  poll_interval: 1s\n")  # start_block: latest
    env = {"DATABASE_URL": postgres_url, "POLYGON_RPC_URL": chain.rpc_url}
    with Reader(postgres_url) as reader, ExporterProcess(["listen", "--config", str(config)], env=env) as proc:
        deadline = time.monotonic() + 60
        while _checkpoint(postgres_url) != head:
            assert proc.proc.poll() is None, proc.read_log()
            assert time.monotonic() < deadline, proc.read_log()
            time.sleep(0.1)
    assert reader.blocked == []  # never waited a second for a lock
    assert reader.reads_during_adoption > 0 and reader.reads > reader.reads_during_adoption
    after_seed = query(
        postgres_url,
        f"SELECT tx_hash, log_index, block_number, block_hash FROM events WHERE block_number > {seeded} "
        "ORDER BY block_number, log_index",
    )
    assert after_seed == [key for key in chain_keys(chain) if key[2] > seeded]  # all of them, none twice
    # The chain's events up to the seed's newest block were the seed's to store: not fetched again.
    assert query(postgres_url, f"SELECT COUNT(*) FROM events WHERE block_number <= {seeded}") == [(SEED_ROWS,)]
    assert query(postgres_url, "SELECT COUNT(*) FROM events WHERE tx_hash IS NULL") == [(0,)]


def test_a_listener_without_checkpoint_starts_after_the_newest_stored_event(postgres_url: str) -> None:
    seed_row = """INSERT INTO events (type, data) VALUES ('Minted',
        '{"blockNumber": 41, "blockHash": "0xb", "transactionHash": "0xt", "logIndex": 0}')"""
    _execute(postgres_url, SEED_TABLE, seed_row)
    store = open_store(postgres_url)
    try:
        store.migrate()
        assert store.newest_event_block() == 41
    finally:
        store.close()


@pytest.mark.parametrize("command", ["migrate", "listen"])
def test_a_migration_the_database_refuses_is_one_line_and_exit_1(
    postgres_url: str, tmp_path: Path, command: str
) -> None:
    # A seed table of another shape: data as text, where the seed's values are read as JSON.
    _execute(postgres_url, SEED_TABLE.replace("JSONB", "TEXT"), "INSERT INTO events (type, data) VALUES ('x', '{}')")
    (tmp_path / "contracts_config.json").write_text(json.dumps(contracts_document()))
    env = {"DATABASE_URL": postgres_url, "POLYGON_RPC_URL": f"http://127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"}
    args = [command, "--config", "/dev/null"] + (
        ["--listen", f"127.0.0.1:{free_port()}"] if command == "listen" else []
    )
    done = run_command(args, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if "migration failed" in line]
    assert len(errors) == 1 and "operator does not exist" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "retrying" not in done.stderr


def test_an_unreachable_store_is_not_taken_for_a_refused_migration() -> None:
    store = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeouts=StoreTimeouts(connect=2))
    with pytest.raises(StoreError) as raised:
        store.migrate()
    assert not isinstance(raised.value, MigrationError)
    store.close()


@pytest.mark.slow
def test_a_store_that_comes_back_and_refuses_the_migration_ends_the_process_with_exit_1(
    postgres_url: str, tmp_path: Path
) -> None:
    _execute(postgres_url, SEED_TABLE.replace("JSONB", "TEXT"), "INSERT INTO events (type, data) VALUES ('x', '{}')")
    (tmp_path / "contracts_config.json").write_text(json.dumps(contracts_document()))
    server = urlsplit(postgres_url)
    with TcpProxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        proxy.cut()  # unreachable at start: retried, as before
        env = {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}{server.path}",
            "POLYGON_RPC_URL": f"http://127.0.0.1:{free_port()}",
        }
        proc = ExporterProcess(["listen", "--config", "/dev/null"], env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 30
            while "store unreachable at start" not in proc.read_log():
                assert proc.proc.poll() is None and time.monotonic() < deadline, proc.read_log()
                time.sleep(0.05)
            proxy.restore()
            code = proc.proc.wait(timeout=30)  # the next store job migrates, is refused and ends the process
        finally:
            proc.stop()
    assert code == 1, proc.output
    assert len([line for line in proc.output.splitlines() if "migration failed" in line]) == 1, proc.output
    assert "Traceback" not in proc.output

"""Shared fixtures of the listener tests: a real anvil chain (exporter.demo.devchain), listener settings,
and the two sides every exactness check compares: the chain's logs and the ``events`` table."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from exporter.config import ListenerSettings
from exporter.demo.devchain import DevChain
from exporter.store.postgres import libpq_dsn

EventKey = tuple[str, int, int, str]  # (tx_hash, log_index, block_number, block_hash)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[DevChain]:
    with DevChain.start(tmp_path / "anvil") as started:
        yield started


@pytest.fixture
def contracts_path(chain: DevChain, tmp_path: Path) -> Path:
    return chain.write_contracts_config(tmp_path / "contracts_config.json")


def listener_settings(rpc_url: str, contracts_path: Path, **overrides: Any) -> ListenerSettings:
    values: dict[str, Any] = {
        "rpc_url": rpc_url,
        "contracts_config": str(contracts_path),
        "start_block": 0,
        "poll_interval": 1.0,
        "rpc_timeout": 5.0,
    }
    values.update(overrides)
    return ListenerSettings(**values)


def _chain_order(key: EventKey) -> tuple[int, int, str]:
    return key[2], key[1], key[0]


def chain_logs(chain: DevChain) -> list[dict[str, Any]]:
    """Every log the three contracts emitted on the current chain (one raw eth_getLogs)."""
    logs: list[dict[str, Any]] = chain.rpc(
        "eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest", "address": list(chain.addresses.values())}]
    )
    return logs


def chain_keys(chain: DevChain, up_to: int | None = None) -> list[EventKey]:
    keys = [
        (log["transactionHash"], int(log["logIndex"], 16), int(log["blockNumber"], 16), log["blockHash"])
        for log in chain_logs(chain)
    ]
    return sorted((k for k in keys if up_to is None or k[2] <= up_to), key=_chain_order)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Read the store directly (not through the Store under test)."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            return [tuple(row) for row in conn.execute(sql)]
    with closing(psycopg2.connect(libpq_dsn(url))) as pg, pg.cursor() as cur:
        cur.execute(sql)
        return [tuple(row) for row in cur.fetchall()]


def stored_keys(url: str) -> list[EventKey]:
    """The events table as keys, duplicates kept (so a duplicate fails the comparison)."""
    rows = query(url, "SELECT tx_hash, log_index, block_number, block_hash, data FROM events")
    keys = []
    for tx_hash, log_index, block_number, block_hash, data in rows:
        body = json.loads(data) if isinstance(data, str) else data
        # The SPEC's JSON and the added columns must agree.
        assert (body["transactionHash"], body["logIndex"], body["blockNumber"], body["blockHash"]) == (
            tx_hash,
            log_index,
            block_number,
            block_hash,
        )
        keys.append((tx_hash, int(log_index), int(block_number), block_hash))
    return sorted(keys, key=_chain_order)


def stored_checkpoint(url: str) -> int | None:
    rows = query(url, "SELECT block_number FROM listener_checkpoints WHERE name = 'listener'")
    return int(rows[0][0]) if rows else None


def wait_leader_lock_released(url: str, timeout: float = 10.0) -> None:
    """Wait until PostgreSQL has ended the backend of a dead connection (and so freed its advisory
    lock): the server notices a reset connection asynchronously, a few milliseconds later."""
    deadline = time.monotonic() + timeout
    sql = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    while query(url, sql)[0][0]:
        assert time.monotonic() < deadline, "a dead connection's advisory lock was never released"
        time.sleep(0.01)

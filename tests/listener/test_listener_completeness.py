"""No silent gaps: a load balancer whose eth_getLogs backend lags behind its headers, a provider
that drops one log from one answer. Real anvil behind a proxy of ours (tests/support/load_balancer.py)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.store import Store, open_store
from exporter.store.postgres import libpq_dsn
from tests.listener.conftest import chain_keys, chain_logs, listener_settings, stored_checkpoint, stored_keys
from tests.support.load_balancer import LoadBalancedNode

LAG = 5


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _execute(url: str, sql: str) -> None:
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url[len("sqlite:///") :])) as conn, conn:
            conn.execute(sql)
        return
    with closing(psycopg2.connect(libpq_dsn(url))) as pg, pg, pg.cursor() as cur:
        cur.execute(sql)


def test_blocks_a_lagging_getlogs_backend_left_empty_are_waited_for_then_stored_exactly(
    chain: DevChain,
    contracts_path: Path,
    store: Store,
    store_url: str,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain.mine(10)
    with LoadBalancedNode(chain.rpc_url, logs_lag=LAG) as balancer:
        listener = Listener(listener_settings(balancer.url, contracts_path), store, metrics, FakeClock())
        try:
            assert listener.poll_once().processed_block == chain.head()
            chain.emit_each_event()  # 7 blocks, one event each: the newest 5 not in getLogs answers yet
            head = chain.head()
            first_unserved = head - LAG + 1
            for _ in range(2):  # however often it polls, it never passes the first unconfirmed block
                outcome = listener.poll_once()
                assert outcome.processed_block == first_unserved - 1, outcome
                assert f"waiting for block {first_unserved}" in outcome.message
                assert stored_checkpoint(store_url) == first_unserved - 1
                assert stored_keys(store_url) == chain_keys(chain, up_to=first_unserved - 1)
                assert len(stored_keys(store_url)) == 7 - LAG
            assert _sample(metrics, "blocktrust_listener_bloom_rechecks_total", result="unconfirmed") == 2
            waiting = [r for r in caplog.records if f"block {first_unserved} may hold events" in r.getMessage()]
            assert len(waiting) == 1  # said once, not at every poll

            chain.mine(LAG)  # the lagging backend now has every event block
            outcome = listener.poll_once()
        finally:
            listener.close()
    assert outcome.processed_block == chain.head() and outcome.message == ""
    assert stored_keys(store_url) == chain_keys(chain)
    assert len(stored_keys(store_url)) == 7


def test_logs_a_range_answer_missed_are_read_by_block_hash_in_the_same_poll(
    chain: DevChain, contracts_path: Path, sqlite_url: str, metrics: Metrics
) -> None:
    chain.mine(10)
    store = open_store(sqlite_url)
    store.migrate()
    with LoadBalancedNode(chain.rpc_url, logs_lag=LAG, lag_hash_queries=False) as balancer:
        listener = Listener(listener_settings(balancer.url, contracts_path), store, metrics, FakeClock())
        try:
            listener.poll_once()
            chain.emit_each_event()
            outcome = listener.poll_once()
        finally:
            listener.close()
            store.close()
    assert outcome.processed_block == chain.head()
    assert stored_keys(sqlite_url) == chain_keys(chain)
    assert _sample(metrics, "blocktrust_listener_bloom_rechecks_total", result="recovered") == LAG


def test_without_the_bloom_check_the_same_load_balancer_loses_events_for_good(
    chain: DevChain, contracts_path: Path, sqlite_url: str, metrics: Metrics
) -> None:
    """What the check above prevents (and that the proxy really hides logs)."""
    chain.mine(10)
    store = open_store(sqlite_url)
    store.migrate()
    settings = listener_settings("http://unused", contracts_path, bloom_check=False, audit={"enabled": False})
    with LoadBalancedNode(chain.rpc_url, logs_lag=LAG) as balancer:
        settings = settings.model_copy(update={"rpc_url": listener_settings(balancer.url, contracts_path).rpc_url})
        listener = Listener(settings, store, metrics, FakeClock())
        try:
            listener.poll_once()
            chain.emit_each_event()
            listener.poll_once()
            chain.mine(LAG)
            listener.poll_once()
        finally:
            listener.close()
            store.close()
    assert stored_checkpoint(sqlite_url) == chain.head()
    assert len(stored_keys(sqlite_url)) == 7 - LAG


def test_the_audit_repairs_a_log_dropped_from_one_answer_exactly_once(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.emit_batch(2)  # 14 events in a few transactions: blocks holding several of our logs
    logs = chain_logs(chain)
    per_block = Counter(log["blockNumber"] for log in logs)
    # In a block with other logs of ours: its bloom matches and the block got logs, so only the audit can tell.
    victim = next(log for log in logs if per_block[log["blockNumber"]] > 1)
    victim_key = (victim["transactionHash"], int(victim["logIndex"], 16))
    chain.mine(70)  # anvil's finalized block is head - 64: the events are final
    expected = chain_keys(chain)
    clock = FakeClock()
    settings = listener_settings(chain.rpc_url, contracts_path, audit={"interval": "60s"})
    with LoadBalancedNode(chain.rpc_url) as balancer:
        balancer.drop_log(*victim_key)
        settings = settings.model_copy(update={"rpc_url": listener_settings(balancer.url, contracts_path).rpc_url})
        listener = Listener(settings, store, metrics, clock)
        try:
            listener.poll_once()
            assert balancer.dropped == [victim]
            assert stored_keys(store_url) == [k for k in expected if k[:2] != victim_key]
            assert _sample(metrics, "blocktrust_listener_missing_logs_total") == 0

            clock.advance(60)
            listener.poll_once()
            assert stored_keys(store_url) == expected
            assert _sample(metrics, "blocktrust_listener_missing_logs_total") == 1
            assert _sample(metrics, "blocktrust_listener_audited_logs_total") == len(expected)

            chain.mine(3)
            clock.advance(60)
            listener.poll_once()  # the next audit reads only newer blocks
        finally:
            listener.close()
    assert _sample(metrics, "blocktrust_listener_missing_logs_total") == 1
    assert _sample(metrics, "blocktrust_listener_audited_logs_total") == len(expected)

    # Audited again from scratch (its cursor gone, a restart): nothing is missing, nothing doubles.
    _execute(store_url, "DELETE FROM listener_checkpoints WHERE name = 'listener.audit'")
    clock.advance(60)
    again = Listener(listener_settings(chain.rpc_url, contracts_path, audit={"interval": "60s"}), store, metrics, clock)
    try:
        again.poll_once()
        clock.advance(60)
        again.poll_once()
    finally:
        again.close()
    assert _sample(metrics, "blocktrust_listener_audited_logs_total") == 2 * len(expected)
    assert _sample(metrics, "blocktrust_listener_missing_logs_total") == 1
    assert stored_keys(store_url) == expected

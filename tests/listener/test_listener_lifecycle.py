"""The listener's life around ingestion: a lagging node is waited for (not a reorg), a stop request
ends a poll promptly, ``on_recovered`` after a start or a halt, and the heartbeat/event metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.clock import FakeClock, SystemClock
from exporter.demo.devchain import DevChain
from exporter.listener import CHECKPOINT_NAME, Listener, PollOutcome
from exporter.metrics import Metrics
from exporter.store import Store, open_store
from exporter.store.base import Checkpoint
from tests.listener.conftest import chain_keys, listener_settings, query, stored_checkpoint, stored_keys
from tests.listener.lagging_node import LaggingNode
from tests.listener.scripted_node import Reply, ScriptedNode


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def _last_heartbeat(url: str) -> dict[str, Any]:
    rows = query(url, "SELECT details FROM monitor_metrics WHERE check_name = 'listener.tick' ORDER BY id")
    details = rows[-1][0]
    return dict(json.loads(details) if isinstance(details, str) else details)


def _heartbeat_count(url: str) -> int:
    return len(query(url, "SELECT id FROM monitor_metrics WHERE check_name = 'listener.tick'"))


@pytest.mark.parametrize("lag", [5, 70], ids=["within-max-reorg-depth", "beyond-max-reorg-depth"])
def test_a_node_behind_our_checkpoint_is_waited_for_not_taken_for_a_reorg(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics, lag: int
) -> None:
    chain.mine(80)
    for _ in range(3):
        chain.emit_each_event()  # the newest 21 blocks hold events: a rollback would delete some
    critical: list[str] = []
    with LaggingNode(chain.rpc_url) as node:
        listener = Listener(
            listener_settings(node.url, contracts_path),
            store,
            metrics,
            FakeClock(),
            on_critical=lambda title, detail: critical.append(title),
        )
        try:
            assert listener.poll_once().status == "ingested"
            stored = stored_keys(store_url)
            checkpoint = chain.head()
            assert stored_checkpoint(store_url) == checkpoint

            beats_before = _heartbeat_count(store_url)
            node.lag = lag  # a load-balanced provider answered from a lagging backend
            for _ in range(2):
                outcome = listener.poll_once()
                assert (outcome.status, outcome.reorgs) == ("idle", 0), outcome
                assert (outcome.head_block, outcome.processed_block) == (checkpoint - lag, checkpoint)
            assert stored_keys(store_url) == stored
            assert stored_checkpoint(store_url) == checkpoint
            # Waiting writes no heartbeat: a node that never catches up must turn listener.lag red.
            assert _heartbeat_count(store_url) == beats_before

            node.lag = 0
            chain.emit_each_event()
            assert listener.poll_once().status == "ingested"
        finally:
            listener.close()
    assert stored_keys(store_url) == chain_keys(chain)
    assert critical == []
    assert (_sample(metrics, "blocktrust_listener_reorgs_total") or 0) == 0


def test_a_real_fork_below_a_lagging_head_is_still_rolled_back(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.mine(20)
    chain.emit_each_event()
    with LaggingNode(chain.rpc_url) as node:
        listener = Listener(listener_settings(node.url, contracts_path), store, metrics, FakeClock())
        try:
            listener.poll_once()
            chain.reorg(5, [(call, 0) for call in chain.each_event_calls()])
            node.lag = 2  # the node lacks our checkpoint block but shows a different block 3 below it
            outcome = listener.poll_once()
            assert outcome.reorgs == 1
            assert stored_keys(store_url) == chain_keys(chain, up_to=chain.head() - 2)
            node.lag = 0
            listener.poll_once()
        finally:
            listener.close()
    assert stored_keys(store_url) == chain_keys(chain)


@pytest.fixture
def node() -> Iterator[ScriptedNode]:
    server = ScriptedNode()
    yield server
    server.close()


def _poll_in_thread(listener: Listener) -> tuple[threading.Thread, list[PollOutcome]]:
    results: list[PollOutcome] = []
    thread = threading.Thread(target=lambda: results.append(listener.poll_once()))
    thread.start()
    return thread, results


def _wait_until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_request_stop_cuts_a_back_off_wait_short(
    contracts_path: Path, store: Store, metrics: Metrics, node: ScriptedNode
) -> None:
    node.replies.extend(Reply(status=429, body=b"slow down", headers={"Retry-After": "30"}) for _ in range(5))
    listener = Listener(listener_settings(node.url, contracts_path), store, metrics, SystemClock())
    try:
        thread, results = _poll_in_thread(listener)
        _wait_until(lambda: node.requests, "the first RPC call")
        listener.request_stop()  # the poll now waits 30 s before its retry
        thread.join(timeout=10)  # a liveness bound, far below the 30 s back-off
        assert not thread.is_alive()
        assert results[0].status == "stopped"
        methods = [request["method"] for request in node.requests]  # the first poll's reads go out together
        assert methods and len(methods) == len(set(methods)), methods  # none retried after the stop
        assert listener.poll_once().status == "stopped"  # and no new poll starts
    finally:
        listener.close()


def test_request_stop_abandons_a_hanging_call_and_close_from_another_thread_is_safe(
    contracts_path: Path, store: Store, store_url: str, metrics: Metrics, node: ScriptedNode
) -> None:
    node.replies.append(Reply(delay=4.0, result="0x10"))  # answers only after 4 s (timeout 30 s)
    listener = Listener(listener_settings(node.url, contracts_path, rpc_timeout=30.0), store, metrics, SystemClock())
    thread, results = _poll_in_thread(listener)
    _wait_until(lambda: node.requests, "the eth_blockNumber call")
    listener.request_stop()
    listener.close()  # waits for the poll, which returns without the answer
    assert not thread.is_alive()
    assert results[0].status == "stopped"
    assert stored_checkpoint(store_url) is None


def test_request_stop_mid_backlog_leaves_whole_ranges_only(
    chain: DevChain, contracts_path: Path, postgres_url: str, metrics: Metrics
) -> None:
    for _ in range(6):
        chain.emit_batch(5)
        chain.mine(60)
    store = open_store(postgres_url)
    store.migrate()
    settings = listener_settings(chain.rpc_url, contracts_path, chunk_size=2, max_chunk_size=2, poll_interval=60)
    listener = Listener(settings, store, metrics, SystemClock())
    try:
        thread, results = _poll_in_thread(listener)
        _wait_until(lambda: (stored_checkpoint(postgres_url) or 0) >= 40, "ingesting")
        listener.request_stop()
        thread.join(timeout=10)
        # "ingested" if the stop came while a range was being committed, else "stopped".
        assert not thread.is_alive() and results[0].status in ("ingested", "stopped")
        kept = stored_checkpoint(postgres_url)
        assert kept is not None and kept < chain.head()
        assert stored_keys(postgres_url) == chain_keys(chain, up_to=kept)
    finally:
        listener.close()
        store.close()


def test_on_recovered_after_the_first_commit_and_after_a_halt_ends(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.mine(20)
    chain.emit_each_event()
    recovered: list[int] = []
    settings = listener_settings(chain.rpc_url, contracts_path, max_reorg_depth=4)
    listener = Listener(settings, store, metrics, FakeClock(), on_recovered=lambda: recovered.append(1))
    try:
        listener.poll_once()
        assert len(recovered) == 1  # once after the start
        chain.emit_each_event()
        listener.poll_once()
        assert len(recovered) == 1  # not on every commit

        ancestor = chain.head() - 10
        chain.reorg(6, [(call, 0) for call in chain.each_event_calls()])
        assert [listener.poll_once().status for _ in range(2)] == ["halted"] * 2
        assert len(recovered) == 1

        # The operator rewinds the checkpoint below the fork: ingestion resumes.
        header = chain.rpc("eth_getBlockByNumber", [hex(ancestor), False])
        store.rewind(CHECKPOINT_NAME, Checkpoint(ancestor, header["hash"]))
        assert listener.poll_once().status == "ingested"
        assert len(recovered) == 2
        listener.poll_once()
        assert len(recovered) == 2
    finally:
        listener.close()
    assert stored_keys(store_url) == chain_keys(chain)


def test_metrics_count_inserted_events_and_see_every_heartbeat(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.emit_each_event()
    chain.emit_each_event()
    listener = Listener(listener_settings(chain.rpc_url, contracts_path), store, metrics, FakeClock())
    try:
        assert _sample(metrics, "blocktrust_listener_lag_seconds") is None
        listener.poll_once()
        assert _sample(metrics, "blocktrust_listener_lag_seconds") is not None  # lag works in `listen` mode
        assert _sample(metrics, "blocktrust_listener_events_total", {"type": "Minted"}) == 2

        # Move the checkpoint back without deleting events: the re-fetched range is all duplicates.
        header = chain.rpc("eth_getBlockByNumber", ["0x1", False])
        store.commit_blocks(CHECKPOINT_NAME, [], Checkpoint(1, header["hash"]))
        assert listener.poll_once().events == 0
        assert _sample(metrics, "blocktrust_listener_events_total", {"type": "Minted"}) == 2
    finally:
        listener.close()
    assert stored_keys(store_url) == chain_keys(chain)

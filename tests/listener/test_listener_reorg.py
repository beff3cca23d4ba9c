"""Reorgs on a real anvil chain (anvil_reorg) while following the head with 0 confirmations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.store import Store
from tests.listener.conftest import chain_keys, listener_settings, stored_checkpoint, stored_keys


def _reorgs(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("blocktrust_listener_reorgs_total") or 0.0


@pytest.mark.parametrize("depth", [1, 5, 30])
def test_reorg_removes_orphaned_events_and_ingests_the_new_branch(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics, depth: int
) -> None:
    chain.mine(40)
    chain.emit_each_event()  # 7 blocks, one event each
    chain.mine(max(0, depth - 7))  # so the orphaned blocks hold events whatever the depth
    critical: list[tuple[str, str]] = []
    listener = Listener(
        listener_settings(chain.rpc_url, contracts_path),
        store,
        metrics,
        FakeClock(),
        on_critical=lambda title, detail: critical.append((title, detail)),
    )
    try:
        assert listener.poll_once().status == "ingested"
        before = stored_keys(store_url)
        head = chain.head()
        orphaned = {k for k in before if k[2] > head - depth}
        assert orphaned, "the test must orphan at least one stored event"

        replacement = chain.each_event_calls()
        chain.reorg(depth, [(call, i % depth) for i, call in enumerate(replacement)])
        assert chain.head() == head

        outcome = listener.poll_once()
        after = stored_keys(store_url)
        assert outcome.status == "ingested" and outcome.reorgs == 1
        assert _reorgs(metrics) == 1
        assert after == chain_keys(chain)
        assert not orphaned & set(after)  # orphaned events gone
        new_branch = [k for k in after if k[2] > head - depth]
        # Every replacement call landed (revokeProof right after its registerProof too), none was kept.
        assert len(new_branch) == len(replacement) and not set(new_branch) & set(before)
        assert stored_checkpoint(store_url) == head

        chain.emit_each_event()  # and it keeps following the new branch
        assert listener.poll_once().reorgs == 0
        assert stored_keys(store_url) == chain_keys(chain)
        assert _reorgs(metrics) == 1
    finally:
        listener.close()
    assert critical == []


def test_reorg_deeper_than_the_maximum_halts_and_raises_a_critical_incident(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.mine(20)
    chain.emit_each_event()
    critical: list[tuple[str, str]] = []
    settings = listener_settings(chain.rpc_url, contracts_path, max_reorg_depth=4)
    listener = Listener(
        settings, store, metrics, FakeClock(), on_critical=lambda title, detail: critical.append((title, detail))
    )
    try:
        listener.poll_once()
        stored = stored_keys(store_url)
        checkpoint = stored_checkpoint(store_url)
        chain.reorg(6, [(call, 0) for call in chain.each_event_calls()])
        chain.emit_each_event()  # the new branch grows: still nothing may be ingested

        for _ in range(3):
            outcome = listener.poll_once()
            assert outcome.status == "halted"
            assert "max_reorg_depth" in outcome.message or "4 blocks" in outcome.message
        assert len(critical) == 1  # raised once, not on every poll
        title, detail = critical[0]
        assert "deeper than max_reorg_depth" in title
        assert f"block {checkpoint}" in detail
        assert stored_checkpoint(store_url) == checkpoint  # never silent corruption
        assert stored_keys(store_url) == stored
        assert _reorgs(metrics) == 0
    finally:
        listener.close()


def test_reorg_exactly_at_the_maximum_depth_is_rolled_back(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.mine(20)
    chain.emit_each_event()
    listener = Listener(
        listener_settings(chain.rpc_url, contracts_path, max_reorg_depth=4), store, metrics, FakeClock()
    )
    try:
        listener.poll_once()
        chain.reorg(4, [(call, 3) for call in chain.each_event_calls()])
        assert listener.poll_once().reorgs == 1
        assert stored_keys(store_url) == chain_keys(chain)
    finally:
        listener.close()


def test_chain_rolled_back_below_the_checkpoint_is_handled_as_a_reorg(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.mine(10)
    snap = chain.snapshot()
    chain.emit_each_event()
    listener = Listener(listener_settings(chain.rpc_url, contracts_path), store, metrics, FakeClock())
    try:
        listener.poll_once()
        chain.revert(snap)  # the chain is now shorter than our checkpoint
        chain.mine(2)
        outcome = listener.poll_once()
        assert outcome.reorgs == 1
        assert stored_keys(store_url) == chain_keys(chain) == []
        assert stored_checkpoint(store_url) == chain.head()
    finally:
        listener.close()


def test_a_failing_critical_callback_keeps_the_halt_and_is_retried(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.mine(10)
    chain.emit_each_event()
    calls: list[str] = []

    def on_critical(title: str, detail: str) -> None:
        calls.append(title)
        if len(calls) == 1:
            raise RuntimeError("alert store down")

    settings = listener_settings(chain.rpc_url, contracts_path, max_reorg_depth=2)
    listener = Listener(settings, store, metrics, FakeClock(), on_critical=on_critical)
    try:
        listener.poll_once()
        checkpoint = stored_checkpoint(store_url)
        chain.reorg(5, [(call, 0) for call in chain.each_event_calls()])
        assert [listener.poll_once().status for _ in range(3)] == ["halted"] * 3
        assert len(calls) == 2  # failed once, raised again at the next poll, then not repeated
        assert stored_checkpoint(store_url) == checkpoint
    finally:
        listener.close()


@pytest.fixture
def polygon_chain(tmp_path: Path) -> Iterator[DevChain]:
    """anvil answering eth_chainId 137, keeping enough past states for a 200-block anvil_reorg."""
    with DevChain.start(tmp_path / "anvil-137", chain_id=137, state_history=256) as started:
        yield started


@pytest.mark.anvil
@pytest.mark.parametrize("depth", [100, 200])
def test_polygon_reorgs_of_100_and_200_blocks_are_rolled_back_with_the_default_depth(
    polygon_chain: DevChain, tmp_path: Path, store: Store, store_url: str, metrics: Metrics, depth: int
) -> None:
    chain = polygon_chain
    contracts = chain.write_contracts_config(tmp_path / "contracts_config.json")
    chain.mine(depth)
    chain.emit_each_event()
    chain.mine(depth - 20)  # the events lie inside the blocks the reorg replaces
    critical: list[str] = []
    listener = Listener(
        listener_settings(chain.rpc_url, contracts),  # max_reorg_depth not set: by chain id
        store,
        metrics,
        FakeClock(),
        on_critical=lambda title, _detail: critical.append(title),
    )
    try:
        assert listener.poll_once().processed_block == chain.head()
        head = chain.head()
        orphaned = {k for k in stored_keys(store_url) if k[2] > head - depth}
        assert len(orphaned) == 7
        chain.reorg(depth, [(call, 10 + i) for i, call in enumerate(chain.each_event_calls())])
        outcome = listener.poll_once()
    finally:
        listener.close()
    assert critical == [] and outcome.status == "ingested" and outcome.reorgs == 1, outcome
    assert _reorgs(metrics) == 1
    assert stored_keys(store_url) == chain_keys(chain)
    assert not orphaned & set(stored_keys(store_url)) and len(stored_keys(store_url)) == 7
    assert stored_checkpoint(store_url) == head

"""The benchmark backlog builder puts exactly the promised events and blocks on the chain, and a
state dump loads back the same chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.listener_backlog import BacklogSpec, count_logs, start_backlog_chain

pytestmark = pytest.mark.anvil

SMALL = BacklogSpec(rounds=3, per_type=2, blocks_per_round=40)


def test_backlog_has_the_spec_events_and_blocks(tmp_path: Path) -> None:
    chain, backlog = start_backlog_chain(tmp_path, SMALL)
    with chain:
        assert (backlog.events, backlog.blocks) == (3 * 2 * 7, 3 * 40)
        assert backlog.last_block == chain.head()
        assert count_logs(chain, backlog) == backlog.events
        before = chain.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(backlog.first_block - 1)}])
        assert before == []


def test_a_dumped_backlog_loads_back_identical_and_a_new_spec_rebuilds(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    chain, built = start_backlog_chain(tmp_path / "a", SMALL, state=state)
    with chain:
        head_hash = chain.rpc("eth_getBlockByNumber", ["latest", False])["hash"]
    assert state.exists()
    chain, loaded = start_backlog_chain(tmp_path / "b", SMALL, state=state)
    with chain:
        assert loaded == built
        assert chain.rpc("eth_getBlockByNumber", ["latest", False])["hash"] == head_hash
        assert count_logs(chain, loaded) == built.events
    bigger = BacklogSpec(rounds=4, per_type=2, blocks_per_round=40)
    chain, rebuilt = start_backlog_chain(tmp_path / "c", bigger, state=state)
    with chain:
        assert count_logs(chain, rebuilt) == bigger.events == 56

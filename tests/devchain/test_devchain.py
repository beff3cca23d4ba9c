"""DevChain: anvil start/stop, contract config, mining, snapshots and reorgs on a real anvil."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from exporter.demo.devchain import DevChain, DevChainError, anvil_path, create_address, load_artifacts

pytestmark = pytest.mark.anvil


def block_hash(chain: DevChain, number: int) -> str:
    block = chain.rpc("eth_getBlockByNumber", [hex(number), False])
    return str(block["hash"])


def count_logs(chain: DevChain) -> int:
    return len(chain.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}]))


def test_anvil_path_is_the_native_pinned_binary() -> None:
    path = anvil_path()
    assert path.is_file() and os.access(path, os.X_OK)


def test_anvil_path_names_the_set_up_step_when_tools_are_missing(tmp_path: Path) -> None:
    with pytest.raises(DevChainError, match="npm ci"):
        anvil_path(tmp_path)


def test_start_deploys_the_three_contracts_and_stop_ends_anvil(tmp_path: Path) -> None:
    chain = DevChain.start(tmp_path)
    for address in chain.addresses.values():
        assert chain.rpc("eth_getCode", [address, "latest"]) not in ("0x", "0x0")
    assert sorted(chain.addresses) == ["FailSafe", "IdentityNFT", "ProofRegistry"]
    chain.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(chain.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=2)


def test_two_chains_get_different_free_ports(tmp_path: Path) -> None:
    with DevChain.start(tmp_path / "a") as first, DevChain.start(tmp_path / "b") as second:
        assert first.rpc_url != second.rpc_url
        first.mine(5)
        assert second.head() == first.head() - 5


def test_contracts_config_has_address_and_abi_per_contract(chain: DevChain, tmp_path: Path) -> None:
    path = chain.write_contracts_config(tmp_path / "contracts_config.json")
    config = json.loads(path.read_text())
    artifacts = load_artifacts()
    assert {name: entry["address"] for name, entry in config.items()} == chain.addresses
    assert all(config[name]["abi"] == artifacts[name]["abi"] for name in config)


def test_mine_snapshot_and_revert(chain: DevChain) -> None:
    start = chain.head()
    snap = chain.snapshot()
    chain.mine(25)
    chain.emit_each_event()
    assert chain.head() == start + 25 + 7
    chain.revert(snap)
    assert chain.head() == start
    assert count_logs(chain) == 0


def test_reorg_replaces_blocks_drops_their_events_and_adds_the_given_ones(chain: DevChain) -> None:
    chain.emit_each_event()
    head = chain.head()
    old_hashes = [block_hash(chain, n) for n in range(head - 4, head + 1)]
    replacement = chain.each_event_calls()[:2]  # mint + reissue: one event each
    chain.reorg(3, [(replacement[0], 0), (replacement[1], 2)])
    assert chain.head() == head
    new_hashes = [block_hash(chain, n) for n in range(head - 4, head + 1)]
    assert new_hashes[:2] == old_hashes[:2]
    assert all(new != old for new, old in zip(new_hashes[2:], old_hashes[2:], strict=True))
    assert count_logs(chain) == 7 - 3 + 2
    parent = chain.rpc("eth_getBlockByNumber", [hex(head - 2), False])["parentHash"]
    assert parent == old_hashes[1]


def test_revert_of_an_unknown_snapshot_is_an_error(chain: DevChain) -> None:
    with pytest.raises(DevChainError):
        chain.revert("0x99")


def test_create_address_matches_the_deployment(chain: DevChain) -> None:
    expected = [create_address(chain.account, nonce) for nonce in range(3)]
    assert expected == [chain.addresses[n] for n in ("IdentityNFT", "ProofRegistry", "FailSafe")]


def test_dumped_state_loads_with_contracts_blocks_and_logs(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with DevChain.start(tmp_path / "dump", dump_state=state) as original:
        original.emit_batch(10)
        original.mine(100)
        head, logs, addresses = original.head(), count_logs(original), original.addresses
    with DevChain.start(tmp_path / "load", load_state=state) as loaded:
        assert (loaded.head(), count_logs(loaded), loaded.addresses) == (head, logs, addresses)
        loaded.emit_each_event()
        assert count_logs(loaded) == logs + 7


def test_interval_mining_still_waits_for_the_receipt(tmp_path: Path) -> None:
    with DevChain.start(tmp_path, block_time=0.2) as chain:
        tx_hash = chain.send(chain.each_event_calls()[0])
        receipt = chain.rpc("eth_getTransactionReceipt", [tx_hash])
        assert receipt["status"] == "0x1" and len(receipt["logs"]) == 1


def test_reorg_depth_is_bounded_by_the_kept_state_history(tmp_path: Path) -> None:
    with DevChain.start(tmp_path, state_history=8) as chain:
        chain.mine(40)
        head = chain.head()
        with pytest.raises(DevChainError, match="anvil_reorg"):
            chain.reorg(20)
        chain.reorg(5)
        assert chain.head() == head

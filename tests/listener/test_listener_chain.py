"""The listener on a real anvil chain: exact decoding, heartbeats, start block, finality modes, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode
from eth_utils.crypto import keccak
from web3 import Web3

from exporter.clock import FakeClock
from exporter.config import ConfigError, ListenerSettings
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.store import Store
from tests.listener.conftest import chain_keys, listener_settings, query, stored_keys

SPEC_TYPES = {
    "MintingEvent": "Minted",
    "CancelamentoEvent": "Canceled",
    "CancelamentoSimples": "CanceledSimple",
    "ProofRegistered": "ProofStored",
    "ProofRevoked": "ProofRevoked",
    "ProofStoredDual": "ProofStoredDual",
    "FailsafeEvent": "FailSafeTriggered",
}


def _as_spec_json(value: Any) -> Any:
    """web3's decoded value in SPEC §2's JSON form (web3 is the independent oracle here)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _oracle(chain: DevChain) -> dict[tuple[str, int], tuple[str, dict[str, Any]]]:
    """(tx_hash, log_index) -> (type, args) as web3.py decodes the chain's logs."""
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    expected = {}
    for name, address in chain.addresses.items():
        contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=chain.artifacts[name]["abi"])
        abi = chain.artifacts[name]["abi"]
        for event in (contract.events[item["name"]] for item in abi if item["type"] == "event"):
            for entry in event.get_logs(from_block=0):
                key = ("0x" + entry["transactionHash"].hex().removeprefix("0x"), entry["logIndex"])
                expected[key] = (SPEC_TYPES[entry["event"]], {k: _as_spec_json(v) for k, v in entry["args"].items()})
    return expected


def _rows(url: str) -> dict[tuple[str, int], tuple[str, dict[str, Any]]]:
    rows = query(url, "SELECT type, data FROM events")
    out = {}
    for event_type, data in rows:
        body = json.loads(data) if isinstance(data, str) else data
        out[(body["transactionHash"], body["logIndex"])] = (event_type, body)
    return out


def test_all_seven_event_types_are_stored_with_exactly_decoded_args(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    calls = chain.each_event_calls()
    for call in calls:
        chain.send(call)
    listener = Listener(listener_settings(chain.rpc_url, contracts_path), store, metrics, FakeClock())
    try:
        outcome = listener.poll_once()
    finally:
        listener.close()
    assert outcome.status == "ingested" and outcome.events == 7

    rows = _rows(store_url)
    expected = _oracle(chain)
    assert len(expected) == 7
    assert {key: (t, body["args"]) for key, (t, body) in rows.items()} == expected
    assert sorted(t for t, _ in rows.values()) == sorted(SPEC_TYPES.values())

    # Spot checks against what was sent, independent of any decoder.
    by_type = {t: body for t, body in rows.values()}
    (doc,) = decode(["string"], bytes.fromhex(calls[3].data[10:]))
    doc_hash = "0x" + keccak(text=doc).hex()
    assert by_type["ProofStored"]["args"]["docHash"] == doc_hash  # indexed string: its topic hash
    assert by_type["ProofRevoked"]["args"]["by"] == chain.account
    dual = by_type["ProofStoredDual"]["args"]
    assert dual["docHash"] == doc_hash  # bytes32 indexed: the value itself
    assert dual["pgpFingerprint"] == doc_hash[:42]  # bytes20 as 0x-hex
    assert dual["pgpSigHash"] == "0x" + keccak(text=doc + "sig").hex()
    assert isinstance(dual["nftId"], str) and isinstance(dual["timestamp"], str)
    for body in by_type.values():
        assert body["address"] in chain.addresses.values()
        assert isinstance(body["blockNumber"], int) and isinstance(body["logIndex"], int)
    for event_type in SPEC_TYPES.values():
        assert metrics.registry.get_sample_value("blocktrust_listener_events_total", {"type": event_type}) == 1
    assert metrics.registry.get_sample_value("blocktrust_listener_processed_block") == chain.head()
    assert metrics.registry.get_sample_value("blocktrust_listener_head_block") == chain.head()
    get_logs = {"method": "eth_getLogs", "outcome": "success"}
    assert (metrics.registry.get_sample_value("blocktrust_listener_rpc_requests_total", get_logs) or 0) >= 1


def test_heartbeat_is_written_every_poll_even_without_events(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.emit_each_event()
    clock = FakeClock()
    listener = Listener(listener_settings(chain.rpc_url, contracts_path), store, metrics, clock)
    try:
        assert listener.poll_once().status == "ingested"
        head = chain.head()
        for _ in range(2):
            clock.advance(15)
            assert listener.poll_once().status == "idle"
        chain.mine(4)
        clock.advance(15)
        assert listener.poll_once().status == "ingested"  # empty blocks still advance the checkpoint
    finally:
        listener.close()
    beats = query(store_url, "SELECT details, ts FROM monitor_metrics WHERE check_name = 'listener.tick' ORDER BY id")
    details = [json.loads(d) if isinstance(d, str) else d for d, _ in beats]
    assert len(details) == 4
    assert details[1] == {"processed_block": head, "head_block": head, "blocks_behind": 0}
    assert details[-1] == {"processed_block": head + 4, "head_block": head + 4, "blocks_behind": 0}
    assert len({str(ts) for _, ts in beats}) == 4  # one per poll, at the (fake) poll time
    assert stored_keys(store_url) == chain_keys(chain)


def test_start_block_latest_skips_history_and_resumes_after_restart(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    chain.emit_each_event()  # history before deployment of the listener: not ingested
    settings = listener_settings(chain.rpc_url, contracts_path, start_block="latest")
    first = Listener(settings, store, metrics, FakeClock())
    try:
        outcome = first.poll_once()
    finally:
        first.close()
    start = chain.head()
    assert outcome.processed_block == start
    assert stored_keys(store_url) == chain_keys(chain)[-1:]  # the head block itself (one event) only
    chain.emit_each_event()
    second = Listener(settings, store, metrics, FakeClock())  # a restart: resumes at checkpoint + 1
    try:
        second.poll_once()
    finally:
        second.close()
    assert stored_keys(store_url) == [k for k in chain_keys(chain) if k[2] >= start]


@pytest.mark.parametrize(
    ("overrides", "lag"),
    [({"confirmations": 5}, 5), ({"follow": "safe"}, None), ({"follow": "finalized", "confirmations": 2}, None)],
    ids=["head-minus-5", "safe", "finalized-minus-2"],
)
def test_finality_modes_stop_at_the_followed_block(
    chain: DevChain,
    contracts_path: Path,
    store: Store,
    store_url: str,
    metrics: Metrics,
    overrides: dict[str, Any],
    lag: int | None,
) -> None:
    for _ in range(3):
        chain.emit_each_event()
        chain.mine(30)
    listener = Listener(listener_settings(chain.rpc_url, contracts_path, **overrides), store, metrics, FakeClock())
    try:
        outcome = listener.poll_once()
    finally:
        listener.close()
    if lag is None:
        tag = overrides["follow"]
        lag = chain.head() - int(chain.rpc("eth_getBlockByNumber", [tag, False])["number"], 16)
        lag += overrides.get("confirmations", 0)
    followed = chain.head() - lag
    assert 0 < followed < chain.head()
    assert outcome.processed_block == followed
    assert stored_keys(store_url) == chain_keys(chain, up_to=followed)
    beat = query(store_url, "SELECT details FROM monitor_metrics WHERE check_name = 'listener.tick'")[-1][0]
    beat = json.loads(beat) if isinstance(beat, str) else beat
    assert beat == {"processed_block": followed, "head_block": chain.head(), "blocks_behind": lag}


def test_rpc_unreachable_is_one_error_outcome_not_an_exception(
    contracts_path: Path, store: Store, store_url: str, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    settings = listener_settings("http://127.0.0.1:9/v3/secret-key", contracts_path)
    listener = Listener(settings, store, metrics, clock)
    try:
        outcome = listener.poll_once()
    finally:
        listener.close()
    assert outcome.status == "error"
    assert "connection failed" in outcome.message
    assert len(clock.slept) == 4  # retried with back-off on the injected clock, then gave up
    assert query(store_url, "SELECT count(*) FROM listener_checkpoints")[0][0] == 0
    assert "secret-key" not in caplog.text
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "checkpoint kept" in errors[0].getMessage()


def test_listener_needs_an_rpc_url(contracts_path: Path, store: Store, metrics: Metrics) -> None:
    with pytest.raises(ConfigError, match="POLYGON_RPC_URL"):
        Listener(ListenerSettings(contracts_config=str(contracts_path)), store, metrics, FakeClock())


class _SlowClock(FakeClock):
    """Every monotonic reading finds 3 s passed: a backlog that takes long to work off."""

    def monotonic(self) -> float:
        self.advance(3.0)
        return super().monotonic()


def test_a_long_backlog_is_worked_off_over_several_time_boxed_polls(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    for _ in range(5):
        chain.emit_each_event()
        chain.mine(20)
    settings = listener_settings(chain.rpc_url, contracts_path, chunk_size=10, max_chunk_size=10, poll_interval=1)
    listener = Listener(settings, store, metrics, _SlowClock())
    try:
        outcomes = [listener.poll_once() for _ in range(40)]
    finally:
        listener.close()
    processed = [o.processed_block or 0 for o in outcomes]
    assert all(o.processed_block is not None for o in outcomes)
    assert processed[0] < chain.head()  # the first poll stopped early
    assert processed == sorted(processed)  # ...and each next one went on from there
    assert processed[-1] == chain.head()
    assert stored_keys(store_url) == chain_keys(chain)

"""The test contracts emit the seven SPEC §1 events with exactly the SPEC signatures."""

from __future__ import annotations

import re
from typing import Any

import pytest
from eth_utils.crypto import keccak

from exporter.demo.devchain import DevChain, load_artifacts

pytestmark = pytest.mark.anvil

# Copied from SPEC §1 on purpose: the test must fail if a contract drifts from the spec.
SPEC_EVENTS = {
    "IdentityNFT": [
        "MintingEvent(uint256 indexed tokenId, address indexed user)",
        "CancelamentoEvent(uint256 indexed oldTokenId, uint256 indexed newTokenId)",
        "CancelamentoSimples(uint256 indexed tokenId)",
    ],
    "ProofRegistry": [
        "ProofRegistered(string indexed docHash, address indexed signer, uint256 timestamp)",
        "ProofRevoked(string indexed docHash, address indexed by, uint256 timestamp)",
        "ProofStoredDual(bytes32 indexed docHash, address indexed signer, bytes20 pgpFingerprint,"
        " bytes32 pgpSigHash, uint256 nftId, uint256 timestamp)",
    ],
    "FailSafe": ["FailsafeEvent(address indexed user, uint256 indexed tokenId, uint256 timestamp)"],
}


def parse(signature: str) -> tuple[str, list[tuple[str, bool, str]]]:
    match = re.fullmatch(r"(\w+)\((.*)\)", signature)
    assert match
    params = []
    for part in match.group(2).split(","):
        words = part.split()
        params.append((words[0], words[1:-1] == ["indexed"], words[-1]))
    return match.group(1), params


def topic0(signature: str) -> str:
    name, params = parse(signature)
    return "0x" + keccak(text=f"{name}({','.join(kind for kind, _, _ in params)})").hex()


def abi_events(abi: list[dict[str, Any]]) -> dict[str, list[tuple[str, bool, str]]]:
    return {
        entry["name"]: [(i["type"], i["indexed"], i["name"]) for i in entry["inputs"]]
        for entry in abi
        if entry["type"] == "event"
    }


@pytest.mark.parametrize("contract", sorted(SPEC_EVENTS))
def test_artifact_abi_declares_exactly_the_spec_events(contract: str) -> None:
    expected = dict(parse(signature) for signature in SPEC_EVENTS[contract])
    assert abi_events(load_artifacts()[contract]["abi"]) == expected


def test_each_event_is_emitted_once_with_the_spec_topic0(chain: DevChain) -> None:
    tx_hashes = chain.emit_each_event()
    assert len(tx_hashes) == 7
    seen: list[tuple[str, str]] = []
    for tx_hash in tx_hashes:
        receipt = chain.rpc("eth_getTransactionReceipt", [tx_hash])
        seen += [(log["address"].lower(), log["topics"][0]) for log in receipt["logs"]]
    expected = [
        (chain.addresses[contract].lower(), topic0(signature))
        for contract, signatures in SPEC_EVENTS.items()
        for signature in signatures
    ]
    assert sorted(seen) == sorted(expected)


def test_indexed_string_topic_is_the_keccak_of_the_document_hash(chain: DevChain) -> None:
    calls = chain.each_event_calls()
    register = calls[3]  # registerProof(string)
    receipt = chain.rpc("eth_getTransactionReceipt", [chain.send(register)])
    (log,) = receipt["logs"]
    doc = bytes.fromhex(register.data[2 + 8 + 128 :]).rstrip(b"\0").decode()
    assert doc.startswith("doc-")
    assert log["topics"][1] == "0x" + keccak(text=doc).hex()
    assert log["topics"][2] == "0x" + chain.account[2:].lower().rjust(64, "0")


def test_emit_batch_gives_n_events_of_every_type_in_few_transactions(chain: DevChain) -> None:
    start = chain.head()
    tx_hashes = chain.emit_batch(450)
    assert len(tx_hashes) <= 6
    logs = chain.rpc("eth_getLogs", [{"fromBlock": hex(start + 1), "toBlock": "latest"}])
    per_topic: dict[str, int] = {}
    for log in logs:
        per_topic[log["topics"][0]] = per_topic.get(log["topics"][0], 0) + 1
    every_signature = [s for signatures in SPEC_EVENTS.values() for s in signatures]
    assert per_topic == {topic0(signature): 450 for signature in every_signature}
    # Every indexed document hash differs, so the listener's decoded rows are distinguishable.
    registered = [log["topics"][1] for log in logs if log["topics"][0] == topic0(every_signature[3])]
    assert len(set(registered)) == 450

"""The seven SPEC §1 events as ABI JSON, for unit tests that need no chain."""

from __future__ import annotations

from typing import Any

# contract -> [(event, [(type, name, indexed)])]
SPEC_EVENTS: dict[str, list[tuple[str, list[tuple[str, str, bool]]]]] = {
    "IdentityNFT": [
        ("MintingEvent", [("uint256", "tokenId", True), ("address", "user", True)]),
        ("CancelamentoEvent", [("uint256", "oldTokenId", True), ("uint256", "newTokenId", True)]),
        ("CancelamentoSimples", [("uint256", "tokenId", True)]),
    ],
    "ProofRegistry": [
        (
            "ProofRegistered",
            [
                ("string", "docHash", True),
                ("address", "signer", True),
                ("uint256", "timestamp", False),
            ],
        ),
        ("ProofRevoked", [("string", "docHash", True), ("address", "by", True), ("uint256", "timestamp", False)]),
        (
            "ProofStoredDual",
            [
                ("bytes32", "docHash", True),
                ("address", "signer", True),
                ("bytes20", "pgpFingerprint", False),
                ("bytes32", "pgpSigHash", False),
                ("uint256", "nftId", False),
                ("uint256", "timestamp", False),
            ],
        ),
    ],
    "FailSafe": [
        ("FailsafeEvent", [("address", "user", True), ("uint256", "tokenId", True), ("uint256", "timestamp", False)]),
    ],
}

ADDRESSES = {
    "IdentityNFT": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "ProofRegistry": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "FailSafe": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
}


def abi_for(contract: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "event",
            "anonymous": False,
            "name": name,
            "inputs": [{"type": t, "name": n, "indexed": i} for t, n, i in inputs],
        }
        for name, inputs in SPEC_EVENTS[contract]
    ] + [{"type": "function", "name": "noop", "inputs": [], "outputs": [], "stateMutability": "view"}]


def contracts_document() -> dict[str, Any]:
    return {name: {"address": ADDRESSES[name], "abi": abi_for(name)} for name in SPEC_EVENTS}

"""Unit tests of log routing and decoding (no chain: logs are built with eth-abi's encoder)."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from exporter.listener.contracts import parse_contracts
from exporter.listener.decode import LogDecoder, converter_for, word_decoder
from exporter.metrics import Metrics
from tests.listener.spec_abi import ADDRESSES, contracts_document

EVENT_TYPES = {
    "MintingEvent": "Minted",
    "CancelamentoEvent": "Canceled",
    "CancelamentoSimples": "CanceledSimple",
    "ProofRegistered": "ProofStored",
    "ProofRevoked": "ProofRevoked",
    "ProofStoredDual": "ProofStoredDual",
    "FailsafeEvent": "FailSafeTriggered",
}
USER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BIG = 2**256 - 1
FPR = bytes(range(20))
SIG = bytes(range(32, 64))
DOC32 = bytes(range(100, 132))


def _topic(abi_type: str, value: Any) -> str:
    return "0x" + encode([abi_type], [value]).hex()


def _log(contract: str, signature: str, topics: list[str], data: bytes = b"", log_index: int = 0) -> dict[str, Any]:
    return {
        "address": ADDRESSES[contract].lower(),
        "topics": ["0x" + keccak(text=signature).hex(), *topics],
        "data": "0x" + data.hex(),
        "blockNumber": "0x2a",
        "blockHash": "0x" + "11" * 32,
        "transactionHash": "0x" + "22" * 32,
        "logIndex": hex(log_index),
        "transactionIndex": "0x0",
        "removed": False,
    }


CASES = [
    (
        _log("IdentityNFT", "MintingEvent(uint256,address)", [_topic("uint256", BIG), _topic("address", USER)]),
        "Minted",
        {"tokenId": str(BIG), "user": USER},
    ),
    (
        _log("IdentityNFT", "CancelamentoEvent(uint256,uint256)", [_topic("uint256", 7), _topic("uint256", 8)]),
        "Canceled",
        {"oldTokenId": "7", "newTokenId": "8"},
    ),
    (
        _log("IdentityNFT", "CancelamentoSimples(uint256)", [_topic("uint256", 0)]),
        "CanceledSimple",
        {"tokenId": "0"},
    ),
    (
        _log(
            "ProofRegistry",
            "ProofRegistered(string,address,uint256)",
            ["0x" + keccak(text="doc-1").hex(), _topic("address", USER)],
            encode(["uint256"], [1700000000]),
        ),
        "ProofStored",
        {"docHash": "0x" + keccak(text="doc-1").hex(), "signer": USER, "timestamp": "1700000000"},
    ),
    (
        _log(
            "ProofRegistry",
            "ProofRevoked(string,address,uint256)",
            ["0x" + keccak(text="doc-1").hex(), _topic("address", USER)],
            encode(["uint256"], [5]),
        ),
        "ProofRevoked",
        {"docHash": "0x" + keccak(text="doc-1").hex(), "by": USER, "timestamp": "5"},
    ),
    (
        _log(
            "ProofRegistry",
            "ProofStoredDual(bytes32,address,bytes20,bytes32,uint256,uint256)",
            [_topic("bytes32", DOC32), _topic("address", USER)],
            encode(["bytes20", "bytes32", "uint256", "uint256"], [FPR, SIG, 3, 1700000001]),
        ),
        "ProofStoredDual",
        {
            "docHash": "0x" + DOC32.hex(),
            "signer": USER,
            "pgpFingerprint": "0x" + FPR.hex(),
            "pgpSigHash": "0x" + SIG.hex(),
            "nftId": "3",
            "timestamp": "1700000001",
        },
    ),
    (
        _log(
            "FailSafe",
            "FailsafeEvent(address,uint256,uint256)",
            [_topic("address", USER), _topic("uint256", 9)],
            encode(["uint256"], [10]),
        ),
        "FailSafeTriggered",
        {"user": USER, "tokenId": "9", "timestamp": "10"},
    ),
]


@pytest.fixture
def decoder(metrics: Metrics) -> LogDecoder:
    return LogDecoder(parse_contracts(contracts_document(), "contracts_config.json", EVENT_TYPES), metrics)


@pytest.mark.parametrize(("raw", "stored_type", "args"), CASES, ids=[c[1] for c in CASES])
def test_each_spec_event_decodes_to_spec_json(
    decoder: LogDecoder, raw: dict[str, Any], stored_type: str, args: dict[str, Any]
) -> None:
    record = decoder.decode(raw)
    assert record is not None
    assert record.type == stored_type
    contract = next(name for name, address in ADDRESSES.items() if address.lower() == raw["address"])
    assert record.data == {
        "blockNumber": 42,
        "blockHash": raw["blockHash"],
        "transactionHash": raw["transactionHash"],
        "logIndex": 0,
        "address": ADDRESSES[contract],
        "args": args,
    }
    assert list(record.data["args"]) == list(args)  # ABI order kept
    assert (record.block_number, record.log_index, record.tx_hash) == (42, 0, raw["transactionHash"])


def test_an_unmapped_event_is_stored_under_its_own_name(metrics: Metrics) -> None:
    decoder = LogDecoder(parse_contracts(contracts_document(), "c.json", {}), metrics)
    record = decoder.decode(CASES[0][0])
    assert record is not None and record.type == "MintingEvent"


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda log: log.update(topics=["0x" + "ab" * 32]), "no followed event"),
        (lambda log: log.update(address="0x" + "00" * 20), "no followed event"),
        (lambda log: log.update(topics=log["topics"][:1]), "expects 3 topics"),
        (lambda log: log.update(topics=[]), "no followed event"),
        (lambda log: log.update(data="0x1234"), "malformed"),
        (lambda log: log.pop("transactionHash"), "malformed"),
    ],
    ids=["unknown-topic0", "other-address", "missing-topics", "no-topics", "short-data", "no-tx-hash"],
)
def test_a_log_that_is_not_ours_or_malformed_is_counted_and_skipped(
    decoder: LogDecoder, metrics: Metrics, caplog: pytest.LogCaptureFixture, mutate: Any, why: str
) -> None:
    raw = dict(CASES[3][0])  # ProofRegistered: indexed topics and data
    mutate(raw)
    with caplog.at_level(logging.WARNING):
        assert decoder.decode(raw) is None
    assert metrics.registry.get_sample_value("blocktrust_listener_unknown_logs_total") == 1
    assert why in caplog.text


def test_decode_all_keeps_known_logs_in_order(decoder: LogDecoder) -> None:
    unknown = dict(CASES[0][0], topics=["0x" + "ab" * 32])
    records = decoder.decode_all([CASES[1][0], unknown, CASES[6][0]])
    assert [r.type for r in records] == ["Canceled", "FailSafeTriggered"]


WORD_TYPES = [
    "uint256",
    "uint8",
    "uint64",
    "int256",
    "int8",
    "int128",
    "address",
    "bool",
    "bytes32",
    "bytes20",
    "bytes1",
]


def _random_word(rng: random.Random, abi_type: str) -> bytes:
    """A valid encoding most of the time, sometimes an arbitrary (often invalid) word."""
    if rng.random() < 0.3:
        return rng.choice([bytes(32), b"\xff" * 32, rng.randbytes(32), b"\x00" * 31 + b"\x02"])
    if abi_type.startswith("uint"):
        bits = int(abi_type[4:])
        return encode([abi_type], [rng.choice([0, 1, 2**bits - 1, rng.getrandbits(bits)])])
    if abi_type.startswith("int"):
        bits = int(abi_type[3:])
        return encode(
            [abi_type],
            [rng.choice([-(2 ** (bits - 1)), -1, 0, 2 ** (bits - 1) - 1, rng.getrandbits(bits) - 2 ** (bits - 1)])],
        )
    if abi_type == "address":
        return encode([abi_type], ["0x" + rng.randbytes(20).hex()])
    if abi_type == "bool":
        return encode([abi_type], [rng.random() < 0.5])
    return encode([abi_type], [rng.randbytes(int(abi_type[5:]))])


@pytest.mark.parametrize("abi_type", WORD_TYPES)
def test_word_fast_path_agrees_with_eth_abi(abi_type: str) -> None:
    fast = word_decoder(abi_type)
    slow = converter_for(abi_type)
    assert fast is not None
    rng = random.Random(abi_type)
    for _ in range(400):
        word = _random_word(rng, abi_type)
        try:
            expected = slow(abi_decode([abi_type], word)[0])
        except DecodingError:
            with pytest.raises(ValueError):
                fast(word.hex())
            continue
        assert fast(word.hex()) == expected
        assert fast(word.hex().upper()) == expected  # nodes may answer in upper-case hex


@pytest.mark.parametrize("abi_type", ["string", "bytes", "uint256[]", "(uint256,address)", "fixed128x18"])
def test_types_that_are_not_one_word_use_eth_abi(abi_type: str) -> None:
    assert word_decoder(abi_type) is None

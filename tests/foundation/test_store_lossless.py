"""Lossless storage: every decodable event is stored, whatever bytes its strings carry, and read back
byte for byte on both backends; a row the store refuses for good is quarantined, the rest of its
batch stored with the checkpoint."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from exporter.listener.contracts import ContractsConfigError, parse_contracts
from exporter.listener.decode import LogDecoder
from exporter.metrics import Metrics
from exporter.store import Checkpoint, EventRecord, Store
from exporter.store.lossless import HEX_TAG, original, storable, string_bytes, text_value
from tests.listener.conftest import query

ADDRESS = "0x00000000000000000000000000000000000A11cE"
NOTE_ABI = [
    {
        "type": "event",
        "name": "Note",
        "inputs": [
            {"name": "id", "type": "uint256", "indexed": True},
            {"name": "text", "type": "string", "indexed": False},
            {"name": "tags", "type": "string[]", "indexed": False},
        ],
    }
]
TOPIC0 = "0x" + keccak(text="Note(uint256,string,string[])").hex()

# The bytes a Solidity string may carry, and which of them PostgreSQL's jsonb or UTF-8 refuse.
STRINGS = {
    "plain": "plain ✓ text".encode(),
    "empty": b"",
    "nul": b"nul\x00inside\x00",
    "invalid_utf8": b"\xff\xfe not utf-8 \xc3\x28",
    "surrogate_bytes": b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as if UTF-8 (CESU): not UTF-8
    "looks_tagged": b'{"$hex": "0x41"}',  # a text that looks like the tagged form is still text
    "huge": b"\x00" + bytes(range(256)) * 4096,  # 1 MiB of every byte value
}


def _decoder(metrics: Metrics) -> LogDecoder:
    specs = parse_contracts({"Notes": {"address": ADDRESS, "abi": NOTE_ABI}}, "test", {}, required=())
    return LogDecoder(specs, metrics)


def _raw_log(n: int, text: bytes, tags: list[bytes], log_index: int | None = None) -> dict[str, Any]:
    return {
        "address": ADDRESS.lower(),
        "topics": [TOPIC0, "0x" + n.to_bytes(32, "big").hex()],
        "data": "0x" + encode(["bytes", "bytes[]"], [text, tags]).hex(),  # a string's encoding is bytes'
        "blockNumber": hex(10 + n),
        "blockHash": "0x" + f"{10 + n:064x}",
        "transactionHash": "0x" + f"{n:064x}",
        "logIndex": hex(n if log_index is None else log_index),
        "transactionIndex": "0x0",
        "removed": False,
    }


def _stored_args(store_url: str) -> dict[str, dict[str, Any]]:
    """``data.args`` of every stored event by its id argument, read past the Store under test."""
    rows = query(store_url, "SELECT data FROM events ORDER BY id")
    parsed = [json.loads(data) if isinstance(data, str) else data for (data,) in rows]
    return {body["args"]["id"]: body["args"] for body in parsed}


@pytest.mark.parametrize("raw", list(STRINGS.values()), ids=list(STRINGS))
def test_a_string_becomes_text_or_its_tagged_hex_and_comes_back_byte_for_byte(raw: bytes) -> None:
    stored = text_value(raw)
    try:
        is_text = "\x00" not in raw.decode("utf-8")
    except UnicodeDecodeError:
        is_text = False
    assert isinstance(stored, str) == is_text
    if not is_text:
        assert stored == {HEX_TAG: "0x" + raw.hex()}
    assert string_bytes(json.loads(json.dumps(stored))) == raw


def test_any_python_string_is_made_storable_and_restored() -> None:
    rng = random.Random(12)
    for _ in range(300):
        text = "".join(
            chr(rng.choice([0, 0x41, 0xE9, 0xD800, 0xDFFF, 0x1F600, rng.randrange(0x110000)])) for _ in range(8)
        )
        kept = storable({"args": {"s": text, "list": [text]}})
        encoded = json.dumps(kept, ensure_ascii=False).encode("utf-8")  # no lone surrogate survives
        assert b"\\u0000" not in encoded
        restored = original(json.loads(encoded))
        for value in (restored["args"]["s"], restored["args"]["list"][0]):
            assert (value if isinstance(value, bytes) else value.encode()) == text.encode("utf-8", "surrogatepass")


def test_strings_eth_abi_refuses_are_decoded_not_skipped(metrics: Metrics) -> None:
    decoder = _decoder(metrics)
    record = decoder.decode(_raw_log(1, STRINGS["invalid_utf8"], [STRINGS["nul"], b"ok"]))
    assert record is not None
    assert metrics.registry.get_sample_value("blocktrust_listener_unknown_logs_total") == 0
    assert string_bytes(record.data["args"]["text"]) == STRINGS["invalid_utf8"]
    assert [string_bytes(tag) for tag in record.data["args"]["tags"]] == [STRINGS["nul"], b"ok"]
    assert record.data["args"]["tags"][1] == "ok"  # valid text stays text for every reader


def test_every_string_is_stored_and_read_back_byte_for_byte(store: Store, store_url: str, metrics: Metrics) -> None:
    decoder = _decoder(metrics)
    raws = list(STRINGS.values())
    logs = [_raw_log(n, raw, [raw, raws[(n + 1) % len(raws)]]) for n, raw in enumerate(raws)]
    records = decoder.decode_all(logs)
    assert len(records) == len(logs)
    outcome = store.commit_blocks("main", records, Checkpoint(10 + len(raws), "0xb"))
    assert outcome == {"Note": len(raws)} and outcome.quarantined == ()
    stored = _stored_args(store_url)
    for n, raw in enumerate(raws):
        args = stored[str(n)]
        assert string_bytes(args["text"]) == raw
        assert [string_bytes(tag) for tag in args["tags"]] == [raw, raws[(n + 1) % len(raws)]]
        assert args == json.loads(records[n].data_json)["args"]  # the same JSON on either backend


def test_a_refused_row_is_quarantined_and_the_rest_of_the_batch_stored(
    store: Store, store_url: str, metrics: Metrics
) -> None:
    decoder = _decoder(metrics)
    # A log index beyond 64 bits: PostgreSQL (INTEGER) and SQLite (64-bit integers) both refuse it.
    logs = [_raw_log(n, b"note %d" % n, [], log_index=2**64 + n if n in (5, 37) else None) for n in range(64)]
    records = decoder.decode_all(logs)
    outcome = store.commit_blocks("main", records, Checkpoint(73, "0xb73"))
    assert outcome == {"Note": 62}
    assert [item.event.tx_hash for item in outcome.quarantined] == [
        logs[5]["transactionHash"],
        logs[37]["transactionHash"],
    ]
    stored = query(store_url, "SELECT data FROM events ORDER BY id")
    ids = [(json.loads(d) if isinstance(d, str) else d)["args"]["id"] for (d,) in stored]
    assert ids == [str(n) for n in range(64) if n not in (5, 37)]  # chain order kept through the bisection
    assert query(store_url, "SELECT block_number FROM listener_checkpoints") == [(73,)]
    rows = query(store_url, "SELECT block_number, raw_log, reason FROM quarantined_events ORDER BY id")
    assert [(block, json.loads(raw)) for block, raw, _ in rows] == [(15, logs[5]), (47, logs[37])]
    if store_url.startswith("postgresql"):
        assert [reason for _, _, reason in rows] == [
            f'22003: value "{2**64 + n}" is out of range for type integer' for n in (5, 37)
        ]
    else:
        assert all(reason.startswith("OverflowError") for _, _, reason in rows)
    assert store.quarantined_count() == 2
    # The same range again (a replay, a restart): nothing new, nothing quarantined twice.
    again = store.commit_blocks("main", records, Checkpoint(73, "0xb73"))
    assert again == {} and again.quarantined == ()
    assert store.quarantined_count() == 2


# Values of the other columns a backend refuses, each with the backends that refuse it.
REFUSED_ELSEWHERE: list[tuple[str, dict[str, Any], set[str]]] = [
    ("nul_in_tx_hash", {"tx_hash": "0xab\x00cd"}, {"postgresql"}),
    ("lone_surrogate_in_block_hash", {"block_hash": "0xb\ud800"}, {"postgresql", "sqlite"}),
    ("type_longer_than_the_column", {"type": "T" * 51}, {"postgresql"}),
    ("block_number_beyond_bigint", {"block_number": 2**63}, {"postgresql", "sqlite"}),
    # Beyond what a btree index row holds (2704 bytes, after compression): program limit exceeded.
    ("tx_hash_too_large_for_the_index", {"tx_hash": "0x" + random.Random(7).randbytes(16_000).hex()}, {"postgresql"}),
]


def test_each_column_value_a_backend_refuses_is_quarantined_never_a_wedge(store: Store, store_url: str) -> None:
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    events = []
    for n, (_, values, _) in enumerate(REFUSED_ELSEWHERE):
        fields: dict[str, Any] = {"type": "Note", "block_number": 1, "block_hash": "0xb1", "tx_hash": f"0xt{n}"}
        fields.update(values)
        events.append(
            EventRecord(fields["type"], {"n": n}, fields["block_number"], fields["block_hash"], fields["tx_hash"], 0)
        )
    events.append(EventRecord("Note", {"n": "last"}, 1, "0xb1", "0xtlast", 0))
    outcome = store.commit_blocks("main", events, Checkpoint(1, "0xb1"))
    refused = {name for name, _, backends in REFUSED_ELSEWHERE if backend in backends}
    assert {
        REFUSED_ELSEWHERE[[e.tx_hash for e in events].index(q.event.tx_hash)][0] for q in outcome.quarantined
    } == refused
    assert sum(outcome.values()) == len(events) - len(refused)
    assert store.load_checkpoint("main") is not None
    assert store.quarantined_count() == len(refused)


def test_an_unmapped_event_name_longer_than_the_type_column_is_refused_at_start() -> None:
    abi = [{"type": "event", "name": "N" * 51, "inputs": []}]
    with pytest.raises(ContractsConfigError, match=r"at most 50 characters.*listener\.event_types"):
        parse_contracts({"Notes": {"address": ADDRESS, "abi": abi}}, "contracts.json", {}, required=())
    # Mapped to a type that fits, it is followed.
    assert parse_contracts({"Notes": {"address": ADDRESS, "abi": abi}}, "c", {"N" * 51: "Long"}, required=())

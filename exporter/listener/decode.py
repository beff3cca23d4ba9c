"""Turn raw ``eth_getLogs`` entries into ``EventRecord`` rows (SPEC §2), with eth-abi directly.

Each log is routed by (address, topic0) to its ABI event; indexed arguments come from the topics,
the rest from ``data``. Values become JSON: integers as decimal strings (uint256 does not fit a
JSON number), bytes/bytesN as 0x-hex, addresses checksummed, an indexed dynamic value (string,
bytes, array, tuple) as its topic hash, because the log only carries the hash. A ``string`` is decoded
as the bytes it carries (its ABI encoding is that of ``bytes``) and kept whatever they are: as text
when they are valid UTF-8 without NUL, else in the tagged ``{"$hex": …}`` form of
``exporter.store.lossless`` (eth-abi's own string decoder refuses invalid UTF-8, and such an event
used to be skipped). A log that matches
no followed event, or does not decode, is logged, counted in ``listener_unknown_logs`` and skipped:
never a crash. Not for fetching or storing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_abi.grammar import BasicType, TupleType, parse
from eth_utils.address import to_checksum_address

from exporter.listener.contracts import EventSpec
from exporter.metrics import Metrics
from exporter.store.base import EventRecord
from exporter.store.lossless import text_value

log = logging.getLogger(__name__)

Converter = Callable[[Any], Any]


@lru_cache(maxsize=4096)
def _checksum(address: str) -> str:
    # Few distinct addresses appear in practice; checksumming (a keccak) once each is enough.
    return str(to_checksum_address(address))


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def converter_for(abi_type: str) -> Converter:
    """A function mapping eth-abi's decoded value of ``abi_type`` to its JSON form."""
    node = parse(abi_type)
    if node.is_array:
        item = converter_for(node.item_type.to_type_str())
        return lambda values: [item(v) for v in values]
    if isinstance(node, TupleType):
        parts = [converter_for(c.to_type_str()) for c in node.components]
        return lambda values: [conv(v) for conv, v in zip(parts, values, strict=True)]
    assert isinstance(node, BasicType)
    if node.base in ("uint", "int", "fixed", "ufixed"):
        return str
    if node.base == "address":
        return _checksum
    if node.base == "bytes":
        return _hex
    if node.base == "string":
        return text_value  # given the bytes: see ``wire_type``
    return lambda value: value  # bool: eth-abi's value is already JSON


_STRING = re.compile(r"\bstring\b")


def wire_type(abi_type: str) -> str:
    """``abi_type`` with every ``string`` read as ``bytes`` (the same encoding), so that eth-abi hands
    over a string's bytes as they are instead of refusing those that are not valid UTF-8."""
    return _STRING.sub("bytes", abi_type)


def _is_dynamic(abi_type: str) -> bool:
    """Dynamic types are indexed as the keccak of their encoding, which cannot be decoded back."""
    node = parse(abi_type)
    return bool(node.is_dynamic) or node.is_array or isinstance(node, TupleType)


WordDecoder = Callable[[str], Any]  # one 32-byte ABI word as 64 hex digits -> its JSON value
_ZEROS = "0" * 64


def word_decoder(abi_type: str) -> WordDecoder | None:
    """A decoder straight from hex for the types that are one ABI word; None for any other type.

    Most event arguments are such words (uint256, address, bytes32...). Decoding them from the hex
    text, with the same strict padding and range checks as eth-abi, is ~10x cheaper than eth-abi's
    general stream decoder, which stays in use for every other type. Equality with eth-abi is
    property-tested (tests/listener/test_decode.py).
    """
    node = parse(abi_type)
    if node.is_array or not isinstance(node, BasicType):
        return None
    bits = node.sub if isinstance(node.sub, int) else None
    if node.base == "uint" and bits is not None:

        def uint(word: str) -> str:
            value = int(word, 16)
            if value >> bits:
                raise ValueError(f"{abi_type} out of range")
            return str(value)

        return uint
    if node.base == "int" and bits is not None:

        def int_(word: str) -> str:
            value = int(word, 16)
            if value >> 255:
                value -= 1 << 256
            if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
                raise ValueError(f"{abi_type} out of range")
            return str(value)

        return int_
    if node.base == "address":

        def address(word: str) -> str:
            if word[:24] != _ZEROS[:24] or len(word) != 64:
                raise ValueError("address with non-zero padding")
            return _checksum("0x" + word[24:].lower())

        return address
    if node.base == "bool":

        def boolean(word: str) -> bool:
            value = int(word, 16)
            if value > 1:
                raise ValueError("bool other than 0 or 1")
            return value == 1

        return boolean
    if node.base == "bytes" and bits is not None:  # bytesN: N bytes, left-aligned
        width = 2 * bits

        def fixed_bytes(word: str) -> str:
            if word[width:] != _ZEROS[width:] or len(word) != 64:
                raise ValueError(f"{abi_type} with non-zero padding")
            return "0x" + word[:width].lower()

        return fixed_bytes
    return None


def _eth_abi_word(abi_type: str) -> WordDecoder:
    """The general path for an indexed static value that is not a single simple word."""
    convert = converter_for(abi_type)
    return lambda word: convert(abi_decode([wire_type(abi_type)], bytes.fromhex(word))[0])


def _topic_hash(word: str) -> str:
    return "0x" + word.lower()


class _EventDecoder:
    """The compiled decoder of one ``EventSpec``."""

    def __init__(self, spec: EventSpec) -> None:
        self.spec = spec
        indexed = [p for p in spec.inputs if p.indexed]
        plain = [p for p in spec.inputs if not p.indexed]
        self.topic_count = 1 + len(indexed)
        self.topic_args: list[tuple[str, WordDecoder]] = [
            (p.name, _topic_hash if _is_dynamic(p.abi_type) else word_decoder(p.abi_type) or _eth_abi_word(p.abi_type))
            for p in indexed
        ]
        words = [word_decoder(p.abi_type) for p in plain]
        # All data arguments one word each (true of every SPEC event): decode from the hex directly.
        self.data_words = [(p.name, w) for p, w in zip(plain, words, strict=True) if w is not None]
        self.data_hex_length = 2 + 64 * len(plain) if len(self.data_words) == len(plain) else -1
        self.data_names = [p.name for p in plain]
        self.data_types = [wire_type(p.abi_type) for p in plain]
        self.data_converters = [converter_for(p.abi_type) for p in plain]
        order = [p.name for p in spec.inputs]
        self.reorder = order if order != [p.name for p in indexed + plain] else None  # args keep ABI order

    def args(self, topics: Sequence[str], data: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for (name, decode_word), topic in zip(self.topic_args, topics[1:], strict=True):
            if len(topic) != 66:
                raise ValueError("a topic is not 32 bytes")
            values[name] = decode_word(topic[2:])
        if len(data) == self.data_hex_length:
            for index, (name, decode_word) in enumerate(self.data_words):
                values[name] = decode_word(data[2 + 64 * index : 66 + 64 * index])
        elif self.data_types:
            decoded = abi_decode(self.data_types, bytes.fromhex(data[2:]))
            for name, convert, value in zip(self.data_names, self.data_converters, decoded, strict=True):
                values[name] = convert(value)
        return values if self.reorder is None else {name: values[name] for name in self.reorder}


class LogDecoder:
    """Routes and decodes logs of the followed events."""

    def __init__(self, specs: Iterable[EventSpec], metrics: Metrics) -> None:
        self._metrics = metrics
        self._routes: dict[tuple[str, str], _EventDecoder] = {
            (spec.address.lower(), spec.topic0): _EventDecoder(spec) for spec in specs
        }

    def decode(self, raw: dict[str, Any]) -> EventRecord | None:
        """The row for one raw log, or None (logged and counted) when it is not ours or is malformed."""
        try:
            topics = raw["topics"]
            address = raw["address"].lower()
            decoder = self._routes.get((address, topics[0].lower())) if topics else None
            if decoder is None:
                self._skip(raw, "no followed event has this address and topic0")
                return None
            if len(topics) != decoder.topic_count:
                self._skip(raw, f"{decoder.spec.name} expects {decoder.topic_count} topics, got {len(topics)}")
                return None
            args = decoder.args(topics, raw["data"])
            block_number = int(raw["blockNumber"], 16)
            log_index = int(raw["logIndex"], 16)
            tx_hash = raw["transactionHash"]
            block_hash = raw["blockHash"]
        except (KeyError, TypeError, ValueError, IndexError, DecodingError) as exc:
            self._skip(raw, f"malformed log ({type(exc).__name__})")
            return None
        return EventRecord(
            type=decoder.spec.stored_type,
            data={
                "blockNumber": block_number,
                "blockHash": block_hash,
                "transactionHash": tx_hash,
                "logIndex": log_index,
                "address": decoder.spec.address,
                "args": args,
            },
            block_number=block_number,
            block_hash=block_hash,
            tx_hash=tx_hash,
            log_index=log_index,
            raw_log=raw,
        )

    def decode_all(self, raws: Iterable[dict[str, Any]]) -> list[EventRecord]:
        return [record for record in map(self.decode, raws) if record is not None]

    def _skip(self, raw: Any, why: str) -> None:
        self._metrics.listener_unknown_logs.inc()
        where = (
            raw
            if not isinstance(raw, dict)
            else {k: raw.get(k) for k in ("address", "blockNumber", "transactionHash", "logIndex")}
        )
        topic0 = raw.get("topics", [None])[0] if isinstance(raw, dict) and raw.get("topics") else None
        log.warning("listener skipped a log: %s topic0=%s log=%s", why, topic0, where)

"""The ``logsBloom`` of a block header: may the block hold a log our filter asks for?

Every header carries a 2048-bit bloom filter of the addresses and topics of all its logs (Yellow
Paper, section 4.3.1, the function M3:2048): for each item, the first three pairs of bytes of its
Keccak-256 hash, each taken modulo 2048, name three bits of the filter, counted from the low end of
the big-endian 256-byte value. A log of our contracts therefore sets the bits of its address and of
its topic0; a block whose bloom lacks either cannot contain one (blooms have no false negatives),
while a bloom that has them may still be a false positive (busy blocks fill most of the 2048 bits).

Pure functions only. Not for deciding what to do about a match: ``confirm.py`` re-reads such blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_hash.auto import keccak

BLOOM_BYTES = 256  # 2048 bits
_BIT_MASK = 2047


def bloom_bits(item: bytes) -> tuple[int, int, int]:
    """The three bit indexes (0-2047, counted from the least significant bit) ``item`` sets."""
    digest = keccak(item)
    return (
        int.from_bytes(digest[0:2], "big") & _BIT_MASK,
        int.from_bytes(digest[2:4], "big") & _BIT_MASK,
        int.from_bytes(digest[4:6], "big") & _BIT_MASK,
    )


def parse_bloom(value: object) -> int | None:
    """A header's ``logsBloom`` (0x + 512 hex digits) as an integer; None if absent or malformed."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * BLOOM_BYTES:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def bloom_contains(bloom: int, item: bytes) -> bool:
    """Whether all three bits of ``item`` are set in ``bloom`` (a "maybe": never a false "no")."""
    return all(bloom >> bit & 1 for bit in bloom_bits(item))


class BloomQuery:
    """A log filter as bloom bits: any of ``addresses`` together with any of ``topics0``.

    ``addresses`` and ``topics0`` are 0x-hex strings (20 and 32 bytes); the bits are computed once.
    """

    def __init__(self, addresses: Iterable[str], topics0: Iterable[str]) -> None:
        self._addresses = [_mask(bytes.fromhex(a.removeprefix("0x"))) for a in addresses]
        self._topics = [_mask(bytes.fromhex(t.removeprefix("0x"))) for t in topics0]

    def may_match(self, bloom: int) -> bool:
        """Whether a block with this bloom may hold a log of one of the addresses with one of the topics."""
        return _any_in(bloom, self._addresses) and _any_in(bloom, self._topics)


def _any_in(bloom: int, masks: list[int]) -> bool:
    """An empty list is no condition (a filter without addresses matches every address)."""
    return not masks or any(bloom & mask == mask for mask in masks)


def _mask(item: bytes) -> int:
    mask = 0
    for bit in bloom_bits(item):
        mask |= 1 << bit
    return mask

"""Chain continuity: do fetched headers link to each other and to what we stored, and where did a
reorg fork off? Pure functions over ``BlockRef`` and ``Checkpoint``; the caller supplies the header
reads. Not for fetching (``fetch.py``) nor for rolling back the store (``service.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter.store.base import BlockRef, Checkpoint


class ChainMovedError(Exception):
    """The chain changed while a range was being fetched (a reorg in progress): fetch again."""


def check_links(headers: Sequence[BlockRef], previous: BlockRef | Checkpoint | None = None) -> None:
    """Raise ``ChainMovedError`` unless consecutive headers (and the first to ``previous``) link by parent hash."""
    before: tuple[int, str] | None = None
    if isinstance(previous, BlockRef):
        before = (previous.number, previous.hash)
    elif isinstance(previous, Checkpoint) and previous.block_hash:
        before = (previous.block_number, previous.block_hash)
    for header in headers:
        if before is not None and header.number == before[0] + 1 and header.parent_hash != before[1]:
            raise ChainMovedError(f"block {header.number} does not follow block {before[0]} we stored")
        before = (header.number, header.hash)


def find_common_ancestor(
    header: Callable[[int], BlockRef | None], checkpoint: Checkpoint, head: int, max_depth: int
) -> BlockRef | None:
    """The newest recent block the chain still has, walking back at most ``max_depth`` blocks; None if none.

    ``header(number)`` reads the chain's current header at ``number``."""
    for ref in reversed(checkpoint.recent):
        if checkpoint.block_number - ref.number > max_depth:
            return None
        if ref.number > head:
            continue  # the chain is now shorter than our checkpoint
        current = header(ref.number)
        if current is not None and current.hash == ref.hash:
            return ref
    return None


def trim_recent(recent: Sequence[BlockRef], newest: int, keep_depth: int) -> tuple[BlockRef, ...]:
    """Recent headers worth keeping: those within ``keep_depth`` blocks of ``newest``, ascending."""
    by_number = {ref.number: ref for ref in recent if newest - keep_depth <= ref.number <= newest}
    return tuple(by_number[n] for n in sorted(by_number))

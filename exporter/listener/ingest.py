"""Fetching block ranges and checking chain continuity: the I/O half of one listener poll.

``RangeFetcher.fetch`` returns one fully fetched range: its logs (one ``eth_getLogs`` for every
followed address and topic) and the block headers needed to later detect a reorg, retrying
transient errors with back-off on the injected clock and adapting the range width to what the
provider accepts. ``find_common_ancestor`` walks the checkpoint's recent block hashes back to the
newest block the chain still agrees with.

Which headers: blocks that can still be reorganised (the newest ``max_reorg_depth`` blocks, when
following unfinalised blocks) get every header, so parent hashes link them to the checkpoint;
older ("deep") ranges only need the header of their last block. Headers are fetched before the
logs and each log's ``blockHash`` is compared with them, so a reorg racing the fetch is seen as
``ChainMovedError`` instead of being stored. Not for storing or decoding: ``service.py`` does that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.clock import Clock
from exporter.listener.ranges import Backoff, RangeSizer
from exporter.listener.rpc import LogFilter, RangeRefusedError, RpcClient, RpcError, TransientRpcError
from exporter.store.base import BlockRef, Checkpoint

log = logging.getLogger(__name__)


class ChainMovedError(Exception):
    """The chain changed while a range was being fetched (a reorg in progress): fetch again."""


class FetchCancelledError(Exception):
    """The poll gave up (e.g. the store failed) while this range was still being fetched."""


@dataclass(frozen=True)
class FetchedRange:
    start: int
    end: int
    logs: list[dict[str, Any]]
    headers: tuple[BlockRef, ...]  # ascending; always ends with the header of ``end``


class RangeFetcher:
    """Fetches [start, ≤last] ranges with retries; safe to call from one worker thread at a time."""

    def __init__(
        self,
        rpc: RpcClient,
        log_filter: LogFilter,
        sizer: RangeSizer,
        backoff: Backoff,
        clock: Clock,
        *,
        max_attempts: int = 5,
    ) -> None:
        self._rpc = rpc
        self._filter = log_filter
        self._sizer = sizer
        self._backoff = backoff
        self._clock = clock
        self._max_attempts = max_attempts

    def fetch(self, start: int, last: int, unsafe_from: int, cancel: threading.Event) -> FetchedRange:
        """The next range beginning at ``start`` and ending at most at ``last``.

        Blocks from ``unsafe_from`` on get every header; a range never straddles that boundary.
        """
        limit = last if start >= unsafe_from else min(last, unsafe_from - 1)
        attempt = 0
        while True:
            if cancel.is_set():
                raise FetchCancelledError()
            end = min(limit, start + self._sizer.size - 1)
            try:
                fetched = self._fetch_once(start, end, unsafe=start >= unsafe_from)
            except RangeRefusedError as exc:
                if end == start:
                    raise RpcError(f"the provider refuses even a one-block range: {exc}") from None
                self._sizer.refused(start, end, exc.suggested)
                log.info("listener: range %d-%d refused, now %d blocks wide", start, end, self._sizer.size)
                continue
            except TransientRpcError as exc:
                attempt += 1
                if attempt >= self._max_attempts:
                    raise
                wait = self._backoff.delay(attempt, exc.retry_after)
                log.info("listener: %s; retry %d in %.2fs", exc, attempt, wait)
                self._clock.sleep(wait)
                continue
            self._sizer.succeeded(end - start + 1)
            return fetched

    def _fetch_once(self, start: int, end: int, *, unsafe: bool) -> FetchedRange:
        if unsafe:
            headers = tuple(self._header(n) for n in range(start, end + 1))
            logs = self._rpc.get_logs(start, end, self._filter)
        else:
            logs = self._rpc.get_logs(start, end, self._filter)
            headers = (self._header(end),)
        known = {h.number: h.hash for h in headers}
        for entry in logs:
            expected = known.get(_int(entry.get("blockNumber")))
            if expected is not None and entry.get("blockHash") != expected:
                raise ChainMovedError(f"block {entry.get('blockNumber')} changed while it was fetched")
            if entry.get("removed"):
                raise ChainMovedError("the node returned a removed (reorged) log")
        check_links(headers)
        return FetchedRange(start, end, logs, headers)

    def _header(self, number: int) -> BlockRef:
        header = self._rpc.block(number)
        if header is None:
            raise ChainMovedError(f"block {number} is no longer on the chain")
        return header


def _int(value: object) -> int:
    """A hex quantity, or -1 (matches no block) if malformed: the decoder reports those."""
    try:
        return int(str(value), 16)
    except ValueError:
        return -1


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


def find_common_ancestor(rpc: RpcClient, checkpoint: Checkpoint, head: int, max_depth: int) -> BlockRef | None:
    """The newest recent block the chain still has, walking back at most ``max_depth`` blocks; None if none."""
    for ref in reversed(checkpoint.recent):
        if checkpoint.block_number - ref.number > max_depth:
            return None
        if ref.number > head:
            continue  # the chain is now shorter than our checkpoint
        current = rpc.block(ref.number)
        if current is not None and current.hash == ref.hash:
            return ref
    return None


def trim_recent(recent: Sequence[BlockRef], newest: int, keep_depth: int) -> tuple[BlockRef, ...]:
    """Recent headers worth keeping: those within ``keep_depth`` blocks of ``newest``, ascending."""
    by_number = {ref.number: ref for ref in recent if newest - keep_depth <= ref.number <= newest}
    return tuple(by_number[n] for n in sorted(by_number))

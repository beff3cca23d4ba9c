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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from exporter.clock import Clock, SystemClock
from exporter.listener.ranges import Backoff, RangeSizer
from exporter.listener.rpc import LogFilter, RangeRefusedError, RpcClient, TransientRpcError
from exporter.store.base import BlockRef, Checkpoint

log = logging.getLogger(__name__)

HEADER_BATCH = 50  # headers per JSON-RPC batch: well under providers' batch limits
_T = TypeVar("_T")


class ChainMovedError(Exception):
    """The chain changed while a range was being fetched (a reorg in progress): fetch again."""


class FetchCancelledError(Exception):
    """The poll gave up (the store failed, or a stop was requested) while RPC work was pending."""


@dataclass(frozen=True)
class FetchedRange:
    start: int
    end: int
    logs: list[dict[str, Any]]
    headers: tuple[BlockRef, ...]  # ascending; always ends with the header of ``end``


class Retrier:
    """Runs one RPC call, retrying transient failures with back-off on the injected clock.

    Retrying per call (not per range) matters: a range near the head takes a header batch and a
    getLogs, and restarting the whole range on every 429 would make progress ever less likely.
    Setting ``stop`` (the listener's stop request) ends any retry loop at once, even mid-wait.
    """

    def __init__(
        self, backoff: Backoff, clock: Clock, *, stop: threading.Event | None = None, max_attempts: int = 5
    ) -> None:
        self._backoff = backoff
        self._clock = clock
        self._stop = stop or threading.Event()
        self._max_attempts = max_attempts

    def __call__(self, call: Callable[[], _T], cancel: threading.Event | None = None) -> _T:
        attempt = 0
        while True:
            if self._stop.is_set() or (cancel is not None and cancel.is_set()):
                raise FetchCancelledError()
            try:
                return call()
            except TransientRpcError as exc:
                attempt += 1
                if attempt >= self._max_attempts:
                    raise
                wait = self._backoff.delay(attempt, exc.retry_after)
                log.info("listener: %s; retry %d in %.2fs", exc, attempt, wait)
                self._pause(wait)

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds``: on the real clock on the stop event (so a stop request cuts the wait
        short); an injected test clock just advances, as its ``sleep`` does."""
        if isinstance(self._clock, SystemClock):
            self._stop.wait(seconds)
        else:
            self._clock.sleep(seconds)


class RangeFetcher:
    """Fetches [start, ≤last] ranges; called from one worker thread at a time."""

    def __init__(self, rpc: RpcClient, log_filter: LogFilter, sizer: RangeSizer, retrier: Retrier) -> None:
        self._rpc = rpc
        self._filter = log_filter
        self._sizer = sizer
        self._retry = retrier

    def fetch(self, start: int, last: int, unsafe_from: int, cancel: threading.Event) -> FetchedRange:
        """The next range beginning at ``start`` and ending at most at ``last``.

        Blocks from ``unsafe_from`` on get every header; a range never straddles that boundary.
        """
        unsafe = start >= unsafe_from
        limit = last if unsafe else min(last, unsafe_from - 1)
        headers: dict[int, BlockRef] = {}
        while True:
            end = min(limit, start + self._sizer.size - 1)
            if unsafe:  # headers first: a reorg between the two calls then shows as a hash mismatch
                wanted = [n for n in range(start, end + 1) if n not in headers]
                for offset in range(0, len(wanted), HEADER_BATCH):
                    part = wanted[offset:offset + HEADER_BATCH]
                    headers.update(zip(part, self._retry(partial(self._headers, part), cancel), strict=True))
            try:
                logs = self._retry(partial(self._get_logs, start, end), cancel)
            except RangeRefusedError as exc:
                self._sizer.refused(start, end, exc.suggested)
                log.info("listener: range %d-%d refused, now %d blocks wide", start, end, self._sizer.size)
                continue
            if not unsafe:
                headers[end] = self._retry(partial(self._headers, [end]), cancel)[0]
            self._sizer.succeeded(end - start + 1)
            in_range = tuple(headers[n] for n in sorted(headers) if n <= end)
            return self._checked(FetchedRange(start, end, logs, in_range))

    def _get_logs(self, start: int, end: int) -> list[dict[str, Any]]:
        try:
            return self._rpc.get_logs(start, end, self._filter)
        except RangeRefusedError as exc:
            if start == end:  # nothing narrower to ask for: treat as a passing provider hiccup
                raise TransientRpcError(f"a one-block range was refused: {exc}", "range_refused") from None
            raise

    def _headers(self, numbers: list[int]) -> list[BlockRef]:
        found = self._rpc.blocks(numbers) if len(numbers) > 1 else [self._rpc.block(numbers[0])]
        for number, header in zip(numbers, found, strict=True):
            if header is None:
                raise ChainMovedError(f"block {number} is no longer on the chain")
        return [h for h in found if h is not None]

    @staticmethod
    def _checked(fetched: FetchedRange) -> FetchedRange:
        known = {h.number: h.hash for h in fetched.headers}
        for entry in fetched.logs:
            expected = known.get(_int(entry.get("blockNumber")))
            if expected is not None and entry.get("blockHash") != expected:
                raise ChainMovedError(f"block {entry.get('blockNumber')} changed while it was fetched")
            if entry.get("removed"):
                raise ChainMovedError("the node returned a removed (reorged) log")
        check_links(fetched.headers)
        return fetched


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

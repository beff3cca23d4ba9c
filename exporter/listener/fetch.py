"""Fetching block ranges: the I/O half of one listener poll.

``RangeFetcher.fetch`` returns one fully fetched range: its logs (one ``eth_getLogs`` for every
followed address and topic) and the block headers needed to later detect a reorg, retrying
transient errors with back-off (``retry.py``) and adapting the range width to what the provider
accepts (``ranges.py``).

Which headers: blocks that can still be reorganised (the newest ``max_reorg_depth`` blocks, when
following unfinalised blocks) get every header, so parent hashes link them to the checkpoint;
older ("deep") ranges need none (``deep_headers=False``: the listener's catch-up, one getLogs per
range and nothing else) or only the header of their last block (the audit keeps its hash).
``fetch_span`` fetches a range planned in advance (the listener's window of concurrent ranges):
whole when the provider serves that width, else back at once, empty, for the listener to plan it
again at the width the refusal taught; never past an unconfirmed block. Headers are fetched before the
logs and each log's ``blockHash`` is compared with them, so a reorg racing the fetch is seen as
``ChainMovedError`` (``chain.py``) instead of being stored. Blocks whose header bloom says they may
hold a followed log that ``eth_getLogs`` did not return are re-read by hash (``confirm.py``); the
range ends before the first one no node confirmed. Not for storing or decoding: ``service.py``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

from exporter.listener.chain import ChainMovedError, check_links
from exporter.listener.confirm import EmptyBlockConfirmer
from exporter.listener.endpoints import EndpointPool
from exporter.listener.ranges import RangeSizing
from exporter.listener.retry import Retrier
from exporter.listener.rpc import BlockHeader, LogFilter, RangeRefusedError, TransientRpcError
from exporter.store.base import BlockRef

log = logging.getLogger(__name__)

HEADER_BATCH = 50  # headers per JSON-RPC batch: well under providers' batch limits


@dataclass(frozen=True)
class FetchedRange:
    start: int
    end: int
    logs: list[dict[str, Any]]
    # Ascending; ends with the header of ``end`` (none if end < start, or a deep range fetched
    # without headers: ``RangeFetcher(deep_headers=False)``).
    headers: tuple[BlockRef, ...]
    # The block the range had to stop before (its logs unconfirmed; end == unconfirmed - 1), and why.
    unconfirmed: int | None = None
    reason: str = ""
    # A range given back refused (``fetch_span``): the width to ask for next, narrower than refused,
    # as the sizer of the endpoint that refused it hands out (the caller's may be another endpoint's).
    retry_width: int = 0


class RangeFetcher:
    """Fetches [start, ≤last] ranges; thread-safe (the listener's window calls it from several
    worker threads, each on its own range)."""

    def __init__(
        self,
        rpc: EndpointPool,
        log_filter: LogFilter,
        sizer: RangeSizing,
        retrier: Retrier,
        confirmer: EmptyBlockConfirmer | None = None,
        *,
        deep_headers: bool = True,
    ) -> None:
        self._rpc = rpc
        self._filter = log_filter
        self._sizer = sizer
        self._retry = retrier
        self._confirmer = confirmer  # None: empty answers are believed (no bloom check)
        self._deep_headers = deep_headers  # False: deep ranges come without any header

    def fetch_span(self, start: int, end: int, unsafe_from: int, cancel: threading.Event) -> FetchedRange:
        """A range planned in advance (one side of ``unsafe_from`` only), asked for whole. Where the
        provider refuses that width, it comes back empty (``end == start - 1``) as soon as the range
        sizer learned from the refusal: the caller plans it again at the width learned, across its
        window, all pieces at once. Before an unconfirmed block it comes back shorter."""
        return self.fetch(start, end, unsafe_from, cancel, width=end - start + 1, give_back=True)

    def fetch(
        self,
        start: int,
        last: int,
        unsafe_from: int,
        cancel: threading.Event,
        *,
        width: int | None = None,
        give_back: bool = False,
    ) -> FetchedRange:
        """The next range beginning at ``start`` and ending at most at ``last``, tried ``width``
        blocks wide first (default: what the sizer hands out), narrower after each refusal; with
        ``give_back``, a refusal returns the range empty instead (``fetch_span``).

        Blocks from ``unsafe_from`` on get every header; a range never straddles that boundary.
        """
        unsafe = start >= unsafe_from
        limit = last if unsafe else min(last, unsafe_from - 1)
        headers: dict[int, BlockRef] = {}
        size = width if width is not None else self._sizer.take()
        while True:
            end = min(limit, start + max(1, size) - 1)
            if unsafe:  # headers first: a reorg between the two calls then shows as a hash mismatch
                wanted = [n for n in range(start, end + 1) if n not in headers]
                for offset in range(0, len(wanted), HEADER_BATCH):
                    part = wanted[offset : offset + HEADER_BATCH]
                    headers.update(zip(part, self._retry(partial(self._headers, part), cancel), strict=True))
            try:
                logs = self._retry(partial(self._get_logs, start, end), cancel)
            except RangeRefusedError as exc:
                self._sizer.refused(start, end, exc.suggested, max_results=exc.max_results)
                if give_back:  # before ``take()``: a width handed out and never asked for would hold a probe
                    narrower = min(self._sizer.size, max(1, end - start))  # this endpoint's, narrower than refused
                    log.info("listener: range %d-%d refused, planned again %d blocks wide", start, end, narrower)
                    return FetchedRange(start, start - 1, [], (), retry_width=narrower)
                size = min(self._sizer.take(), max(1, end - start))  # narrower than refused, always
                log.info("listener: range %d-%d refused, now %d blocks wide", start, end, size)
                continue
            if not unsafe and self._deep_headers:
                headers[end] = self._retry(partial(self._headers, [end]), cancel)[0]
            self._sizer.succeeded(end - start + 1, len(logs))
            in_range = [headers[n] for n in sorted(headers) if n <= end]
            if unsafe and self._confirmer is not None:
                confirmed = self._confirmer.confirm(in_range, logs, cancel)
                if confirmed.unconfirmed is not None:
                    end = confirmed.unconfirmed - 1
                    kept = tuple(_plain(h) for h in in_range if h.number <= end)
                    return self._checked(
                        FetchedRange(start, end, confirmed.logs, kept, confirmed.unconfirmed, confirmed.reason)
                    )
                logs = confirmed.logs
            return self._checked(FetchedRange(start, end, logs, tuple(_plain(h) for h in in_range)))

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


def _plain(header: BlockRef) -> BlockRef:
    """What checkpoints keep: the header without its bloom."""
    return header.ref() if isinstance(header, BlockHeader) else header


def _int(value: object) -> int:
    """A hex quantity, or -1 (matches no block) if malformed: the decoder reports those."""
    try:
        return int(str(value), 16)
    except ValueError:
        return -1

"""Confirming empty answers near the head: blocks whose bloom says "maybe ours" but whose logs
``eth_getLogs`` did not return.

Behind a load balancer, headers may come from an up-to-date node while ``eth_getLogs`` for a range
is answered by one that has not imported the newest blocks yet: it answers ``[]`` for them, and a
listener that believed it would move its checkpoint past their events for good. The header's
``logsBloom`` tells such a block apart from a truly empty one, except for bloom false positives
(busy blocks set most of the 2048 bits). So each such block is read again by its hash
(``eth_getLogs`` with ``blockHash``, EIP-234): a node that does not have the block answers an error
("unknown block") instead of ``[]``, so an answer, empty or not, comes from a node that has it. Not
every node does (some answer ``[]`` for an unknown hash), so the re-read goes only to an endpoint of
the pool whose head has the block.

A block no node has confirmed stops the range just before it; the next poll tries again. Not for
blocks already behind the checkpoint: ``audit.py`` re-reads those. Not for deciding the range: the
caller (``fetch.py``) passes the headers and logs of a fetched range.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from exporter.listener.bloom import BloomQuery
from exporter.listener.retry import FetchCancelledError
from exporter.listener.rpc import BlockHeader, LogFilter, RangeRefusedError, RpcError, TransientRpcError
from exporter.metrics import Metrics
from exporter.store.base import BlockRef

log = logging.getLogger(__name__)


class JsonRpcCaller(Protocol):
    """What the confirmer needs of an RPC client: one call (``RpcClient`` or ``EndpointPool``)."""

    def call(self, method: str, params: list[Any], *, needs: int | None = None) -> Any: ...


@dataclass(frozen=True)
class Confirmed:
    """The outcome for one range: ``logs`` (with those the re-reads found, in chain order) of the
    blocks before ``unconfirmed``, the first block whose logs no node confirmed (None: all were)."""

    logs: list[dict[str, Any]]
    unconfirmed: int | None
    reason: str = ""


class EmptyBlockConfirmer:
    """Re-reads, by block hash, the blocks of a range whose bloom matches ``log_filter`` but which
    got no log; one ``eth_getLogs`` per such block, oldest first, stopping at the first failure."""

    def __init__(self, rpc: JsonRpcCaller, log_filter: LogFilter, metrics: Metrics) -> None:
        self._rpc = rpc
        self._filter = log_filter
        self._query = BloomQuery(log_filter.addresses, log_filter.topics0)
        self._metrics = metrics

    def suspects(self, headers: Sequence[BlockRef], logs: Sequence[dict[str, Any]]) -> list[BlockRef]:
        """Headers (ascending) whose bloom may hold a followed log while ``logs`` has none of theirs.
        A header without a bloom (a node that omits it) tells nothing and is not a suspect."""
        with_logs = {entry.get("blockHash") for entry in logs}
        return [
            header
            for header in headers
            if isinstance(header, BlockHeader)
            and header.logs_bloom is not None
            and header.hash not in with_logs
            and self._query.may_match(header.logs_bloom)
        ]

    def confirm(
        self, headers: Sequence[BlockRef], logs: list[dict[str, Any]], cancel: threading.Event | None = None
    ) -> Confirmed:
        """Re-read the suspects among ``headers``; see ``Confirmed``. Never raises for RPC errors:
        a block whose re-read fails is the unconfirmed one. ``cancel`` (the fetch's) set between two
        re-reads raises ``FetchCancelledError``: a catch-up may have hundreds of them."""
        found: list[dict[str, Any]] = []
        unconfirmed: int | None = None
        reason = ""
        for header in self.suspects(headers, logs):
            if cancel is not None and cancel.is_set():
                raise FetchCancelledError()
            try:
                answer = self._by_hash(header.hash, header.number)
            except (TransientRpcError, RpcError, RangeRefusedError) as exc:
                unconfirmed, reason = header.number, str(exc)
            else:
                if answer is None or any(entry.get("blockHash") != header.hash for entry in answer):
                    unconfirmed, reason = header.number, "the answer is not a list of this block's logs"
                else:
                    found.extend(answer)
                    self._metrics.listener_bloom_rechecks.labels(result="recovered" if answer else "empty").inc()
                    if answer:
                        log.warning(
                            "listener: block %d: eth_getLogs by range missed %d log(s) the block holds; "
                            "read by its hash instead",
                            header.number,
                            len(answer),
                        )
                    continue
            self._metrics.listener_bloom_rechecks.labels(result="unconfirmed").inc()
            break
        kept = [entry for entry in (*logs, *found) if unconfirmed is None or _block(entry) < unconfirmed]
        if found:
            kept.sort(key=lambda entry: (_block(entry), _block(entry, "logIndex")))
        return Confirmed(kept, unconfirmed, reason)

    def _by_hash(self, block_hash: str, number: int) -> list[dict[str, Any]] | None:
        params = {
            "blockHash": block_hash,
            "address": list(self._filter.addresses),
            "topics": [list(self._filter.topics0)],
        }
        # Only an endpoint whose head has the block: besu (before 24.12), reth (before 2024-03), anvil
        # (before 2026-04) and some hosted chains answer [] for a hash they do not know, which would
        # "confirm" the block empty.
        result = self._rpc.call("eth_getLogs", [params], needs=number)
        if not isinstance(result, list) or not all(isinstance(entry, dict) for entry in result):
            return None
        return result


def _block(entry: dict[str, Any], key: str = "blockNumber") -> int:
    """A hex quantity of a log; -1 if malformed (the decoder reports those)."""
    try:
        return int(str(entry.get(key)), 16)
    except ValueError:
        return -1

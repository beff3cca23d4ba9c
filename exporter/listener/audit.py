"""The completeness audit: re-read final blocks the listener already passed, store what it missed.

Every ``listener.audit.interval`` the leader re-reads, with ``eth_getLogs``, the blocks after the
audit's own cursor up to the newest block that is both at or below the listener's checkpoint and
final (the ``finalized`` tag, or ``max_reorg_depth`` behind the head), at most
``listener.audit.window`` blocks per run. Each re-read range is committed like a listener range
(``Store.commit_blocks``, which skips the rows already stored) under the checkpoint name
``listener.audit``, so the repaired events and the audit's cursor move in one transaction and a
repaired event is stored exactly once. The events it had to add are counted in
``blocktrust_listener_missing_logs_total`` (the completeness SLI; every re-read event in
``blocktrust_listener_audited_logs_total``).

The cursor starts at the listener's first block on a fresh database (nothing before it was asked
for), else (a database from before the audit existed) ``window`` blocks back. The first run comes one
interval after start. Not for the blocks near the head (``confirm.py``) nor for reorgs
(final blocks do not reorganise; ``service.py`` handles the others).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from exporter.clock import Clock
from exporter.config.models import AuditSettings
from exporter.listener.decode import LogDecoder
from exporter.listener.fetch import FetchedRange
from exporter.metrics import Metrics
from exporter.store.base import Checkpoint, Store

log = logging.getLogger(__name__)

AUDIT_CHECKPOINT = "listener.audit"  # the audit's cursor: a row of listener_checkpoints


@dataclass(frozen=True)
class AuditOutcome:
    """One audit run: the blocks re-read (``first`` > ``last`` when there was nothing to read),
    the events seen there and how many of them were missing (now stored)."""

    first: int
    last: int
    audited: int = 0
    missing: int = 0


class LogAudit:
    """Runs the audit when due; ``fetch(start, last)`` reads one deep range (``RangeFetcher``),
    ``floor`` is the lowest block the listener may have been asked to ingest (``start_block``, or 0)."""

    def __init__(
        self,
        settings: AuditSettings,
        fetch: Callable[[int, int], FetchedRange],
        decoder: LogDecoder,
        store: Store,
        *,
        metrics: Metrics,
        clock: Clock,
        floor: int = 0,
    ) -> None:
        self._settings = settings
        self._fetch = fetch
        self._decoder = decoder
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._floor = floor
        self._last_run = clock.monotonic()

    def starts_at(self, first_block: int) -> None:
        """A fresh listener (no checkpoint) starts ingesting at ``first_block``: the audit starts
        there too, never below (nothing before it was asked for). Written at once, so that a restart
        before the first audit remembers it."""
        self._store.commit_blocks(AUDIT_CHECKPOINT, [], Checkpoint(first_block - 1, ""))

    def due(self) -> bool:
        """Whether ``interval`` has passed since the last run (or since start: the first run waits too)."""
        return self._clock.monotonic() - self._last_run >= self._settings.interval

    def run(self, checkpoint_block: int, final_block: int) -> AuditOutcome:
        """Audit the next blocks up to ``min(checkpoint_block, final_block)``; RPC and store errors
        propagate (the next run starts from the last committed range again)."""
        self._last_run = self._clock.monotonic()
        newest = min(checkpoint_block, final_block)
        cursor = self._store.load_checkpoint(AUDIT_CHECKPOINT)
        first = cursor.block_number + 1 if cursor is not None else max(self._floor, newest - self._settings.window + 1)
        last = min(newest, first + self._settings.window - 1)
        if last < first:
            return AuditOutcome(first, last)
        audited = missing = 0
        start = first
        while start <= last:
            fetched = self._fetch(start, last)
            records = self._decoder.decode_all(fetched.logs)
            inserted = self._store.commit_blocks(
                AUDIT_CHECKPOINT, records, Checkpoint(fetched.end, fetched.headers[-1].hash)
            )
            for event_type, count in inserted.items():
                self._metrics.listener_events.labels(type=event_type).inc(count)
            found = sum(inserted.values())
            audited += len(records)
            missing += found
            self._metrics.listener_audited_logs.inc(len(records))
            self._metrics.listener_missing_logs.inc(found)
            self._metrics.listener_audited_block.set(fetched.end)
            if found:
                log.warning(
                    "listener: audit of blocks %d-%d found %d event(s) missing from the store; stored them now",
                    fetched.start,
                    fetched.end,
                    found,
                )
            start = fetched.end + 1
        log.info("listener: audited blocks %d-%d: %d events, %d missing", first, last, audited, missing)
        return AuditOutcome(first, last, audited, missing)

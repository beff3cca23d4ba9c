"""Retention: delete ``monitor_metrics`` rows older than the configured age, in small batches.

Small batches keep each transaction short, so neither the check writers nor the Grafana queries wait
on a long delete (the seed advises keeping 30 days). Not for the events table: events are the
Blocktrust record and are never deleted here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from exporter.clock import Clock
from exporter.store.base import Store

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
DEFAULT_MAX_BATCHES = 100  # per run; the next scheduled run continues where this one stopped


def purge_old_results(
    store: Store,
    clock: Clock,
    retention_seconds: float,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> int:
    """Delete results older than ``retention_seconds``; returns how many rows went."""
    cutoff = clock.now() - timedelta(seconds=retention_seconds)
    deleted = 0
    for _ in range(max_batches):
        batch = store.delete_results_before(cutoff, batch_size)
        deleted += batch
        if batch < batch_size:
            break
    if deleted:
        log.info("retention deleted %d check results older than %s", deleted, cutoff.isoformat())
    return deleted

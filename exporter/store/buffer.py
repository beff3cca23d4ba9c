"""A bounded in-memory buffer in front of the store, so a database outage loses nothing
(up to the buffer size) and never stalls or crashes the exporter.

Every check round hands its results to ``record``; they are written in one batch. If the store
is down they stay queued and the next ``record`` or ``flush`` (the scheduler retries every few
seconds) writes them. Each ``CheckResult`` has a unique ``uid`` and the insert skips known uids,
so a batch whose commit succeeded but whose answer was lost is not duplicated on retry. When the
buffer is full the OLDEST results are dropped: recent data matters most for alerting; the drop
is logged and counted in ``blocktrust_store_dropped_results_total``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence

from exporter.metrics import Metrics
from exporter.store.base import CheckResult, Store, StoreError

log = logging.getLogger(__name__)

_BATCH = 1000


class BufferedWriter:
    def __init__(self, store: Store, metrics: Metrics, *, capacity: int) -> None:
        self._store = store
        self._metrics = metrics
        self._capacity = capacity
        self._pending: deque[CheckResult] = deque()
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one writer at a time, keeps order
        self._outage = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def record(self, results: Sequence[CheckResult]) -> None:
        """Queue ``results`` and try to write everything queued. Never raises."""
        with self._lock:
            overflow = len(self._pending) + len(results) - self._capacity
            if overflow > 0:
                dropped = min(overflow, len(self._pending))
                for _ in range(dropped):
                    self._pending.popleft()
                self._metrics.store_dropped.inc(dropped)
                log.warning(
                    "store buffer full: dropped the oldest results dropped=%d capacity=%d",
                    dropped,
                    self._capacity,
                )
            self._pending.extend(results[-self._capacity :])
            self._metrics.store_buffered.set(len(self._pending))
        self.flush()

    def flush(self) -> bool:
        """Write what is queued; True when the queue is empty afterwards. Never raises."""
        with self._flushing:
            while True:
                with self._lock:
                    batch = list(self._pending)[:_BATCH]
                if not batch:
                    if self._outage:
                        self._outage = False
                        log.info("store writes recovered")
                    return True
                try:
                    self._store.write_results(batch)
                except StoreError as exc:
                    self._metrics.store_write_errors.inc()
                    if not self._outage:
                        self._outage = True
                        log.error("store write failed; results kept in memory error=%r queued=%d", str(exc), len(self))
                    return False
                with self._lock:
                    # Drop exactly what was written; a concurrent overflow may already have dropped some.
                    written = {r.uid for r in batch}
                    while self._pending and self._pending[0].uid in written:
                        self._pending.popleft()
                    self._metrics.store_buffered.set(len(self._pending))

"""A bounded in-memory buffer in front of the store, so a database outage loses nothing
(up to the buffer size) and never stalls or crashes the exporter.

Every check round hands its results to ``record``. Once ``start()`` has been called (the
exporter does), ``record`` only queues them and wakes the writer thread, which writes in batches:
a check round never waits on the store, whether it is down, slow or silent (each store call has its
own deadline, see ``StoreTimeouts``). Without ``start()`` (tests, one-shot tools) ``record`` writes
at once. If the store fails, results stay queued and are retried every ``retry_seconds`` (and at
every ``flush``/``wake``). Each ``CheckResult`` has a unique ``uid`` and the insert skips known
uids, so a batch whose commit succeeded but whose answer was lost is not duplicated on retry. When
the buffer is full the OLDEST results are dropped: recent data matters most for alerting; the drop
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
    def __init__(self, store: Store, metrics: Metrics, *, capacity: int, retry_seconds: float = 5.0) -> None:
        self._store = store
        self._metrics = metrics
        self._capacity = capacity
        self._retry_seconds = retry_seconds
        self._pending: deque[CheckResult] = deque()
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one writer at a time, keeps order
        self._outage = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def in_outage(self) -> bool:
        """True while the last write failed (results wait in memory); False once one succeeds."""
        return self._outage

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        """Write from a thread of its own from now on: ``record`` no longer touches the store."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the writer thread (waiting at most ``timeout`` s for a write in progress); what is
        still queued stays for a last ``flush``."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Have the writer thread try now (the store may be back); never blocks."""
        self._wake.set()

    def record(self, results: Sequence[CheckResult]) -> None:
        """Queue ``results`` and have them written: by the writer thread once started (returns at
        once), else here and now. Never raises."""
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
        if self._thread is not None:
            self._wake.set()
        else:
            self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            # Woken by record() or wake(); otherwise retry what is queued every retry_seconds.
            self._wake.wait(self._retry_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # a bug must not end the thread that keeps results from being lost
                log.exception("store writer: flush failed")

    def flush(self) -> bool:
        """Write what is queued; True when the queue is empty afterwards. Never raises; returns
        within the store's deadlines (plus the wait for a write already in progress)."""
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

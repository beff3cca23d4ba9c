"""The jobs of one exporter process, run by APScheduler.

Every job is coalesced (missed runs collapse into one), never overlaps itself (``max_instances=1``)
and may start late by at most its misfire grace time. A job that raises is logged and counted in
``blocktrust_job_runs_total{outcome="error"}``; the scheduler carries on. ``stop`` lets the jobs in
flight finish (bounded by a deadline) so the caller can flush the store afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[], object]
    interval: float  # seconds
    run_at_start: bool = True


class Scheduler:
    def __init__(self, metrics: Metrics, *, workers: int = 8) -> None:
        self._metrics = metrics
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone="UTC",
        )
        self._in_flight = 0
        self._idle = threading.Condition()
        self._stopping = False

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running) and not self._stopping

    def add(self, job: Job) -> None:
        options: dict[str, object] = {}
        if job.run_at_start:
            options["next_run_time"] = datetime.now(UTC)
        # Otherwise APScheduler's default: one interval from now. (An explicit next_run_time=None
        # would add the job *paused*: it would never run.)
        self._scheduler.add_job(
            self._wrap(job),
            "interval",
            seconds=job.interval,
            id=job.name,
            name=job.name,
            # A run late by more than half an interval is skipped; the next one is near anyway.
            misfire_grace_time=max(1, int(job.interval / 2)),
            **options,
        )

    def _wrap(self, job: Job) -> Callable[[], None]:
        def run() -> None:
            with self._idle:
                if self._stopping:
                    return
                self._in_flight += 1
            try:
                job.func()
            except Exception:
                self._metrics.job_runs.labels(task=job.name, outcome="error").inc()
                log.exception("job failed job=%s", job.name)
            else:
                self._metrics.job_runs.labels(task=job.name, outcome="success").inc()
            finally:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()

        return run

    def start(self) -> None:
        self._scheduler.start()

    def stop(self, timeout: float) -> bool:
        """Start no new runs, wait up to ``timeout`` s for runs in flight; True if all finished."""
        with self._idle:
            self._stopping = True
        if self._scheduler.running:  # stop() may be called again to wait longer
            self._scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("jobs still running at shutdown count=%d", self._in_flight)
                    return False
                self._idle.wait(remaining)
        return True

"""The jobs of one exporter process, each run every ``interval`` seconds of monotonic time.

Every job runs at start (or one interval later), then on a fixed grid of its interval measured on
``Clock.monotonic``, so a wall clock stepped back or forward (NTP, an operator, a VM resumed) changes
no schedule. A job never overlaps itself: a run still going when the next is due delays that one,
which starts when the run ends if that is within half an interval of its time, else the missed runs
collapse into the next grid time (logged). A job may ask to run again at once (``Job.again`` says so of
a run's result: the listener with a backlog left): its next run starts as soon as this one ended,
back to back, and its grid restarts from there; that is a re-run, not a missed one (counted in
``blocktrust_scheduler_job_reruns_total``, nothing is logged as skipped). Such a job's runs are bounded by
a budget of their own, not by its interval, so none of its runs is ever late: when its last run of a
backlog outlasted the interval, the next starts as that one ends (not counted as a re-run). Each run has its own
thread, so a wedged job holds no other. A job that raises is logged and counted in
``blocktrust_job_runs_total{outcome="error"}``; the scheduler carries on. A ``StoreError`` (the store
is down: expected, retried) is one error line; anything else is a bug and is logged with its
traceback. ``stop`` starts no new run and waits (bounded) for the runs in flight, so the caller can
flush the store afterwards.

Liveness: a job none of whose runs has completed for ``STALL_INTERVALS`` intervals (and at least
``MIN_STALL_SECONDS``) is *stalled*; ``health()`` names it, and ``/healthz`` and ``/readyz`` fail on it.
``blocktrust_scheduler_job_last_success_timestamp_seconds{task}`` (wall time, a timestamp)
and ``blocktrust_scheduler_job_interval_seconds`` let Prometheus see the same.

Why not APScheduler, which ran these jobs before: APScheduler 3 keeps each job's next run as a
wall-clock datetime and its loop compares it with ``datetime.now()``, so a clock stepped back one
minute held every job (no check round for 67 s), and a step forward fires runs early. The process has
only fixed-interval jobs, and its one calendar question, maintenance windows, is answered against the
wall clock by the alert engine at each of its runs; what APScheduler would add is a thread pool.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.clock import Clock, SystemClock
from exporter.metrics import Metrics
from exporter.store.base import StoreError

log = logging.getLogger(__name__)

STALL_INTERVALS = 3  # a job with no completed run for this many intervals is stalled ...
MIN_STALL_SECONDS = 120.0  # ... but never sooner: a store call or RPC retry may legitimately take a while
MISFIRE_GRACE = 0.5  # of an interval: a run may start this late (after an overrun), else it is skipped
_IDLE_WAKE_SECONDS = 60.0  # the loop looks again at least this often (a job added meanwhile wakes it anyway)
_ERROR_WAKE_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[], object]
    interval: float  # seconds
    run_at_start: bool = True
    # Given a run's result: True to start the next run at once (back to back) instead of on the grid.
    again: Callable[[object], bool] | None = None


@dataclass
class _State:
    job: Job
    due: float = math.inf  # Clock.monotonic() of the next run
    running: bool = False
    alive_since: float = 0.0  # Clock.monotonic() of the last completed run (or of the start)


def stall_limit(interval: float) -> float:
    """Seconds without a completed run after which a job of ``interval`` s counts as stalled."""
    return max(STALL_INTERVALS * interval, MIN_STALL_SECONDS)


class Scheduler:
    """Runs ``Job``s on ``clock``'s monotonic time; see the module docstring. Thread-safe."""

    def __init__(self, metrics: Metrics, clock: Clock | None = None) -> None:
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._jobs: dict[str, _State] = {}
        self._lock = threading.Condition()  # guards the states; notified when a run ends
        self._wake = threading.Event()  # the loop looks again (a run ended, a job was added, stop)
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def add(self, job: Job) -> None:
        """Schedule ``job`` (before or after ``start``); ``ValueError`` if its name is taken."""
        if job.interval <= 0:
            raise ValueError(f"job {job.name}: interval must be positive, got {job.interval}")
        with self._lock:
            if job.name in self._jobs:
                raise ValueError(f"job {job.name} is already scheduled")
            state = _State(job)
            self._jobs[job.name] = state
            if self._thread is not None:
                self._arm(state, self._clock.monotonic())
            self._metrics.job_interval.labels(task=job.name).set(job.interval)
        self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the scheduler was already started")
            now = self._clock.monotonic()
            for state in self._jobs.values():
                self._arm(state, now)
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Start no new runs, wait up to ``timeout`` s for runs in flight; True if all finished.
        May be called again to wait longer."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        # Real time, not the injected clock: this waits for threads.
        deadline = time.monotonic() + timeout
        with self._lock:
            while running := [s.job.name for s in self._jobs.values() if s.running]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("jobs still running at shutdown count=%d jobs=%s", len(running), ",".join(running))
                    return False
                self._lock.wait(remaining)
        return True

    # ------------------------------------------------------------------------------ liveness
    def stalled(self) -> list[str]:
        """Why the scheduler is not live, one line per cause (empty: live): the loop has died, or a job
        has completed no run for ``stall_limit(interval)`` seconds. Not started or stopping: live."""
        with self._lock:
            if self._thread is None or self._stopping:
                return []
            causes = [] if self._thread.is_alive() else ["the scheduler loop is not running"]
            now = self._clock.monotonic()
            for name, state in self._jobs.items():
                silent = now - state.alive_since
                if silent > stall_limit(state.job.interval):
                    doing = "its run has not returned" if state.running else "it has not run"
                    causes.append(
                        f"job {name} completed no run for {silent:.0f}s ({doing}; "
                        f"interval {state.job.interval:g}s, stalled after {stall_limit(state.job.interval):g}s)"
                    )
            return causes

    def health(self) -> tuple[bool, str]:
        """``(True, "ok")``, or ``(False, reason)`` naming every stalled job (``/healthz``)."""
        causes = self.stalled()
        return (False, "scheduler stalled: " + "; ".join(causes)) if causes else (True, "ok")

    def busy(self) -> list[str]:
        """The jobs running or due now (tests wait for none before moving a fake clock on)."""
        with self._lock:
            now = self._clock.monotonic()
            return [name for name, s in self._jobs.items() if s.running or (s.due <= now and not self._stopping)]

    # ------------------------------------------------------------------------------- the loop
    def _arm(self, state: _State, now: float) -> None:
        state.due = now if state.job.run_at_start else now + state.job.interval
        state.alive_since = now

    def _loop(self) -> None:
        while True:
            self._wake.clear()  # before looking: a wake-up from now on is not lost
            with self._lock:
                if self._stopping:
                    return
                try:
                    wait = self._launch_due(self._clock.monotonic())
                except Exception:
                    log.exception("scheduler: cannot start the due runs")
                    wait = _ERROR_WAKE_SECONDS
            self._clock.wait(self._wake, wait)

    def _launch_due(self, now: float) -> float:
        """Start the runs that are due (lock held); the seconds until the next one is."""
        wait = _IDLE_WAKE_SECONDS
        for state in self._jobs.values():
            if state.running:
                continue  # its end wakes the loop
            self._skip_missed(state, now)
            if state.due <= now:
                state.running = True
                state.due += state.job.interval
                threading.Thread(target=self._run, args=(state,), name=f"job-{state.job.name}", daemon=True).start()
            else:
                wait = min(wait, state.due - now)
        return max(0.0, wait)

    @staticmethod
    def _skip_missed(state: _State, now: float) -> None:
        """A run too late to start (the previous one overran, the process was frozen) is skipped; the
        job keeps its grid."""
        interval = state.job.interval
        late = now - state.due
        grace = interval * MISFIRE_GRACE
        if late > grace:
            missed = math.ceil((late - grace) / interval)
            state.due += missed * interval
            log.warning("job %s: %d run(s) skipped, the previous run ended too late", state.job.name, missed)

    def _run(self, state: _State) -> None:
        job = state.job
        rerun = False
        try:
            result = job.func()
            rerun = job.again is not None and job.again(result)
        except StoreError as exc:  # an expected outage (the store retries on its own): one line
            self._metrics.job_runs.labels(task=job.name, outcome="error").inc()
            log.error("job failed job=%s error=%r", job.name, str(exc))
        except Exception:  # a bug: its traceback
            self._metrics.job_runs.labels(task=job.name, outcome="error").inc()
            log.exception("job failed job=%s", job.name)
        else:
            self._metrics.job_runs.labels(task=job.name, outcome="success").inc()
            self._metrics.job_last_success.labels(task=job.name).set(self._clock.now().timestamp())
        finally:
            with self._lock:
                state.running = False
                state.alive_since = self._clock.monotonic()
                if rerun and not self._stopping:
                    state.due = state.alive_since  # back to back: the grid restarts from this run's end
                    self._metrics.job_reruns.labels(task=job.name).inc()
                elif job.again is not None and state.due < state.alive_since:
                    # A job that runs back to back by design (its runs are bounded by a budget of their
                    # own, not its interval) is never late: after a long last run, the next starts now.
                    state.due = state.alive_since
                self._lock.notify_all()
            self._wake.set()

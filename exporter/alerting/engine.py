"""The alert engine: *when* to notify, and the lifecycle of incidents (opened, reminded, resolved).

Per check it counts consecutive failures (``failure_threshold`` before firing) and successes
(``success_threshold`` before resolving), so a flapping check stays quiet. Firing opens one incident
(at most one open per check), resolving sets ``resolved_at``; reminders repeat while an incident stays
open; maintenance windows hold notifications back and the engine sends what is still relevant when
the window ends. State is rebuilt from the open incidents, so a restart sends no duplicate.

More than one engine may share the store (the ``listen`` process, another replica): every ``tick``
reconciles the open incidents in memory with the store's (one query), dropping those resolved
elsewhere and adopting those opened elsewhere without announcing them again. ``owned`` limits what an
engine adopts, so the ``listen`` process manages only its own incidents (``listener.reorg``) and the
main process leaves those alone. Each notice is a compare-and-set on the incident row (the ledger's
``claim_notice`` and ``resolve``): of replicas that find the same notice due, exactly one sends it.
``known`` lets the process that runs the checks resolve the incidents of checks that are no longer
configured: at start and at each ``tick``, but only those of checks no process has recorded a result
for within ``removed_after`` (a replica still on an older configuration runs it: its incident is
left to that replica).

No caller waits for the engine's store calls: once ``start``ed, every entry point hands its work to
the engine's own thread through a bounded queue (in order; a full queue is an error log and
``blocktrust_alert_engine_queue_full_total``), so a stalled store delays alerts, never a check round.
Before ``start`` (tests, one thread) the work is done when the call returns.

It knows nothing of any channel: alerts go to an ``AlertSink`` (the ``notifier``), whose ``submit``
never blocks. Nor does it touch the store: the ``IncidentLedger`` (ledger.py) records incidents, and
store errors never reach the engine or silence an alert: the exporter often shares its PostgreSQL
with the API it watches, so "the database is down" is exactly when the API's failure must still be
announced. An incident the store cannot take is kept in memory, notified as usual, and written
(opened, notified, resolved) by the ledger once the store answers again.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fnmatch
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from exporter.alerting.alert import Alert, AlertState
from exporter.alerting.dependencies import LOGIN, Dependencies, login_result
from exporter.alerting.ledger import UNSAVED, IncidentLedger
from exporter.alerting.maintenance import MaintenanceCalendar
from exporter.clock import Clock
from exporter.config import HEARTBEAT_CHECK, AlertingSettings, CheckSpec, default_checks
from exporter.metrics import Metrics
from exporter.redact import no_redaction
from exporter.store.base import CheckResult, Incident, Store

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warn", "crit")
# The default checks' severities (api.health and listener.lag are crit), declared once in the specs.
DEFAULT_SEVERITIES = {spec.name: spec.severity for spec in default_checks()}
DEFAULT_TITLES = {
    "api.health": "API /health unavailable",
    "api.events": "API /explorer/events failing",
    "api.contracts": "API /explorer/contracts failing",
    "api.stats": "API /explorer/stats failing",
    "listener.lag": "Listener lagging behind the chain",
    "listener.progress": "Listener not processing blocks",
    "synthetic.hash": "Synthetic test hash-file failing",
    "synthetic.wallet_info": "Synthetic test wallet/info failing",
    "synthetic.nft_status": "Synthetic test nft/status failing",
    LOGIN: "Monitoring account cannot log in",
}
# Rows that are not check results (the listener's heartbeat) never raise an incident.
NOT_CHECKS = frozenset({HEARTBEAT_CHECK})
_MAX_DETAIL = 500
REMOVED_CHECK_REASON = "Check removed from configuration"
# Incidents about a check under another name (the SLO report's ``slo.<check>``): their results are the check's.
DERIVED_PREFIXES = ("slo.",)
ENGINE_QUEUE_SIZE = 1000


class AlertSink(Protocol):
    def submit(self, alert: Alert) -> None:
        """Take the alert for delivery (at most a store write: never waits for a channel). An alert with
        ``not_before`` is delivered from then on."""


@dataclass(frozen=True)
class CheckPolicy:
    """How one check alerts."""

    severity: str = "warn"
    failure_threshold: int = 2
    success_threshold: int = 2
    title: str | None = None  # None: a default title from the check name


def check_policies(settings: AlertingSettings, specs: Iterable[CheckSpec]) -> dict[str, CheckPolicy]:
    """The policy of each configured check: its own severity and thresholds, else the defaults."""
    policies: dict[str, CheckPolicy] = {}
    for spec in specs:
        severity = spec.severity if "severity" in spec.model_fields_set else default_severity(spec.name)
        policies[spec.name] = CheckPolicy(
            severity=severity,
            failure_threshold=spec.failure_threshold or settings.failure_threshold,
            success_threshold=spec.success_threshold or settings.success_threshold,
        )
    return policies


def default_severity(check_name: str) -> str:
    return DEFAULT_SEVERITIES.get(check_name, "warn")


def default_title(check_name: str) -> str:
    return DEFAULT_TITLES.get(check_name, f"Check {check_name} failing")


def describe_failure(details: Mapping[str, Any]) -> str:
    """One line for humans from a result's ``details`` (``Status code: 503; timeout``)."""
    parts: list[str] = []
    status = details.get("status_code")
    if isinstance(status, int) and not isinstance(status, bool):
        parts.append(f"Status code: {status}")
    for key in ("reason", "error", "message"):
        value = details.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
            break
    text = "; ".join(parts) or "Check failed"
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def owned_checks(include: Iterable[str] = ("*",), exclude: Iterable[str] = ()) -> Callable[[str], bool]:
    """An ``owned`` predicate from shell-style patterns: a check is owned when it matches one of
    ``include`` and none of ``exclude`` (``owned_checks(["listener.reorg"])`` for the ``listen``
    process, ``owned_checks(exclude=["listener.reorg"])`` for the main one)."""
    included, excluded = tuple(include), tuple(exclude)

    def owned(check_name: str) -> bool:
        return any(fnmatch.fnmatchcase(check_name, p) for p in included) and not any(
            fnmatch.fnmatchcase(check_name, p) for p in excluded
        )

    return owned


def _result_name(incident_name: str) -> str:
    """The check whose results an incident is about (``slo.api.health`` -> ``api.health``)."""
    for prefix in DERIVED_PREFIXES:
        if incident_name.startswith(prefix):
            return incident_name.removeprefix(prefix)
    return incident_name


def _own_everything(check_name: str) -> bool:
    return True


@dataclass
class _Streak:
    failures: int = 0
    successes: int = 0
    failing_since: datetime | None = None
    detail: str = ""


class AlertEngine:
    """Turns check results into incidents and notices. Thread-safe; every method returns quickly."""

    def __init__(
        self,
        store: Store,
        sink: AlertSink,
        clock: Clock,
        metrics: Metrics,
        settings: AlertingSettings,
        *,
        policies: Mapping[str, CheckPolicy] | None = None,
        redact: Callable[[str], str] = no_redaction,
        owned: Callable[[str], bool] | None = None,
        known: Callable[[str], bool] | None = None,
        removed_after: float = 0.0,
        queue_size: int = ENGINE_QUEUE_SIZE,
        dependencies: Dependencies | None = None,
    ) -> None:
        """``owned(check_name)`` says which incidents found in the store this engine adopts (at start and
        at each ``tick``), reminds about and resolves; None: all of them. Incidents the engine opens
        itself are always its own. ``known(check_name)``: whether a check (or an incident name such as
        ``listener.reorg``) still exists in the configuration; an owned open incident of one that does
        not is resolved (at start, and at a ``tick``), its notice saying why, once no process has
        recorded a result for it for ``removed_after`` seconds. None: every name is known.
        ``dependencies``: check name -> the names it depends on (``dependencies.resolve_dependencies``);
        None: no suppression."""
        self._ledger = IncidentLedger(store, clock, redact=redact)
        self._sink = sink
        self._clock = clock
        self._metrics = metrics
        self._settings = settings
        self._policies = dict(policies or {})
        self._redact = redact
        self._owned = owned or _own_everything
        self._known = known
        self._removed_after = timedelta(seconds=removed_after)
        self._work: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._full_logged = False
        self._foreign_logged: set[str] = set()
        self._maintenance = MaintenanceCalendar(settings.maintenance)
        self._reminder = timedelta(seconds=settings.reminder_interval)
        self._lock = threading.Lock()
        self._streaks: dict[str, _Streak] = {}
        self._open: dict[str, Incident] = {}
        self._dependencies: Dependencies = dict(dependencies or {})
        # Open incidents whose notices are held back: a dependency's failure explains them.
        self._held: set[str] = set()
        # Held check -> consecutive rounds it failed with no failing dependency (see _release_held).
        self._unexplained: dict[str, int] = {}
        self._round: dict[str, bool] = {}  # check -> passed, in the round observe() is deciding
        # Dependencies this engine has no result of (another replica runs them: checks.run_on shard):
        # check -> failing, from the store's latest rows, read at most once per round (None: not yet).
        self._elsewhere: dict[str, bool] | None = None
        # check -> (its incident's last_notified_at, clock.monotonic() at that notice): see _reminder_due.
        self._notified_mono: dict[str, tuple[datetime, float]] = {}
        self._loaded = False
        # Work handed in while another thread runs the engine (see _run): no caller ever waits for the
        # lock, so a store call that takes its whole deadline delays alerts, never a check round.
        self._pending: collections.deque[Callable[[], None]] = collections.deque()
        with self._lock:
            self._sync()

    # ------------------------------------------------------------------------ entry points
    def observe(self, results: Sequence[CheckResult]) -> None:
        """Account one round of results; opens, resolves and notifies as the thresholds say."""
        batch = list(results)

        def work() -> None:
            self._sync()
            checks = [result for result in batch if result.check_name not in NOT_CHECKS]
            login = login_result(checks, self._dependencies)
            if login is not None:
                checks.append(login)
            # The round's own verdicts come first when suppression asks whether a dependency fails, so
            # that its failure in this same round explains its dependants' (whatever the order).
            self._round = {result.check_name: result.ok for result in checks}
            self._elsewhere = None
            for result in checks:
                if result.ok:
                    self._on_success(result)
                else:
                    self._on_failure(result)
            self._round = {}
            self._release_held({result.check_name for result in checks})
            self._elsewhere = None
            self._send_due()
            self._update_gauge()

        self._run(work)

    def tick(self) -> None:
        """Time-driven work: catching up with the store (incidents opened or resolved by another engine),
        reminders, and firing notices held back by a maintenance window that ended (resolved notices
        held by one wait in the notifier's outbox)."""

        def work() -> None:
            self._sync(reconcile=True)
            self._send_due()
            self._update_gauge()

        self._run(work)

    def raise_incident(self, check_name: str, severity: str, title: str, detail: str) -> None:
        """Open (and notify) an incident at once, without a threshold; no-op if one is open for the check.

        Like ``resolve``, it first reconciles with the store (one query): the incident this engine holds
        may have been resolved elsewhere, and a new one must not be taken for it."""

        def work() -> None:
            self._sync(reconcile=True)
            if check_name not in self._open:
                self._open_incident(check_name, severity, title, detail, self._clock.now())
            self._send_due()
            self._update_gauge()

        self._run(work)

    def raise_critical(self, check_name: str, title: str, detail: str) -> None:
        """A ``crit`` incident now (e.g. the listener met a reorg deeper than it can roll back)."""
        self.raise_incident(check_name, "crit", title, detail)

    def resolve(self, check_name: str) -> None:
        """Resolve the open incident of ``check_name``, if any: an SLO back within its objective, the
        listener ingesting again after ``listener.reorg``. It reconciles with the store first (one
        query), so an owned incident opened by another engine since the last ``tick`` is resolved too,
        and one already resolved elsewhere is not announced as resolved twice."""

        def work() -> None:
            self._sync(reconcile=True)
            incident = self._open.get(check_name)
            if incident is not None:
                self._resolve(incident, self._clock.now())
            self._update_gauge()

        self._run(work)

    def _run(self, work: Callable[[], None]) -> None:
        """Run ``work`` under the lock, in the order handed in, without ever waiting for the lock.

        The engine's work includes store calls (bounded by the store's deadlines, but a stalled store
        may take all of one). A caller that finds the engine busy leaves its work in ``_pending`` and
        returns at once; the thread holding the lock runs it before letting go, and looks again after
        letting go, so nothing handed in is left behind. Uncontended (a test, one thread), the work is
        done when the call returns.

        Once ``start``ed, the work goes to the engine's thread instead (see ``start``)."""
        if self._thread is not None and not self._stopped.is_set():
            try:
                self._work.put_nowait(work)
                self._full_logged = False
            except queue.Full:
                self._metrics.alert_engine_queue_full.inc()
                if not self._full_logged:  # once per burst; the counter counts every one
                    self._full_logged = True
                    log.error(
                        "alert engine: its queue is full (%d items; the store is stalled?): work dropped",
                        self._work.maxsize,
                    )
            return
        self._pending.append(work)
        while self._pending:
            if not self._lock.acquire(blocking=False):
                return  # the holder runs it
            try:
                while self._pending:
                    job = self._pending.popleft()
                    try:
                        job()
                    except Exception:
                        log.exception("alert engine: unexpected error (the engine carries on)")
                        self._metrics.alerting_errors.labels(worker="engine").inc()
            finally:
                self._lock.release()

    # ------------------------------------------------------------------------ own thread
    def start(self) -> None:
        """Do the engine's work on its own thread from now on: no caller waits for a store call."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="alert-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Finish the work handed in (within ``timeout`` real seconds), then do later work inline."""
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout)
        self._stopped.set()
        with contextlib.suppress(queue.Full):
            self._work.put_nowait(lambda: None)  # wakes an idle thread; it ends after this
        thread.join(max(timeout, 0.1))

    def flush(self, timeout: float) -> bool:
        """Wait (real seconds) until the work handed in so far is done; False on timeout."""
        pending = self._work
        with pending.all_tasks_done:
            return pending.all_tasks_done.wait_for(lambda: pending.unfinished_tasks == 0, timeout)

    def health(self) -> tuple[bool, str]:
        """For ``/healthz``: False when the started engine thread is no longer running."""
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stopped.is_set():
            return False, "alert engine thread dead"
        return True, "ok"

    def _take_pending(self) -> list[Callable[[], None]]:
        taken: list[Callable[[], None]] = []
        while self._pending:
            taken.append(self._pending.popleft())
        return taken

    def _serve(self) -> None:
        while True:
            job = self._work.get()
            try:
                with self._lock:
                    for work in (job, *self._take_pending()):  # pending: handed in inline after ``stop``
                        try:
                            work()
                        except Exception:
                            log.exception("alert engine: unexpected error (the engine carries on)")
                            self._metrics.alerting_errors.labels(worker="engine").inc()
            finally:
                self._work.task_done()
            if self._stopped.is_set() and self._work.empty():
                return

    # ------------------------------------------------------------------------------ state
    def _sync(self, *, reconcile: bool = False) -> None:
        """Have the ledger write what the store missed while it was down, then adopt the store's open
        incidents (at the first chance, and again when ``reconcile`` is set). At most one query when
        there is nothing to write back; none while the ledger's store back-off is active."""
        stored = self._ledger.catch_up(self._open, read=not self._loaded or reconcile)
        if stored is None:
            return
        if not self._loaded:
            self._load(stored)
        else:
            self._reconcile(stored)
            self._resolve_removed()

    def _load(self, stored: list[Incident]) -> None:
        """The first look at the store: our own incidents from before a restart. One never announced
        (the process died first) is announced now."""
        incidents = [i for i in stored if self._owned(i.check_name)]
        for incident in incidents:
            self._open.setdefault(incident.check_name, incident)
            self._hold_if_suppressed(incident)
        self._loaded = True
        if incidents:
            log.info("alert engine resumed %d open incident(s)", len(incidents))
        self._resolve_removed()
        self._update_gauge()

    def _resolve_removed(self) -> None:
        """Resolve the open incidents of checks not in this configuration that no process has recorded
        a result for within ``removed_after``; the others are left to the replica that runs them."""
        known = self._known
        if known is None:
            return
        unknown = [i for i in self._open.values() if not known(i.check_name)]
        if not unknown:
            return
        now = self._clock.now()
        names = {i.check_name: _result_name(i.check_name) for i in unknown}
        recent = self._ledger.ran_since(sorted(set(names.values())), now - self._removed_after)
        if recent is None:
            return  # the store cannot tell now: ask again at the next tick
        for incident in unknown:
            if names[incident.check_name] in recent:
                if incident.check_name not in self._foreign_logged:
                    self._foreign_logged.add(incident.check_name)
                    log.info(
                        "incident %d of %s kept open: not in this configuration, but another process ran it "
                        "within %.0fs",
                        incident.id,
                        incident.check_name,
                        self._removed_after.total_seconds(),
                    )
                continue
            log.warning(
                "incident %d of %s resolved: the check was removed from (or renamed in) the configuration",
                incident.id,
                incident.check_name,
            )
            self._resolve(incident, now, reason=REMOVED_CHECK_REASON)

    def _reconcile(self, open_in_store: list[Incident]) -> None:
        """Make the open incidents in memory those of the store, where another engine may have changed them.

        Called only after a complete write-back, so every incident in memory has its id and every
        resolution is recorded: what differs from the store was done elsewhere.
        """
        stored = {incident.check_name: incident for incident in open_in_store}
        for check_name, mine in list(self._open.items()):
            theirs = stored.get(check_name)
            if theirs is None or theirs.id != mine.id:
                # Resolved elsewhere; whoever resolved it announced the end (if the start was announced).
                del self._open[check_name]
                self._held.discard(check_name)
                self._unexplained.pop(check_name, None)
                log.info("incident %d of %s was resolved by another process", mine.id, check_name)
            elif theirs.last_notified_at is not None and (
                mine.last_notified_at is None or theirs.last_notified_at > mine.last_notified_at
            ):
                # Another engine reminded: the next reminder counts from its notice, not ours.
                self._open[check_name] = dataclasses.replace(mine, last_notified_at=theirs.last_notified_at)
        now = self._clock.now()
        for check_name, theirs in stored.items():
            if check_name in self._open or not self._owned(check_name):
                continue
            # Opened elsewhere: the engine that opened it sends the firing notice; this one only reminds,
            # counting from now if the opener has not recorded its notice yet. One held back by its
            # dependency stays held here too.
            if self._hold_if_suppressed(theirs):
                self._open[check_name] = theirs
            else:
                self._open[check_name] = (
                    theirs if theirs.last_notified_at is not None else dataclasses.replace(theirs, last_notified_at=now)
                )
            log.info("adopted incident %d of %s, opened by another process", theirs.id, check_name)

    def _hold_if_suppressed(self, incident: Incident) -> bool:
        """Hold a stored incident whose notices were held back and never sent; True if it is held."""
        if incident.suppressed_by is not None and incident.last_notified_at is None:
            self._held.add(incident.check_name)
            return True
        return False

    def _policy(self, check_name: str) -> CheckPolicy:
        policy = self._policies.get(check_name)
        if policy is None:
            policy = CheckPolicy(
                severity=default_severity(check_name),
                failure_threshold=self._settings.failure_threshold,
                success_threshold=self._settings.success_threshold,
            )
            self._policies[check_name] = policy
        return policy

    def _on_failure(self, result: CheckResult) -> None:
        streak = self._streaks.setdefault(result.check_name, _Streak())
        streak.failures += 1
        streak.successes = 0
        streak.failing_since = streak.failing_since or result.ts
        streak.detail = self._redact(describe_failure(result.details))
        policy = self._policy(result.check_name)
        if result.check_name in self._open or streak.failures < policy.failure_threshold:
            return
        title = policy.title or default_title(result.check_name)
        # The incident starts with the first failure of the streak: that is "since when" it is down.
        cause = self._suppressor(result.check_name)
        self._open_incident(
            result.check_name, policy.severity, title, streak.detail, streak.failing_since, suppressed_by=cause
        )

    def _failing(self, check_name: str) -> bool:
        """The check's real state: its result in the round being observed, else its last result failed
        (whether or not anyone was told); for a check this engine has seen no result of (another
        replica runs it), its latest row in the store, from any process."""
        if check_name in self._round:
            return not self._round[check_name]
        streak = self._streaks.get(check_name)
        if streak is not None:
            return streak.failures > 0
        return self._failing_elsewhere().get(check_name, False)

    def _failing_elsewhere(self) -> dict[str, bool]:
        """The dependencies with no result here, by their latest stored result (one query per round;
        a result older than ``removed_after`` says nothing; the store unable to answer: none fails)."""
        if self._elsewhere is None:
            wanted = sorted(
                {
                    dep
                    for deps in self._dependencies.values()
                    for dep in deps
                    if dep != LOGIN and dep not in self._round and dep not in self._streaks
                }
            )
            since = self._clock.now() - self._removed_after if self._removed_after else None
            latest = self._ledger.latest_results(wanted) if wanted else {}
            self._elsewhere = {
                name: not row.ok for name, row in (latest or {}).items() if since is None or row.ts >= since
            }
        return self._elsewhere

    def _suppressor(self, check_name: str) -> str | None:
        """The failing dependency that explains ``check_name``'s failure, followed down through failing
        dependencies to the deepest (the root cause); None when no dependency of it fails now. A
        dependency that passes breaks the chain: what it depends on explains nothing above it."""
        cause: str | None = None
        seen = {check_name}
        current = check_name
        while True:
            failing = [d for d in self._dependencies.get(current, ()) if d not in seen and self._failing(d)]
            if not failing:
                return cause
            cause = current = failing[0]
            seen.add(current)

    def _release_held(self, observed: set[str]) -> None:
        """Notify the held incidents no dependency explains any more, once their check has failed
        ``failure_threshold`` rounds of ``observed`` (the names this round had a result for) on its
        own: the dependency recovered and this one did not, so it is a problem of its own now. The
        threshold gives a dependant the time to recover that a new failure gets: one that reads its
        input asynchronously (``listener.progress`` a heartbeat up to a poll old) may still fail in
        the round its dependency is back. One whose check passes again stays held (it is recovering)
        and resolves without a word."""
        for check_name in sorted(self._held):
            if check_name not in self._open:
                self._held.discard(check_name)
                self._unexplained.pop(check_name, None)
            elif self._failing(check_name) and self._suppressor(check_name) is None:
                if check_name not in observed:
                    continue
                alone = self._unexplained[check_name] = self._unexplained.get(check_name, 0) + 1
                if alone < self._policy(check_name).failure_threshold:
                    continue
                self._held.discard(check_name)
                self._unexplained.pop(check_name, None)
                log.warning("incident of %s no longer explained by a dependency: notifying it", check_name)
            else:
                self._unexplained.pop(check_name, None)

    def _on_success(self, result: CheckResult) -> None:
        streak = self._streaks.setdefault(result.check_name, _Streak())
        streak.successes += 1
        streak.failures = 0
        streak.failing_since = None
        incident = self._open.get(result.check_name)
        if incident is not None and streak.successes >= self._policy(result.check_name).success_threshold:
            self._resolve(incident, result.ts)

    def _open_incident(
        self, check_name: str, severity: str, title: str, detail: str, at: datetime, *, suppressed_by: str | None = None
    ) -> None:
        incident = self._ledger.open(
            check_name, severity, self._redact(title), self._redact(detail), at, suppressed_by=suppressed_by
        )
        self._open[check_name] = incident
        self._held.discard(check_name)
        self._unexplained.pop(check_name, None)
        if suppressed_by is not None and incident.last_notified_at is None:
            self._held.add(check_name)
            self._metrics.alert_notices_suppressed.labels(check=check_name).inc()
            log.warning(
                "incident opened for %s: %s (not notified: %s, which it depends on, is failing)",
                check_name,
                incident.title,
                suppressed_by,
            )
            return
        log.warning("incident opened for %s: %s", check_name, incident.title)
        # The firing notice goes out from _send_due; an incident someone else already notified
        # (another engine before a restart) has last_notified_at set and is not announced again.

    def _resolve(self, incident: Incident, at: datetime, reason: str | None = None) -> None:
        # Compare-and-set in the store: of replicas resolving the same incident, one announces it; and
        # only if someone was told it fired, so nobody hears of the end of what they never heard of.
        announce = self._ledger.resolve(incident, at, reason)
        del self._open[incident.check_name]
        self._held.discard(incident.check_name)
        self._unexplained.pop(incident.check_name, None)
        self._streaks.pop(incident.check_name, None)
        log.info("incident resolved for %s%s", incident.check_name, f" ({reason})" if reason else "")
        if not announce:
            return
        alert = self._alert(incident, "resolved", at)
        if reason:
            alert = dataclasses.replace(alert, detail=reason)
        now = self._clock.now()
        if self._maintenance.active(incident.check_name, now):
            # Held until the window ends, by the notifier's persisted outbox: a restart does not lose it.
            alert = dataclasses.replace(alert, not_before=self._maintenance.ends(incident.check_name, now))
        self._sink.submit(alert)

    # ------------------------------------------------------------------------- notifying
    def _send_due(self) -> None:
        now = self._clock.now()
        for incident in list(self._open.values()):
            if self._maintenance.active(incident.check_name, now) or incident.check_name in self._held:
                continue
            if incident.last_notified_at is None:
                self._notify(incident, now, reminder=False)
            elif self._reminder_due(incident.check_name, incident.last_notified_at, now):
                self._notify(incident, now, reminder=True)

    def _reminder_due(self, check_name: str, last_notified_at: datetime, now: datetime) -> bool:
        """Whether ``reminder_interval`` has passed since the last notice, on the monotonic clock, so that
        a wall-clock step neither holds a reminder back nor sends one early. A notice this engine did not
        send (another engine's, one from before a restart) is a wall timestamp: it is converted once,
        when first seen, to the monotonic moment it is that long ago."""
        mono = self._clock.monotonic()
        seen = self._notified_mono.get(check_name)
        if seen is None or seen[0] != last_notified_at:
            ago = max(0.0, (now - last_notified_at).total_seconds())
            seen = self._notified_mono[check_name] = (last_notified_at, mono - ago)
        return mono - seen[1] >= self._reminder.total_seconds()

    def _notify(self, incident: Incident, now: datetime, *, reminder: bool) -> None:
        # Claimed in the store first (compare-and-set on the last notice this engine knows of, so no
        # wall-clock arithmetic): of replicas that find the same notice due, one sends it. The loser
        # takes the notice as sent now; its next reconcile reads the exact time.
        due_before = incident.last_notified_at if reminder else None
        if self._ledger.claim_notice(incident, now, due_before):
            self._notified_mono[incident.check_name] = (now, self._clock.monotonic())
            self._sink.submit(self._alert(incident, "firing", now, reminder=reminder))
        self._open[incident.check_name] = dataclasses.replace(incident, last_notified_at=now)

    def _alert(self, incident: Incident, state: AlertState, at: datetime, *, reminder: bool = False) -> Alert:
        streak = self._streaks.get(incident.check_name)
        detail = streak.detail if streak is not None and streak.detail and state == "firing" else incident.detail
        return Alert(
            check_name=incident.check_name,
            severity=incident.severity,
            state=state,
            title=incident.title,
            detail=detail,
            since=incident.opened_at,
            at=at,
            incident_id=incident.id if incident.id != UNSAVED else None,
            reminder=reminder,
            dashboard_url=self._settings.dashboard_url,
        )

    def _update_gauge(self) -> None:
        counts = dict.fromkeys(SEVERITIES, 0)
        for incident in self._open.values():
            counts[incident.severity] = counts.get(incident.severity, 0) + 1
        for severity, count in counts.items():
            self._metrics.incidents_open.labels(severity=severity).set(count)

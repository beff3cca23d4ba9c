"""The incident ledger: the alert engine's only access to ``monitor_incidents``.

It records incidents opened, notified and resolved, and never lets a store failure reach the
engine: an incident the store cannot take is handed back unsaved (id ``UNSAVED``) and written,
in order, once the store answers again, together with the resolutions and notices the store
missed. After a failed call it leaves the store alone for ``STORE_RETRY_SECONDS``: with the store
down each call may wait for a connect timeout, and alerts wait behind it on the engine's thread.

Not for deciding anything (thresholds, reminders, who owns what): that is ``engine.py``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, MutableMapping, Sequence
from datetime import datetime

from exporter.clock import Clock
from exporter.redact import no_redaction
from exporter.store.base import CheckResult, Incident, Store, StoreError

log = logging.getLogger(__name__)

UNSAVED = 0  # the id of an incident the store has not taken yet (SERIAL ids start at 1)
STORE_RETRY_SECONDS = 30.0


class IncidentLedger:
    """``monitor_incidents`` as the engine sees it, with a write-back queue for store outages.

    Not thread-safe on its own: the engine calls it under its lock."""

    def __init__(self, store: Store, clock: Clock, *, redact: Callable[[str], str] = no_redaction) -> None:
        self._store = store
        self._clock = clock
        self._redact = redact
        self._unwritten: list[tuple[Incident, datetime]] = []  # resolved, but the store missed it
        self._unnoted: dict[int, datetime] = {}  # notices the store missed: incident id -> when
        self._paused_until = float("-inf")  # clock.monotonic()

    def usable(self) -> bool:
        """False while the back-off after a store failure lasts."""
        return self._clock.monotonic() >= self._paused_until

    def catch_up(self, open_now: MutableMapping[str, Incident], *, read: bool) -> list[Incident] | None:
        """Write what the store missed, saving the unsaved incidents of ``open_now`` in place (check name
        -> incident); then, if ``read``, return the store's open incidents. None when the store is in
        back-off, fails, or was not to be read. Writing back comes first: a resolution the store missed
        must not be read back as "still open"."""
        if not self.usable():
            return None
        try:
            self._write_back(open_now)
            return self._store.open_incidents() if read else None
        except StoreError as exc:
            self._failed("catching up with the store", exc)
            return None

    def open(
        self, check_name: str, severity: str, title: str, detail: str, at: datetime, *, suppressed_by: str | None = None
    ) -> Incident:
        """The incident recorded as opened at ``at`` (``suppressed_by``: the dependency that holds its
        notices back); unsaved (id ``UNSAVED``) when the store is not taking it now, or an earlier
        incident of the same check still waits to be written (one open per check)."""
        unsaved = Incident(UNSAVED, check_name, severity, title, detail, at, None, None, suppressed_by)
        if not self.usable() or any(earlier.check_name == check_name for earlier, _ in self._unwritten):
            return unsaved
        try:
            return self._open_in_store(unsaved)
        except StoreError as exc:
            self._failed(f"recording the incident of {check_name}", exc)
            return unsaved

    def resolve(self, incident: Incident, at: datetime, reason: str | None = None) -> bool:
        """Record the end of ``incident``, now or (after the ones before it, in order) once the store
        answers. True when its end is to be announced: this call resolved it (compare-and-set: another
        replica may have been first) and someone was told it fired. From memory while the store is
        not usable."""
        told = incident.last_notified_at is not None
        if incident.id == UNSAVED or self._unwritten or not self.usable():
            self._unwritten.append((incident, at))
            return told
        try:
            row = self._store.resolve_incident(incident.id, at, reason)
        except StoreError as exc:
            self._failed(f"recording that incident {incident.id} resolved", exc)
            self._unwritten.append((incident, at))
            return told
        if row is None:
            log.info("incident %d of %s was already resolved by another process", incident.id, incident.check_name)
            return False
        return row.last_notified_at is not None or incident.id in self._unnoted

    def claim_notice(self, incident: Incident, at: datetime, due_before: datetime | None) -> bool:
        """Whether this engine is the one to send a notice of ``incident`` now: the first one
        (``due_before`` None) or a reminder (the last notice at or before ``due_before``), decided by a
        compare-and-set in the store so that replicas sharing it send it once. Recorded as sent. From
        memory (True, written back later) while the store is not usable."""
        if incident.id == UNSAVED:
            return True  # its last notice is recorded when it is saved
        if not self.usable():
            self._unnoted[incident.id] = at
            return True
        try:
            return self._store.claim_notice(incident.id, at, due_before)
        except StoreError as exc:
            self._failed(f"recording the notice of incident {incident.id}", exc)
            self._unnoted[incident.id] = at
            return True

    def ran_since(self, check_names: Sequence[str], since: datetime) -> set[str] | None:
        """Which of ``check_names`` have a result (from any process) at or after ``since``; None when the
        store cannot say now (in back-off, or failing)."""
        latest = self.latest_results(check_names)
        return None if latest is None else {name for name, row in latest.items() if row.ts >= since}

    def latest_results(self, check_names: Sequence[str]) -> dict[str, CheckResult] | None:
        """The latest stored result (from any process) of each of ``check_names`` that has one; None
        when the store cannot say now (in back-off, or failing)."""
        if not self.usable():
            return None
        try:
            return self._store.latest_results(list(check_names))
        except StoreError as exc:
            self._failed("looking for recent results", exc)
            return None

    def _write_back(self, open_now: MutableMapping[str, Incident]) -> None:
        """Record, in order, the incidents that lived only in memory while the store was down."""
        while self._unwritten:
            incident, resolved_at = self._unwritten[0]
            if incident.id == UNSAVED:
                incident = self._save(incident)
                self._unwritten[0] = (incident, resolved_at)
            self._store.resolve_incident(incident.id, resolved_at)
            self._unwritten.pop(0)
        for check_name, incident in list(open_now.items()):
            if incident.id == UNSAVED:
                open_now[check_name] = self._save(incident)
        for incident_id, notified_at in list(self._unnoted.items()):
            self._store.mark_notified(incident_id, notified_at)
            del self._unnoted[incident_id]

    def _open_in_store(self, incident: Incident) -> Incident:
        args = (incident.check_name, incident.severity, incident.title, incident.detail, incident.opened_at)
        if incident.suppressed_by is None:  # the call as it was before suppression (wrapping stores rely on it)
            return self._store.open_incident(*args)
        return self._store.open_incident(*args, suppressed_by=incident.suppressed_by)

    def _save(self, incident: Incident) -> Incident:
        stored = self._open_in_store(incident)
        if incident.last_notified_at is not None and stored.last_notified_at is None:
            self._store.mark_notified(stored.id, incident.last_notified_at)
            stored = dataclasses.replace(stored, last_notified_at=incident.last_notified_at)
        log.info("incident %d recorded for %s after a store outage", stored.id, stored.check_name)
        return stored

    def _failed(self, what: str, exc: StoreError) -> None:
        self._paused_until = self._clock.monotonic() + STORE_RETRY_SECONDS
        log.error(
            "alert engine: %s failed (notifying from memory; next store attempt in %.0fs): %s",
            what,
            STORE_RETRY_SECONDS,
            self._redact(str(exc)),
        )

"""Which checks this replica runs when several exporters share one store (``checks.run_on``).

- ``all``: every replica runs every check (one row per replica and round).
- ``leader``: the replica holding the store's ``checks`` leader lock (the same kind of lock the
  listener's single ingester holds; tried every quarter of ``checks.interval``) runs every check; the
  others run none and take over when its database session ends.
- ``shard``: each replica renews its row in ``exporter_replicas`` (a heartbeat every quarter of
  ``checks.interval``, expiring after three quarters of it) and runs the checks whose rendezvous hash
  ranks it first among the live replicas: a stable hash of (replica, check name), so adding or losing a
  replica moves only that replica's share, and a replica that dies stops owning its share within one
  interval.

``Placement.assign(specs)`` is what a check round asks at its start. Store errors never stop the
probes: the last known membership (or role) stays in force, and a replica that never reached the
store runs everything (one process alone is the common case; its rows wait in the buffer).
Not for running checks (``probes/runner.py``) nor for the listener's own leadership.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Literal

from exporter.clock import Clock
from exporter.config import CheckSpec
from exporter.store import Store, StoreError

log = logging.getLogger(__name__)

RunOn = Literal["leader", "all", "shard"]
LEADER_LOCK = "checks"  # the store's leader lock that ``leader`` mode contends for
HEARTBEAT_SHARE = 0.25  # of checks.interval: how often a sharding replica renews its row
EXPIRY_SHARE = 0.75  # of checks.interval: how long a row lives unrenewed


def default_replica_id() -> str:
    """``HOSTNAME:pid``: a pod's name in Kubernetes (unique per replica), plus the process id for
    several processes on one host."""
    return f"{socket.gethostname()}:{os.getpid()}"


def rendezvous_owner(check_name: str, replicas: Sequence[str]) -> str:
    """The replica among ``replicas`` (non-empty) that runs ``check_name``: the highest
    sha256(replica NUL check) wins. Stable across processes and restarts (no per-process salt), and
    removing one replica reassigns only the checks it owned."""
    if not replicas:
        raise ValueError("rendezvous_owner: no replicas")

    def weight(replica: str) -> bytes:
        return hashlib.sha256(f"{replica}\0{check_name}".encode()).digest()

    return max(replicas, key=lambda replica: (weight(replica), replica))


class Placement:
    """Decides, at the start of each round, which checks this replica runs (see the module doc).

    ``on_dropped`` is told the names of checks this replica ran before and no longer runs, so that
    their per-replica gauges stop (another replica reports them now). Thread-safe: ``heartbeat``
    runs on the scheduler's thread, ``assign`` on the check round's."""

    def __init__(
        self,
        run_on: RunOn,
        store: Store,
        clock: Clock,
        interval: float,
        *,
        replica_id: str | None = None,
        on_dropped: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.run_on = run_on
        self.replica_id = replica_id or default_replica_id()
        self.heartbeat_interval = interval * HEARTBEAT_SHARE
        self._store = store
        self._clock = clock
        self._expiry = interval * EXPIRY_SHARE
        self._on_dropped = on_dropped
        self._lock = threading.Lock()
        # One heartbeat at a time: the first round's own heartbeat (see assign) and the scheduler's job
        # may run together, and the store's leader lock is not re-entrant across them (SQLite's flock on a
        # second file handle is refused): the loser would be told another replica runs the checks.
        self._beat = threading.Lock()
        self._members: list[str] | None = None  # None: never reached the store
        self._leader: bool | None = None
        self._running: set[str] | None = None  # what the last round ran (None: no round yet)
        self._asked = False  # whether the first round asked the store for its role

    def heartbeat(self) -> None:
        """Refresh this replica's standing in the store (a scheduler job, every ``heartbeat_interval``,
        off the check path): ``leader``: take or keep the checks lock; ``shard``: renew this replica's row
        and read the live replicas. Never raises for a store outage: the last known role or membership
        stays in force, logged."""
        with self._beat:
            if self.run_on == "leader":
                self._refresh_leadership()
            elif self.run_on == "shard":
                self._refresh_membership()

    def _refresh_membership(self) -> None:
        now = self._clock.now()
        try:
            members = self._store.replica_heartbeat(self.replica_id, now, now + timedelta(seconds=self._expiry))
        except StoreError as exc:
            log.warning("replica heartbeat failed; keeping the last membership error=%r", str(exc))
            return
        with self._lock:
            if members != self._members:
                log.info("replicas sharing the checks: %d replicas=%s", len(members), ",".join(members))
            self._members = members

    def _refresh_leadership(self) -> None:
        try:
            leader = self._store.try_acquire_leader(LEADER_LOCK)
        except StoreError as exc:
            log.warning("checks leader lock unknown; keeping the last role error=%r", str(exc))
            return
        with self._lock:
            if leader != self._leader:
                if leader:
                    log.info("this replica runs the checks (checks.run_on=leader)")
                else:
                    log.info("another replica runs the checks; this one stands by (checks.run_on=leader)")
            self._leader = leader

    def assign(self, specs: Sequence[CheckSpec]) -> list[CheckSpec]:
        """The checks of ``specs`` this replica runs this round, from what the last ``heartbeat`` learnt.
        Only the first round asks the store itself (once, so that it already knows its role or the
        replicas; bounded by the store's deadlines); later rounds make no store call, so a stalled store
        never delays them."""
        if self.run_on != "all" and not self._asked:
            self._asked = True
            self.heartbeat()
        with self._lock:
            members, leader = self._members, self._leader
        if self.run_on == "all":
            chosen = list(specs)
        elif self.run_on == "leader":
            chosen = [] if leader is False else list(specs)  # unknown (never reached the store): run
        elif not members or self.replica_id not in members:
            chosen = list(specs)  # alone as far as we know (or our row is not there yet)
        else:
            chosen = [spec for spec in specs if rendezvous_owner(spec.name, members) == self.replica_id]
        names = {spec.name for spec in chosen}
        dropped = sorted(self._running - names) if self._running is not None else []
        self._running = names
        if dropped and self._on_dropped is not None:
            self._on_dropped(dropped)
        return chosen

    def leave(self) -> None:
        """At shutdown: give up the lock or the membership row at once, so another replica takes
        over without waiting for an expiry. Never raises."""
        try:
            if self.run_on == "shard":
                self._store.replica_leave(self.replica_id)
            elif self.run_on == "leader" and self._leader:
                self._store.release_leader(LEADER_LOCK)
        except StoreError as exc:
            log.warning("could not leave the replica set; it expires on its own error=%r", str(exc))

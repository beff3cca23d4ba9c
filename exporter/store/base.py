"""The storage contract: the records the exporter keeps and the one ``Store`` protocol.

Both implementations (``postgres.py``, ``sqlite.py``) satisfy this protocol and pass the same
parametrized test suite. Callers never see SQL or a connection. Not for buffering during an
outage: that is ``buffer.py``, which wraps any store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from exporter.store.lossless import storable


def json_text(value: Any) -> str:
    """Compact JSON for a JSON/JSONB column (orjson: about ten times ``json.dumps``' speed) that both
    backends store as it is: a string holding NUL or a lone surrogate (which PostgreSQL refuses)
    is written in the tagged form of ``lossless.py``.

    Values orjson refuses (an integer beyond 64 bits, a type it does not know, a lone surrogate) go
    through ``json.dumps`` with ``str`` as the fallback, as before.
    """
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(storable(value), separators=(",", ":"), default=str)
    # orjson writes NUL as \u0000; only then is the (rare) walk over the value worth its cost.
    return text if "\\u0000" not in text else orjson.dumps(storable(value)).decode()


class StoreError(Exception):
    """The store could not be reached, did not answer within its deadline, or refused a statement;
    the caller may retry later. A store that hangs and a store that is down look alike to callers."""


class SchemaMissingError(StoreError):
    """The database has no schema yet (never migrated; for a read-only SQLite store, no file at all)."""


class MigrationError(StoreError):
    """The database answered and refused a migration statement (an SQL error, not an outage): retrying
    will not help, an operator must look (``migrate`` and the exporter exit 1 on it)."""


@dataclass(frozen=True)
class StoreTimeouts:
    """The deadlines of store calls, in seconds (``store.*_timeout`` in the configuration).

    ``call`` bounds one store call once it has a connection: every statement and the commit, on the
    client side, so a peer that stops answering (a stalled network path, a frozen server) fails the
    call like a peer that is down. ``statement``, ``lock`` and ``idle_in_transaction`` are enforced
    by PostgreSQL itself (``statement_timeout``, ``lock_timeout``,
    ``idle_in_transaction_session_timeout``); ``lock`` is also SQLite's busy timeout. ``pool`` bounds
    the wait for a free pooled connection (SQLite: for its one connection). ``connect`` is libpq's
    ``connect_timeout`` (whole seconds, at least 2); ``tcp_user`` is ``tcp_user_timeout`` on both
    ends (unacknowledged data). ``migration`` replaces ``call`` and ``statement`` for ``migrate``,
    which may rewrite a large table adopted from the seed.
    """

    call: float = 15.0
    statement: float = 10.0
    lock: float = 5.0
    pool: float = 5.0
    connect: float = 5.0
    idle_in_transaction: float = 60.0
    tcp_user: float = 30.0
    migration: float = 600.0


DEFAULT_TIMEOUTS = StoreTimeouts()


@dataclass(frozen=True)
class CheckResult:
    """One run of one check: a ``monitor_metrics`` row.

    ``uid`` makes a retried write idempotent (a unique column), so a row buffered during an
    outage lands exactly once even if the first attempt committed but its answer was lost.
    """

    check_name: str
    ok: bool
    latency_ms: int
    details: dict[str, Any]
    ts: datetime  # timezone-aware UTC
    uid: str


@dataclass(slots=True)
class EventRecord:
    """One decoded contract log: an ``events`` row. (tx_hash, log_index) is unique in the DB.

    Treat it as immutable. It is not declared frozen because a frozen dataclass's ``__init__``
    costs about three times as much, and the listener makes tens of thousands of these per catch-up.
    """

    type: str
    data: dict[str, Any]  # SPEC §2: blockNumber, blockHash, transactionHash, logIndex, address, args
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    # The log as the node gave it (kept with the row if the store refuses the row: see ``quarantined``).
    raw_log: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # ``data`` as compact JSON, encoded where the record is made: the listener decodes on its fetch
    # thread, so the thread that commits (the catch-up's bottleneck) does not also encode.
    data_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.data_json = json_text(self.data)


@dataclass(frozen=True)
class QuarantinedEvent:
    """An event the store refused for a reason retrying cannot fix (a value out of a column's range,
    a constraint), kept in ``quarantined_events`` instead of ``events`` with the database's reason."""

    event: EventRecord
    reason: str  # the database's one-line refusal, e.g. "22003: integer out of range"


class CommitOutcome(dict[str, int]):
    """What ``commit_blocks`` did: how many events of each type were newly inserted (a type with none is
    left out), and, in ``quarantined``, the events newly put in quarantine instead (chain order)."""

    def __init__(self, inserted: dict[str, int] | None = None, quarantined: Sequence[QuarantinedEvent] = ()) -> None:
        super().__init__(inserted or {})
        self.quarantined: tuple[QuarantinedEvent, ...] = tuple(quarantined)


@dataclass(frozen=True)
class StoredEvent:
    """An ``events`` row as read back (for contract-event rules): ``data`` is SPEC §2's JSON,
    ``stored_at`` the ``timestamp`` column (when the listener stored it, aware UTC)."""

    id: int
    type: str
    data: dict[str, Any]
    block_number: int
    stored_at: datetime


@dataclass(frozen=True)
class RuleState:
    """An ``event_rule_state`` row: ``version`` counts saves (0: never saved), ``last_event_id`` is the
    newest ``events.id`` the rule has evaluated, ``state`` the evaluator's plain JSON data."""

    rule: str
    version: int
    last_event_id: int
    state: dict[str, Any]


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    parent_hash: str


@dataclass(frozen=True)
class Checkpoint:
    """The listener's progress: everything up to ``block_number`` is stored."""

    block_number: int
    block_hash: str
    recent: tuple[BlockRef, ...] = field(default=())  # newest last; enough to detect a reorg


@dataclass(frozen=True)
class Incident:
    """A ``monitor_incidents`` row. At most one open (``resolved_at is None``) per check."""

    id: int
    check_name: str
    severity: str
    title: str
    detail: str
    opened_at: datetime
    resolved_at: datetime | None
    last_notified_at: datetime | None
    # The dependency (a check name, or ``api.login``) whose failure explained this one when it opened:
    # its firing notice was held back. None: notified as usual. See exporter/alerting/dependencies.py.
    suppressed_by: str | None = None


@dataclass(frozen=True)
class OutboxNotice:
    """An ``alert_outbox`` row: one notice waiting for one channel. ``alert`` is the notice as plain JSON
    data (already redacted, no channel credentials); ``attempts`` counts the deliveries tried so far,
    including the one this row was just claimed for."""

    id: int
    channel: str
    check_name: str
    alert: dict[str, Any]
    created_at: datetime
    due_at: datetime  # when it was first meant to go out (a maintenance window may put it later)
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class SloRow:
    """The SLO numbers of one check over a window, computed by the store (SPEC §2's SQL)."""

    check_name: str
    total: int
    successes: int
    uptime_percent: float
    p99_latency_ms: float | None  # over successful runs; None when there were none
    failures: int
    last_failure: datetime | None


@dataclass(frozen=True)
class ResultBucket:
    """The runs of one check inside one time bucket (``index`` 0 starts at the query's ``since``)."""

    check_name: str
    index: int
    runs: int
    failures: int


class Store(Protocol):
    """What the exporter needs from a database. All datetimes in and out are aware UTC.

    Every method that reaches the database returns, or raises ``StoreError``, within the deadlines
    the store was opened with (``StoreTimeouts``): a database that hangs fails like one that is
    down, so no caller (the writer thread, the listener, the alert engine's ledger, a probe) can
    be held by it for longer."""

    kind: str  # "postgresql" or "sqlite", for logs and the banner

    def migrate(self) -> int:
        """Create or upgrade the schema; returns the schema version. Idempotent, safe to run concurrently."""

    def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers."""

    def close(self) -> None: ...

    # --- check results (monitor_metrics) ---
    def write_results(self, results: Sequence[CheckResult]) -> None:
        """Insert all rows in one transaction; rows whose ``uid`` exists are skipped."""

    def latest_result(self, check_name: str) -> CheckResult | None:
        """The newest row of ``check_name`` (e.g. the listener's heartbeat)."""

    def slo_report(self, since: datetime, until: datetime, exclude: Sequence[str] = ()) -> list[SloRow]:
        """Per check (but those named in ``exclude``), SPEC §2's uptime, p99 and failures over [since, until)."""

    def latest_results(self, check_names: Sequence[str]) -> dict[str, CheckResult]:
        """The newest row of each name in ``check_names`` (one index lookup each, one transaction);
        a name without rows is left out."""

    def result_buckets(self, since: datetime, until: datetime, bucket_seconds: float) -> list[ResultBucket]:
        """Runs and failures per check and per ``bucket_seconds``-wide bucket of [since, until),
        counted in the database (only the window's rows are read, through the ``ts`` index).
        Buckets without runs are left out; sorted by check name, then bucket."""

    def event_counts(self, since: datetime) -> dict[str, int]:
        """How many ``events`` rows of each type were stored at or after ``since`` (their
        ``timestamp`` column: when they were stored, not the block's time)."""

    def delete_results_before(self, cutoff: datetime, batch_size: int) -> int:
        """Delete at most ``batch_size`` rows older than ``cutoff``; returns how many."""

    # --- listener (events + checkpoint) ---
    def load_checkpoint(self, name: str) -> Checkpoint | None: ...

    def commit_blocks(
        self,
        name: str,
        events: Sequence[EventRecord],
        checkpoint: Checkpoint,
        heartbeat: CheckResult | None = None,
    ) -> CommitOutcome:
        """In one transaction: insert events (duplicates by (tx_hash, log_index) skipped), save the
        checkpoint and optional heartbeat row. Returns how many events of each type were newly
        inserted (a type with none is left out), so that counters by type stay exact when a
        re-fetched range is partly stored already.

        An event the database refuses for good (SQLSTATE classes 22, 23 and 54 on PostgreSQL; a value
        the driver cannot send) does not fail the commit: the batch is bisected until only the refused
        rows are left, and those go to ``quarantined_events`` with the reason, in the same transaction
        (``CommitOutcome.quarantined``: the ones not quarantined before). Any other failure raises
        ``StoreError`` and nothing is stored."""

    def newest_event_block(self) -> int | None:
        """The highest ``block_number`` in ``events`` (one index lookup), None when it holds no event:
        where a listener adopting a seed database without a checkpoint starts after."""

    def quarantined_count(self) -> int:
        """How many events wait in ``quarantined_events`` (for the status page)."""

    def rewind(self, name: str, checkpoint: Checkpoint) -> int:
        """In one transaction: delete events above ``checkpoint.block_number`` and save the checkpoint.
        Used to drop orphaned blocks after a reorg; returns the number of events deleted."""

    def try_acquire_leader(self, name: str) -> bool:
        """Take (or keep) the single-ingester lock for ``name``; False when another process holds it."""

    def release_leader(self, name: str) -> None: ...

    # --- contract-event rules (events, event_rule_state) ---
    def events_after(self, after_id: int, event_type: str, limit: int) -> list[StoredEvent]:
        """At most ``limit`` events of ``event_type`` with ``id > after_id``, in id order."""

    def existing_event_ids(self, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` are still in ``events`` (a reorg's rewind deletes rows)."""

    def newest_event_id(self) -> int:
        """The highest ``events.id`` (0 when there is none)."""

    def load_rule_state(self, rule: str) -> RuleState:
        """The stored state of ``rule``; version 0, ``last_event_id`` 0 and ``{}`` when never saved."""

    def save_rule_state(self, rule: str, version: int, last_event_id: int, state: dict[str, Any], at: datetime) -> bool:
        """Compare-and-set: store ``version + 1`` with these values only if the stored version is still
        ``version`` (0: no row yet). True when this call won; False when another process saved first."""

    # --- incidents (monitor_incidents) ---
    def open_incidents(self) -> list[Incident]: ...

    def open_incident(
        self,
        check_name: str,
        severity: str,
        title: str,
        detail: str,
        at: datetime,
        *,
        suppressed_by: str | None = None,
    ) -> Incident:
        """Open an incident, or return the one already open for ``check_name``. ``suppressed_by``: the
        dependency whose failure holds its notices back (recorded as is)."""

    def resolve_incident(self, incident_id: int, at: datetime, reason: str | None = None) -> Incident | None:
        """Resolve the incident if it is still open (compare-and-set): the resolved row when this call
        resolved it, None when it was already resolved (by another replica) or does not exist."""

    def mark_notified(self, incident_id: int, at: datetime) -> None:
        """Record a notice unconditionally (writing back what the store missed during an outage)."""

    def claim_notice(self, incident_id: int, at: datetime, due_before: datetime | None) -> bool:
        """Compare-and-set ``last_notified_at = at`` on an open incident: the first notice when
        ``due_before`` is None (only if none was recorded), else a reminder (only if the last notice
        is at or before ``due_before``, or none was recorded). True when this call won; False when
        another replica did."""

    # --- alert outbox (alert_outbox) ---
    def enqueue_notice(
        self, channel: str, check_name: str, alert: dict[str, Any], at: datetime, due_at: datetime
    ) -> int:
        """Persist a notice for ``channel``, to be delivered from ``due_at`` on; returns its id."""

    def take_notice(self, channel: str, now: datetime, lease_until: datetime) -> OutboxNotice | None:
        """Claim the oldest due notice of ``channel`` (none while an older notice of the same check still
        waits, so a check's notices keep their order): its next attempt moves to ``lease_until`` (another
        replica will not take it before then) and its ``attempts`` grows by one."""

    def take_expired_notice(
        self, channel: str, due_before: datetime, now: datetime, lease_until: datetime
    ) -> OutboxNotice | None:
        """Claim until ``lease_until`` the oldest notice of ``channel`` due at or before ``due_before``
        that no process is delivering now, whatever its next attempt time and attempts: one past the
        give-up horizon, to be abandoned (deleted) by the caller."""

    def notice_delivered(self, notice_id: int) -> None:
        """The channel accepted the notice: delete it."""

    def notice_failed(self, notice_id: int, retry_at: datetime, error: str) -> None:
        """Try the notice again from ``retry_at``; ``error`` (redacted) is kept for operators."""

    def later_notices(self, channel: str, check_name: str, notice_id: int) -> int:
        """How many notices of ``check_name`` for ``channel`` were queued after ``notice_id``."""

    def retry_notices_now(self, channel: str, now: datetime) -> int:
        """Make the notices of ``channel`` that wait for a retry due now (at start: the channel or its
        configuration may have been fixed); neither those held until later (``due_at``) nor those
        another process is delivering right now. Returns how many."""

    def notice_abandoned(self, notice_id: int) -> None:
        """Delete a notice given up on (the caller logs and counts it)."""

    def pending_notices(self) -> dict[str, int]:
        """How many notices wait, per channel."""

    def channel_overrides(self, channel: str, setting: str) -> dict[str, str]:
        """Values a channel's API told us to use instead of the configured ones: configured -> new."""

    def save_channel_override(self, channel: str, setting: str, configured: str, value: str, at: datetime) -> None:
        """Remember that ``setting`` of ``channel`` configured as ``configured`` is now ``value``."""

    # --- replicas (exporter_replicas) ---
    def replica_heartbeat(self, replica_id: str, at: datetime, expires_at: datetime) -> list[str]:
        """In one transaction: record that ``replica_id`` is alive until ``expires_at`` (insert or
        renew its row), forget the replicas whose row expired before ``at``, and return the ids of the
        replicas still live (this one included), sorted."""

    def replica_leave(self, replica_id: str) -> None:
        """Forget ``replica_id`` at once (a clean stop), so that the others take over its share."""

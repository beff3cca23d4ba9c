"""The SQL shared by the PostgreSQL and SQLite stores.

Queries are written once with ``%s`` placeholders; the SQLite store swaps them for ``?``. What truly
differs between the dialects (connections, bulk inserts, percentiles, locks, DDL) is left to the
subclasses. Not for connection management or outage buffering.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from exporter.clock import utc_naive
from exporter.store.base import (
    BlockRef,
    Checkpoint,
    CheckResult,
    CommitOutcome,
    EventRecord,
    Incident,
    MigrationError,
    OutboxNotice,
    QuarantinedEvent,
    ResultBucket,
    RuleState,
    SchemaMissingError,
    SloRow,
    StoredEvent,
    StoreError,
    StoreTimeouts,
)
from exporter.store.lossless import storable
from exporter.store.schema import MIGRATIONS, Migration

log = logging.getLogger(__name__)


def as_utc(value: object) -> datetime | None:
    """A TIMESTAMP column value (naive UTC datetime or ISO text) as an aware UTC datetime."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_json(value: object) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def db_text(value: str) -> str:
    """``value`` as every store can keep it: NUL (which PostgreSQL refuses in text and in JSONB) becomes
    U+FFFD. Applied to every string parameter, and to the strings inside JSON written by this module."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def db_params(params: Sequence[Any]) -> tuple[Any, ...]:
    """Statement parameters with ``db_text`` applied to the strings."""
    return tuple(db_text(p) if isinstance(p, str) else p for p in params)


def ascii_json(value: Any) -> str:
    """JSON text any store keeps whatever ``value`` holds: strings that cannot be stored in their
    tagged form (``lossless.py``), everything else outside ASCII escaped."""
    return json.dumps(storable(value), ensure_ascii=True, default=str)


def db_json(value: Any) -> Any:
    """``value`` (plain JSON data) with ``db_text`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return db_text(value)
    if isinstance(value, dict):
        return {db_json(k) if isinstance(k, str) else k: db_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [db_json(v) for v in value]
    return value


def percentile_cont(sorted_values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's PERCENTILE_CONT: linear interpolation between the two nearest ranks."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return float(sorted_values[lower]) + (float(sorted_values[upper]) - float(sorted_values[lower])) * weight


def _recent_to_json(recent: Sequence[BlockRef]) -> str:
    return json.dumps([[b.number, b.hash, b.parent_hash] for b in recent])


def _recent_from_json(value: object) -> tuple[BlockRef, ...]:
    return tuple(BlockRef(int(n), str(h), str(p)) for n, h, p in as_json(value))


RESULT_COLUMNS = "(ts, check_name, ok, latency_ms, details, uid)"  # a monitor_metrics row, as ``_result_row``
SAVE_CHECKPOINT = (  # the parameters: ``_checkpoint_row``
    "INSERT INTO listener_checkpoints (name, block_number, block_hash, recent, updated_at) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
    "block_number = excluded.block_number, block_hash = excluded.block_hash, "
    "recent = excluded.recent, updated_at = excluded.updated_at"
)
_INCIDENT_COLUMNS = "id, check_name, severity, title, detail, opened_at, resolved_at, last_notified_at, suppressed_by"


def _incident(row: Sequence[Any]) -> Incident:
    opened = as_utc(row[5])
    assert opened is not None
    return Incident(
        id=int(row[0]),
        check_name=row[1] or "",
        severity=row[2] or "warn",
        title=row[3] or "",
        detail=row[4] or "",
        opened_at=opened,
        resolved_at=as_utc(row[6]),
        last_notified_at=as_utc(row[7]),
        suppressed_by=row[8],
    )


def _notice(row: Sequence[Any]) -> OutboxNotice:
    created, due = as_utc(row[4]), as_utc(row[5])
    assert created is not None and due is not None
    return OutboxNotice(
        id=int(row[0]),
        channel=str(row[1]),
        check_name=str(row[2]),
        alert=as_json(row[3]),
        created_at=created,
        due_at=due,
        attempts=int(row[6]),
        last_error=row[7],
    )


def _check_result(row: Sequence[Any]) -> CheckResult:
    """A ``check_name, ok, latency_ms, details, ts, uid`` row."""
    ts = as_utc(row[4])
    assert ts is not None
    return CheckResult(
        check_name=row[0],
        ok=bool(row[1]),
        latency_ms=int(row[2] or 0),
        details=as_json(row[3]) or {},
        ts=ts,
        uid=row[5] or "",
    )


class DuplicateEventsError(Exception):
    """A fast insert path met an event that is already stored (see ``_insert_events``)."""


class StatementRefusedError(StoreError):
    """The database answered and refused a statement (an SQL error), as opposed to not answering."""


class RowsRefusedError(Exception):
    """The database refused a row of the batch for a reason retrying cannot fix (see ``_refusal``)."""


_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


class SqlStore(ABC):
    """Implements ``exporter.store.base.Store`` on a DB-API connection supplied by a subclass."""

    kind: str = "sql"
    placeholder: str = "%s"
    _timeouts: StoreTimeouts

    # ----------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _connection(self, timeout: float | None = None) -> AbstractContextManager[Any]:
        """A connection for one transaction that must end within ``timeout`` seconds (None: the
        call deadline, ``StoreTimeouts.call``); driver errors, a missed deadline included, must
        surface as ``StoreError`` (``SchemaMissingError`` for a table that does not exist)."""

    def _allow_long_statements(self, cursor: Any, seconds: float) -> None:  # noqa: B027 - a hook
        """Hook: let this transaction's statements (and lock waits) run up to ``seconds`` each."""

    @abstractmethod
    def _migration_statements(self, migration: Migration) -> Sequence[str]: ...

    @abstractmethod
    def _lock_migrations(self, cursor: Any) -> None:
        """Serialise concurrent migrations (transaction-scoped)."""

    @abstractmethod
    def _insert_many(self, cursor: Any, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """``INSERT … VALUES %s …`` for many rows; returns how many were inserted."""

    def _insert_events(self, cursor: Any, rows: Sequence[Sequence[Any]], *, expect_new: bool) -> dict[str, int]:
        """Insert, skipping duplicates; how many rows of each type (the first column) were new.
        ``expect_new``: the caller believes no row is stored yet, so a dialect may take a faster
        path that raises ``DuplicateEventsError`` on a duplicate instead.

        One statement per run of consecutive rows of one type, so that each statement's row count
        is that type's and the rows keep their chain order (ids follow it)."""
        inserted: dict[str, int] = {}
        for event_type, run in itertools.groupby(rows, key=lambda row: str(row[0])):
            count = self._insert_many(
                cursor,
                "INSERT INTO events (type, data, block_number, block_hash, tx_hash, log_index) "
                "VALUES %s ON CONFLICT (tx_hash, log_index) DO NOTHING",
                list(run),
            )
            if count:
                inserted[event_type] = inserted.get(event_type, 0) + count
        return inserted

    @abstractmethod
    def _refusal(self, exc: Exception) -> str | None:
        """Why the database (or its driver) refused a row for good, in one line; None when ``exc`` is
        not such a refusal (a connection lost, a deadline missed: the caller may retry)."""

    def _relax_durability(self, cursor: Any) -> None:  # noqa: B027 - a hook; most dialects need nothing
        """Hook: let the listener's transaction skip waiting for durability where that is safe."""

    @abstractmethod
    def slo_report(self, since: datetime, until: datetime, exclude: Sequence[str] = ()) -> list[SloRow]: ...

    @abstractmethod
    def _bucket_index_sql(self) -> str:
        """The dialect's expression for ``FLOOR((ts - %s) / %s seconds)`` (params: since, width)."""

    @abstractmethod
    def try_acquire_leader(self, name: str) -> bool: ...

    @abstractmethod
    def release_leader(self, name: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def _encode_time(self, moment: datetime) -> Any:
        return utc_naive(moment)

    # ----------------------------------------------------------------- helpers
    def _sql(self, text: str) -> str:
        return text if self.placeholder == "%s" else text.replace("%s", self.placeholder)

    @contextmanager
    def _tx(self, timeout: float | None = None) -> Iterator[Any]:
        with self._connection(timeout) as conn:
            cursor = conn.cursor()
            try:
                yield cursor
                conn.commit()
            except BaseException:
                # If the connection is already broken the rollback fails too; the first error matters.
                with suppress(Exception):
                    conn.rollback()
                raise
            finally:
                cursor.close()

    def _execute(self, cursor: Any, text: str, params: Sequence[Any] = ()) -> None:
        cursor.execute(self._sql(text), db_params(params))

    # ----------------------------------------------------------------- schema
    def migrate(self) -> int:
        """Create or upgrade the schema (see ``Store.migrate``). An SQL error (the database answered and
        refused a statement) raises ``MigrationError``; a database that does not answer, ``StoreError``."""
        try:
            # The usual case (every start): nothing to do, found within the everyday deadline.
            applied = self._applied_versions()
            if applied and {migration.version for migration in MIGRATIONS} <= applied:
                return max(applied)
            if 1 not in applied:
                self._adopt_seed_events()
            # Adopting a large seed database indexes its events: the migration deadline.
            return self._migrate()
        except StatementRefusedError as exc:
            raise MigrationError(f"migration failed: {exc}") from None

    def _adopt_seed_events(self) -> None:  # noqa: B027 - a hook; only PostgreSQL databases come from the seed
        """Hook: bring a seed database's ``events`` table to our columns and indexes without holding a lock
        that blocks its readers for long, before the migrations' one transaction runs."""

    def _migrate(self) -> int:
        with self._tx(self._timeouts.migration) as cur:
            self._allow_long_statements(cur, self._timeouts.migration)
            self._lock_migrations(cur)
            self._execute(
                cur,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)",
            )
            self._execute(cur, "SELECT version FROM schema_migrations")
            applied = {int(row[0]) for row in cur.fetchall()}
            for migration in MIGRATIONS:
                if migration.version in applied:
                    continue
                for statement in self._migration_statements(migration):
                    cur.execute(statement)
                self._execute(
                    cur,
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
                    (migration.version, migration.description, self._encode_time(datetime.now(UTC))),
                )
                log.info("store migrated kind=%s version=%d", self.kind, migration.version)
            self._execute(cur, "SELECT MAX(version) FROM schema_migrations")
            row = cur.fetchone()
        return int(row[0])

    def _applied_versions(self) -> set[int]:
        """The versions ``schema_migrations`` records; empty when there is no such table yet."""
        try:
            with self._tx() as cur:
                self._execute(cur, "SELECT version FROM schema_migrations")
                return {int(row[0]) for row in cur.fetchall()}
        except SchemaMissingError:
            return set()

    def ping(self) -> None:
        with self._tx() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    # ----------------------------------------------------------------- check results
    def write_results(self, results: Sequence[CheckResult]) -> None:
        if not results:
            return
        with self._tx() as cur:
            self._insert_results(cur, results)

    def _result_row(self, result: CheckResult) -> tuple[Any, ...]:
        """``result`` as the parameters of ``RESULT_COLUMNS``."""
        details = json.dumps(db_json(result.details), sort_keys=True, default=str)
        return (self._encode_time(result.ts), result.check_name, result.ok, result.latency_ms, details, result.uid)

    def _insert_results(self, cur: Any, results: Sequence[CheckResult]) -> int:
        return self._insert_many(
            cur,
            f"INSERT INTO monitor_metrics {RESULT_COLUMNS} VALUES %s ON CONFLICT (uid) DO NOTHING",
            [self._result_row(r) for r in results],
        )

    def latest_result(self, check_name: str) -> CheckResult | None:
        with self._tx() as cur:
            self._execute(
                cur,
                "SELECT check_name, ok, latency_ms, details, ts, uid FROM monitor_metrics "
                "WHERE check_name = %s ORDER BY ts DESC, id DESC LIMIT 1",
                (check_name,),
            )
            row = cur.fetchone()
        return None if row is None else _check_result(row)

    def latest_results(self, check_names: Sequence[str]) -> dict[str, CheckResult]:
        found: dict[str, CheckResult] = {}
        with self._tx() as cur:
            for name in dict.fromkeys(check_names):
                # One lookup per name on idx_monitor_metrics_check_ts: a DISTINCT over the table
                # would read every row of every check.
                self._execute(
                    cur,
                    "SELECT check_name, ok, latency_ms, details, ts, uid FROM monitor_metrics "
                    "WHERE check_name = %s ORDER BY ts DESC, id DESC LIMIT 1",
                    (name,),
                )
                row = cur.fetchone()
                if row is not None:
                    found[name] = _check_result(row)
        return found

    def result_buckets(self, since: datetime, until: datetime, bucket_seconds: float) -> list[ResultBucket]:
        if bucket_seconds <= 0:
            raise ValueError(f"bucket_seconds must be positive, got {bucket_seconds!r}")
        start, end = self._encode_time(since), self._encode_time(until)
        with self._tx() as cur:
            self._execute(
                cur,
                f"SELECT check_name, {self._bucket_index_sql()} AS bucket, COUNT(*), "
                "SUM(CASE WHEN ok THEN 0 ELSE 1 END) FROM monitor_metrics "
                # No ORDER BY: it makes PostgreSQL sort every row of the window (spilling to disk)
                # instead of hashing them; the few thousand groups are sorted here.
                "WHERE ts >= %s AND ts < %s GROUP BY check_name, bucket",
                (start, float(bucket_seconds), start, end),
            )
            rows = cur.fetchall()
        buckets = [ResultBucket(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows if r[0] is not None]
        return sorted(buckets, key=lambda b: (b.check_name, b.index))

    def event_counts(self, since: datetime) -> dict[str, int]:
        with self._tx() as cur:
            self._execute(
                cur,
                "SELECT type, COUNT(*) FROM events WHERE timestamp >= %s GROUP BY type ORDER BY type",
                (self._encode_time(since),),
            )
            return {str(r[0]): int(r[1]) for r in cur.fetchall()}

    def delete_results_before(self, cutoff: datetime, batch_size: int) -> int:
        with self._tx() as cur:
            self._execute(
                cur,
                "DELETE FROM monitor_metrics WHERE id IN "
                "(SELECT id FROM monitor_metrics WHERE ts < %s ORDER BY ts LIMIT %s)",
                (self._encode_time(cutoff), batch_size),
            )
            return int(cur.rowcount)

    # ----------------------------------------------------------------- listener
    def load_checkpoint(self, name: str) -> Checkpoint | None:
        with self._tx() as cur:
            self._execute(
                cur, "SELECT block_number, block_hash, recent FROM listener_checkpoints WHERE name = %s", (name,)
            )
            row = cur.fetchone()
        if row is None:
            return None
        return Checkpoint(int(row[0]), str(row[1]), _recent_from_json(row[2]))

    def _save_checkpoint(self, cur: Any, name: str, checkpoint: Checkpoint) -> None:
        self._execute(cur, SAVE_CHECKPOINT, self._checkpoint_row(name, checkpoint))

    def _checkpoint_row(self, name: str, checkpoint: Checkpoint) -> tuple[Any, ...]:
        """The parameters of ``SAVE_CHECKPOINT``."""
        recent = _recent_to_json(checkpoint.recent)
        return (name, checkpoint.block_number, checkpoint.block_hash, recent, self._encode_time(datetime.now(UTC)))

    def _open_commit(self, cur: Any, name: str, checkpoint: Checkpoint, heartbeat: CheckResult | None) -> None:
        """What a listener commit writes beside its events: the checkpoint and the heartbeat, in a
        transaction that may skip waiting for durability. One statement at a time here; a dialect
        may send them in one round trip."""
        self._relax_durability(cur)
        self._save_checkpoint(cur, name, checkpoint)
        if heartbeat is not None:
            self._insert_results(cur, [heartbeat])

    def commit_blocks(
        self,
        name: str,
        events: Sequence[EventRecord],
        checkpoint: Checkpoint,
        heartbeat: CheckResult | None = None,
    ) -> CommitOutcome:
        try:
            try:
                return self._commit_blocks(name, events, checkpoint, heartbeat, expect_new=True)
            except DuplicateEventsError:
                # Rolled back whole; redo it the deduplicating way (a seed database, a replayed range).
                return self._commit_blocks(name, events, checkpoint, heartbeat, expect_new=False)
        except RowsRefusedError as refused:
            # Rolled back whole; redo it row group by row group, so that only the refused rows stay out.
            log.warning("store refused a row of the batch (%s); bisecting it", refused)
            return self._commit_blocks(name, events, checkpoint, heartbeat, expect_new=False, bisect=True)

    def _commit_blocks(
        self,
        name: str,
        events: Sequence[EventRecord],
        checkpoint: Checkpoint,
        heartbeat: CheckResult | None,
        *,
        expect_new: bool,
        bisect: bool = False,
    ) -> CommitOutcome:
        rows = [(e.type, e.data_json, e.block_number, e.block_hash, e.tx_hash, e.log_index) for e in events]
        with self._tx() as cur:
            self._open_commit(cur, name, checkpoint, heartbeat)
            if bisect:
                inserted, refused = self._insert_bisecting(cur, events, rows)
                outcome = CommitOutcome(inserted, self._quarantine(cur, name, refused))
            else:
                try:
                    outcome = CommitOutcome(self._insert_events(cur, rows, expect_new=expect_new) if rows else {})
                except DuplicateEventsError:
                    raise
                except Exception as exc:
                    reason = self._refusal(exc)
                    if reason is None:
                        raise
                    raise RowsRefusedError(reason) from None
        return outcome

    def _insert_bisecting(
        self, cur: Any, events: Sequence[EventRecord], rows: Sequence[Sequence[Any]]
    ) -> tuple[dict[str, int], list[QuarantinedEvent]]:
        """Insert ``rows`` (deduplicating), each group under a savepoint: a group the database refuses
        is rolled back and split in two, down to the single rows it refuses. Chain order is kept."""
        inserted: Counter[str] = Counter()
        refused: list[QuarantinedEvent] = []
        groups = [(0, len(rows))]  # a stack: the leftmost group on top
        while groups:
            start, end = groups.pop()
            self._execute(cur, "SAVEPOINT bisect")
            try:
                inserted.update(self._insert_events(cur, rows[start:end], expect_new=False))
            except Exception as exc:
                reason = self._refusal(exc)
                if reason is None:
                    raise
                self._execute(cur, "ROLLBACK TO SAVEPOINT bisect")
                if end - start == 1:
                    refused.append(QuarantinedEvent(events[start], reason))
                else:
                    middle = (start + end) // 2
                    groups += [(middle, end), (start, middle)]
                continue
            self._execute(cur, "RELEASE SAVEPOINT bisect")
        return dict(inserted), refused

    def _quarantine(self, cur: Any, name: str, refused: Sequence[QuarantinedEvent]) -> list[QuarantinedEvent]:
        """Keep the refused events in ``quarantined_events``; the ones not kept there before."""
        new = []
        for item in refused:
            event = item.event
            self._execute(
                cur,
                "INSERT INTO quarantined_events (quarantined_at, listener, block_number, event_key, event, "
                "raw_log, reason) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING",
                (
                    self._encode_time(datetime.now(UTC)),
                    name,
                    event.block_number if _BIGINT_MIN <= event.block_number <= _BIGINT_MAX else None,
                    # A digest: the key's values may be as large as the one that was refused.
                    hashlib.sha256(ascii_json([event.block_hash, event.tx_hash, event.log_index]).encode()).hexdigest(),
                    ascii_json(
                        {
                            "type": event.type,
                            "data": event.data,
                            "block_number": event.block_number,
                            "block_hash": event.block_hash,
                            "tx_hash": event.tx_hash,
                            "log_index": event.log_index,
                        }
                    ),
                    None if event.raw_log is None else ascii_json(event.raw_log),
                    item.reason.encode("utf-8", "backslashreplace").decode(),  # NUL: see db_text
                ),
            )
            if cur.rowcount == 1:
                new.append(item)
        return new

    def newest_event_block(self) -> int | None:
        with self._tx() as cur:
            self._execute(cur, "SELECT MAX(block_number) FROM events")
            row = cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def quarantined_count(self) -> int:
        with self._tx() as cur:
            self._execute(cur, "SELECT COUNT(*) FROM quarantined_events")
            row = cur.fetchone()
        return int(row[0])

    def rewind(self, name: str, checkpoint: Checkpoint) -> int:
        with self._tx() as cur:
            self._execute(cur, "DELETE FROM events WHERE block_number > %s", (checkpoint.block_number,))
            deleted = int(cur.rowcount)
            self._save_checkpoint(cur, name, checkpoint)
        return deleted

    # ----------------------------------------------------------------- contract-event rules
    def events_after(self, after_id: int, event_type: str, limit: int) -> list[StoredEvent]:
        with self._tx() as cur:
            self._execute(
                cur,
                "SELECT id, type, data, block_number, timestamp FROM events WHERE id > %s AND type = %s "
                "ORDER BY id LIMIT %s",
                (after_id, event_type, limit),
            )
            rows = cur.fetchall()
        events = []
        for row in rows:
            data = as_json(row[2])
            stored_at = as_utc(row[4])
            assert stored_at is not None
            block = row[3] if row[3] is not None else data.get("blockNumber", 0)
            events.append(StoredEvent(int(row[0]), str(row[1]), data, int(block), stored_at))
        return events

    def existing_event_ids(self, ids: Sequence[int]) -> set[int]:
        wanted = sorted(set(ids))
        found: set[int] = set()
        with self._tx() as cur:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ", ".join(["%s"] * len(chunk))
                self._execute(cur, f"SELECT id FROM events WHERE id IN ({marks})", chunk)
                found.update(int(row[0]) for row in cur.fetchall())
        return found

    def newest_event_id(self) -> int:
        with self._tx() as cur:
            self._execute(cur, "SELECT MAX(id) FROM events")
            row = cur.fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    def load_rule_state(self, rule: str) -> RuleState:
        with self._tx() as cur:
            self._execute(cur, "SELECT version, last_event_id, state FROM event_rule_state WHERE rule = %s", (rule,))
            row = cur.fetchone()
        if row is None:
            return RuleState(rule, 0, 0, {})
        return RuleState(rule, int(row[0]), int(row[1]), as_json(row[2]) or {})

    def save_rule_state(self, rule: str, version: int, last_event_id: int, state: dict[str, Any], at: datetime) -> bool:
        text = json.dumps(db_json(state), sort_keys=True)
        with self._tx() as cur:
            if version == 0:
                self._execute(
                    cur,
                    "INSERT INTO event_rule_state (rule, version, last_event_id, state, updated_at) "
                    "VALUES (%s, 1, %s, %s, %s) ON CONFLICT (rule) DO NOTHING",
                    (rule, last_event_id, text, self._encode_time(at)),
                )
            else:
                self._execute(
                    cur,
                    "UPDATE event_rule_state SET version = version + 1, last_event_id = %s, state = %s, "
                    "updated_at = %s WHERE rule = %s AND version = %s",
                    (last_event_id, text, self._encode_time(at), rule, version),
                )
            return bool(cur.rowcount == 1)

    # ----------------------------------------------------------------- incidents
    def open_incidents(self) -> list[Incident]:
        with self._tx() as cur:
            self._execute(
                cur,
                f"SELECT {_INCIDENT_COLUMNS} FROM monitor_incidents WHERE resolved_at IS NULL ORDER BY id",
            )
            return [_incident(row) for row in cur.fetchall()]

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
        with self._tx() as cur:
            # The partial unique index allows one open incident per check; a concurrent opener loses quietly.
            self._execute(
                cur,
                "INSERT INTO monitor_incidents (check_name, severity, title, detail, opened_at, suppressed_by) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (check_name) WHERE resolved_at IS NULL DO NOTHING",
                (check_name, severity, title, detail, self._encode_time(at), suppressed_by),
            )
            self._execute(
                cur,
                f"SELECT {_INCIDENT_COLUMNS} FROM monitor_incidents WHERE check_name = %s AND resolved_at IS NULL",
                (check_name,),
            )
            row = cur.fetchone()
        if row is None:
            raise StoreError(f"incident for {check_name} vanished right after it was opened")
        return _incident(row)

    def resolve_incident(self, incident_id: int, at: datetime, reason: str | None = None) -> Incident | None:
        with self._tx() as cur:
            self._execute(
                cur,
                "UPDATE monitor_incidents SET resolved_at = %s, resolve_reason = %s "
                "WHERE id = %s AND resolved_at IS NULL",
                (self._encode_time(at), reason, incident_id),
            )
            if cur.rowcount != 1:
                return None
            self._execute(cur, f"SELECT {_INCIDENT_COLUMNS} FROM monitor_incidents WHERE id = %s", (incident_id,))
            row = cur.fetchone()
        return None if row is None else _incident(row)

    def mark_notified(self, incident_id: int, at: datetime) -> None:
        with self._tx() as cur:
            self._execute(
                cur,
                "UPDATE monitor_incidents SET last_notified_at = %s WHERE id = %s",
                (self._encode_time(at), incident_id),
            )

    def claim_notice(self, incident_id: int, at: datetime, due_before: datetime | None) -> bool:
        with self._tx() as cur:
            if due_before is None:
                self._execute(
                    cur,
                    "UPDATE monitor_incidents SET last_notified_at = %s "
                    "WHERE id = %s AND resolved_at IS NULL AND last_notified_at IS NULL",
                    (self._encode_time(at), incident_id),
                )
            else:
                self._execute(
                    cur,
                    "UPDATE monitor_incidents SET last_notified_at = %s "
                    "WHERE id = %s AND resolved_at IS NULL AND (last_notified_at IS NULL OR last_notified_at <= %s)",
                    (self._encode_time(at), incident_id, self._encode_time(due_before)),
                )
            return bool(cur.rowcount == 1)

    # ----------------------------------------------------------------- alert outbox
    def enqueue_notice(
        self, channel: str, check_name: str, alert: dict[str, Any], at: datetime, due_at: datetime
    ) -> int:
        with self._tx() as cur:
            self._execute(
                cur,
                "INSERT INTO alert_outbox (channel, check_name, alert, created_at, due_at, next_attempt_at, attempts) "
                "VALUES (%s, %s, %s, %s, %s, %s, 0) RETURNING id",
                (
                    channel,
                    check_name,
                    json.dumps(db_json(alert), sort_keys=True),
                    self._encode_time(at),
                    self._encode_time(due_at),
                    self._encode_time(due_at),
                ),
            )
            row = cur.fetchone()
        return int(row[0])

    def take_notice(self, channel: str, now: datetime, lease_until: datetime) -> OutboxNotice | None:
        moment = self._encode_time(now)
        with self._tx() as cur:
            # A concurrent taker (another replica) picks the same row at worst; the outer condition,
            # re-checked on the row it updates, lets only one of them have it.
            self._execute(
                cur,
                "UPDATE alert_outbox SET next_attempt_at = %s, claimed_until = %s, "
                "attempts = attempts + 1 WHERE id = ("
                " SELECT o.id FROM alert_outbox o WHERE o.channel = %s AND o.next_attempt_at <= %s"
                " AND NOT EXISTS (SELECT 1 FROM alert_outbox p"
                "  WHERE p.channel = o.channel AND p.check_name = o.check_name AND p.id < o.id)"
                " ORDER BY o.id LIMIT 1) AND next_attempt_at <= %s "
                "RETURNING id, channel, check_name, alert, created_at, due_at, attempts, last_error",
                (self._encode_time(lease_until), self._encode_time(lease_until), channel, moment, moment),
            )
            row = cur.fetchone()
        return None if row is None else _notice(row)

    def take_expired_notice(
        self, channel: str, due_before: datetime, now: datetime, lease_until: datetime
    ) -> OutboxNotice | None:
        moment = self._encode_time(now)
        with self._tx() as cur:
            self._execute(
                cur,
                "UPDATE alert_outbox SET claimed_until = %s WHERE id = ("
                " SELECT o.id FROM alert_outbox o WHERE o.channel = %s AND o.due_at <= %s"
                " AND (o.claimed_until IS NULL OR o.claimed_until <= %s) ORDER BY o.id LIMIT 1)"
                " AND (claimed_until IS NULL OR claimed_until <= %s) "
                "RETURNING id, channel, check_name, alert, created_at, due_at, attempts, last_error",
                (self._encode_time(lease_until), channel, self._encode_time(due_before), moment, moment),
            )
            row = cur.fetchone()
        return None if row is None else _notice(row)

    def notice_delivered(self, notice_id: int) -> None:
        with self._tx() as cur:
            self._execute(cur, "DELETE FROM alert_outbox WHERE id = %s", (notice_id,))

    def notice_failed(self, notice_id: int, retry_at: datetime, error: str) -> None:
        with self._tx() as cur:
            self._execute(
                cur,
                "UPDATE alert_outbox SET next_attempt_at = %s, last_error = %s, claimed_until = NULL WHERE id = %s",
                (self._encode_time(retry_at), error[:1000], notice_id),
            )

    def later_notices(self, channel: str, check_name: str, notice_id: int) -> int:
        with self._tx() as cur:
            self._execute(
                cur,
                "SELECT COUNT(*) FROM alert_outbox WHERE channel = %s AND check_name = %s AND id > %s",
                (channel, check_name, notice_id),
            )
            row = cur.fetchone()
        return int(row[0])

    def retry_notices_now(self, channel: str, now: datetime) -> int:
        moment = self._encode_time(now)
        with self._tx() as cur:
            self._execute(
                cur,
                "UPDATE alert_outbox SET next_attempt_at = CASE WHEN due_at > %s THEN due_at ELSE %s END "
                "WHERE channel = %s AND next_attempt_at > %s AND next_attempt_at > due_at AND claimed_until IS NULL",
                (moment, moment, channel, moment),
            )
            return int(cur.rowcount)

    def notice_abandoned(self, notice_id: int) -> None:
        self.notice_delivered(notice_id)

    def pending_notices(self) -> dict[str, int]:
        with self._tx() as cur:
            self._execute(cur, "SELECT channel, COUNT(*) FROM alert_outbox GROUP BY channel")
            return {str(channel): int(count) for channel, count in cur.fetchall()}

    def channel_overrides(self, channel: str, setting: str) -> dict[str, str]:
        with self._tx() as cur:
            self._execute(
                cur,
                "SELECT configured, value FROM alert_channel_overrides WHERE channel = %s AND setting = %s",
                (channel, setting),
            )
            return {str(configured): str(value) for configured, value in cur.fetchall()}

    def save_channel_override(self, channel: str, setting: str, configured: str, value: str, at: datetime) -> None:
        with self._tx() as cur:
            self._execute(
                cur,
                "INSERT INTO alert_channel_overrides (channel, setting, configured, value, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (channel, setting, configured) DO UPDATE SET "
                "value = excluded.value, updated_at = excluded.updated_at",
                (channel, setting, configured, value, self._encode_time(at)),
            )

    # ----------------------------------------------------------------- replicas (exporter_replicas)
    def replica_heartbeat(self, replica_id: str, at: datetime, expires_at: datetime) -> list[str]:
        with self._tx() as cur:
            self._execute(
                cur,
                "INSERT INTO exporter_replicas (replica_id, started_at, heartbeat_at, expires_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (replica_id) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
                (db_text(replica_id), self._encode_time(at), self._encode_time(at), self._encode_time(expires_at)),
            )
            self._execute(cur, "DELETE FROM exporter_replicas WHERE expires_at < %s", (self._encode_time(at),))
            self._execute(cur, "SELECT replica_id FROM exporter_replicas ORDER BY replica_id")
            return [str(row[0]) for row in cur.fetchall()]

    def replica_leave(self, replica_id: str) -> None:
        with self._tx() as cur:
            self._execute(cur, "DELETE FROM exporter_replicas WHERE replica_id = %s", (db_text(replica_id),))

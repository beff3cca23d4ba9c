"""The SQLite store: the embedded default for ``make demo`` and single-node use.

One connection in WAL mode guarded by a lock (SQLite serialises writers anyway), explicit
``BEGIN IMMEDIATE`` transactions, timestamps as ISO-8601 text that sorts like time, and a file
lock standing in for PostgreSQL's advisory lock. Deadlines (``StoreTimeouts``): the wait for the
connection (``pool``), SQLite's busy timeout for another process' write lock (``lock``), and the
whole call (``call``), past which a statement is interrupted; each raises ``StoreError``. The SLO
percentile is computed in Python with the same interpolation as PostgreSQL's ``PERCENTILE_CONT``.
"""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from exporter.clock import utc_naive
from exporter.store.base import DEFAULT_TIMEOUTS, SchemaMissingError, SloRow, StoreError, StoreTimeouts
from exporter.store.schema import Migration
from exporter.store.sql import SqlStore, StatementRefusedError, as_utc, percentile_cont

# SQLite before 3.32 allows 999 bound variables per statement; stay under it.
_MAX_VARIABLES = 990
_PROGRESS_STEPS = 10_000  # virtual-machine steps between two looks at the deadline (well under 1 ms)


def _transient(exc: sqlite3.Error) -> bool:
    """A busy or unreachable database file, as opposed to a statement SQLite refused."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and any(
        reason in text for reason in ("locked", "busy", "unable to open", "disk I/O", "readonly", "full")
    )


class SqliteStore(SqlStore):
    kind = "sqlite"
    placeholder = "?"

    def __init__(
        self, path: str | os.PathLike[str], *, timeouts: StoreTimeouts = DEFAULT_TIMEOUTS, create: bool = True
    ) -> None:
        """``create=False`` (a command that only reads): open an existing database file as it is,
        creating neither the file, its folder nor WAL mode; while the file does not exist, every
        call raises ``SchemaMissingError`` (like a database that was never migrated)."""
        self.path = Path(path)
        self._timeouts = timeouts
        self._deadline = math.inf  # of the call in progress (time.monotonic())
        self._lock = threading.RLock()
        self._leader_files: dict[str, IO[bytes]] = {}
        self._conn: sqlite3.Connection | None = None
        if not create and not self.path.is_file():
            return
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target, uri = str(self.path), False
            else:
                target, uri = self.path.resolve().as_uri() + "?mode=rw", True
            # ``timeout`` is SQLite's busy timeout: how long a statement waits for another
            # connection's (another process') write lock before "database is locked".
            self._conn = sqlite3.connect(
                target, timeout=timeouts.lock, isolation_level=None, check_same_thread=False, uri=uri
            )
            if create:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"sqlite: cannot open {self.path}: {exc}") from None
        # Statements are interrupted once the call's deadline has passed (checked every N steps).
        self._conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)

    def _past_deadline(self) -> bool:
        return time.monotonic() > self._deadline

    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[Any]:
        # One connection: a caller waits for the call in progress, but not for ever.
        if not self._lock.acquire(timeout=self._timeouts.pool):
            raise StoreError(f"sqlite: busy: no turn within {self._timeouts.pool:g}s (store.pool_timeout)")
        seconds = self._timeouts.call if timeout is None else timeout
        try:
            if self._conn is None:
                raise SchemaMissingError(f"sqlite: {self.path} does not exist: no schema yet")
            self._deadline = time.monotonic() + seconds
            self._conn.execute("BEGIN IMMEDIATE")
            yield self._conn
        except sqlite3.Error as exc:
            if str(exc) == "interrupted":
                raise StoreError(f"sqlite: no answer within {seconds:g}s (the deadline of a store call)") from None
            if str(exc).startswith("no such table"):
                raise SchemaMissingError(f"sqlite: no schema yet ({exc})") from None
            raise (StoreError if _transient(exc) else StatementRefusedError)(f"sqlite: {exc}") from None
        finally:
            self._deadline = math.inf
            self._lock.release()

    def close(self) -> None:
        for name in list(self._leader_files):
            self.release_leader(name)
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def _encode_time(self, moment: datetime) -> Any:
        return utc_naive(moment).isoformat(sep=" ", timespec="microseconds")

    def _migration_statements(self, migration: Migration) -> Sequence[str]:
        return migration.sqlite

    def _lock_migrations(self, cursor: Any) -> None:
        """BEGIN IMMEDIATE already holds SQLite's single write lock."""

    def _refusal(self, exc: Exception) -> str | None:
        """A constraint or a value SQLite (or its driver) cannot take: an integer beyond 64 bits, text
        UTF-8 cannot carry, a string or blob over SQLite's length limit."""
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError) or (
            isinstance(exc, sqlite3.Error) and "too big" in str(exc)
        ):
            return f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ValueError | OverflowError):  # UnicodeEncodeError is a ValueError
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    def _insert_many(self, cursor: Any, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        width = len(rows[0])
        per_statement = max(1, _MAX_VARIABLES // width)
        group = "(" + ",".join("?" * width) + ")"
        inserted = 0
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            statement = sql.replace("VALUES %s", "VALUES " + ",".join([group] * len(chunk)))
            cursor.execute(statement, [value for row in chunk for value in row])
            inserted += max(cursor.rowcount, 0)
        return inserted

    def slo_report(self, since: datetime, until: datetime, exclude: Sequence[str] = ()) -> list[SloRow]:
        bounds = (self._encode_time(since), self._encode_time(until), *exclude)
        excluded = ",".join("?" * len(exclude))  # SQLite accepts an empty NOT IN ()
        with self._tx() as cur:
            cur.execute(
                f"""
                SELECT check_name, COUNT(*), SUM(CASE WHEN ok THEN 1 ELSE 0 END),
                       SUM(CASE WHEN ok THEN 0 ELSE 1 END), MAX(CASE WHEN ok THEN NULL ELSE ts END)
                FROM monitor_metrics WHERE ts >= ? AND ts < ? AND check_name NOT IN ({excluded})
                GROUP BY check_name ORDER BY check_name
                """,
                bounds,
            )
            totals = cur.fetchall()
            cur.execute(
                f"""
                SELECT check_name, latency_ms FROM monitor_metrics
                WHERE ts >= ? AND ts < ? AND check_name NOT IN ({excluded}) AND ok AND latency_ms IS NOT NULL
                ORDER BY check_name, latency_ms
                """,
                bounds,
            )
            latencies: dict[str, list[float]] = {}
            for check_name, latency in cur.fetchall():
                latencies.setdefault(check_name, []).append(float(latency))
        return [
            SloRow(
                check_name=name,
                total=int(total),
                successes=int(ok),
                uptime_percent=int(ok) * 100.0 / int(total),
                p99_latency_ms=percentile_cont(latencies.get(name, []), 0.99),
                failures=int(failed),
                last_failure=as_utc(last_failure),
            )
            for name, total, ok, failed, last_failure in totals
        ]

    def _bucket_index_sql(self) -> str:
        # Rows are at or after ``since``, so truncation is the floor.
        return "CAST((julianday(ts) - julianday(%s)) * 86400.0 / %s AS INTEGER)"

    def try_acquire_leader(self, name: str) -> bool:
        if name in self._leader_files:
            return True
        if self._conn is None:  # opened with create=False and the file does not exist: no lock file either
            raise SchemaMissingError(f"sqlite: {self.path} does not exist: no schema yet")
        lock_path = self.path.with_name(f"{self.path.name}.{name}.leader")
        handle = open(lock_path, "ab")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._leader_files[name] = handle
        return True

    def release_leader(self, name: str) -> None:
        handle = self._leader_files.pop(name, None)
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

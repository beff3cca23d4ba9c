"""The SQLite store: the embedded default for ``make demo`` and single-node use.

One connection in WAL mode guarded by a lock (SQLite serialises writers anyway), explicit
``BEGIN IMMEDIATE`` transactions, timestamps as ISO-8601 text that sorts like time, and a file
lock standing in for PostgreSQL's advisory lock. The SLO percentile is computed in Python with the
same interpolation as PostgreSQL's ``PERCENTILE_CONT``.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from exporter.clock import utc_naive
from exporter.store.base import SloRow, StoreError
from exporter.store.schema import Migration
from exporter.store.sql import SqlStore, as_utc, percentile_cont

# SQLite before 3.32 allows 999 bound variables per statement; stay under it.
_MAX_VARIABLES = 990


class SqliteStore(SqlStore):
    kind = "sqlite"
    placeholder = "?"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"sqlite: cannot open {self.path}: {exc}") from None
        self._lock = threading.RLock()
        self._leader_files: dict[str, IO[bytes]] = {}

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite: {exc}") from None

    def close(self) -> None:
        for name in list(self._leader_files):
            self.release_leader(name)
        with self._lock:
            self._conn.close()

    def _encode_time(self, moment: datetime) -> Any:
        return utc_naive(moment).isoformat(sep=" ", timespec="microseconds")

    def _migration_statements(self, migration: Migration) -> Sequence[str]:
        return migration.sqlite

    def _lock_migrations(self, cursor: Any) -> None:
        """BEGIN IMMEDIATE already holds SQLite's single write lock."""

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

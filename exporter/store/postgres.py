"""The PostgreSQL store: the production backend.

A small thread-safe pool (callers wait a bounded time when all connections are busy; idle
connections are kept for reuse and checked before use), batched inserts (``execute_values``;
``COPY`` for the listener's events), sessions pinned to UTC, advisory locks for migrations and for
the single listener leader. Every call has a deadline (``StoreTimeouts``): PostgreSQL's own
statement, lock and idle-in-transaction timeouts, keepalives and ``tcp_user_timeout`` on both ends,
and a client-side watchdog for a peer that stops answering altogether; a call past its deadline
raises ``StoreError``, exactly like a server that is down.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from exporter.store.base import (
    DEFAULT_TIMEOUTS,
    Checkpoint,
    CheckResult,
    SchemaMissingError,
    SloRow,
    StoreError,
    StoreTimeouts,
)
from exporter.store.schema import SEED_ADOPTION, Migration, SeedAdoption
from exporter.store.sql import (
    RESULT_COLUMNS,
    SAVE_CHECKPOINT,
    DuplicateEventsError,
    SqlStore,
    StatementRefusedError,
    as_utc,
    db_params,
)

log = logging.getLogger(__name__)

_MIGRATION_LOCK = "blocktrust-exporter:migrate"
# SQLSTATE classes of a row refused for good: data exception, integrity constraint violation,
# program limit exceeded (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_ROW_REFUSAL_CLASSES = frozenset({"22", "23", "54"})
# SQLSTATE classes of a store that may answer differently later: connection exception, transaction
# rollback (serialization, deadlock), insufficient resources, object not in prerequisite state (a lock
# not available), operator intervention (a statement cancelled at its timeout, a shutdown), system error.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
# The longest wait for the seed adoption's exclusive lock, each try (new readers queue behind the wait).
_ALTER_LOCK_WAIT = 0.2  # seconds


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def libpq_dsn(url: str) -> str:
    """Accept the seed's SQLAlchemy form (``postgresql+psycopg2://``) besides libpq's own."""
    for prefix in ("postgresql+psycopg2://", "postgres+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def connect_kwargs(timeouts: StoreTimeouts, *, read_only: bool = False) -> dict[str, Any]:
    """libpq connection parameters: the deadlines of ``timeouts`` on both ends of the connection.

    The server cancels a statement after ``statement_timeout``, gives up waiting for a lock after
    ``lock_timeout`` and ends a session left idle inside a transaction; keepalives and
    ``tcp_user_timeout`` on both sides notice a dead peer or path in about half a minute, not after
    the kernel's two hours (and the server then drops our session and the leader's advisory lock).
    """
    server = {
        "timezone": "UTC",
        "statement_timeout": _milliseconds(timeouts.statement),
        "lock_timeout": _milliseconds(timeouts.lock),
        "idle_in_transaction_session_timeout": _milliseconds(timeouts.idle_in_transaction),
        "tcp_keepalives_idle": 10,
        "tcp_keepalives_interval": 5,
        "tcp_keepalives_count": 3,
        "tcp_user_timeout": _milliseconds(timeouts.tcp_user),
    }
    if read_only:
        server["default_transaction_read_only"] = "on"
    return {
        # libpq counts whole seconds and treats 1 as 2.
        "connect_timeout": max(2, math.ceil(timeouts.connect)),
        "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        "application_name": "blocktrust-exporter",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": _milliseconds(timeouts.tcp_user),
    }


def _late(seconds: float) -> str:
    return f"no answer within {seconds:g}s (the deadline of a store call)"


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class DeadlineWatchdog:
    """Ends a PostgreSQL call that outlives its deadline, whatever it waits for.

    libpq waits on its socket without a timeout, and ``statement_timeout`` only helps while the
    server can still answer: a peer that accepts and then goes silent (a stalled network path or
    proxy, a frozen server; keepalives and ``tcp_user_timeout`` never fire while something still
    acknowledges the packets) would hold the calling thread for ever. A call arms the watchdog with
    its connection and deadline; if the deadline passes first, one thread shuts the connection's
    socket down, which wakes libpq at once: the call fails with a connection error and the
    connection is closed, never reused. (psycopg2's wait callback could do the same in-thread, but
    it is process-wide and rules out ``COPY``, the listener's bulk path.)
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: set[Alarm] = set()
        self._thread: threading.Thread | None = None
        self._wakes_at = math.inf  # when the thread looks next (monotonic); inf: not before notified
        self._closing = False

    @contextmanager
    def guard(self, conn: Any, deadline: float) -> Iterator[Alarm]:
        """Arm for the block. The yielded alarm's ``fired`` says whether the watchdog cut ``conn``;
        once the block is left it is final (a deadline passing later no longer touches ``conn``)."""
        alarm = Alarm(deadline, conn)
        if math.isinf(deadline):
            yield alarm  # no deadline: nothing to watch
            return
        with self._cond:
            self._armed.add(alarm)
            self._closing = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="store-deadlines", daemon=True)
                self._thread.start()
            if deadline < self._wakes_at:  # rarely: deadlines mostly come in the order they expire
                self._cond.notify()
        try:
            yield alarm
        finally:
            with self._cond:
                self._armed.discard(alarm)

    def close(self) -> None:
        """End the watchdog's thread once no call is armed (a later call starts it again)."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._closing and not self._armed:
                    self._thread = None
                    return
                now = time.monotonic()
                for alarm in [a for a in self._armed if a.deadline <= now]:
                    self._armed.discard(alarm)
                    alarm.fired = True
                    # Under the lock: ``guard`` cannot return (and the connection be reused or
                    # closed, its descriptor recycled) while its socket is being shut down.
                    _shut_down_socket(alarm.conn)
                self._wakes_at = min((a.deadline for a in self._armed), default=math.inf)
                self._cond.wait(None if math.isinf(self._wakes_at) else max(0.0, self._wakes_at - now))


class Alarm:
    """One armed deadline of ``DeadlineWatchdog``."""

    __slots__ = ("conn", "deadline", "fired")

    def __init__(self, deadline: float, conn: Any) -> None:
        self.deadline = deadline
        self.conn = conn
        self.fired = False


def _shut_down_socket(conn: Any) -> None:
    # A duplicate of libpq's descriptor: shutting it down ends the connection for both, and
    # closing the duplicate leaves libpq's own descriptor to libpq.
    with (
        suppress(OSError, psycopg2.Error),
        socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)


class _Pool:
    """At most ``size`` connections, idle ones reused newest first.

    psycopg2's own pools close every connection returned beyond ``minconn``, and a non-zero
    ``minconn`` connects at construction (a server down at start-up would be fatal), hence this.
    Waiting for a free connection is bounded (``wait`` seconds, then ``StoreError``): a pool
    whose connections all hang must not queue every caller behind them.
    After a server restart or a network cut every idle connection is dead, and the first write
    after the recovery should not fail on one of them: a connection idle for longer than
    ``_PING_AFTER`` is pinged before use (within the caller's deadline), and every idle connection
    is dropped as soon as one connection breaks or misses its deadline (``close()``; the store also
    calls it when its leader session breaks).
    """

    _PING_AFTER = 5.0  # seconds

    def __init__(
        self,
        connect: Callable[[], Any],
        size: int,
        *,
        wait: float | None = None,
        watchdog: DeadlineWatchdog | None = None,
    ) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._size = size
        self._wait = wait
        self._watchdog = watchdog or DeadlineWatchdog()
        self._idle: list[tuple[Any, float]] = []  # (connection, when it was returned)
        self._lock = threading.Lock()

    def _checkout(self, deadline: float) -> Any:
        with self._lock:
            conn, since = self._idle.pop() if self._idle else (None, 0.0)
        if conn is not None and not conn.closed and time.monotonic() - since > self._PING_AFTER:
            try:
                with self._watchdog.guard(conn, deadline), conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    conn.rollback()
            except psycopg2.Error:
                _close_quietly(conn)
                self.close()  # its idle siblings died the same way
                conn = None
        if conn is None or conn.closed:
            conn = self._connect()
        return conn

    @contextmanager
    def connection(self, timeout: float = math.inf) -> Iterator[Any]:
        """A connection for one call of at most ``timeout`` seconds (the ping of an idle connection
        and the call itself; a connect is bounded by libpq's ``connect_timeout``). A call cut off at
        its deadline raises ``StoreError``; other driver errors pass through."""
        if not self._slots.acquire(timeout=self._wait):
            raise StoreError(f"no free connection within {self._wait:g}s (all {self._size} busy; store.pool_timeout)")
        try:
            deadline = time.monotonic() + timeout
            conn = self._checkout(deadline)
            alarm: Alarm | None = None
            try:
                with self._watchdog.guard(conn, deadline) as alarm:
                    yield conn
            except psycopg2.Error:
                if alarm is not None and alarm.fired:
                    raise StoreError(_late(timeout)) from None
                raise
            finally:
                self._give_back(conn, cut=alarm is not None and alarm.fired)
        finally:
            self._slots.release()

    def _give_back(self, conn: Any, *, cut: bool) -> None:
        # Reused whenever libpq says it is open and outside any transaction, also after an exception
        # the caller rolled back (a duplicate event redoing its commit, say), but never once the
        # watchdog cut it (even when the call finished at that very moment).
        idle = psycopg2.extensions.TRANSACTION_STATUS_IDLE
        if not cut and not conn.closed and conn.info.transaction_status == idle:
            with self._lock:
                self._idle.append((conn, time.monotonic()))
            return
        if cut or conn.closed:
            # The connection itself broke (server restart, network cut, a silent peer): its idle
            # siblings, however recently used, most likely broke with it.
            self.close()
        _close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close_quietly(conn)


class PostgresStore(SqlStore):
    kind = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        timeouts: StoreTimeouts = DEFAULT_TIMEOUTS,
        read_only: bool = False,
    ) -> None:
        """``read_only``: every transaction is read-only (``report``: a command that reads must
        not change the database, not even by mistake)."""
        self._dsn = libpq_dsn(url)
        password = urlsplit(url).password if "://" in url else None
        # Longest first, so the whole URL is masked before its password would leave the rest visible.
        self._hidden = sorted(
            {v for v in (url, self._dsn, password, password and unquote(password)) if v}, key=len, reverse=True
        )
        self._timeouts = timeouts
        self._connect_kwargs = connect_kwargs(timeouts, read_only=read_only)
        self._watchdog = DeadlineWatchdog()
        self._pool = _Pool(
            lambda: psycopg2.connect(self._dsn, **self._connect_kwargs),
            pool_size,
            wait=timeouts.pool,
            watchdog=self._watchdog,
        )
        self._leaders: dict[str, Any] = {}
        self._leader_lock = threading.Lock()

    # ------------------------------------------------------------------ connections
    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[Any]:
        try:
            with self._pool.connection(self._timeouts.call if timeout is None else timeout) as conn:
                yield conn
        except psycopg2.errors.UndefinedTable as exc:
            raise SchemaMissingError(f"postgresql: no schema yet ({self._reason(exc)})") from None
        except psycopg2.Error as exc:
            code = exc.pgcode or ""
            # The server answered with an SQL error: not an outage (a migration fails on it for good).
            if code and code[:2] not in _TRANSIENT_CLASSES:
                raise StatementRefusedError(f"postgresql: {self._refused(exc)}") from None
            raise StoreError(f"postgresql: {self._reason(exc)}") from None
        except StoreError as exc:
            raise StoreError(f"postgresql: {exc}") from None

    def _allow_long_statements(self, cursor: Any, seconds: float) -> None:
        milliseconds = _milliseconds(seconds)
        cursor.execute(f"SET LOCAL statement_timeout = {milliseconds}")
        cursor.execute(f"SET LOCAL lock_timeout = {milliseconds}")

    def _reason(self, exc: psycopg2.Error) -> str:
        """The first line of a driver error with our URL and password masked: libpq quotes the
        DSN (or a piece of it) in some messages, e.g. ``invalid dsn: … "s3cr%zz"``."""
        text = (exc.pgerror or str(exc) or type(exc).__name__).strip()
        line = text.splitlines()[0] if text else type(exc).__name__
        for secret in self._hidden:
            line = line.replace(secret, "***")
        return line

    def _refused(self, exc: psycopg2.Error) -> str:
        """An SQL error in one line: the server's message and its SQLSTATE (secrets masked)."""
        message = exc.diag.message_primary or self._reason(exc)
        for secret in self._hidden:
            message = message.replace(secret, "***")
        return f"{message} (SQLSTATE {exc.pgcode})"

    def close(self) -> None:
        with self._leader_lock:
            for conn in self._leaders.values():
                _close_quietly(conn)
            self._leaders.clear()
        self._pool.close()
        self._watchdog.close()

    # ------------------------------------------------------------------ dialect hooks
    def _migration_statements(self, migration: Migration) -> Sequence[str]:
        return migration.postgresql

    def _adopt_seed_events(self) -> None:
        """``SEED_ADOPTION`` on a session of its own (``CREATE INDEX CONCURRENTLY`` runs outside any
        transaction), under the migration lock, within the migration deadline. Nothing to do without
        an ``events`` table (a new database: migration 1 creates it)."""
        deadline = time.monotonic() + self._timeouts.migration
        conn = None
        alarm: Alarm | None = None
        try:
            conn = psycopg2.connect(self._dsn, **self._connect_kwargs)
            conn.autocommit = True
            with self._watchdog.guard(conn, deadline) as alarm, conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {_milliseconds(self._timeouts.migration)}")
                cur.execute("SELECT pg_advisory_lock(%s)", (lock_key(_MIGRATION_LOCK),))
                try:
                    cur.execute("SELECT to_regclass('events') IS NOT NULL")
                    row = cur.fetchone()
                    if row is not None and row[0]:
                        self._adopt(cur, SEED_ADOPTION, deadline)
                finally:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key(_MIGRATION_LOCK),))
        except psycopg2.Error as exc:
            if alarm is not None and alarm.fired:
                raise StoreError(f"postgresql: adopting the seed's events: {_late(self._timeouts.migration)}") from None
            code = exc.pgcode or ""
            if code and code[:2] not in _TRANSIENT_CLASSES:
                raise StatementRefusedError(f"postgresql: adopting the seed's events: {self._refused(exc)}") from None
            raise StoreError(f"postgresql: adopting the seed's events: {self._reason(exc)}") from None
        finally:
            if conn is not None:
                _close_quietly(conn)

    def _adopt(self, cur: Any, adoption: SeedAdoption, deadline: float) -> None:
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'events' "
            "AND table_schema = current_schema()"
        )
        present = {str(row[0]) for row in cur.fetchall()}
        missing = [(name, sql_type) for name, sql_type in adoption.columns if name not in present]
        if missing:
            log.info("store: adopting the seed's events table (columns, values, indexes)")
            added = ", ".join(f"ADD COLUMN IF NOT EXISTS {name} {sql_type}" for name, sql_type in missing)
            self._alter_briefly(cur, "ALTER TABLE events " + added, deadline)
        cur.execute("SELECT MIN(id), MAX(id) FROM events")
        low, high = cur.fetchone()
        if low is not None:
            for start in range(int(low) - 1, int(high), adoption.batch_size):
                cur.execute(adoption.backfill, (start, start + adoption.batch_size))
        cur.execute(adoption.deduplicate)
        # An index a failed CONCURRENTLY build left behind is invalid, and IF NOT EXISTS would keep it.
        cur.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'events'::regclass AND NOT i.indisvalid"
        )
        for (name,) in cur.fetchall():
            cur.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        for statement in adoption.indexes:
            cur.execute(statement)

    def _alter_briefly(self, cur: Any, statement: str, deadline: float) -> None:
        """Run ``statement`` (which takes an exclusive lock) waiting at most ``_ALTER_LOCK_WAIT`` for its
        lock each time: while it waits, every new reader of the table queues behind it. Tried again
        until the deadline."""
        cur.execute(f"SET lock_timeout = {_milliseconds(_ALTER_LOCK_WAIT)}")
        try:
            while True:
                try:
                    cur.execute(statement)
                    return
                except psycopg2.errors.LockNotAvailable:
                    if time.monotonic() + _ALTER_LOCK_WAIT * 2 > deadline:
                        raise
                    time.sleep(_ALTER_LOCK_WAIT)
        finally:
            cur.execute(f"SET lock_timeout = {_milliseconds(self._timeouts.lock)}")

    def _lock_migrations(self, cursor: Any) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(_MIGRATION_LOCK),))

    def _insert_many(self, cursor: Any, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        returned = psycopg2.extras.execute_values(cursor, sql + " RETURNING 1", rows, page_size=1000, fetch=True)
        return len(returned)

    def _insert_events(self, cursor: Any, rows: Sequence[Sequence[Any]], *, expect_new: bool) -> dict[str, int]:
        """COPY, the fastest way in (about twice ``execute_values``' speed for a catch-up range).

        Above the checkpoint nothing is stored yet (events and checkpoint move in one transaction),
        so the rows are COPYed straight into ``events``. A duplicate (a database adopted from the
        seed, a range replayed by hand) fails that COPY, and the caller redoes the transaction with
        ``expect_new=False``: the rows then go through a staging table and ``INSERT … ON CONFLICT
        DO NOTHING``. Redoing it, rather than a savepoint around the COPY, saves two round trips on
        every commit of the common path; the commit thread is the catch-up's bottleneck.
        """
        columns = "(type, data, block_number, block_hash, tx_hash, log_index)"
        # Encoded here, so that a value UTF-8 cannot carry (a lone surrogate in a hash) fails before the
        # COPY starts, as a refusal of its row (``_refusal``), not in the middle of the protocol.
        text = _copy_text_rows(rows).encode()
        if expect_new:
            try:
                # One read of the whole buffer: every read is a call back into Python, i.e. a wait
                # for the GIL while the fetch thread decodes the next range.
                cursor.copy_expert(f"COPY events {columns} FROM STDIN", io.BytesIO(text), size=len(text) + 1)
            except psycopg2.errors.UniqueViolation:
                raise DuplicateEventsError() from None
            return dict(Counter(row[0] for row in rows))
        # ``position`` keeps the given (chain) order through the INSERT … SELECT, so ids follow it.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS events_staging (position BIGSERIAL, type VARCHAR(50), data JSONB, "
            "block_number BIGINT, block_hash TEXT, tx_hash TEXT, log_index INTEGER) ON COMMIT DELETE ROWS"
        )
        cursor.copy_expert(f"COPY events_staging {columns} FROM STDIN", io.BytesIO(text), size=len(text) + 1)
        cursor.execute(
            f"INSERT INTO events {columns} SELECT type, data, block_number, block_hash, tx_hash, log_index "
            "FROM events_staging ORDER BY position ON CONFLICT (tx_hash, log_index) DO NOTHING RETURNING type"
        )
        inserted = dict(Counter(row[0] for row in cursor.fetchall()))
        cursor.execute("DELETE FROM events_staging")  # a bisected commit stages again in the same transaction
        return inserted

    def _refusal(self, exc: Exception) -> str | None:
        """Data errors (class 22: a value out of range, too long, NUL, bad JSON), integrity errors (23)
        and program limits (54: an index row too large) are the row's; so are values the driver cannot
        send (NUL in a parameter, text UTF-8 cannot carry). Anything else (a connection lost, a
        deadline, a lock) is the store's and worth retrying."""
        if isinstance(exc, psycopg2.Error):
            code = exc.pgcode or ""
            if code[:2] not in _ROW_REFUSAL_CLASSES:
                return None
            return f"{code}: {exc.diag.message_primary or self._reason(exc)}"
        if isinstance(exc, ValueError | OverflowError):  # UnicodeEncodeError is a ValueError
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    def _relax_durability(self, cursor: Any) -> None:
        cursor.execute(_RELAXED)

    def _open_commit(self, cur: Any, name: str, checkpoint: Checkpoint, heartbeat: CheckResult | None) -> None:
        """One round trip (and one wait for the GIL after it) for what the one-statement-at-a-time path
        sends in three: during a catch-up the commit thread is the bottleneck, and each statement is a
        wait on PostgreSQL and then on the fetch threads' parsing before the next."""
        statements = [
            _RELAXED,
            cur.mogrify(SAVE_CHECKPOINT, db_params(self._checkpoint_row(name, checkpoint))).decode(),
        ]
        if heartbeat is not None:
            params = db_params(self._result_row(heartbeat))
            row = cur.mogrify(f"({', '.join(['%s'] * len(params))})", params).decode()
            statements.append(f"INSERT INTO monitor_metrics {RESULT_COLUMNS} VALUES {row} ON CONFLICT (uid) DO NOTHING")
        cur.execute("; ".join(statements))

    def slo_report(self, since: datetime, until: datetime, exclude: Sequence[str] = ()) -> list[SloRow]:
        with self._tx() as cur:
            cur.execute(
                """
                SELECT check_name,
                       COUNT(*),
                       COUNT(*) FILTER (WHERE ok),
                       COUNT(*) FILTER (WHERE ok) * 100.0 / COUNT(*),
                       PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE ok),
                       COUNT(*) FILTER (WHERE NOT ok),
                       MAX(ts) FILTER (WHERE NOT ok)
                FROM monitor_metrics
                WHERE ts >= %s AND ts < %s AND NOT (check_name = ANY(%s::text[]))
                GROUP BY check_name
                ORDER BY check_name
                """,
                (self._encode_time(since), self._encode_time(until), list(exclude)),
            )
            rows = cur.fetchall()
        return [
            SloRow(
                check_name=r[0],
                total=int(r[1]),
                successes=int(r[2]),
                uptime_percent=float(r[3]),
                p99_latency_ms=None if r[4] is None else float(r[4]),
                failures=int(r[5]),
                last_failure=as_utc(r[6]),
            )
            for r in rows
        ]

    def _bucket_index_sql(self) -> str:
        # date_part is double precision; EXTRACT is numeric since PostgreSQL 14, and slower.
        return "FLOOR(date_part('epoch', ts - %s) / %s)::int"

    # ------------------------------------------------------------------ leadership
    def try_acquire_leader(self, name: str) -> bool:
        """Session-level advisory lock on a dedicated connection: if this process dies or loses
        its connection, PostgreSQL releases the lock and another replica takes over. Bounded like
        every call: a leader session that stops answering is given up (and with it the lock)."""
        with self._leader_lock:
            conn = self._leaders.get(name)
            if conn is not None:
                if self._answers(conn):
                    return True
                log.warning("listener leader connection lost; the lock is gone name=%s", name)
                _close_quietly(conn)
                del self._leaders[name]
                # Whatever cut this session most likely cut the pooled idle ones too; the next
                # write after a recovery must not be the one that finds out.
                self._pool.close()
            deadline = time.monotonic() + self._timeouts.call
            conn = None
            alarm: Alarm | None = None
            try:
                conn = psycopg2.connect(self._dsn, **self._connect_kwargs)
                conn.autocommit = True
                with self._watchdog.guard(conn, deadline) as alarm, conn.cursor() as cur:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_key("leader:" + name),))
                    row = cur.fetchone()
            except psycopg2.Error as exc:
                if conn is not None:
                    _close_quietly(conn)
                reason = _late(self._timeouts.call) if alarm is not None and alarm.fired else self._reason(exc)
                raise StoreError(f"postgresql: leader lock: {reason}") from None
            if row is not None and row[0] and not (alarm is not None and alarm.fired):
                self._leaders[name] = conn
                return True
            _close_quietly(conn)
            return False

    def _answers(self, conn: Any) -> bool:
        """Whether a dedicated session still answers, within the call deadline."""
        try:
            with self._watchdog.guard(conn, time.monotonic() + self._timeouts.call) as alarm, conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error:
            return False
        return not alarm.fired

    def release_leader(self, name: str) -> None:
        with self._leader_lock:
            conn = self._leaders.pop(name, None)
        if conn is not None:
            _close_quietly(conn)  # closing the session releases its advisory locks


# Events and checkpoint share the listener's transaction: a crash loses both or neither, and the listener
# re-ingests from the checkpoint, so waiting for the WAL flush buys nothing there.
_RELAXED = "SET LOCAL synchronous_commit = off"


def _copy_text_rows(rows: Sequence[Sequence[Any]]) -> str:
    """The rows in COPY's text format (tab-separated, ``\\N`` for NULL, backslash escapes)."""
    lines = []
    for row in rows:
        line = "\t".join(map(str, row))
        # Fast path: hashes, numbers and compact JSON almost never hold a character COPY treats
        # specially; one scan of the joined line tells, else every value is escaped.
        if line.count("\t") != len(row) - 1 or "\\" in line or "\n" in line or "\r" in line or None in row:
            line = "\t".join(_copy_text(value) for value in row)
        lines.append(line)
    lines.append("")
    return "\n".join(lines)


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    # Hashes, numbers and type names never need escaping; only JSON text can hold a backslash.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _close_quietly(conn: Any) -> None:
    with suppress(psycopg2.Error):
        conn.close()

"""The versioned schema of SPEC §2, for both dialects.

Each migration is a list of statements per dialect, applied in order inside one transaction and
recorded in ``schema_migrations``. Statements are idempotent (``IF NOT EXISTS``) so that a database
created by the seed's code (tables without our added columns) migrates cleanly. Never edit a
released migration: append a new one. A seed database's ``events`` table is adopted beforehand
(``SEED_ADOPTION``: PostgreSQL, in short steps).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    postgresql: tuple[str, ...]
    sqlite: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "SPEC §2 tables, listener columns and checkpoint, incident bookkeeping",
        postgresql=(
            # A seed database's events table is brought to these columns (and its rows to the unique
            # index) by SEED_ADOPTION beforehand, in steps that never block its readers for long.
            """CREATE TABLE IF NOT EXISTS events (
                id SERIAL PRIMARY KEY, type VARCHAR(50) NOT NULL, data JSONB NOT NULL,
                timestamp TIMESTAMP DEFAULT NOW(),
                block_number BIGINT, block_hash TEXT, tx_hash TEXT, log_index INTEGER)""",
            "CREATE UNIQUE INDEX IF NOT EXISTS uq_events_tx_log ON events(tx_hash, log_index)",
            "CREATE INDEX IF NOT EXISTS idx_events_block_number ON events(block_number)",
            """CREATE TABLE IF NOT EXISTS monitor_metrics (
                id SERIAL PRIMARY KEY, ts TIMESTAMP DEFAULT NOW(), check_name TEXT, ok BOOLEAN,
                latency_ms INT, details JSONB)""",
            "ALTER TABLE monitor_metrics ADD COLUMN IF NOT EXISTS uid TEXT",
            "CREATE UNIQUE INDEX IF NOT EXISTS uq_monitor_metrics_uid ON monitor_metrics(uid)",
            "CREATE INDEX IF NOT EXISTS idx_monitor_metrics_ts ON monitor_metrics(ts DESC)",
            "CREATE INDEX IF NOT EXISTS idx_monitor_metrics_check_name ON monitor_metrics(check_name)",
            "CREATE INDEX IF NOT EXISTS idx_monitor_metrics_check_ts ON monitor_metrics(check_name, ts DESC)",
            """CREATE TABLE IF NOT EXISTS monitor_incidents (
                id SERIAL PRIMARY KEY, opened_at TIMESTAMP DEFAULT NOW(), resolved_at TIMESTAMP,
                severity TEXT, title TEXT, detail TEXT)""",
            "ALTER TABLE monitor_incidents ADD COLUMN IF NOT EXISTS check_name TEXT",
            "ALTER TABLE monitor_incidents ADD COLUMN IF NOT EXISTS last_notified_at TIMESTAMP",
            """CREATE UNIQUE INDEX IF NOT EXISTS uq_monitor_incidents_open
               ON monitor_incidents(check_name) WHERE resolved_at IS NULL""",
            """CREATE TABLE IF NOT EXISTS listener_checkpoints (
                name TEXT PRIMARY KEY, block_number BIGINT NOT NULL, block_hash TEXT NOT NULL,
                recent JSONB NOT NULL, updated_at TIMESTAMP NOT NULL)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS events (
                id INTEGER PRIMARY KEY AUTOINCREMENT, type VARCHAR(50) NOT NULL, data TEXT NOT NULL,
                timestamp TIMESTAMP DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
                block_number INTEGER, block_hash TEXT, tx_hash TEXT, log_index INTEGER)""",
            "CREATE UNIQUE INDEX IF NOT EXISTS uq_events_tx_log ON events(tx_hash, log_index)",
            "CREATE INDEX IF NOT EXISTS idx_events_block_number ON events(block_number)",
            """CREATE TABLE IF NOT EXISTS monitor_metrics (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts TIMESTAMP DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
                check_name TEXT, ok BOOLEAN, latency_ms INT, details TEXT, uid TEXT)""",
            "CREATE UNIQUE INDEX IF NOT EXISTS uq_monitor_metrics_uid ON monitor_metrics(uid)",
            "CREATE INDEX IF NOT EXISTS idx_monitor_metrics_ts ON monitor_metrics(ts DESC)",
            "CREATE INDEX IF NOT EXISTS idx_monitor_metrics_check_name ON monitor_metrics(check_name)",
            "CREATE INDEX IF NOT EXISTS idx_monitor_metrics_check_ts ON monitor_metrics(check_name, ts DESC)",
            """CREATE TABLE IF NOT EXISTS monitor_incidents (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                opened_at TIMESTAMP DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
                resolved_at TIMESTAMP, severity TEXT, title TEXT, detail TEXT,
                check_name TEXT, last_notified_at TIMESTAMP)""",
            """CREATE UNIQUE INDEX IF NOT EXISTS uq_monitor_incidents_open
               ON monitor_incidents(check_name) WHERE resolved_at IS NULL""",
            """CREATE TABLE IF NOT EXISTS listener_checkpoints (
                name TEXT PRIMARY KEY, block_number INTEGER NOT NULL, block_hash TEXT NOT NULL,
                recent TEXT NOT NULL, updated_at TIMESTAMP NOT NULL)""",
        ),
    ),
    Migration(
        2,
        "indexes for reading recent rows: a covering ts index on monitor_metrics, events(timestamp)",
        # The status page and the SLO report read the last day of monitor_metrics by ts; with the
        # columns they aggregate in the index, that is an index-only scan (about 10x less time over
        # 30 days of rows than fetching each row from the table).
        postgresql=(
            """CREATE INDEX IF NOT EXISTS idx_monitor_metrics_ts_cover
               ON monitor_metrics(ts) INCLUDE (check_name, ok, latency_ms)""",
            "CREATE INDEX IF NOT EXISTS idx_events_timestamp ON events(timestamp)",
        ),
        sqlite=(
            """CREATE INDEX IF NOT EXISTS idx_monitor_metrics_ts_cover
               ON monitor_metrics(ts, check_name, ok, latency_ms)""",
            "CREATE INDEX IF NOT EXISTS idx_events_timestamp ON events(timestamp)",
        ),
    ),
    Migration(
        3,
        "alert outbox (notices waiting for a channel), incident resolve reason, channel overrides",
        postgresql=(
            "ALTER TABLE monitor_incidents ADD COLUMN IF NOT EXISTS resolve_reason TEXT",
            # One row per notice and channel, deleted once the channel accepted it (or it was given up).
            """CREATE TABLE IF NOT EXISTS alert_outbox (
                id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, check_name TEXT NOT NULL,
                alert JSONB NOT NULL, created_at TIMESTAMP NOT NULL, due_at TIMESTAMP NOT NULL,
                next_attempt_at TIMESTAMP NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                claimed_until TIMESTAMP)""",
            "CREATE INDEX IF NOT EXISTS idx_alert_outbox_channel_due ON alert_outbox(channel, next_attempt_at)",
            # What a channel's API told us to change (a Telegram group that became a supergroup).
            """CREATE TABLE IF NOT EXISTS alert_channel_overrides (
                channel TEXT NOT NULL, setting TEXT NOT NULL, configured TEXT NOT NULL, value TEXT NOT NULL,
                updated_at TIMESTAMP NOT NULL, PRIMARY KEY (channel, setting, configured))""",
        ),
        sqlite=(
            "ALTER TABLE monitor_incidents ADD COLUMN resolve_reason TEXT",
            """CREATE TABLE IF NOT EXISTS alert_outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, check_name TEXT NOT NULL,
                alert TEXT NOT NULL, created_at TIMESTAMP NOT NULL, due_at TIMESTAMP NOT NULL,
                next_attempt_at TIMESTAMP NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                claimed_until TIMESTAMP)""",
            "CREATE INDEX IF NOT EXISTS idx_alert_outbox_channel_due ON alert_outbox(channel, next_attempt_at)",
            """CREATE TABLE IF NOT EXISTS alert_channel_overrides (
                channel TEXT NOT NULL, setting TEXT NOT NULL, configured TEXT NOT NULL, value TEXT NOT NULL,
                updated_at TIMESTAMP NOT NULL, PRIMARY KEY (channel, setting, configured))""",
        ),
    ),
    Migration(
        4,
        "quarantined_events: rows the store refused for good, with the raw log and the reason",
        # ``event`` and ``raw_log`` are ASCII JSON (strings that cannot be stored in the tagged form),
        # so that a row refused for whatever it holds can always be kept here. ``event_key`` is the
        # SHA-256 (hex) of [block_hash, tx_hash, log_index] as such JSON: a range fetched again is not
        # kept twice, and the key fits its index whatever the values' size.
        postgresql=(
            """CREATE TABLE IF NOT EXISTS quarantined_events (
                id BIGSERIAL PRIMARY KEY, quarantined_at TIMESTAMP NOT NULL, listener TEXT NOT NULL,
                block_number BIGINT, event_key TEXT NOT NULL UNIQUE, event TEXT NOT NULL, raw_log TEXT,
                reason TEXT NOT NULL)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS quarantined_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT, quarantined_at TIMESTAMP NOT NULL, listener TEXT NOT NULL,
                block_number INTEGER, event_key TEXT NOT NULL UNIQUE, event TEXT NOT NULL, raw_log TEXT,
                reason TEXT NOT NULL)""",
        ),
    ),
    Migration(
        5,
        "contract-event rules: the last event each rule evaluated and its window, cooldown and pending notices",
        # One row per rule; ``version`` makes each save a compare-and-set, so replicas sharing the store
        # notify once. Migration 4 belongs to another change: versions are applied in order, gaps allowed.
        postgresql=(
            """CREATE TABLE IF NOT EXISTS event_rule_state (
                rule TEXT PRIMARY KEY, version BIGINT NOT NULL, last_event_id BIGINT NOT NULL,
                state JSONB NOT NULL, updated_at TIMESTAMP NOT NULL)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS event_rule_state (
                rule TEXT PRIMARY KEY, version INTEGER NOT NULL, last_event_id INTEGER NOT NULL,
                state TEXT NOT NULL, updated_at TIMESTAMP NOT NULL)""",
        ),
    ),
    Migration(
        6,
        "monitor_incidents.suppressed_by: the dependency whose failure held an incident's notices back",
        postgresql=("ALTER TABLE monitor_incidents ADD COLUMN IF NOT EXISTS suppressed_by TEXT",),
        sqlite=("ALTER TABLE monitor_incidents ADD COLUMN suppressed_by TEXT",),
    ),
    Migration(
        7,
        "replica membership for sharded checks: one row per live exporter, renewed until it expires",
        postgresql=(
            """CREATE TABLE IF NOT EXISTS exporter_replicas (
                replica_id TEXT PRIMARY KEY, started_at TIMESTAMP NOT NULL, heartbeat_at TIMESTAMP NOT NULL,
                expires_at TIMESTAMP NOT NULL)""",
        ),
        sqlite=(
            """CREATE TABLE IF NOT EXISTS exporter_replicas (
                replica_id TEXT PRIMARY KEY, started_at TIMESTAMP NOT NULL, heartbeat_at TIMESTAMP NOT NULL,
                expires_at TIMESTAMP NOT NULL)""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


@dataclass(frozen=True)
class SeedAdoption:
    """How a seed database's ``events`` table (PostgreSQL only: the seed ran on it) is brought to our
    columns, rows and indexes before migration 1, one short step at a time, so that the API keeps
    reading ``events`` throughout: the columns in one ``ALTER`` (the only exclusive lock, held for
    milliseconds and waited for with a short ``lock_timeout``), the seed's values copied into them in
    batches of ``batch_size`` ids (a transaction each), the seed's duplicates deleted (row locks only),
    and the indexes built ``CONCURRENTLY`` (readers and writers go on)."""

    columns: tuple[tuple[str, str], ...]
    backfill: str  # params: the batch's lowest id (exclusive), its highest id (inclusive)
    deduplicate: str
    indexes: tuple[str, ...]
    batch_size: int = 20_000


SEED_ADOPTION = SeedAdoption(
    columns=(("block_number", "BIGINT"), ("block_hash", "TEXT"), ("tx_hash", "TEXT"), ("log_index", "INTEGER")),
    # Rows written by the seed carry these values only inside ``data``.
    backfill="""UPDATE events SET tx_hash = data->>'transactionHash',
                                  log_index = (data->>'logIndex')::int,
                                  block_number = (data->>'blockNumber')::bigint,
                                  block_hash = data->>'blockHash'
                WHERE id > %s AND id <= %s AND tx_hash IS NULL
                  AND data ? 'transactionHash' AND data ? 'logIndex'""",
    # The seed resumed from MAX(blockNumber) inclusive and so stored duplicates: keep the first.
    deduplicate="""DELETE FROM events a USING events b
                   WHERE a.tx_hash = b.tx_hash AND a.log_index = b.log_index AND a.id > b.id""",
    indexes=(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_events_tx_log ON events(tx_hash, log_index)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_block_number ON events(block_number)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_timestamp ON events(timestamp)",
    ),
)

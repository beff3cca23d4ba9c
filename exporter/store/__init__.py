"""Storage: the ``Store`` protocol, its PostgreSQL and SQLite implementations, and ``open_store``.

``open_store`` is the only place that maps a ``DATABASE_URL`` (SPEC §2) to an implementation.
"""

from __future__ import annotations

from exporter.config.database_url import SQLITE_SCHEME, store_url_error
from exporter.store.base import (
    BlockRef,
    Checkpoint,
    CheckResult,
    EventRecord,
    Incident,
    ResultBucket,
    SloRow,
    Store,
    StoreError,
)

__all__ = [
    "BlockRef",
    "CheckResult",
    "Checkpoint",
    "EventRecord",
    "Incident",
    "ResultBucket",
    "SloRow",
    "Store",
    "StoreError",
    "open_store",
]


def open_store(
    url: str | None,
    *,
    sqlite_path: str = "blocktrust-exporter.db",
    pool_size: int = 4,
    connect_timeout: float = 5.0,
) -> Store:
    """The store for ``url``; ``None`` means the embedded SQLite file at ``sqlite_path``. Does not migrate."""
    if url is None:
        from exporter.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path)
    problem = store_url_error(url)
    if problem:
        raise ValueError(problem)
    if url.startswith(SQLITE_SCHEME):
        from exporter.store.sqlite import SqliteStore

        return SqliteStore(url[len(SQLITE_SCHEME) :])
    from exporter.store.postgres import PostgresStore

    return PostgresStore(url, pool_size=pool_size, connect_timeout=connect_timeout)

"""Storage: the ``Store`` protocol, its PostgreSQL and SQLite implementations, and ``open_store``.

``open_store`` is the only place that maps a ``DATABASE_URL`` (SPEC §2) to an implementation.
"""

from __future__ import annotations

from exporter.store.base import (
    BlockRef,
    Checkpoint,
    CheckResult,
    EventRecord,
    Incident,
    SloRow,
    Store,
    StoreError,
)

__all__ = [
    "POSTGRES_SCHEMES",
    "BlockRef",
    "CheckResult",
    "Checkpoint",
    "EventRecord",
    "Incident",
    "SloRow",
    "Store",
    "StoreError",
    "open_store",
    "store_url_error",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgres+psycopg2://")
SQLITE_SCHEME = "sqlite:///"


def store_url_error(url: str) -> str | None:
    """Why ``url`` is not an accepted ``DATABASE_URL``, or None. Never echoes the URL (it may hold a password)."""
    if url.startswith(POSTGRES_SCHEMES):
        return None
    if url.startswith(SQLITE_SCHEME) and len(url) > len(SQLITE_SCHEME):
        return None
    scheme = url.split("://", 1)[0] if "://" in url else "(none)"
    return (
        f"unsupported database URL scheme {scheme!r}: expected postgresql://, postgres://, "
        "postgresql+psycopg2:// or sqlite:///path"
    )


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

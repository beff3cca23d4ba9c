"""Storage: the ``Store`` protocol, its PostgreSQL and SQLite implementations, and ``open_store``.

``open_store`` is the only place that maps a ``DATABASE_URL`` (SPEC §2) to an implementation.
"""

from __future__ import annotations

import dataclasses

from exporter.config.database_url import SQLITE_SCHEME, store_url_error
from exporter.store.base import (
    BlockRef,
    Checkpoint,
    CheckResult,
    EventRecord,
    Incident,
    ResultBucket,
    SchemaMissingError,
    SloRow,
    Store,
    StoreError,
    StoreTimeouts,
)

__all__ = [
    "BlockRef",
    "CheckResult",
    "Checkpoint",
    "EventRecord",
    "Incident",
    "ResultBucket",
    "SchemaMissingError",
    "SloRow",
    "Store",
    "StoreError",
    "StoreTimeouts",
    "open_store",
]


def open_store(
    url: str | None,
    *,
    sqlite_path: str = "blocktrust-exporter.db",
    pool_size: int = 4,
    timeouts: StoreTimeouts | None = None,
    connect_timeout: float | None = None,
    read_only: bool = False,
    create: bool = True,
) -> Store:
    """The store for ``url``; ``None`` means the embedded SQLite file at ``sqlite_path``. Does not migrate.

    ``timeouts``: the deadlines of every call (defaults: ``StoreTimeouts()``); ``connect_timeout``
    overrides just that one. ``read_only``: for commands that only read (``report``): nothing is
    created (no SQLite file, folder or schema) and a PostgreSQL session refuses writes. ``create=False``
    (a command that writes to an existing store only, ``checkpoint rewind``): no SQLite file or folder
    is created; calls on a missing file raise ``SchemaMissingError``.
    Raises ``ValueError`` for a malformed URL, ``StoreError`` when a SQLite file cannot be opened
    (``SchemaMissingError`` when ``read_only`` and it does not exist).
    """
    deadlines = timeouts or StoreTimeouts()
    if connect_timeout is not None:
        deadlines = dataclasses.replace(deadlines, connect=connect_timeout)
    if url is not None:
        problem = store_url_error(url)
        if problem:
            raise ValueError(problem)
    if url is None or url.startswith(SQLITE_SCHEME):
        from exporter.store.sqlite import SqliteStore

        path = sqlite_path if url is None else url[len(SQLITE_SCHEME) :]
        return SqliteStore(path, timeouts=deadlines, create=create and not read_only)
    from exporter.store.postgres import PostgresStore

    return PostgresStore(url, pool_size=pool_size, timeouts=deadlines, read_only=read_only)

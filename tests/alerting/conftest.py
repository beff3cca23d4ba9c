"""Fixtures shared by the alerting tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.store import Store, open_store


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Store]:
    """A migrated SQLite store (the engine's decisions do not depend on the backend)."""
    store = open_store(sqlite_url)
    store.migrate()
    yield store
    store.close()

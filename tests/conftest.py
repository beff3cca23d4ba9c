"""Fixtures shared by every test area: throw-away PostgreSQL databases, SQLite files, registries.

PostgreSQL is a real server (``BLOCKTRUST_TEST_PG``, default the project machines' local one);
when it cannot be reached the tests that need it fail loudly: no silent skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.metrics import Metrics
from exporter.store import Store, open_store
from tests.support.postgres import throwaway_database


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    with throwaway_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per backend."""
    fixture = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store, once per backend."""
    opened = open_store(store_url)
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, slo_latency_seconds=0.8, version="test")

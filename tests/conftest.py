"""Fixtures shared by every test area: throw-away PostgreSQL databases, SQLite files, registries.

PostgreSQL is a real server (``BLOCKTRUST_TEST_PG``, default the project machines' local one);
when it cannot be reached the tests that need it fail loudly: no silent skips.

Markers follow from fixtures: a test that uses a fixture of ``SERVICE_FIXTURES`` (directly or
through another fixture), or the PostgreSQL side of ``store_url``, is marked ``postgres`` or
``anvil``, so that ``pytest -m "not postgres and not anvil and not slow"`` is a fast loop of pure
tests. A test that reaches a service some other way carries the marker itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.metrics import Metrics
from exporter.store import Store, open_store
from tests.support.postgres import throwaway_database

# Fixtures that reach an outside service -> the marker of every test that uses them.
SERVICE_FIXTURES = {
    "postgres_url": "postgres",
    "probes_database": "postgres",
    "module_postgres_url": "postgres",
    "chain": "anvil",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in SERVICE_FIXTURES.items():
            if fixture in used:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """In-process commands call ``setup_logging`` (root handlers and levels, quieter third-party
    loggers): put logging back after each test, so that no test sees another's levels (pytest-xdist
    runs tests of several modules in one process, in no fixed order)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            logger.setLevel(named.get(name, logging.NOTSET))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    with throwaway_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
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

"""Throw-away PostgreSQL databases on the test server (``BLOCKTRUST_TEST_PG``, default the local one).

A server that cannot be reached fails the test loudly: PostgreSQL is part of the test environment
(`make test` starts it), so there are no silent skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest

PG_ADMIN_URL = os.environ.get("BLOCKTRUST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_url_for(database: str) -> str:
    return f"{PG_ADMIN_URL.rpartition('/')[0]}/{database}"


@contextmanager
def throwaway_database(prefix: str = "bt_test") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (and its sessions) afterwards."""
    try:
        admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} (run `make test`, which starts it): {exc}")
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

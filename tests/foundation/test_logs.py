"""Log lines: one per event, logfmt or JSON, secrets masked even inside library messages and tracebacks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from exporter.logs import setup_logging

SECRET = "hunter2-very-secret"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logfmt_is_one_line_per_event_with_escaping(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging(fmt="logfmt", stream=stream, secrets=[SECRET])
    log = logging.getLogger("exporter.test")
    log.info('connect to "db"\nfailed')
    try:
        raise ValueError(f"password={SECRET}")
    except ValueError:
        log.exception("boom")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith('level=info logger=exporter.test msg="connect to \\"db\\"\\nfailed"')
    assert "exc=" in lines[1] and "ValueError" in lines[1]
    assert SECRET not in stream.getvalue()


def test_json_lines_parse_and_mask_secrets(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", stream=stream, secrets=[f"https://hooks.example.org/services/{SECRET}"])
    logging.getLogger("urllib3.connectionpool").warning("POST /services/%s 500", SECRET)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "urllib3.connectionpool"
    assert SECRET not in line and "***" in record["msg"]

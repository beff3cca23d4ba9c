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


def test_json_mode_prints_the_banner_as_one_json_record(restore_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue: ``--log-format json`` printed the 16-line plain banner among the JSON lines."""
    from exporter.config import Config
    from exporter.runtime import print_banner
    from exporter.web import load_web_config

    config = Config.model_validate({"api": {"base_url": f"https://u:{SECRET}@api.example.org"}})
    parts = {"checks": True, "listener": False}
    stream = io.StringIO()
    setup_logging(fmt="json", stream=stream, secrets=[SECRET])
    print_banner(config, parts, title="BLOCKTRUST MONITORING SYSTEM", security=load_web_config(None), log_format="json")
    assert capsys.readouterr().err == ""  # nothing printed around the log handler
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "banner" and record["level"] == "info"
    assert record["msg"].startswith("BLOCKTRUST MONITORING SYSTEM v") and record["msg"].endswith(" starting")
    assert record["listen"] == "0.0.0.0:9108" and record["parts"] == "checks=on, listener=off"
    assert record["status_page"] == "http://localhost:9108/" and record["api"] == "https://api.example.org"
    assert SECRET not in line

    # logfmt: the banner for a person, as before (16 lines on stderr, nothing through the handler).
    stream = io.StringIO()
    setup_logging(fmt="logfmt", stream=stream)
    print_banner(config, parts, title="T", security=load_web_config(None), log_format="logfmt")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 16 and lines[0] == "=" * 60 and stream.getvalue() == ""

"""The store unreachable at start-up, then back: the exporter migrates, turns ready and writes
what it buffered meanwhile (nothing lost). The store hanging while the exporter runs: checks keep
running, /metrics says results are buffered, and after the recovery they are written once."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import requests

from tests.support.exporter_process import ExporterProcess, free_port
from tests.support.tcp_proxy import TcpProxy


def _runs(body: str) -> int:
    return sum(
        int(float(v))
        for v in re.findall(r'^blocktrust_check_runs_total\{check="self.health",[^}]*\} (\S+)$', body, re.M)
    )


def test_a_store_back_after_start_is_migrated_and_gets_the_buffered_results(postgres_url: str, tmp_path: Path) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        "checks:\n  interval: 1s\n  timeout: 1s\n  include_defaults: false\n  items:\n"
        f"    - name: self.health\n      url: http://127.0.0.1:{port}/healthz\n"
        "listener:\n  enabled: false\nstore:\n  connect_timeout: 2s\n"
    )
    with TcpProxy("127.0.0.1", 5432) as proxy:
        proxy.cut()
        env = {"DATABASE_URL": f"postgresql://postgres@{proxy.address}/{database}"}
        with ExporterProcess(["run", "--config", str(config)], env=env, port=port, cwd=tmp_path) as exporter:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if _runs(exporter.metrics()) >= 3:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.2)
            assert requests.get(exporter.url + "/readyz", timeout=5).status_code == 503
            buffered = _runs(exporter.metrics())
            assert buffered >= 3, exporter.read_log()
            restored_at = datetime.now(UTC).replace(tzinfo=None)
            proxy.restore()
            exporter.wait_ready(timeout=30)
            code, _ = exporter.stop()
    assert code == 0, exporter.output
    conn = psycopg2.connect(postgres_url)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*), COUNT(DISTINCT uid) FROM monitor_metrics WHERE check_name = 'self.health' AND ts < %s",
            (restored_at,),
        )
        found = cur.fetchone()
        assert found is not None
        during_outage, distinct = found
    conn.close()
    assert during_outage == distinct >= buffered  # results of the outage arrived, each once


def _buffered(body: str) -> float:
    found = re.search(r"^blocktrust_store_buffered_results (\S+)$", body, re.M)
    assert found, body
    return float(found.group(1))


def _wait_for(condition: Callable[[], bool], what: str, exporter: ExporterProcess, timeout: float = 30.0) -> None:
    """Bounded only to detect a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s\n{exporter.read_log()}"
        time.sleep(0.1)


def test_a_store_that_hangs_holds_back_no_check_and_loses_no_result(postgres_url: str, tmp_path: Path) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    port = free_port()
    config = tmp_path / "config.yaml"
    # A call deadline far longer than the wait below: a round that waited on the store would stop
    # the runs counter for a minute, which the bounded wait detects.
    config.write_text(
        "checks:\n  interval: 1s\n  timeout: 1s\n  include_defaults: false\n  items:\n"
        f"    - name: self.health\n      url: http://127.0.0.1:{port}/healthz\n"
        "listener:\n  enabled: false\nstore:\n  connect_timeout: 2s\n  call_timeout: 90s\n"
    )
    with TcpProxy("127.0.0.1", 5432) as proxy:
        env = {"DATABASE_URL": f"postgresql://postgres@{proxy.address}/{database}"}
        with ExporterProcess(["run", "--config", str(config)], env=env, port=port, cwd=tmp_path) as exporter:
            exporter.wait_ready(timeout=30)
            _wait_for(lambda: _runs(exporter.metrics()) >= 1, "a first round", exporter)
            proxy.stall()
            stalled_at = _runs(exporter.metrics())
            _wait_for(lambda: _buffered(exporter.metrics()) >= 3, "results buffered while the store hangs", exporter)
            _wait_for(lambda: _runs(exporter.metrics()) >= stalled_at + 4, "rounds while the store hangs", exporter)
            proxy.restore()
            _wait_for(lambda: _buffered(exporter.metrics()) == 0, "the buffer written after the recovery", exporter)
            runs = _runs(exporter.metrics())
            code, _ = exporter.stop()
    assert code == 0, exporter.output
    with closing(psycopg2.connect(postgres_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM monitor_metrics WHERE check_name = 'self.health'")
        found = cur.fetchone()
    assert found is not None
    rows, distinct = found
    assert rows == distinct >= runs  # every run recorded, each once (runs after the last read too)

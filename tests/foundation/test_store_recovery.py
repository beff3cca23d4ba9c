"""The store unreachable at start-up, then back: the exporter migrates, turns ready and writes
what it buffered meanwhile (nothing lost)."""

from __future__ import annotations

import re
import time
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
        "listener:\n  enabled: false\nstore:\n  connect_timeout: 1s\n"
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
        during_outage, distinct = cur.fetchone()
    conn.close()
    assert during_outage == distinct >= buffered  # results of the outage arrived, each once

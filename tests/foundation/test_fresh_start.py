"""Issue: every fresh start failed the listener checks once (``no_heartbeat``: the first check round
ran before the in-process listener's first poll), those failures were stored, and the SLO report that
runs at start opened ``slo.listener.*`` incidents on 1 failed run of 6. The real process, a real anvil
chain, on both stores: no listener check fails, none is stored as failed, no SLO incident opens."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporter.demo.devchain import DevChain
from exporter.store import open_store
from tests.support.exporter_process import ExporterProcess

pytestmark = pytest.mark.slow


def test_a_fresh_start_reports_no_listener_failure_before_its_first_poll(tmp_path: Path, store_url: str) -> None:
    with DevChain.start(tmp_path / "anvil") as chain:
        contracts = chain.write_contracts_config(tmp_path / "contracts_config.json")
        chain.emit_each_event()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"listener:\n  rpc_url: {chain.rpc_url}\n  contracts_config: {contracts}\n  start_block: 0\n"
            "  poll_interval: 2s\n  max_lag: 30s\n"
            "checks:\n  interval: 1s\n  timeout: 1s\n"
        )
        env = {"DATABASE_URL": store_url}
        with ExporterProcess(["run", "--config", str(config)], env=env, cwd=tmp_path) as exporter:
            exporter.wait_ready()
            deadline = time.monotonic() + 60
            while "round 4:" not in exporter.read_log():
                assert time.monotonic() < deadline, exporter.read_log()
                time.sleep(0.2)
            code, _ = exporter.stop()
    assert code == 0, exporter.output
    assert "check failed" not in exporter.output, exporter.output
    store = open_store(store_url)
    try:
        now = datetime.now(UTC)
        rows = {row.check_name: row for row in store.slo_report(now - timedelta(hours=1), now + timedelta(hours=1))}
        for name in ("listener.lag", "listener.progress"):
            assert rows[name].total >= 2 and rows[name].failures == 0, rows[name]
        assert [i.check_name for i in store.open_incidents()] == []
    finally:
        store.close()

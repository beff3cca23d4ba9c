"""SIGKILL the real `blocktrust-exporter listen` process at 20 random moments of a backlog ingest,
restarting it each time: at every kill the table holds exactly the chain's events up to the stored
checkpoint, and at the end exactly all of them: no gaps, no duplicates. Then the same with ranges in
flight for sure: the node answers through a proxy that holds every getLogs a while, so the window of
concurrent fetches is full when the kill lands."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.demo.devchain import DevChain
from exporter.store import open_store
from tests.listener.conftest import chain_keys, stored_checkpoint, stored_keys
from tests.support.exporter_process import ExporterProcess
from tests.support.latency_proxy import LatencyProxy

KILLS = 20


def _wait_for(predicate: object, what: str, proc: ExporterProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if proc.proc.poll() is not None:
            raise AssertionError(f"listener exited ({proc.proc.returncode}) before {what}:\n{proc.read_log()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{proc.read_log()}"
        time.sleep(0.005)


def _backlog(chain: DevChain, postgres_url: str) -> int:
    for _ in range(24):  # ~2000 events over ~1300 blocks
        chain.emit_batch(12)
        chain.mine(50)
    store = open_store(postgres_url)
    store.migrate()  # so the test can read the checkpoint table before the first start
    store.close()
    return chain.head()


def _kill_and_restart(
    chain: DevChain, contracts_path: Path, postgres_url: str, tmp_path: Path, rpc_url: str, settings: str, kills: int
) -> None:
    """``kills`` times: start `listen`, wait for a commit, SIGKILL it at a random moment, compare the
    table with the chain up to the checkpoint; then let it catch up and compare everything."""
    head = chain.head()
    config = tmp_path / "config.yaml"
    config.write_text(f"listener:\n  contracts_config: {contracts_path}\n{settings}")
    env = {"DATABASE_URL": postgres_url, "POLYGON_RPC_URL": rpc_url}
    rng = random.Random(20)
    kill_points = []
    for _ in range(kills):
        before = stored_checkpoint(postgres_url)
        proc = ExporterProcess(["listen", "--config", str(config)], env=env, cwd=tmp_path)
        try:
            _wait_for(lambda: stored_checkpoint(postgres_url) != before, "ingesting", proc)  # noqa: B023
            time.sleep(rng.uniform(0, 0.12))
            proc.proc.kill()
        finally:
            proc.stop()
        checkpoint = stored_checkpoint(postgres_url)
        assert checkpoint is not None
        kill_points.append(checkpoint)
        assert stored_keys(postgres_url) == chain_keys(chain, up_to=checkpoint)
    assert all(point < head for point in kill_points), kill_points  # every kill landed mid-ingest
    assert kill_points == sorted(kill_points)

    with ExporterProcess(["listen", "--config", str(config)], env=env, cwd=tmp_path) as proc:
        _wait_for(lambda: stored_checkpoint(postgres_url) == head, "catching up", proc)
    assert "BLOCKTRUST BLOCKCHAIN EVENT LISTENER" in proc.output
    assert stored_keys(postgres_url) == chain_keys(chain)


def test_sigkill_at_random_moments_of_a_backlog_ingest_leaves_the_table_exact(
    chain: DevChain, contracts_path: Path, postgres_url: str, tmp_path: Path
) -> None:
    _backlog(chain, postgres_url)
    # Two-block ranges: many commit boundaries for the kills to fall between (and on).
    settings = "  start_block: 0\n  chunk_size: 2\n  max_chunk_size: 2\n  poll_interval: 1s\n"
    _kill_and_restart(chain, contracts_path, postgres_url, tmp_path, chain.rpc_url, settings, KILLS)


def _held(call: dict[str, Any]) -> float:
    return 0.03 if call.get("method") == "eth_getLogs" else 0.0


@pytest.mark.slow
def test_sigkill_with_ranges_in_flight_loses_and_duplicates_nothing(
    chain: DevChain, contracts_path: Path, postgres_url: str, tmp_path: Path
) -> None:
    _backlog(chain, postgres_url)
    settings = "  start_block: 0\n  chunk_size: 8\n  max_chunk_size: 8\n  fetch_window: 4\n  poll_interval: 1s\n"
    with LatencyProxy(chain.rpc_url, _held) as proxy:
        _kill_and_restart(chain, contracts_path, postgres_url, tmp_path, proxy.url, settings, 5)
    assert proxy.max_logs_in_flight == 4  # the window was full: kills landed with ranges in flight

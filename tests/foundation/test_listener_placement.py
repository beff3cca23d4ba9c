"""Issue #16 item 4: where the listener runs is explicit. Without an RPC URL and without
``listener.elsewhere`` no listener runs anywhere, so ``listener.lag`` / ``listener.progress`` are
dropped (the banner says so) instead of failing every round; with ``listener.elsewhere`` the ``run``
process starts no listener of its own and its listener checks judge the other process's heartbeat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
import yaml

from exporter.banner import banner_fields
from exporter.config import Config, load_config
from exporter.runtime import ALL_PARTS, build_runtime, run_parts
from tests.support.contracts import write_fake_contracts_config
from tests.support.exporter_process import free_port, run_command


def test_without_an_rpc_url_the_banner_says_the_listener_checks_are_not_run() -> None:
    fields = banner_fields(Config(), {"checks": True, "listener": False})
    assert fields["listener"].startswith("off (no POLYGON_RPC_URL); listener.lag and listener.progress not run")
    assert fields["rpc"] == "(not set: listener and chain checks off)"


def test_with_the_listener_elsewhere_the_banner_says_where_its_heartbeat_comes_from() -> None:
    config = Config.model_validate({"listener": {"elsewhere": True}})
    assert banner_fields(config, {"checks": True, "listener": False})["listener"].startswith(
        "in another process (listener.elsewhere)"
    )


def test_listener_elsewhere_comes_from_the_environment(tmp_path: Path) -> None:
    config = load_config(None, {"LISTENER_ELSEWHERE": "true"})
    assert config.listener.elsewhere and run_parts(config) == ALL_PARTS - {"listener"}
    assert run_parts(load_config(None, {})) == ALL_PARTS


def test_run_with_the_listener_elsewhere_starts_no_listener_but_judges_its_heartbeat(tmp_path: Path) -> None:
    contracts = write_fake_contracts_config(tmp_path / "contracts_config.json")
    config = Config.model_validate(
        {
            "store": {"sqlite_path": str(tmp_path / "store.db")},
            "listener": {"rpc_url": "http://127.0.0.1:9/rpc", "contracts_config": str(contracts), "elsewhere": True},
        }
    )
    rt = build_runtime(config, run_parts(config))
    try:
        assert rt.listener is None and rt.parts["listener"] is False and rt.parts["checks"] is True
        jobs = rt.registry.get_sample_value
        assert jobs("blocktrust_scheduler_job_interval_seconds", {"task": "checks"}) is not None
        assert jobs("blocktrust_scheduler_job_interval_seconds", {"task": "listener"}) is None
    finally:
        for hook in rt.on_stop:
            hook()
        rt.store.close()


@pytest.mark.parametrize("elsewhere", [False, True])
def test_one_endpoint_pool_serves_every_user_of_the_chain_in_a_process(tmp_path: Path, elsewhere: bool) -> None:
    """The listener, the contract-event rules and the chain checks reach the chain through one pool:
    the listener's own when it runs here, else one built once (not one per user, each with its own
    heads, cool-downs and copies of the per-endpoint series)."""
    contracts = write_fake_contracts_config(tmp_path / "contracts_config.json")
    config = Config.model_validate(
        {
            "store": {"sqlite_path": str(tmp_path / "store.db")},
            "listener": {
                "rpc_url": "http://127.0.0.1:9/rpc",
                "contracts_config": str(contracts),
                "elsewhere": elsewhere,
            },
        }
    )
    rt = build_runtime(config, run_parts(config))
    session = requests.Session()
    try:
        pool = rt.chain_rpc(session)
        assert rt.chain_rpc(requests.Session()) is pool
        assert (rt.listener is None) is elsewhere
        if rt.listener is not None:
            assert pool is rt.listener.rpc
    finally:
        session.close()
        for hook in rt.on_stop:
            hook()
        rt.store.close()


@pytest.mark.slow
def test_run_without_an_rpc_url_runs_no_listener_check_and_says_so(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "POLYGON_RPC_URL", "API_BASE", "MONITOR_CHECK_INTERVAL")
    }
    config = tmp_path / "config.yaml"
    port = free_port()
    own_health = {"name": "self.health", "url": f"http://127.0.0.1:{port}/healthz"}
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"sqlite_path": str(tmp_path / "store.db")},
                "server": {"listen": f"127.0.0.1:{port}"},
                "checks": {"interval": "1s", "timeout": "1s", "items": [own_health]},
            }
        )
    )
    proc = run_command(["run", "--config", str(config), "--duration", "3"], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "listener.lag and listener.progress not run" in proc.stderr
    assert "round 2: 1/1 ok" in proc.stderr, proc.stderr  # self.health alone: no listener check beside it
    assert "check failed" not in proc.stderr, proc.stderr

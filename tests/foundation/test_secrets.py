"""Secrets set through the environment or ``X_FILE`` never reach check-config, the banner, the logs
or /metrics (issue 3, acceptance 8)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.contracts import write_fake_contracts_config
from tests.support.exporter_process import ExporterProcess
from tests.support.http_receiver import HttpReceiver, Reply, refused_url

# Each test runs the exporter as a process and reads everything it printed.
pytestmark = pytest.mark.slow

SENTINEL = "S3ntinel"


def secret_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    password_file = tmp_path / "jwt-password"
    password_file.write_text(f"{SENTINEL}-jwt-password\n")
    return {
        "API_BASE": "http://127.0.0.1:9",
        "JWT_MONITOR_EMAIL": "monitor@example.org",
        "JWT_MONITOR_PASS_FILE": str(password_file),
        "DATABASE_URL": database_url,
        "POLYGON_RPC_URL": f"http://127.0.0.1:9/v2/{SENTINEL}-rpc-key",
        "ALERT_SLACK_WEBHOOK": f"http://127.0.0.1:9/services/T0/B0/{SENTINEL}-slack",
        "ALERT_TELEGRAM_BOT": f"123456:{SENTINEL}-telegram",
        "ALERT_TELEGRAM_CHAT": "-100200300",
        "ALERT_WEBHOOK_URL": f"http://127.0.0.1:9/hook?token={SENTINEL}-webhook",
    }


@pytest.mark.parametrize("database", ["unreachable-postgresql", "sqlite"])
def test_no_secret_in_check_config_banner_logs_or_metrics(tmp_path: Path, database: str) -> None:
    if database == "sqlite":
        database_url = f"sqlite:///{tmp_path}/{SENTINEL}-not-secret-path.db"
    else:
        database_url = f"postgresql://monitor:{SENTINEL}-db-password@127.0.0.1:1/blocktrust"
    env = {"PATH": "/usr/bin:/bin", **secret_env(tmp_path, database_url)}
    contracts = write_fake_contracts_config(tmp_path / "contracts_config.json")
    config = tmp_path / "config.yaml"
    config.write_text(f"listener:\n  contracts_config: {contracts}\n")

    check = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    with ExporterProcess(["run", "--config", str(config), "--duration", "4s"], env=env, cwd=tmp_path) as exporter:
        metrics_body = ""
        for _ in range(100):
            try:
                metrics_body = exporter.metrics()
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        exporter.proc.wait(timeout=30)
        exporter.stop()
    assert "blocktrust_exporter_build_info" in metrics_body
    printed = check.stdout + check.stderr + exporter.output + metrics_body
    assert "BLOCKTRUST MONITORING SYSTEM" in exporter.output
    for fragment in ("jwt-password", "rpc-key", "slack", "telegram", "webhook", "db-password"):
        assert f"{SENTINEL}-{fragment}" not in printed, fragment
    if database == "sqlite":
        assert check.returncode == 0, check.stderr
        assert "password: '***'" in check.stdout


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://monitor:pw%zz1@127.0.0.1:5432/blocktrust",  # libpq quotes the bad token back
        "postgresql://monitor:pw1@127.0.0.1:1/blocktrust",  # a short password, connection refused
    ],
)
def test_driver_errors_never_show_the_database_password(tmp_path: Path, database_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "migrate", "--config", "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url},
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("blocktrust-exporter: migrate: postgresql: ")
    assert "pw%zz1" not in proc.stderr and "pw1" not in proc.stderr, proc.stderr


def test_a_password_in_api_base_is_masked_in_check_config_and_the_banner(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "API_BASE": f"https://monitor:{SENTINEL}-basic@api.example.org",
        "JWT_MONITOR_EMAIL": "m@example.org",
        "JWT_MONITOR_PASS": "x" * 8,
        "DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
    }
    config = tmp_path / "config.yaml"
    config.write_text("listener:\n  enabled: false\n")
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    with ExporterProcess(["run", "--config", str(config), "--duration", "2s"], env=env, cwd=tmp_path) as exporter:
        exporter.proc.wait(timeout=30)
        exporter.stop()
    assert "api:         https://api.example.org" in exporter.output
    assert f"{SENTINEL}-basic" not in check.stdout + check.stderr + exporter.output


def test_a_key_the_far_end_echoes_back_alone_is_masked(tmp_path: Path) -> None:
    """Slack, a webhook, Telegram and the RPC node answer an error whose body is the key from the
    URL's path (or its user), alone: the exporter logs that body, masked (issue 13, acceptance 7)."""
    keys = {
        "slack": f"{SENTINEL}-slack-key",
        "webhook": f"{SENTINEL}-webhook-key",
        "telegram": f"{SENTINEL}-telegram",
        "rpc": f"{SENTINEL}-rpc-key",
    }
    receivers = {name: HttpReceiver(default=Reply(400, key)) for name, key in keys.items()}
    try:
        env = {
            "PATH": "/usr/bin:/bin",
            "API_BASE": refused_url().rstrip("/"),
            "JWT_MONITOR_EMAIL": "monitor@example.org",
            "JWT_MONITOR_PASS": "x" * 8,
            "DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
            "POLYGON_RPC_URL": f"{receivers['rpc'].url}/v2/{keys['rpc']}",
            "ALERT_SLACK_WEBHOOK": f"{receivers['slack'].url}/services/T0/B0/{keys['slack']}",
            "ALERT_WEBHOOK_URL": f"{receivers['webhook'].url}/hooks/{keys['webhook']}/notify",
            "ALERT_TELEGRAM_BOT": f"123456:{keys['telegram']}",
            "ALERT_TELEGRAM_CHAT": "-100200300",
        }
        contracts = write_fake_contracts_config(tmp_path / "contracts_config.json")
        config = tmp_path / "config.yaml"
        config.write_text(
            "checks:\n  interval: 2s\n  timeout: 1s\n"
            f"alerting:\n  failure_threshold: 1\n  telegram:\n    base_url: {receivers['telegram'].url}\n"
            f"listener:\n  contracts_config: {contracts}\n"
        )
        with ExporterProcess(["run", "--config", str(config)], env=env, cwd=tmp_path) as exporter:
            deadline = time.monotonic() + 30
            while exporter.read_log().count("not delivered") < 3:
                assert time.monotonic() < deadline and exporter.proc.poll() is None, exporter.read_log()
                time.sleep(0.1)
            exporter.stop()
    finally:
        for receiver in receivers.values():
            receiver.close()
    assert receivers["rpc"].requests, "the listener never called the RPC node"
    assert "HTTP 400: ***" in exporter.output, exporter.output
    for key in keys.values():
        assert key not in exporter.output, key

"""Secrets set through the environment or ``X_FILE`` never reach check-config, the banner, the logs
or /metrics (issue 3, acceptance 8)."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from tests.support.contracts import write_fake_contracts_config
from tests.support.exporter_process import ExporterProcess, run_command
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

    check = run_command(["check-config", "--config", str(config)], env=env, cwd=tmp_path)
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
    proc = run_command(
        ["migrate", "--config", "/dev/null"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url}
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
    check = run_command(["check-config", "--config", str(config)], env=env, cwd=tmp_path)
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


class _Loopback:
    """A threading HTTP server on a free loopback port, serving ``handler`` until ``close``."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class EchoingApi(_Loopback):
    """The monitored API, echoing secrets back: the first login answers an object whose key is the
    password, the second a header line that is the request body (the email and password), the
    later ones a token; ``/echo`` answers the Authorization header it got as ``status``."""

    def __init__(self, token: str) -> None:
        self.logins = 0
        self.echoes = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.logins += 1
                if api.logins == 1:
                    password = json.loads(body)["password"]
                    self._json(json.dumps({password: 1}).encode())
                elif api.logins == 2:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n" + body + b"\r\n\r\n")
                    self.close_connection = True
                else:
                    self._json(json.dumps({"token": token, "expires_in": 3600}).encode())

            def do_GET(self) -> None:
                api.echoes += 1
                self._json(json.dumps({"status": self.headers.get("Authorization", "")}).encode())

            def _json(self, payload: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serve(Handler)


class EchoingHook(_Loopback):
    """A webhook receiver answering 503 whose body is the Authorization header it got."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                authorization = self.headers.get("Authorization", "")
                hook.authorizations.append(authorization)
                payload = f"unavailable; you sent Authorization: {authorization}".encode()
                self.send_response(503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serve(Handler)


def _all_rows(database_url: str) -> str:
    """Every row of every table of the store, as text."""
    if database_url.startswith("sqlite"):
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as lite:
            tables = [row[0] for row in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return repr({table: lite.execute(f'SELECT * FROM "{table}"').fetchall() for table in tables})
    pg = psycopg2.connect(database_url)
    try:
        cur = pg.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        rows: dict[str, Any] = {}
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT * FROM "{table}"')
            rows[table] = cur.fetchall()
        return repr(rows)
    finally:
        pg.close()


def test_secrets_echoed_by_the_far_ends_are_masked_in_every_sink(tmp_path: Path, store_url: str) -> None:
    """Issue 13 kind 7 through a real ``run``: the password echoed by the login (as a JSON key, as a
    header line quoting the request body), the session's JWT echoed by a checked endpoint (cut short
    in the reason) and a webhook's Basic credentials echoed in its error body (base64) appear in no
    log line, /metrics, /api/v1/status, status page or row of the store."""
    password = f"{SENTINEL}-jwt-password"
    token = f"{SENTINEL}JWT." + "x" * 80
    hook_password = f"{SENTINEL}-hook-password"
    basic = base64.b64encode(f"hookuser:{hook_password}".encode()).decode()
    api = EchoingApi(token)
    hook = EchoingHook()
    try:
        env = {
            "PATH": "/usr/bin:/bin",
            "API_BASE": api.url,
            "JWT_MONITOR_EMAIL": "monitor@example.org",
            "JWT_MONITOR_PASS": password,
            "DATABASE_URL": store_url,
            "ALERT_WEBHOOK_URL": hook.url.replace("http://", f"http://hookuser:{hook_password}@") + "/hook",
        }
        config = tmp_path / "config.yaml"
        config.write_text(
            "checks:\n  interval: 1s\n  timeout: 1s\n  include_defaults: false\n  items:\n"
            "    - name: echo\n      path: /echo\n      auth: true\n      conditions: ['[BODY].status == ok']\n"
            "alerting:\n  failure_threshold: 1\nlistener:\n  enabled: false\n"
        )
        with ExporterProcess(["run", "--config", str(config)], env=env, cwd=tmp_path) as exporter:
            exporter.wait_ready()
            deadline = time.monotonic() + 40
            while api.echoes < 2 or not hook.authorizations or "not delivered" not in exporter.read_log():
                assert time.monotonic() < deadline and exporter.proc.poll() is None, exporter.read_log()
                time.sleep(0.1)
            served = "".join(
                requests.get(exporter.url + path, timeout=10).text for path in ("/metrics", "/api/v1/status", "/")
            )
            exporter.stop()
    finally:
        api.close()
        hook.close()
    assert hook.authorizations[0] == f"Basic {basic}"  # the far end did get it
    rows = _all_rows(store_url)
    assert 'the answer has no "token"' in rows and "illegal header line" in rows, rows
    assert "[BODY].status is" in rows and "Basic ***" in rows, rows
    for sink, text in (("log", exporter.output), ("served", served), ("rows", rows)):
        for secret in (password, token[:12], hook_password, basic, basic[:12], SENTINEL):
            assert secret not in text, (sink, secret, text)

"""SIGTERM while a check round is in flight: the round finishes, its result is stored, exit 0 in < 10 s
(issue 3, acceptance 6)."""

from __future__ import annotations

import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.contracts import write_fake_contracts_config
from tests.support.exporter_process import ExporterProcess

# Each test runs the exporter as a process and signals it.
pytestmark = pytest.mark.slow

SLOW_REQUEST = 3  # the request during which the signal is sent


class _Target(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = 0
        self.lock = threading.Lock()
        self.slow_request_arrived = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: _Target

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests += 1
            number = self.server.requests
        if number == SLOW_REQUEST:
            self.server.slow_request_arrived.set()
            time.sleep(1.5)  # still answering when SIGTERM arrives
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_sigterm_finishes_the_round_in_flight_and_loses_nothing(tmp_path: Path) -> None:
    target = _Target()
    threading.Thread(target=target.serve_forever, daemon=True).start()
    config = tmp_path / "config.yaml"
    config.write_text(
        "checks:\n  interval: 3s\n  include_defaults: false\n  items:\n"
        f"    - name: slow.page\n      url: http://127.0.0.1:{target.server_address[1]}/\n      timeout: 3s\n"
        f"listener:\n  enabled: false\nstore:\n  sqlite_path: {tmp_path}/store.db\n"
    )
    try:
        with ExporterProcess(["run", "--config", str(config)], cwd=tmp_path) as exporter:
            assert target.slow_request_arrived.wait(30), exporter.read_log()
            code, elapsed = exporter.stop()
    finally:
        target.shutdown()
    assert code == 0, exporter.output
    assert elapsed < 10
    conn = sqlite3.connect(tmp_path / "store.db")
    rows = conn.execute("SELECT ok, details FROM monitor_metrics WHERE check_name = 'slow.page'").fetchall()
    conn.close()
    assert len(rows) == target.requests >= SLOW_REQUEST  # every request answered became a stored row
    assert all(ok for (ok, _details) in rows), rows


def test_sigterm_exits_in_time_even_when_a_check_hangs_far_longer(tmp_path: Path) -> None:
    """A check with a 30 s timeout against a server that never answers: the exit still comes within 10 s."""
    import socket

    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    config = tmp_path / "config.yaml"
    config.write_text(
        "checks:\n  interval: 60s\n  include_defaults: false\n  items:\n"
        f"    - name: hung.page\n      url: http://127.0.0.1:{silent.getsockname()[1]}/\n      timeout: 30s\n"
        f"listener:\n  enabled: false\nstore:\n  sqlite_path: {tmp_path}/store.db\n"
    )
    try:
        with ExporterProcess(["run", "--config", str(config)], cwd=tmp_path) as exporter:
            exporter.wait_ready()
            time.sleep(0.5)  # the round is in flight, waiting on the silent server
            code, elapsed = exporter.stop()
    finally:
        silent.close()
    assert code == 0, exporter.output
    assert elapsed < 10, exporter.output
    assert "check interrupted by shutdown; not recorded check=hung.page" in exporter.output


class _RateLimited(BaseHTTPRequestHandler):
    """An RPC provider that always asks to come back in 30 s."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(429)
        self.send_header("Retry-After", "30")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_sigterm_interrupts_the_listener_backing_off_from_a_rate_limit(tmp_path: Path) -> None:
    provider = ThreadingHTTPServer(("127.0.0.1", 0), _RateLimited)
    provider.daemon_threads = True
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    contracts = write_fake_contracts_config(tmp_path / "contracts_config.json")
    env = {
        "POLYGON_RPC_URL": f"http://127.0.0.1:{provider.server_address[1]}",
        "DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
    }
    config = tmp_path / "config.yaml"
    config.write_text(f"listener:\n  contracts_config: {contracts}\n  start_block: 0\n")
    try:
        with ExporterProcess(["listen", "--config", str(config)], env=env, cwd=tmp_path) as exporter:
            exporter.wait_ready()
            time.sleep(1.0)  # the poll is now waiting out the 30 s Retry-After
            code, elapsed = exporter.stop()
    finally:
        provider.shutdown()
    assert "BLOCKTRUST BLOCKCHAIN EVENT LISTENER" in exporter.output
    assert code == 0, exporter.output
    assert elapsed < 10, exporter.output
    # Stopped by the signal itself, not by running out the jobs' grace period.
    assert "listener: poll stopped on request" in exporter.output
    assert "jobs still running at shutdown" not in exporter.output

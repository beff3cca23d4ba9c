"""Run ``blocktrust-exporter`` as a real subprocess for end-to-end tests.

Starts ``python -m exporter <args>`` with a chosen environment, waits until ``/readyz`` answers
200, and stops it with SIGTERM, returning what it printed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_command(
    args: Sequence[str], *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m exporter <args>`` to its end (a command that exits by itself: check-config, migrate,
    a refused ``run``...): its exit code and text output. ``env`` replaces the environment when given;
    ``timeout`` only bounds a hang."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


class ExporterProcess:
    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1"}
        full_env.update(env or {})
        self.log_path = (cwd or REPO) / f".exporter-{self.port}.log"
        self._log = open(self.log_path, "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args, "--listen", f"127.0.0.1:{self.port}"],
            env=full_env,
            cwd=cwd or REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited early ({self.proc.returncode}):\n{self.read_log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"exporter not ready within {timeout}s:\n{self.read_log()}")

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text

    def read_log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to exit)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        elapsed = time.monotonic() - started
        self._log.close()
        self.output = self.read_log()
        self.log_path.unlink(missing_ok=True)
        return code, elapsed

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()

"""Shared pieces of the observability-bundle tests: the real Prometheus and Alertmanager binaries
(Debian's), started on free loopback ports with throw-away directories, and a module-scoped
PostgreSQL database for the live stack.

Waiting here is for real processes to answer (bounded polling), never for time to pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.exporter_process import free_port
from tests.support.postgres import throwaway_database

REPO = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    """The path of a required binary; a missing one fails the test (no silent skip)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required (Debian packages prometheus / prometheus-alertmanager / docker-compose)")
    return path


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except requests.RequestException as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Process:
    """A started binary whose output goes to a log file; ``stop()`` ends it by its own pid."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Prometheus(Process):
    """``config`` maps Prometheus' own port to its configuration (it may scrape itself)."""

    def __init__(self, config: Callable[[int], dict[str, Any]], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config(self.port), sort_keys=False))
        super().__init__(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # An alert that fired before the Alertmanager target was known (the Watchdog, at
                # the first evaluation) is sent again after this, not after the default minute.
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ],
            workdir,
        )
        wait_until("Prometheus to be ready", self._ready, 30)

    def _ready(self) -> bool:
        self.check_alive()
        return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200

    def query(self, expr: str, **params: Any) -> dict[str, Any]:
        """The API answer of an instant query (``query_range`` when ``start`` is given)."""
        endpoint = "query_range" if "start" in params else "query"
        answer = requests.get(f"{self.url}/api/v1/{endpoint}", params={"query": expr, **params}, timeout=10)
        body: dict[str, Any] = answer.json()
        return body

    def series(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


class Alertmanager(Process):
    """Alertmanager started through the bundle's entrypoint.sh (which fills in the secrets)."""

    def __init__(self, config_source: Path, workdir: Path, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "alertmanager",
            [
                "sh",
                str(REPO / "alertmanager" / "entrypoint.sh"),
                tool("prometheus-alertmanager"),
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # no gossip port: a single instance on loopback
                "--log.level=warn",
            ],
            workdir,
            env={"AM_CONFIG_SOURCE": str(config_source), "AM_CONFIG_DIR": str(workdir / "rendered"), **env},
        )
        wait_until("Alertmanager to be ready", self._ready, 30)

    def _ready(self) -> bool:
        self.check_alive()
        return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200

    def alerts(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v2/alerts", timeout=5)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()
        return result

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        requests.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()


def alertmanager_test_config(workdir: Path, **route_overrides: str) -> Path:
    """A copy of the bundled alertmanager.yml (and its templates) with shorter group timings."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = (REPO / "alertmanager" / "alertmanager.yml").read_text()
    for key, value in route_overrides.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value}  # test; bundled: ", 1)
    target = workdir / "alertmanager.yml"
    target.write_text(text)
    shutil.copytree(REPO / "alertmanager" / "templates", workdir / "templates", dirs_exist_ok=True)
    return target


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database shared by one test module, dropped afterwards."""
    with throwaway_database("bt_bundle") as url:
        yield url

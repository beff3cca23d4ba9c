"""``blocktrust-exporter demo`` (what ``make demo`` runs): all nine checks up on /metrics, and a
``--fail`` flag turns exactly the matching check to 0 (issue 3 acceptance 2, issue 4 acceptance 4)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests

from tests.support.exporter_process import ExporterProcess

# The demo starts its own anvil chain and the exporter as a process.
pytestmark = [pytest.mark.anvil, pytest.mark.slow]

NINE = [
    "api.health",
    "api.events",
    "api.contracts",
    "api.stats",
    "listener.lag",
    "listener.progress",
    "synthetic.hash",
    "synthetic.wallet_info",
    "synthetic.nft_status",
]


def _processes_in(directory: Path) -> list[int]:
    """PIDs of live processes whose working directory is inside ``directory`` (the demo's anvil)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(directory):
                pids.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return pids


def _check_up(body: str) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(r'^blocktrust_check_up\{check="([^"]+)"\} (\S+)$', body, re.M)}


def _wait_for_all_checks(exporter: ExporterProcess, timeout: float = 40) -> str:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        try:
            body = exporter.metrics()
        except requests.ConnectionError:
            body = ""
        if set(_check_up(body)) >= set(NINE):
            return body
        assert exporter.proc.poll() is None, exporter.read_log()
        time.sleep(0.3)
    raise AssertionError(f"not all nine checks on /metrics:\n{body}\n{exporter.read_log()}")


@pytest.mark.parametrize("fail", [None, "/api/explorer/stats=500"], ids=["healthy", "stats-failing"])
def test_demo_serves_the_nine_checks_and_exits_zero(tmp_path: Path, fail: str | None) -> None:
    args = ["demo", "--duration", "60s", "--workdir", str(tmp_path / "demo")]
    if fail:
        args += ["--fail", fail]
    with ExporterProcess(args, cwd=tmp_path) as exporter:
        body = _wait_for_all_checks(exporter)
        assert "blocktrust_exporter_build_info" in body
        assert requests.get(exporter.url + "/readyz", timeout=5).status_code == 200
        assert _processes_in(tmp_path / "demo"), "the demo's anvil should be running"
        code, _ = exporter.stop()
        assert code == 0, exporter.output
    assert _processes_in(tmp_path / "demo") == [], "the demo left processes behind"
    up = _check_up(body)
    expected = {name: 0.0 if fail and name == "api.stats" else 1.0 for name in NINE}
    assert {name: up[name] for name in NINE} == expected


def test_a_second_demo_run_starts_over_with_its_new_chain(tmp_path: Path) -> None:
    """Each run starts a new anvil chain; the store of the run before must not halt the listener."""
    workdir = tmp_path / "demo"
    for run in (1, 2):
        with ExporterProcess(["demo", "--duration", "60s", "--workdir", str(workdir)], cwd=tmp_path) as exporter:
            deadline = time.monotonic() + 40
            body = ""
            while 'blocktrust_listener_events_total{type="Minted"}' not in body:
                assert time.monotonic() < deadline, f"run {run}: no event ingested\n{exporter.read_log()}"
                assert exporter.proc.poll() is None, exporter.read_log()
                time.sleep(0.3)
                try:
                    body = exporter.metrics()
                except requests.ConnectionError:
                    body = ""
            code, _ = exporter.stop()
            assert code == 0, exporter.output
        assert "max_reorg_depth" not in exporter.output, exporter.output


# ------------------------------------------------------------------ a demo that talks (issue 17, acceptance 4)
DEMO_SECONDS = 40
ROUND_LINE = re.compile(r'msg="round (\d+): (\d+)/(\d+) ok[^"]*, slowest \S+ \d+ ms"')


def _run_demo_to_the_end(tmp_path: Path, *extra: str) -> str:
    """``make demo DURATION=40 [DEMO_ARGS=...]``: the demo's whole output once it stopped by itself."""
    args = ["demo", "--duration", f"{DEMO_SECONDS}s", "--workdir", str(tmp_path / "demo"), *extra]
    with ExporterProcess(args, cwd=tmp_path) as exporter:
        code = exporter.proc.wait(timeout=DEMO_SECONDS + 60)
        output = exporter.read_log()
        assert code == 0, output
    return output


def test_the_demo_prints_a_round_line_per_interval_and_where_to_look(tmp_path: Path) -> None:
    output = _run_demo_to_the_end(tmp_path)
    assert "Traceback" not in output, output
    rounds = [(int(n), int(ok), int(total)) for n, ok, total in ROUND_LINE.findall(output)]
    interval = 10  # exporter.demo.runner.DEMO_CHECK_INTERVAL
    assert len(rounds) >= DEMO_SECONDS // interval, output
    assert [n for n, _, _ in rounds] == list(range(1, len(rounds) + 1)), output
    # The nine checks of SPEC §1 and chain.head (the demo has an RPC URL); the first may precede a heartbeat.
    assert all((ok, total) == (10, 10) for _, ok, total in rounds[1:]), output
    banner_end = [line.strip() for line in output.split("=" * 60)[3].strip().splitlines()]
    assert banner_end[0].startswith("status page: http://127.0.0.1:") and banner_end[0].endswith("/"), output
    assert banner_end[1].startswith("metrics:") and "/metrics" in banner_end[1], output
    assert "alerts:      console" in output


def test_a_failing_endpoint_shows_its_notice_in_the_terminal_within_two_rounds(tmp_path: Path) -> None:
    output = _run_demo_to_the_end(tmp_path, "--fail", "/api/explorer/stats=500")
    assert "Traceback" not in output, output
    lines = output.splitlines()
    notice = next((i for i, line in enumerate(lines) if "logger=exporter.alerting.console" in line), None)
    assert notice is not None, output
    assert "level=warning" in lines[notice] and "/explorer/stats" in lines[notice], lines[notice]
    third_round = next((i for i, line in enumerate(lines) if 'msg="round 3:' in line), len(lines))
    assert notice < third_round, "the notice came later than two rounds:\n" + output
    assert "(failing: api.stats)" in output


def test_the_demo_ignores_the_deployment_variables_of_the_shell(tmp_path: Path) -> None:
    """A shell set up for a real deployment (POLYGON_RPC_URL, DATABASE_URL...) used to make the demo
    exit 2: it brings its own chain, API and store, so it ignores those variables and says so."""
    env = {
        "POLYGON_RPC_URL": "https://polygon.example/v3/0123456789abcdef",
        "DATABASE_URL": "mysql://monitor:hunter2@db.example.org/blocktrust",
        "JWT_MONITOR_PASS_FILE": "/nonexistent/blocktrust/password",
    }
    args = ["demo", "--duration", "60s", "--workdir", str(tmp_path / "demo")]
    with ExporterProcess(args, cwd=tmp_path, env=env) as exporter:
        body = _wait_for_all_checks(exporter)
        code, _ = exporter.stop()
        assert code == 0, exporter.output
    assert {name: _check_up(body)[name] for name in NINE} == dict.fromkeys(NINE, 1.0)
    assert "demo: ignoring DATABASE_URL, JWT_MONITOR_PASS_FILE, POLYGON_RPC_URL from the environment" in exporter.output
    assert "0123456789abcdef" not in exporter.output

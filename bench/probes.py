"""Benchmark (not a test): the exporter's prober against Debian's prometheus-blackbox-exporter.

Both probe the same 1,000 local HTTP targets (the API simulator, in its own process, so its CPU
is nobody's), with the same concurrency. Printed:

* exporter: wall time of a 1,000-check round, checks/s, CPU ms per check (process CPU of the
  round: probing, condition checks, metrics and the one SQLite batch write), peak RSS;
* blackbox_exporter: wall time, probes/s and CPU ms per probe (CPU of its process, read from
  /proc, while this script drives ``/probe`` over keep-alive connections);
* the CPU ratio, and the median latency error of both against an endpoint with a known 200 ms
  delay (100 checks, latency minus 200 ms).

Targets (issue 4): 1,000 checks inside one 60 s round on 2 cores; CPU per check at most 2x
blackbox_exporter's; median latency error under 5 ms.

Run: ``.venv/bin/python bench/probes.py [--checks 1000] [--concurrency 16] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.clock import SystemClock  # noqa: E402
from exporter.config import Config  # noqa: E402
from exporter.metrics import Metrics  # noqa: E402
from exporter.probes.runner import CheckRound  # noqa: E402
from exporter.store import open_store  # noqa: E402
from exporter.store.buffer import BufferedWriter  # noqa: E402

DELAY_MS = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


@contextmanager
def process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def simulator(port: int, *fail: str) -> Any:
    env = {**os.environ, "JWT_MONITOR_EMAIL": "bench@example.org", "JWT_MONITOR_PASS": "bench-only"}
    argv = [sys.executable, "-m", "exporter.demo.simulator", "--port", str(port)]
    for flag in fail:
        argv += ["--fail", flag]
    return process(argv, env)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------- exporter
def exporter_round(urls: list[str], concurrency: int, tmp: Path) -> CheckRound:
    config = Config.model_validate(
        {
            "checks": {
                "include_defaults": False,
                "concurrency": concurrency,
                "timeout": "10s",
                "interval": "60s",
                "items": [
                    {"name": f"bench.{i}", "url": url, "conditions": ["[STATUS] == 200"]} for i, url in enumerate(urls)
                ],
            },
            "listener": {"enabled": False},
        }
    )
    store = open_store(f"sqlite:///{tmp}/bench-{len(urls)}.db")
    store.migrate()
    metrics = Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="bench")
    writer = BufferedWriter(store, metrics, capacity=100_000)
    return CheckRound(config, metrics=metrics, record=writer.record, clock=SystemClock())


def bench_exporter(urls: list[str], concurrency: int, rounds: int, tmp: Path) -> dict[str, float]:
    checks = exporter_round(urls, concurrency, tmp)
    checks.run_once()  # warm-up: imports, thread start, SQLite file
    walls, cpus, failures = [], [], 0
    for _ in range(rounds):
        cpu0, wall0 = self_cpu_seconds(), time.perf_counter()
        results = checks.run_once()
        walls.append(time.perf_counter() - wall0)
        cpus.append(self_cpu_seconds() - cpu0)
        failures += sum(not result.ok for result in results)
    checks.close()
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "wall": wall,
        "rate": len(urls) / wall,
        "cpu_ms": cpu * 1000 / len(urls),
        "failures": failures,
        "worst_wall": max(walls),
    }


def exporter_latency_errors(url: str, count: int, concurrency: int, tmp: Path) -> list[float]:
    checks = exporter_round([f"{url}?n={i}" for i in range(count)], concurrency, tmp)
    results = checks.run_once()
    checks.close()
    assert all(result.ok for result in results), [r.details for r in results if not r.ok][:3]
    return [result.latency_ms - DELAY_MS for result in results]


# ---------------------------------------------------------------------------------- blackbox
BLACKBOX_CONFIG = """modules:
  http_2xx:
    prober: http
    timeout: 10s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
"""


class BlackboxDriver:
    """Calls blackbox_exporter's /probe from a thread pool over keep-alive sessions."""

    def __init__(self, base: str, concurrency: int) -> None:
        self.base = base
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=concurrency)

    def _probe(self, target: str) -> tuple[bool, float]:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        text = session.get(f"{self.base}/probe", params={"module": "http_2xx", "target": target}, timeout=30).text
        values = {}
        for line in text.splitlines():
            if line.startswith(("probe_success ", "probe_duration_seconds ")):
                name, value = line.split()
                values[name] = float(value)
        return values.get("probe_success") == 1.0, values.get("probe_duration_seconds", float("nan"))

    def run(self, targets: list[str]) -> list[tuple[bool, float]]:
        return list(self.pool.map(self._probe, targets))


def bench_blackbox(
    binary: str, urls: list[str], delay_url: str, concurrency: int, rounds: int, tmp: Path, delay_count: int
) -> dict[str, Any]:
    config = tmp / "blackbox.yml"
    config.write_text(BLACKBOX_CONFIG)
    port = free_port()
    argv = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"]
    with process(argv) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/-/healthy")
        driver = BlackboxDriver(base, concurrency)
        driver.run(urls[: min(100, len(urls))])  # warm-up
        walls, cpus, failures = [], [], 0
        for _ in range(rounds):
            cpu0, wall0 = proc_cpu_seconds(proc.pid), time.perf_counter()
            outcomes = driver.run(urls)
            walls.append(time.perf_counter() - wall0)
            cpus.append(proc_cpu_seconds(proc.pid) - cpu0)
            failures += sum(not ok for ok, _ in outcomes)
        delayed = driver.run([f"{delay_url}?n={i}" for i in range(delay_count)])
        driver.pool.shutdown()
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "wall": wall,
        "rate": len(urls) / wall,
        "cpu_ms": cpu * 1000 / len(urls),
        "failures": failures,
        "latency_errors": [seconds * 1000 - DELAY_MS for _, seconds in delayed],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-checks", type=int, default=100)
    args = parser.parse_args()
    binary = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    if binary is None:
        raise SystemExit("prometheus-blackbox-exporter is not installed (apt-get install prometheus-blackbox-exporter)")

    fast_port, slow_port = free_port(), free_port()
    with (
        simulator(fast_port),
        simulator(slow_port, f"/api/health=latency:{DELAY_MS}ms"),
        tempfile.TemporaryDirectory() as tmp_name,
    ):
        tmp = Path(tmp_name)
        wait_http(f"http://127.0.0.1:{fast_port}/api/health")
        wait_http(f"http://127.0.0.1:{slow_port}/_simulator/state")
        urls = [f"http://127.0.0.1:{fast_port}/api/health?n={i}" for i in range(args.checks)]
        delay_url = f"http://127.0.0.1:{slow_port}/api/health"

        ours = bench_exporter(urls, args.concurrency, args.rounds, tmp)
        errors = exporter_latency_errors(delay_url, args.delay_checks, args.concurrency, tmp)
        peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        theirs = bench_blackbox(binary, urls, delay_url, args.concurrency, args.rounds, tmp, args.delay_checks)

    ratio = ours["cpu_ms"] / theirs["cpu_ms"]
    our_error = statistics.median(errors)
    their_error = statistics.median(theirs["latency_errors"])
    print(
        f"machine: {os.cpu_count()} CPUs; {args.checks} checks per round, concurrency {args.concurrency}, "
        f"median of {args.rounds} rounds"
    )
    print(
        f"exporter : round {ours['wall']:.2f}s (worst {ours['worst_wall']:.2f}s), {ours['rate']:.0f} checks/s, "
        f"{ours['cpu_ms']:.3f} CPU ms/check, failures {ours['failures']}, peak RSS {peak_rss_mib:.0f} MiB"
    )
    print(
        f"blackbox : round {theirs['wall']:.2f}s, {theirs['rate']:.0f} probes/s, "
        f"{theirs['cpu_ms']:.3f} CPU ms/probe, failures {theirs['failures']}"
    )
    print(f"CPU per check, exporter / blackbox: {ratio:.2f}x (target <= 2x)")
    print(
        f"median latency error vs a {DELAY_MS} ms endpoint: exporter {our_error:+.1f} ms, "
        f"blackbox {their_error:+.1f} ms (target |error| < 5 ms)"
    )
    print(f"1,000 checks in one 60 s round: {'yes' if ours['worst_wall'] < 60 else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

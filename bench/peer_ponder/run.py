"""Side by side with Ponder (issue 14, acceptance 3). Not a test: it prints measurements and ratios.

    .venv/bin/python bench/peer_ponder/run.py [--repeat 3] [--latency 0.06 --max-range 2000]
                                              [--rounds 100 --per-type 31 --blocks-per-round 500]
                                              [--skip-local] [--skip-proxy]

On the listener benchmark's backlog (bench/listener_backlog.py; default 21,700 events over 50,000
blocks on anvil), each into a fresh PostgreSQL database of the same server:

* Ponder 0.16 (this directory: ``npm ci`` from the committed lock file into ./node_modules when it is
  missing or older than the lock; ``ponder start``, one ``events`` table, an insert-only handler per
  event type, ``disableCache``, chain id 31337), timed from spawn until ``GET /ready`` answers 200,
  then its ``events`` rows counted;
* this exporter's ``listen`` command, timed from spawn until its checkpoint is the backlog's last
  block (bench/listener_remote.py ``run_service``), then its ``events`` rows counted.

Both run ``--repeat`` times, alternating, on local anvil and then through the latency proxy
(bench/rpc_latency_proxy.py: ``--latency`` per request, ``--max-range`` block cap, Infura-style
refusals). While each runs, the peak RSS and the CPU time of the indexer's process tree, of its
PostgreSQL backends and of anvil are sampled from /proc every 100 ms. It prints the medians, events/s
and ours / Ponder's events/s (the target is 5); through the proxy, also what each asked of it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg2
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # bench.*, when run as a script

from bench.listener import create_db, drop_db  # noqa: E402
from bench.listener_backlog import BacklogSpec  # noqa: E402
from bench.listener_remote import Bench, free_port, run_service, start_bench, timed_process  # noqa: E402
from bench.procstat import fixed, pg_backends  # noqa: E402
from bench.rpc_latency_proxy import LatencyProxy  # noqa: E402

PONDER_SCHEMA = "ponder_bench"


def npm_ci() -> None:
    """Install the committed lock file into ./node_modules unless it is there already."""
    stamp = HERE / "node_modules" / ".installed"
    lock = HERE / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    print("npm ci (Ponder and its dependencies)...", flush=True)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)
    stamp.touch()


def _answers(url: str) -> bool:
    """``url`` answers 200."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def run_ponder(bench: Bench, rpc_url: str, workdir: Path) -> dict[str, Any]:
    """``ponder start`` on a fresh database, timed from spawn until ``/ready`` answers 200."""
    db = create_db()  # with the exporter's tables too (unused by Ponder): the same server, a fresh database
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": db,
        "DATABASE_SCHEMA": PONDER_SCHEMA,
        "PONDER_TELEMETRY_DISABLED": "true",
        "NODE_ENV": "production",
        "BENCH_CONTRACTS": str(bench.contracts),
        "BENCH_RPC_URL": rpc_url,
        "BENCH_START_BLOCK": str(bench.backlog.first_block),
    }
    try:
        result = timed_process(
            [str(HERE / "node_modules" / ".bin" / "ponder"), "start", "--port", str(port), "--log-level", "warn"],
            env=env,
            cwd=HERE,
            log_path=workdir / "ponder.log",
            done=lambda: _answers(f"http://127.0.0.1:{port}/ready"),
            up=lambda: _answers(f"http://127.0.0.1:{port}/health"),
            groups={"postgresql": pg_backends(db), "anvil": fixed(bench.chain.pid)},
        )
        conn = psycopg2.connect(db)
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {PONDER_SCHEMA}.events")
            row = cur.fetchone()
        conn.close()
        result["stored"] = int(row[0]) if row else 0
    finally:
        drop_db(db)
    result.pop("log")
    return result


def _run_ours(bench: Bench, rpc_url: str, workdir: Path) -> dict[str, Any]:
    return run_service(bench, rpc_url, workdir, poll_interval=15.0)


def _summary(name: str, runs: list[dict[str, Any]], events: int) -> dict[str, Any]:
    seconds = statistics.median(r["seconds"] for r in runs)
    groups = runs[0]["groups"].keys()
    cpu = {g: statistics.median(r["groups"][g]["cpu_seconds"] for r in runs) for g in groups}
    rss = max(r["groups"]["process"]["peak_rss_mb"] for r in runs)
    times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
    stored = sorted({r["stored"] for r in runs})
    print(
        f"  {name:<8} {seconds:7.2f} s ({times})  {events / seconds:8.0f} events/s  peak RSS {rss:4.0f} MB  "
        f"CPU s: process {cpu['process']:.2f}, PostgreSQL {cpu['postgresql']:.2f}, anvil {cpu['anvil']:.2f}  "
        f"rows {'/'.join(map(str, stored))}"
    )
    return {"seconds": seconds, "exact": stored == [events]}


def compare(
    bench: Bench, rpc_url: str, label: str, args: argparse.Namespace, proxy: LatencyProxy | None = None
) -> bool:
    ours: list[dict[str, Any]] = []
    ponder: list[dict[str, Any]] = []
    for _ in range(args.repeat):  # alternating, so that a slow spell of the machine hits both
        for runs, run in ((ponder, run_ponder), (ours, _run_ours)):
            if proxy is not None:
                proxy.reset()
            runs.append(run(bench, rpc_url, args.workdir))
            if proxy is not None:
                runs[-1]["proxy"] = proxy.stats()
    events = bench.backlog.events
    print(f"{label}: {events} events over {bench.backlog.blocks} blocks, spawn to caught up, medians of {args.repeat}")
    a = _summary("ours", ours, events)
    b = _summary("Ponder", ponder, events)
    for name, runs, start in (("ours", ours, "its first poll"), ("Ponder", ponder, "/health answering")):
        after_start = [r["ingest_seconds"] for r in runs if r["ingest_seconds"] is not None]
        if after_start:
            seconds = statistics.median(after_start)
            print(
                f"  {name}, from {start} to caught up (no start-up): {seconds:.2f} s, {events / seconds:.0f} events/s"
            )
    print(f"  ours / Ponder events/s = {b['seconds'] / a['seconds']:.1f}   (target >= 5)")
    for name, runs in (("ours", ours), ("Ponder", ponder)):
        stats = runs[-1].get("proxy")
        if stats is not None:
            calls = ", ".join(f"{m} {n}" for m, n in sorted(stats.calls.items(), key=lambda kv: -kv[1]))
            print(
                f"  {name}, last run, at the proxy: {stats.http_requests} HTTP requests, "
                f"{stats.refused} getLogs refused, at most {stats.max_in_flight} in flight; calls: {calls}"
            )
    return bool(a["exact"] and b["exact"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=BacklogSpec.rounds)
    parser.add_argument("--per-type", type=int, default=BacklogSpec.per_type)
    parser.add_argument("--blocks-per-round", type=int, default=BacklogSpec.blocks_per_round)
    parser.add_argument("--latency", type=float, default=0.06)
    parser.add_argument("--max-range", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-proxy", action="store_true")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench" / "peer_ponder")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    npm_ci()
    started = time.monotonic()
    bench = start_bench(args.workdir, BacklogSpec(args.rounds, args.per_type, args.blocks_per_round))
    print(f"backlog built in {time.monotonic() - started:.1f} s")
    exact = True
    with ExitStack() as stack:
        stack.callback(bench.chain.stop)
        if not args.skip_local:
            exact &= compare(bench, bench.chain.rpc_url, "local anvil", args)
        if not args.skip_proxy:
            proxy = stack.enter_context(
                LatencyProxy(bench.chain.rpc_url, latency=args.latency, max_range=args.max_range)
            )
            label = f"through the proxy ({args.latency * 1000:.0f} ms per request, {args.max_range}-block cap)"
            exact &= compare(bench, proxy.url, label, args, proxy)
    print("row counts match the backlog" if exact else "MISMATCH in a row count (see rows above)")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

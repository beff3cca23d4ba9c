"""Listener benchmark (issue 5, acceptance 7): how close the listener's catch-up comes to what the
RPC node can serve, and how far it is from the seed's algorithm. Not a test.

    .venv/bin/python bench/listener.py [--rounds 100 --per-type 31 --blocks-per-round 500]
                                       [--repeat 3] [--skip-seed] [--profile]

On one anvil backlog (bench/listener_backlog.py; default 21,700 events over 50,000 blocks) it times:
  (a) the floor: one raw ``eth_getLogs`` over the whole range (HTTP, body read and JSON parse with
      the listener's own parser, orjson; no decoding, no storage);
  (b) the seed's algorithm: web3 ``get_logs`` once per event type, then per event a new
      PostgreSQL connection, one INSERT, commit, close (run once: it takes minutes);
  (c) this listener (``Listener.poll_once``) from the first backlog block to head, into a fresh
      PostgreSQL database each time.
(a) and (c) run ``--repeat`` times, alternating, and the medians are compared: one run of either
swings by 30% on a busy two-core machine. Each phase runs in its own Python process so that its
peak RSS is its own. It prints events/s, c/a, b/c, the peak RSS of each phase and where the CPU
time of (c) went (the listener process, its PostgreSQL backends, anvil), and checks that (b) and
(c) stored every event.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg2
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.listener_backlog, when run as a script

from bench.listener_backlog import BacklogSpec, start_backlog_chain  # noqa: E402

PG_ADMIN_URL = os.environ.get("BLOCKTRUST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _peak_rss_mb() -> float:
    """This process's peak RSS since its exec: VmHWM (``ru_maxrss`` would keep the peak of the
    process that forked it, whose image it replaced)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB or bytes


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of another local process, from /proc; None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _backends_cpu_seconds(db_url: str) -> float | None:
    """CPU used so far by the other PostgreSQL backends of this database (the listener's sessions);
    None if the server is not on this machine."""
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            pids = [int(row[0]) for row in cur.fetchall()]
    finally:
        conn.close()
    seconds = [_process_cpu_seconds(pid) for pid in pids]
    return None if not pids or None in seconds else sum(s for s in seconds if s is not None)


# ---------------------------------------------------------------------------------- phases
def phase_raw(args: argparse.Namespace) -> dict[str, Any]:
    contracts = json.loads(Path(args.contracts).read_text())
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getLogs",
        "params": [
            {
                "fromBlock": hex(args.first),
                "toBlock": hex(args.last),
                "address": [c["address"] for c in contracts.values()],
            }
        ],
    }
    with requests.Session() as session:
        started = time.perf_counter()
        response = session.post(args.rpc, json=body, timeout=600)
        content = response.content
        transferred = time.perf_counter() - started
        logs = orjson.loads(content)["result"]
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "transfer_seconds": transferred,
        "events": len(logs),
        "bytes": len(content),
        "peak_rss_mb": _peak_rss_mb(),
    }


def phase_seed(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's listener loop, reduced to its data path (see the module docstring)."""
    from web3 import Web3

    contracts = json.loads(Path(args.contracts).read_text())
    w3 = Web3(Web3.HTTPProvider(args.rpc, request_kwargs={"timeout": 600}))
    stored = 0
    started = time.perf_counter()
    for spec in contracts.values():
        contract = w3.eth.contract(address=Web3.to_checksum_address(spec["address"]), abi=spec["abi"])
        for event in (contract.events[item["name"]] for item in spec["abi"] if item["type"] == "event"):
            for entry in event.get_logs(from_block=args.first, to_block=args.last):
                data = {
                    "blockNumber": entry["blockNumber"],
                    "transactionHash": entry["transactionHash"].hex(),
                    "args": {k: (v.hex() if isinstance(v, bytes) else str(v)) for k, v in entry["args"].items()},
                }
                conn = psycopg2.connect(args.db)  # the seed: one connection per event
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO events (type, data) VALUES (%s, %s)", (entry["event"], json.dumps(data)))
                conn.commit()
                conn.close()
                stored += 1
    return {"seconds": time.perf_counter() - started, "events": stored, "peak_rss_mb": _peak_rss_mb()}


def phase_listener(args: argparse.Namespace) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from exporter.clock import SystemClock
    from exporter.config import ListenerSettings
    from exporter.listener import Listener
    from exporter.listener.gc_thresholds import raise_gc_thresholds
    from exporter.metrics import Metrics
    from exporter.store import open_store

    store = open_store(args.db)
    settings = ListenerSettings(
        rpc_url=args.rpc,
        contracts_config=args.contracts,
        start_block=args.first,
        chunk_size=args.chunk_size,
        max_chunk_size=args.max_chunk_size,
    )
    listener = Listener(
        settings, store, Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="bench"), SystemClock()
    )
    if not args.default_gc:
        raise_gc_thresholds()  # as ``runtime.serve`` does in a process that runs the listener
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
    anvil_before = _process_cpu_seconds(args.anvil_pid)
    own_before = own_cpu_seconds()
    started = time.perf_counter()
    events = 0
    while True:  # a poll has a time budget; a longer backlog takes several
        outcome = listener.poll_once()
        events += outcome.events
        if outcome.status == "error" or outcome.processed_block == args.last:
            break
    seconds = time.perf_counter() - started
    own_cpu = own_cpu_seconds() - own_before
    anvil_after = _process_cpu_seconds(args.anvil_pid)
    backends_cpu = _backends_cpu_seconds(args.db)  # the sessions are new: all their CPU is this run's
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    listener.close()
    store.close()
    if outcome.processed_block != args.last:
        raise SystemExit(f"listener stopped at {outcome.processed_block}, expected {args.last}: {outcome}")
    anvil_cpu = None if anvil_before is None or anvil_after is None else anvil_after - anvil_before
    return {
        "seconds": seconds,
        "events": events,
        "peak_rss_mb": _peak_rss_mb(),
        "cpu": {"listener": own_cpu, "postgresql": backends_cpu, "anvil": anvil_cpu},
    }


PHASES = {"raw": phase_raw, "seed": phase_seed, "listener": phase_listener}


# ---------------------------------------------------------------------------------- driver
def create_db() -> str:
    """A fresh database with the SPEC §2 schema (so (b) and (c) write the same table)."""
    from exporter.store import open_store

    name = f"bt_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    url = PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    store = open_store(url)
    store.migrate()
    store.close()
    return url


def drop_db(url: str) -> None:
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
    admin.close()


def count_events(url: str) -> int:
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events")
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def run_phase(phase: str, common: list[str], extra: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *common, *extra],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=BacklogSpec.rounds)
    parser.add_argument("--per-type", type=int, default=BacklogSpec.per_type)
    parser.add_argument("--blocks-per-round", type=int, default=BacklogSpec.blocks_per_round)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    parser.add_argument("--max-chunk-size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and of (c); medians are compared")
    parser.add_argument("--skip-seed", action="store_true", help="skip (b): it takes minutes")
    parser.add_argument("--profile", action="store_true", help="cProfile (c) to stderr")
    parser.add_argument(
        "--default-gc", action="store_true", help="(c) with CPython's default collector thresholds, not the service's"
    )
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench" / "listener")
    # internal: one phase in this process
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--rpc")
    parser.add_argument("--db")
    parser.add_argument("--contracts")
    parser.add_argument("--first", type=int)
    parser.add_argument("--last", type=int)
    parser.add_argument("--anvil-pid", type=int, default=0)
    args = parser.parse_args(argv)

    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return 0

    spec = BacklogSpec(args.rounds, args.per_type, args.blocks_per_round)
    started = time.monotonic()
    chain, backlog = start_backlog_chain(args.workdir / "anvil", spec)
    print(f"backlog: {backlog.events} events over {backlog.blocks} blocks, built in {time.monotonic() - started:.1f} s")
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}
    try:
        contracts = chain.write_contracts_config(args.workdir / "contracts_config.json")
        common = [
            "--rpc",
            chain.rpc_url,
            "--contracts",
            str(contracts),
            "--first",
            str(backlog.first_block),
            "--last",
            str(backlog.last_block),
        ]
        if not args.skip_seed:
            runs["b"].append(run_on_fresh_db("seed", common, []))
        extra = [
            "--chunk-size",
            str(args.chunk_size),
            "--max-chunk-size",
            str(args.max_chunk_size),
            "--anvil-pid",
            str(chain.pid),
            *(["--profile"] if args.profile else []),
        ]
        for _ in range(args.repeat):  # alternating, so that a slow spell of the machine hits both
            runs["a"].append(run_phase("raw", common))
            runs["c"].append(run_on_fresh_db("listener", common, extra))
    finally:
        chain.stop()
    return _report(runs, backlog.events)


def run_on_fresh_db(phase: str, common: list[str], extra: list[str]) -> dict[str, Any]:
    url = create_db()
    try:
        result = run_phase(phase, common, ["--db", url, *extra])
        result["stored"] = count_events(url)
    finally:
        drop_db(url)
    return result


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time (the lower middle one for an even count)."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    return ordered[(len(ordered) - 1) // 2]


def _report(runs: dict[str, list[dict[str, Any]]], expected: int) -> int:
    medians = {key: median_run(results) for key, results in runs.items() if results}
    print(f"{'run':<47} {'seconds (median; min-max)':>27} {'events':>8} {'events/s':>10} {'peak RSS':>9}")
    labels = {
        "a": "(a) one raw eth_getLogs (floor)",
        "b": "(b) seed: get_logs per type, conn+INSERT/event",
        "c": "(c) this listener, into PostgreSQL",
    }
    for key, result in medians.items():
        times = [r["seconds"] for r in runs[key]]
        spread = f"{result['seconds']:.2f} ({min(times):.2f}-{max(times):.2f}, n={len(times)})"
        rate = result["events"] / result["seconds"] if result["seconds"] else float("inf")
        print(f"{labels[key]:<47} {spread:>27} {result['events']:>8} {rate:>10.0f} {result['peak_rss_mb']:>6.0f} MB")
    a, c = medians["a"]["seconds"], medians["c"]["seconds"]
    print(
        f"(a) transfer only (no JSON parse): {medians['a']['transfer_seconds']:.2f} s, "
        f"{medians['a']['bytes'] / 1e6:.1f} MB"
    )
    print(f"c/a = {c / a:.2f}   (medians; target <= 1.5)")
    if "b" in medians:
        print(f"b/c = {medians['b']['seconds'] / c:.1f}   (target >= 50)")
    print(f"peak RSS of (c) = {max(r['peak_rss_mb'] for r in runs['c']):.0f} MB   (target <= 150 MB)")
    _report_cpu(medians["c"], a)
    counts = [r["stored"] for key in ("b", "c") for r in runs[key]]
    exact = all(count == expected for count in counts)
    print("stored event counts match the backlog" if exact else f"MISMATCH: expected {expected}, stored {counts}")
    return 0 if exact else 1


def _report_cpu(listener_run: dict[str, Any], a: float) -> None:
    """Where (c)'s CPU time went, and what that alone implies on this machine's cores."""
    cpu = listener_run["cpu"]
    parts = ", ".join(f"{name} {'n/a' if value is None else f'{value:.2f} s'}" for name, value in cpu.items())
    print(f"CPU of the median (c): {parts} (PostgreSQL: the listener's backends only)")
    if None in cpu.values():
        return
    cores = os.cpu_count() or 1
    total = sum(cpu.values())
    # However well the stages overlap, the three processes cannot finish before their CPU time,
    # spread over every core, is spent. (The listener's own share mostly runs one thread at a
    # time, under the GIL.)
    bound = total / cores
    print(
        f"  total {total:.2f} CPU s on {cores} cores: no schedule finishes (c) in under {bound:.2f} s, "
        f"i.e. {bound / a:.2f}x the floor"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

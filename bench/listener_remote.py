"""Listener catch-up over a remote-shaped provider, and through the service's own scheduler (issue 14,
acceptance 1, 2 and 4). Not a test: it prints measurements and ratios from one run.

    .venv/bin/python bench/listener_remote.py [--latency 0.06] [--max-range 2000] [--max-results N]
        [--window 4] [--repeat 3] [--rounds 100 --per-type 31 --blocks-per-round 500]
    .venv/bin/python bench/listener_remote.py --mode service [--latency 0] [--poll-interval 15]
    .venv/bin/python bench/listener_remote.py --mode scale [--scale 10]

On the listener benchmark's backlog (bench/listener_backlog.py; default 21,700 events over 50,000
blocks on anvil):

``remote`` (default): a loopback proxy (bench/rpc_latency_proxy.py) adds ``--latency`` seconds to
    every HTTP request and refuses ``eth_getLogs`` ranges over ``--max-range`` blocks and answers over
    ``--max-results`` logs (-32005 with a suggested range). The listener (``Listener.poll_once`` in a
    loop, in its own process, into a fresh PostgreSQL database) catches up through it ``--repeat``
    times. For the median run it prints the wall time, the requests by method, the refusals, the
    most requests in flight at once, and two floors: the fewest ``eth_getLogs`` calls the caps allow
    times the latency (sequential), and that divided among ``--window`` concurrent fetches; then the
    wall time over the window floor, refused getLogs as % of getLogs, other requests as % of getLogs.
    Alternating with those runs, the same listener catches up from local anvil: its time is the
    floor this machine's CPU sets, whatever the latency.
``service``: the ``listen`` command as a process, timed from spawn until its checkpoint reaches the
    head, alternating with ``poll_once`` in a loop (timed inside its process, and from spawn); the
    medians compared; the service's log searched for the scheduler's skipped-run warnings.
``scale``: the base backlog and one ``--scale`` times larger (blocks and events), ``poll_once`` in a
    loop on each, alternating: time per event of both, their ratio, and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.*, when run as a script

from bench.listener import (  # noqa: E402
    count_events,
    create_db,
    drop_db,
    median_run,
    own_cpu_seconds,
    run_on_fresh_db,
)
from bench.listener_backlog import Backlog, BacklogSpec, start_backlog_chain  # noqa: E402
from bench.procstat import Sampler, fixed, pg_backends, tree  # noqa: E402
from bench.rpc_latency_proxy import LatencyProxy, ProxyStats, allowed_ranges  # noqa: E402
from exporter.demo.devchain import DevChain  # noqa: E402

SKIP_MARKERS = ("run(s) skipped", "maximum number of running instances", "was missed by")


# ---------------------------------------------------------------------------------- the chain
@dataclass
class Bench:
    """A running backlog chain and what the runs need to know about it."""

    chain: DevChain
    backlog: Backlog
    contracts: Path
    log_blocks: list[int]  # the block of every backlog log, sorted
    built_seconds: float

    def common_args(self, rpc_url: str) -> list[str]:
        """The arguments of bench/listener.py's phases for this backlog, through ``rpc_url``."""
        return [
            "--rpc", rpc_url, "--contracts", str(self.contracts),
            "--first", str(self.backlog.first_block), "--last", str(self.backlog.last_block),
        ]  # fmt: skip


def start_bench(workdir: Path, spec: BacklogSpec) -> Bench:
    started = time.monotonic()
    chain, backlog = start_backlog_chain(workdir / "anvil", spec)
    built = time.monotonic() - started
    try:
        contracts = chain.write_contracts_config(workdir / "contracts_config.json")
        blocks = _log_blocks(chain, backlog)
    except BaseException:
        chain.stop()
        raise
    if len(blocks) != backlog.events:
        chain.stop()
        raise SystemExit(f"the backlog holds {len(blocks)} logs, expected {backlog.events}")
    return Bench(chain, backlog, contracts, blocks, built)


def _log_blocks(chain: DevChain, backlog: Backlog, step: int = 20_000) -> list[int]:
    """The block number of every backlog log, sorted; read ``step`` blocks at a time so that this
    process stays small (the listener runs are its children)."""
    blocks: list[int] = []
    for start in range(backlog.first_block, backlog.last_block + 1, step):
        query = {
            "fromBlock": hex(start),
            "toBlock": hex(min(start + step - 1, backlog.last_block)),
            "address": list(chain.addresses.values()),
        }
        blocks.extend(int(log["blockNumber"], 16) for log in chain.rpc("eth_getLogs", [query]))
    return sorted(blocks)


# ---------------------------------------------------------------------------------- a timed process
def timed_process(
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    done: Callable[[], bool],
    groups: dict[str, Callable[[], list[int]]],
    started_marker: str | None = None,
    up: Callable[[], bool] | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Spawn ``cmd`` (output to ``log_path``), time it until ``done()`` (asked every 50 ms), sample
    ``groups`` plus the process tree (``process``) meanwhile, then SIGTERM it. Returns ``seconds``
    (spawn to done), ``ingest_seconds`` (from the first log line holding ``started_marker``, or from
    the first time ``up()`` is true, to done; None without either), the log text and per group
    ``{"peak_rss_mb", "cpu_seconds"}``."""
    with open(log_path, "w") as log_file:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        marker_at: float | None = None
        try:
            with Sampler({"process": tree(proc.pid), **groups}) as sampler:
                while True:
                    if proc.poll() is not None:
                        raise SystemExit(f"{cmd[0]} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                    now = time.perf_counter()
                    if now - started > timeout:
                        raise SystemExit(f"not done within {timeout} s:\n{log_path.read_text()[-3000:]}")
                    if marker_at is None and (
                        (started_marker and started_marker in log_path.read_text()) or (up and up())
                    ):
                        marker_at = now
                    if done():
                        seconds = time.perf_counter() - started
                        break
                    time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    text = log_path.read_text()
    return {
        "seconds": seconds,
        "ingest_seconds": None if marker_at is None else seconds - (marker_at - started),
        "log": text,
        "groups": {
            name: {"peak_rss_mb": g.peak_rss_mb, "cpu_seconds": g.cpu_seconds} for name, g in sampler.groups.items()
        },
    }


def _checkpoint_reached(conn: Any, last: int) -> Callable[[], bool]:
    def done() -> bool:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT block_number FROM listener_checkpoints WHERE name = 'listener'")
                row = cur.fetchone()
        except psycopg2.Error:  # not migrated yet
            return False
        return row is not None and int(row[0]) >= last

    return done


def run_service(bench: Bench, rpc_url: str, workdir: Path, *, poll_interval: float) -> dict[str, Any]:
    """The ``listen`` command on a fresh database, timed from spawn until its checkpoint is the head."""
    db = create_db()
    config = write_listen_config(workdir / "listen.yaml", bench, poll_interval=poll_interval)
    conn = psycopg2.connect(db)
    conn.autocommit = True
    try:
        own = frozenset({conn.get_backend_pid()})
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": db,
            "POLYGON_RPC_URL": rpc_url,
        }
        port = free_port()
        result = timed_process(
            [sys.executable, "-m", "exporter", "listen", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            env=env,
            cwd=REPO,
            log_path=workdir / "listen.log",
            done=_checkpoint_reached(conn, bench.backlog.last_block),
            groups={"postgresql": pg_backends(db, own), "anvil": fixed(bench.chain.pid)},
            started_marker="starting at block",
        )
        result["stored"] = count_events(db)
    finally:
        conn.close()
        drop_db(db)
    lines = result.pop("log").splitlines()
    result["skipped_lines"] = [line for line in lines if any(m in line for m in SKIP_MARKERS)]
    result["events"] = bench.backlog.events
    return result


def write_listen_config(path: Path, bench: Bench, *, poll_interval: float) -> Path:
    """The ``listen`` command's configuration for this backlog (the RPC URL and database come from the
    environment, as in production)."""
    path.write_text(
        "listener:\n"
        f"  contracts_config: {bench.contracts}\n"
        f"  start_block: {bench.backlog.first_block}\n"
        f"  poll_interval: {poll_interval:g}s\n"
        f"  max_lag: {max(180.0, 2 * poll_interval):g}s\n"
    )
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_loop(bench: Bench, rpc_url: str, *, chunk_size: int = 2_000, max_chunk_size: int = 10_000) -> dict[str, Any]:
    """``poll_once`` in a loop in its own process (bench/listener.py's phase c), on a fresh database;
    also timed from spawn."""
    extra = ["--chunk-size", str(chunk_size), "--max-chunk-size", str(max_chunk_size),
             "--anvil-pid", str(bench.chain.pid)]  # fmt: skip
    started = time.perf_counter()
    result = run_on_fresh_db("listener", bench.common_args(rpc_url), extra)
    result["spawn_seconds"] = time.perf_counter() - started  # includes creating and dropping the database
    return result


# ---------------------------------------------------------------------------------- modes
def mode_remote(args: argparse.Namespace, bench: Bench) -> int:
    backlog = bench.backlog
    ranges = allowed_ranges(backlog.first_block, backlog.last_block, bench.log_blocks, args.max_range, args.max_results)
    sequential = ranges * args.latency
    window_floor = sequential / args.window  # as the issue counts it (a whole number of rounds: a bit more)
    runs: list[tuple[dict[str, Any], ProxyStats]] = []
    with LatencyProxy(
        bench.chain.rpc_url, latency=args.latency, max_range=args.max_range, max_results=args.max_results
    ) as proxy:
        local: list[dict[str, Any]] = []
        for _ in range(args.repeat):  # alternating with the same code on local anvil: the CPU floor
            local.append(run_loop(bench, bench.chain.rpc_url))
            proxy.reset()
            before = own_cpu_seconds()  # the proxy's threads (this process does little else meanwhile)
            result = run_loop(bench, proxy.url)
            result["cpu"]["proxy"] = own_cpu_seconds() - before
            runs.append((result, proxy.stats()))
    local_s = median_run(local)["seconds"]
    times = [r["seconds"] for r, _ in runs]
    median = median_run([r for r, _ in runs])
    result, stats = next((r, s) for r, s in runs if r is median)
    print(
        f"proxy: {args.latency * 1000:.0f} ms per request, range cap {args.max_range or 'none'} blocks, "
        f"result cap {args.max_results or 'none'} logs; window {args.window}"
    )
    print(f"runs (s): {', '.join(f'{t:.2f}' for t in times)}; the median run:")
    print(
        f"  wall time            {result['seconds']:.2f} s "
        f"({result['events']} events, {result['events'] / result['seconds']:.0f}/s)"
    )
    by_method = ", ".join(f"{m} {n}" for m, n in sorted(stats.calls.items(), key=lambda kv: -kv[1]))
    print(
        f"  requests             {stats.http_requests} HTTP ({stats.other_requests} without getLogs); "
        f"calls: {by_method}"
    )
    print(
        f"  refused getLogs      {stats.refused} ({stats.refused_range} over the range cap, "
        f"{stats.refused_results} over the result cap)"
    )
    print(f"  in flight, maximum   {stats.max_in_flight}")
    print(
        f"  floors               {ranges} getLogs at least: sequential {sequential:.2f} s, "
        f"{args.window}-way {window_floor:.2f} s"
    )
    print(f"  peak RSS             {result['peak_rss_mb']:.0f} MB")
    cpu = {name: seconds for name, seconds in result["cpu"].items() if seconds is not None}
    cores = os.cpu_count() or 1
    cpu_floor = sum(cpu.values()) / cores
    print(
        f"  CPU                  {', '.join(f'{name} {seconds:.2f} s' for name, seconds in cpu.items())}: "
        f"{sum(cpu.values()):.2f} s on {cores} cores, so no schedule ends under {cpu_floor:.2f} s "
        f"({cpu_floor / window_floor:.2f}x the {args.window}-way floor)"
    )
    get_logs = max(1, stats.get_logs)
    print(f"wall / {args.window}-way floor = {result['seconds'] / window_floor:.2f}   (target <= {args.target})")
    print(f"wall / sequential floor = {result['seconds'] / sequential:.2f}")
    print(
        f"wall / max({args.window}-way floor, CPU floor) = {result['seconds'] / max(window_floor, cpu_floor):.2f}   "
        "(how close the window comes to what this machine allows)"
    )
    print(
        f"the same listener on local anvil (no latency): {local_s:.2f} s, median of {len(local)}; "
        f"wall / max(local, {args.window}-way floor) = {result['seconds'] / max(local_s, window_floor):.2f}"
    )
    print(f"refused getLogs = {100 * stats.refused / get_logs:.1f}% of getLogs   (target < 5%)")
    print(
        f"non-getLogs requests = {100 * stats.other_requests / get_logs:.1f}% of getLogs   (target < 25%); "
        f"non-getLogs calls (a batch's one by one) = {100 * stats.other_calls / get_logs:.1f}%"
    )
    exact = all(r["stored"] == backlog.events for r, _ in runs)
    print("stored event counts match the backlog" if exact else f"MISMATCH: {[r['stored'] for r, _ in runs]}")
    return 0 if exact else 1


def _times(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['seconds']:.2f}" for r in runs)


def mode_service(args: argparse.Namespace, bench: Bench) -> int:
    service: list[dict[str, Any]] = []
    loop: list[dict[str, Any]] = []
    with ExitStack() as stack:
        rpc = bench.chain.rpc_url
        if args.latency or args.max_range or args.max_results:
            proxy = stack.enter_context(
                LatencyProxy(rpc, latency=args.latency, max_range=args.max_range, max_results=args.max_results)
            )
            rpc = proxy.url
        for _ in range(args.repeat):  # alternating
            loop.append(run_loop(bench, rpc))
            service.append(run_service(bench, rpc, args.workdir, poll_interval=args.poll_interval))
    loop_s = statistics.median(r["seconds"] for r in loop)
    loop_spawn = statistics.median(r["spawn_seconds"] for r in loop)
    svc_s = statistics.median(r["seconds"] for r in service)
    ingest = [r["ingest_seconds"] for r in service if r["ingest_seconds"] is not None]
    svc_ingest = statistics.median(ingest) if ingest else float("nan")
    where = (
        "local anvil"
        if rpc == bench.chain.rpc_url
        else f"the proxy ({args.latency * 1000:.0f} ms, cap {args.max_range})"
    )
    print(
        f"{bench.backlog.events} events over {bench.backlog.blocks} blocks, {where}; "
        f"poll interval {args.poll_interval:g} s"
    )
    print(f"poll_once loop, in its process  : {loop_s:.2f} s  ({_times(loop)})")
    print(f"poll_once loop, spawn to exit   : {loop_spawn:.2f} s  (with the fresh database's creation and drop)")
    print(f"listen, spawn to head           : {svc_s:.2f} s  ({_times(service)})")
    print(
        f"listen, first poll to head      : {svc_ingest:.2f} s  (from its 'starting at block' line, 50 ms resolution)"
    )
    print(f"service (first poll to head) / loop = {svc_ingest / loop_s:.2f}   (target <= 1.10)")
    peak = max(r["groups"]["process"]["peak_rss_mb"] for r in service)
    print(f"peak RSS of listen: {peak:.0f} MB")
    skipped = [line for r in service for line in r["skipped_lines"]]
    print(f"skipped-run warnings in the service's logs: {len(skipped)}")
    for line in skipped[:5]:
        print(f"  {line}")
    counts = [r["stored"] for r in service + loop]
    exact = all(c == bench.backlog.events for c in counts)
    print("stored event counts match the backlog" if exact else f"MISMATCH: {counts}")
    return 0 if exact else 1


def mode_scale(args: argparse.Namespace, bench: Bench) -> int:
    spec = bench.backlog.spec
    big_spec = BacklogSpec(spec.rounds * args.scale, spec.per_type, spec.blocks_per_round)
    big = start_bench(args.workdir / "scale", big_spec)
    print(
        f"x{args.scale} backlog: {big.backlog.events} events over {big.backlog.blocks} blocks, "
        f"built in {big.built_seconds:.1f} s"
    )
    base_runs: list[dict[str, Any]] = []
    big_runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.repeat):  # alternating
            base_runs.append(run_loop(bench, bench.chain.rpc_url))
            big_runs.append(run_loop(big, big.chain.rpc_url))
    finally:
        big.chain.stop()
    for name, runs, b in (("base", base_runs, bench), (f"x{args.scale}", big_runs, big)):
        times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        m = median_run(runs)
        per_event = 1e6 * m["seconds"] / b.backlog.events
        print(
            f"{name:>5}: {b.backlog.events} events, median {m['seconds']:.2f} s ({times}), "
            f"{per_event:.1f} µs/event, peak RSS {max(r['peak_rss_mb'] for r in runs):.0f} MB"
        )
    ratio = (median_run(big_runs)["seconds"] / big.backlog.events) / (
        median_run(base_runs)["seconds"] / bench.backlog.events
    )
    print(f"per-event time x{args.scale} / base = {ratio:.2f}   (target within 20%: 0.80-1.20)")
    print(f"peak RSS at x{args.scale} = {max(r['peak_rss_mb'] for r in big_runs):.0f} MB   (target < 150 MB)")
    exact = all(r["stored"] == bench.backlog.events for r in base_runs) and all(
        r["stored"] == big.backlog.events for r in big_runs
    )
    print("stored event counts match the backlogs" if exact else "MISMATCH in the stored counts")
    return 0 if exact else 1


MODES = {"remote": mode_remote, "service": mode_service, "scale": mode_scale}


def _fetch_window() -> int:
    """The listener's default fetch window (``listener.fetch_window``), or 4 where the listener has none
    (it fetched one range at a time before issue 14)."""
    from exporter.config import ListenerSettings

    field = ListenerSettings.model_fields.get("fetch_window")
    return int(field.default) if field is not None and isinstance(field.default, int) else 4


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="remote")
    parser.add_argument("--rounds", type=int, default=BacklogSpec.rounds)
    parser.add_argument("--per-type", type=int, default=BacklogSpec.per_type)
    parser.add_argument("--blocks-per-round", type=int, default=BacklogSpec.blocks_per_round)
    parser.add_argument("--latency", type=float, help="seconds added per request (remote: 0.06)")
    parser.add_argument("--max-range", type=int, help="eth_getLogs block cap (remote: 2000)")
    parser.add_argument("--max-results", type=int, help="eth_getLogs result cap, logs per answer")
    parser.add_argument(
        "--window", type=int, default=_fetch_window(), help="for the floor (default: listener.fetch_window's, else 4)"
    )
    parser.add_argument("--target", type=float, help="the target of wall / window floor (1.5; 2 with a result cap)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--poll-interval", type=float, default=15.0, help="service mode: listener.poll_interval")
    parser.add_argument("--scale", type=int, default=10, help="scale mode: the larger backlog's factor")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench" / "listener_remote")
    args = parser.parse_args(argv)
    if args.mode == "remote":
        args.latency = 0.06 if args.latency is None else args.latency
        if args.max_range is None and args.max_results is None:
            args.max_range = 2_000
        if args.latency <= 0:
            parser.error("--mode remote needs --latency > 0")
    args.latency = args.latency or 0.0
    args.target = args.target or (2.0 if args.max_results else 1.5)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    spec = BacklogSpec(args.rounds, args.per_type, args.blocks_per_round)
    bench = start_bench(args.workdir, spec)
    print(
        f"backlog: {bench.backlog.events} events over {bench.backlog.blocks} blocks, "
        f"built in {bench.built_seconds:.1f} s"
    )
    try:
        return MODES[args.mode](args, bench)
    finally:
        bench.chain.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

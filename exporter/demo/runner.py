"""``blocktrust-exporter demo`` (``make demo``): the whole exporter on one machine with nothing to set up.

Starts the Blocktrust API simulator and a local anvil chain with the project's contracts, keeps a
trickle of contract events flowing, and runs the exporter against them on the embedded SQLite
store, new for each run like the chain. The monitoring account's password is generated for this
run (there are no default credentials). ``--fail PATH=FAULT`` makes the simulator fail one
endpoint so the matching check turns 0 on ``/metrics``. It listens on loopback, and its notices go to
the console channel, so firing and resolved notices show in the terminal. Not for production: it exists to see the
exporter work in a minute.
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from exporter.clock import SystemClock
from exporter.config import Config
from exporter.demo.devchain import DevChain, DevChainError
from exporter.demo.simulator.faults import parse_fail_flag
from exporter.demo.simulator.server import BlocktrustSimulator
from exporter.logs import setup_logging
from exporter.runtime import EXIT_FAILURE, EXIT_USAGE, ExitError, serve

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo-monitor@localhost"
TRICKLE_SECONDS = 4.0  # one round of contract events this often
DEMO_CHECK_INTERVAL = 10.0  # the default 60 s would make a 20 s demo show a single round
DEMO_HOST = "127.0.0.1"
# The variables of settings the demo supplies itself (its simulator, chain and store), ignored when set.
SUPPLIED_ENV = tuple(
    variable
    for name in ("API_BASE", "JWT_MONITOR_EMAIL", "JWT_MONITOR_PASS", "POLYGON_RPC_URL", "DATABASE_URL")
    for variable in (name, f"{name}_FILE")
)


def demo_environment(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """``env`` without the variables the demo supplies itself, and the names of those that were set."""
    ignored = sorted(name for name in SUPPLIED_ENV if env.get(name))
    return {name: value for name, value in env.items() if name not in SUPPLIED_ENV}, ignored


def _trickle(chain: DevChain, stop: threading.Event) -> None:
    """Emit the seven SPEC events now and then, like a quiet production chain."""
    jitter = random.Random(7)  # noqa: S311 - timing only
    while not stop.wait(TRICKLE_SECONDS + jitter.random()):
        try:
            chain.emit_each_event()
        except Exception as exc:  # the demo chain going away at shutdown is not an error worth a traceback
            if not stop.is_set():
                log.warning("demo: could not emit events error=%r", str(exc))


def _discard_old_store(path: Path) -> None:
    """The demo chain is new on every run, so a store an earlier run left describes another chain:
    its checkpoint would look like a reorg deeper than any limit and halt the listener."""
    for stale in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        stale.unlink(missing_ok=True)


def demo_config(
    base: Config, *, api_url: str, password: str, rpc_url: str, contracts: Path, workdir: Path, listen: str | None
) -> Config:
    tree = base.model_dump(by_alias=True)
    tree["api"].update(base_url=api_url, email=DEMO_EMAIL, password=password)
    tree["listener"].update(
        enabled=True,
        rpc_url=rpc_url,
        contracts_config=str(contracts),
        start_block=0,
        poll_interval=min(base.listener.poll_interval, 2.0),
    )
    interval = min(base.checks.interval, DEMO_CHECK_INTERVAL)
    tree["checks"]["interval"] = interval
    # A round must fit its checks' deadlines (the configuration refuses one that does not).
    tree["checks"]["timeout"] = min(base.checks.timeout, interval)
    for item in tree["checks"]["items"]:
        if item["timeout"] is not None:
            item["timeout"] = min(item["timeout"], interval)
    tree["store"].update(url=None, sqlite_path=str(workdir / "demo.db"))
    # Loopback unless asked otherwise: the demo has no web configuration, so nobody else should reach it.
    tree["server"]["listen"] = listen or f"{DEMO_HOST}:{base.server.listen.rpartition(':')[2]}"
    tree["alerting"]["console"].update(enabled=True)  # notices appear in the terminal
    return Config.model_validate(tree)


def run(args: argparse.Namespace, base: Config, ignored_env: Sequence[str] = ()) -> int:
    """Run the demo; ``ignored_env`` names the variables of ``SUPPLIED_ENV`` the shell had set."""
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _discard_old_store(workdir / "demo.db")
    password = secrets.token_urlsafe(18)
    log_format = args.log_format or base.log.format
    setup_logging(fmt=log_format, level=base.log.level, secrets=[password])
    if ignored_env:
        log.info(
            "demo: ignoring %s from the environment: the demo brings its own API, chain and store",
            ", ".join(ignored_env),
        )
    try:
        faults = [parse_fail_flag(flag) for flag in args.fail]
    except ValueError as exc:
        raise ExitError(f"--fail: {exc}", EXIT_USAGE) from None
    simulator = BlocktrustSimulator(email=DEMO_EMAIL, password=password, clock=SystemClock()).start()
    for path, fault in faults:
        simulator.set_fault(path, fault)
        log.info("demo: simulator fault injected path=%s fault=%s", path, fault.text())
    stop = threading.Event()
    try:
        chain = DevChain.start(workdir / "anvil")
    except DevChainError as exc:  # anvil missing or not starting: one line, not a traceback
        simulator.stop()
        raise ExitError(f"demo: {exc}", EXIT_FAILURE) from None

    def cleanup() -> None:
        stop.set()
        chain.stop()
        simulator.stop()

    try:
        contracts = chain.write_contracts_config(workdir / "contracts_config.json")
        chain.emit_each_event()
        trickle = threading.Thread(target=_trickle, args=(chain, stop), name="demo-trickle", daemon=True)
        trickle.start()
        config = demo_config(
            base,
            api_url=simulator.url,
            password=password,
            rpc_url=chain.rpc_url,
            contracts=contracts,
            workdir=workdir,
            listen=args.listen,
        )
        log.info("demo: simulator=%s chain=%s store=%s", simulator.url, chain.rpc_url, workdir / "demo.db")
        serve(config, duration=args.duration, cleanup=cleanup, log_format=log_format)  # ends the process
    except BaseException:
        cleanup()
        raise

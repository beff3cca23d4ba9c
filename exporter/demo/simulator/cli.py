"""``blocktrust-exporter simulate`` (and ``python -m exporter.demo.simulator``): run the API simulator
alone, e.g. for the compose stack's demo profile or a benchmark.

Credentials come from the same variables as the exporter's (``JWT_MONITOR_EMAIL``,
``JWT_MONITOR_PASS`` or ``JWT_MONITOR_PASS_FILE``), or ``--email`` / ``--password-file``;
there are no defaults and the password is never a command-line argument (``ps`` shows those).
``--fail PATH=FAULT`` (repeatable) starts with a fault, e.g. ``--fail /api/explorer/stats=500``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from exporter.clock import SystemClock
from exporter.config import parse_duration
from exporter.demo.simulator.faults import parse_fail_flag
from exporter.demo.simulator.server import BlocktrustSimulator

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--email", default=None, help="monitoring account (default: $JWT_MONITOR_EMAIL)")
    parser.add_argument(
        "--password-file",
        default=None,
        help="file holding the password (default: $JWT_MONITOR_PASS_FILE, else $JWT_MONITOR_PASS)",
    )
    parser.add_argument(
        "--token-lifetime", type=parse_duration, default=3600.0, help="token lifetime, e.g. 1h (default)"
    )
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="PATH=FAULT",
        help="inject a fault, e.g. /api/explorer/stats=500 or /api/health=latency:2s (repeatable)",
    )


def build(args: argparse.Namespace, env: Mapping[str, str]) -> BlocktrustSimulator:
    """The simulator the arguments describe; ``ValueError`` with a one-line message when they are bad."""
    email = args.email or env.get("JWT_MONITOR_EMAIL")
    password_file = args.password_file or env.get("JWT_MONITOR_PASS_FILE")
    password = Path(password_file).read_text().strip() if password_file else env.get("JWT_MONITOR_PASS")
    if not email or not password:
        raise ValueError("needs credentials: set JWT_MONITOR_EMAIL and JWT_MONITOR_PASS (or --email, --password-file)")
    faults = [parse_fail_flag(flag) for flag in args.fail]
    sim = BlocktrustSimulator(
        email=email,
        password=password,
        clock=SystemClock(),
        token_lifetime=args.token_lifetime,
        host=args.host,
        port=args.port,
    )
    for path, fault in faults:
        sim.set_fault(path, fault)
    return sim


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM. Returns an exit code (2: bad arguments)."""
    try:
        sim = build(args, os.environ)
    except (ValueError, OSError) as exc:
        log.error("simulate: %s", exc)
        return 2
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sim.start()
    except OSError as exc:
        log.error("simulate: cannot listen on %s:%s: %s", args.host, args.port, exc.strerror)
        return 1
    faults = ", ".join(f"{path}={fault.text()}" for path, fault in sim.faults.snapshot().items()) or "none"
    log.info("Blocktrust API simulator on http://%s:%d (faults: %s)", args.host, sim.port, faults)
    done.wait()
    sim.stop()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m exporter.demo.simulator", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())

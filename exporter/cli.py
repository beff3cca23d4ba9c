"""The command line, and the only place that wires the parts together
(config -> logging -> metrics -> store -> components -> scheduler -> HTTP server).

Exit codes: 0 success, 1 a runtime failure (store unreachable for ``migrate``, port taken),
2 bad input (configuration, arguments).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

import yaml
from prometheus_client import CollectorRegistry

from exporter.banner import banner_lines, exporter_version
from exporter.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config, parse_duration
from exporter.logs import setup_logging
from exporter.metrics import Metrics
from exporter.scheduler import Job, Scheduler
from exporter.server import HttpServer
from exporter.store import Store, StoreError, open_store
from exporter.store.buffer import BufferedWriter

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# SIGTERM to exit must stay under 10 s (Docker's default stop timeout): jobs get this long to finish.
SHUTDOWN_GRACE_SECONDS = 7.0
STORE_RETRY_SECONDS = 5.0


class CliError(Exception):
    """A one-line message for stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ helpers
def load(args: argparse.Namespace) -> Config:
    """The configuration named by ``--config``; the default file may be absent (defaults + env)."""
    path: str | None = args.config
    if path == DEFAULT_CONFIG_PATH and not os.path.exists(path) and not args.config_given:
        path = None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def make_store(config: Config) -> Store:
    url = config.store.url.get_secret_value() if config.store.url is not None else None
    try:
        return open_store(
            url,
            sqlite_path=config.store.sqlite_path,
            pool_size=config.store.pool_size,
            connect_timeout=config.store.connect_timeout,
        )
    except ValueError as exc:
        raise CliError(f"{config.source}: store.url: {exc}", EXIT_USAGE) from None
    except StoreError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None


def effective_config_yaml(config: Config) -> str:
    """The configuration as YAML with every secret replaced by ``***`` (never the value)."""
    tree = config.model_dump(mode="json", by_alias=True)

    def mask(node: object) -> object:
        if isinstance(node, dict):
            return {k: mask(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mask(v) for v in node]
        # pydantic renders a set SecretStr as a run of asterisks in JSON mode
        if isinstance(node, str) and node and set(node) == {"*"}:
            return "***"
        return node

    return yaml.safe_dump(mask(tree), sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------ run
@dataclass
class Runtime:
    """What ``run`` assembled, so that shutdown can take it apart in order."""

    config: Config
    registry: CollectorRegistry
    metrics: Metrics
    store: Store
    writer: BufferedWriter
    scheduler: Scheduler
    schema_ready: threading.Event = field(default_factory=threading.Event)
    on_stop: list[Callable[[], None]] = field(default_factory=list)

    def ensure_schema(self) -> None:
        """Migrate once the store answers; until then results wait in the buffer."""
        if not self.schema_ready.is_set():
            version = self.store.migrate()
            self.schema_ready.set()
            log.info("store ready kind=%s schema_version=%d", self.store.kind, version)

    def store_job(self) -> None:
        try:
            self.ensure_schema()
        except StoreError as exc:
            self.metrics.store_write_errors.inc()
            log.error("store unreachable; retrying in %gs error=%r", STORE_RETRY_SECONDS, str(exc))
            return
        self.writer.flush()

    def ready(self) -> tuple[bool, str]:
        if not self.scheduler.running:
            return False, "scheduler not running"
        if not self.schema_ready.is_set():
            return False, "store not migrated yet"
        try:
            self.store.ping()
        except StoreError as exc:
            return False, f"store unreachable: {exc}"
        return True, "ready"


def build_runtime(config: Config) -> Runtime:
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=config.slo.latency_ms / 1000, version=exporter_version())
    store = make_store(config)
    writer = BufferedWriter(store, metrics, capacity=config.store.buffer_size)
    runtime = Runtime(config, registry, metrics, store, writer, Scheduler(metrics))
    runtime.scheduler.add(Job("store", runtime.store_job, STORE_RETRY_SECONDS, run_at_start=False))
    return runtime


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args)
    if args.listen:
        try:
            config = Config.model_validate(
                {**config.model_dump(by_alias=True), "server": {"listen": args.listen}}
            )
        except Exception:
            message = f'--listen: expected HOST:PORT like "0.0.0.0:9108", got {args.listen!r}'
            raise CliError(message, EXIT_USAGE) from None
    setup_logging(fmt=args.log_format or config.log.format, level=config.log.level, secrets=config.secrets())
    runtime = build_runtime(config)
    parts = {"store": True}
    for line in banner_lines(config, parts):
        print(line, file=sys.stderr, flush=True)
    try:
        runtime.ensure_schema()
    except StoreError as exc:
        log.error("store unreachable at start; will retry every %gs error=%r", STORE_RETRY_SECONDS, str(exc))
    try:
        server = HttpServer(config.server.listen, runtime.registry, runtime.ready)
    except OSError as exc:
        runtime.store.close()
        raise CliError(f"cannot listen on {config.server.listen}: {exc.strerror}", EXIT_FAILURE) from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received; shutting down signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    runtime.scheduler.start()
    log.info("exporter started version=%s listen=%s", exporter_version(), config.server.listen)
    stop.wait(args.duration)
    shutdown(runtime, server)
    return EXIT_OK


def shutdown(runtime: Runtime, server: HttpServer) -> None:
    """Finish in-flight work, flush the store, release everything; bounded by the grace period."""
    finished = runtime.scheduler.stop(SHUTDOWN_GRACE_SECONDS)
    for hook in runtime.on_stop:
        try:
            hook()
        except Exception:
            log.exception("shutdown hook failed")
    flushed = runtime.writer.flush()
    if not flushed:
        log.error("store unreachable at shutdown; results lost count=%d", len(runtime.writer))
    runtime.store.close()
    server.stop()
    log.info("exporter stopped jobs_finished=%s store_flushed=%s", finished, flushed)


# ------------------------------------------------------------------------------ other subcommands
def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args)
    sys.stdout.write(effective_config_yaml(config))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    config = load(args)
    setup_logging(fmt=config.log.format, level=config.log.level, secrets=config.secrets())
    store = make_store(config)
    try:
        version = store.migrate()
    except StoreError as exc:
        raise CliError(f"migrate: {exc}", EXIT_FAILURE) from None
    finally:
        store.close()
    print(f"schema version {version} ({store.kind})")
    return EXIT_OK


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"blocktrust-exporter {exporter_version()}")
    return EXIT_OK


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blocktrust-exporter",
        description="Monitors the Blocktrust API and follows its contracts on chain; serves Prometheus metrics.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=DEFAULT_CONFIG_PATH, help=f"configuration file (default: {DEFAULT_CONFIG_PATH})"
    )
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", parents=[common], help="run the exporter (default)")
    run.add_argument("--listen", help="HOST:PORT to serve /metrics on, overriding server.listen")
    run.add_argument("--log-format", choices=["logfmt", "json"], help="override log.format")
    run.add_argument("--duration", type=_duration_arg, help="stop by itself after this long (e.g. 60s)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", parents=[common], help="validate and print the effective configuration")
    check.set_defaults(func=cmd_check_config)
    sub.add_parser("migrate", parents=[common], help="create or upgrade the database schema").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("version", parents=[common], help="print the version").set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    args.config_given = any(a == "--config" or a.startswith("--config=") for a in argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"blocktrust-exporter: {exc}", file=sys.stderr)
        return exc.code

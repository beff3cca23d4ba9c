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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

import requests
import yaml
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from exporter.alerting.engine import AlertEngine, check_policies, owned_checks
from exporter.alerting.notifier import build_notifier
from exporter.alerting.redact import Redactor
from exporter.banner import banner_lines, exporter_version
from exporter.clock import Clock, SystemClock
from exporter.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config, parse_duration
from exporter.listener.contracts import load_contracts
from exporter.listener.service import Listener
from exporter.logs import setup_logging
from exporter.metrics import Metrics
from exporter.probes.round import CheckRound, resolve_checks
from exporter.retention import purge_old_results
from exporter.rules import render_rules
from exporter.scheduler import Job, Scheduler
from exporter.server import HttpServer
from exporter.simulator import cli as simulator_cli
from exporter.slo import SloReporter, add_report_arguments, report_command
from exporter.store import Store, StoreError, open_store
from exporter.store.buffer import BufferedWriter

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# SIGTERM to exit must stay under 10 s (Docker's default stop timeout). Jobs get SHUTDOWN_JOBS_SECONDS
# to finish once told to stop; the final store flush and the rest share what is left of the deadline.
SHUTDOWN_DEADLINE_SECONDS = 9.0
SHUTDOWN_JOBS_SECONDS = 5.0
SHUTDOWN_ABANDON_SECONDS = 1.0  # for jobs told to abandon their work to return
FLUSH_RESERVE_SECONDS = 1.5  # of the deadline, kept for the final store flush
STORE_RETRY_SECONDS = 5.0
ALERT_TICK_SECONDS = 15.0  # reminders and end-of-maintenance notices are checked this often
RETENTION_SECONDS = 3600.0
LISTENER_INCIDENT = "listener.reorg"  # the incident a too-deep reorg opens


class CliError(Exception):
    """A one-line message for stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ helpers
def load(args: argparse.Namespace, *, with_checks: bool = True) -> Config:
    """The configuration named by ``--config``; the default file may be absent (defaults + env).
    ``with_checks``: also validate the checks (not for commands that never run them)."""
    path: str | None = args.config
    if path == DEFAULT_CONFIG_PATH and not os.path.exists(path) and not args.config_given:
        path = None
    try:
        config = load_config(path)
        if config.listener.enabled and config.listener.rpc_url is not None:
            # Fail at start (and in check-config) rather than on the first poll.
            load_contracts(config.listener.contracts_config, config.listener.event_types)
        if with_checks:
            resolve_checks(config)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return config


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
        raise CliError(Redactor(config.secrets())(str(exc)), EXIT_FAILURE) from None


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

    # Belt and braces: whatever a field holds (a password inside api.base_url, say) is masked too.
    return Redactor(config.secrets())(yaml.safe_dump(mask(tree), sort_keys=False, allow_unicode=True))


# ------------------------------------------------------------------------------ run
ALL_PARTS = frozenset({"checks", "listener", "alerts", "slo"})


@dataclass
class Runtime:
    """What ``serve`` assembled, so that shutdown can take it apart in order."""

    config: Config
    clock: Clock
    registry: CollectorRegistry
    metrics: Metrics
    store: Store
    writer: BufferedWriter
    scheduler: Scheduler
    parts: dict[str, bool] = field(default_factory=dict)
    listener: Listener | None = None
    schema_ready: threading.Event = field(default_factory=threading.Event)
    on_signal: list[Callable[[], None]] = field(default_factory=list)  # wrap up now (nothing is lost)
    on_overdue: list[Callable[[], None]] = field(default_factory=list)  # the grace is over: abandon work
    on_stop: list[Callable[[], None]] = field(default_factory=list)  # release resources once it has

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
            return False, Redactor(self.config.secrets())(f"store unreachable: {exc}")
        return True, "ready"


def build_runtime(config: Config, parts: frozenset[str] = ALL_PARTS, clock: Clock | None = None) -> Runtime:
    """Assemble the components ``parts`` asks for and schedule their jobs (not started yet)."""
    clock = clock or SystemClock()
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=config.slo.latency_ms / 1000, version=exporter_version())
    store = make_store(config)
    writer = BufferedWriter(store, metrics, capacity=config.store.buffer_size)
    rt = Runtime(config, clock, registry, metrics, store, writer, Scheduler(metrics))
    rt.scheduler.add(Job("store", rt.store_job, STORE_RETRY_SECONDS, run_at_start=False))
    try:
        rt.ensure_schema()  # before the components, which read the store as they start
    except StoreError as exc:
        log.error("store unreachable at start; will retry every %gs error=%r", STORE_RETRY_SECONDS, str(exc))
    try:
        _add_components(rt, parts)
    except ConfigError as exc:
        store.close()
        raise CliError(str(exc), EXIT_USAGE) from None
    return rt


def _add_components(rt: Runtime, parts: frozenset[str]) -> None:
    config, clock, metrics, store = rt.config, rt.clock, rt.metrics, rt.store
    redact = Redactor(config.secrets())
    checks = resolve_checks(config) if "checks" in parts else []
    listener_on = "listener" in parts and config.listener.enabled and config.listener.rpc_url is not None

    # Alerts: the engine decides, the notifier's workers send (off the check path). When the listener
    # runs in another process (`listen`), each process manages only its own incidents.
    if listener_on and not checks:
        owned: Callable[[str], bool] | None = owned_checks([LISTENER_INCIDENT])
    elif not listener_on:
        owned = owned_checks(exclude=[LISTENER_INCIDENT])
    else:
        owned = None
    session = requests.Session()
    notifier = build_notifier(config.alerting, metrics, clock, session, redact=redact)
    engine = AlertEngine(
        store, notifier, clock, metrics, config.alerting,
        policies=check_policies(config.alerting, checks), redact=redact, owned=owned,
    )
    rt.parts["alerts"] = "alerts" in parts
    if rt.parts["alerts"]:
        notifier.start()
        rt.scheduler.add(Job("alerts", engine.tick, ALERT_TICK_SECONDS, run_at_start=False))

    rt.parts["checks"] = bool(checks)
    if checks:
        round_ = CheckRound(
            config, metrics=metrics, record=rt.writer.record, clock=clock, store=store,
            on_results=engine.observe if rt.parts["alerts"] else None,
        )
        rt.on_overdue.append(round_.cancel)
        rt.on_stop.append(round_.close)
        rt.scheduler.add(Job("checks", round_.run_once, config.checks.interval))

    rt.parts["listener"] = listener_on
    if listener_on:
        def on_critical(title: str, detail: str) -> None:
            engine.raise_critical(LISTENER_INCIDENT, title, detail)

        def on_recovered() -> None:
            engine.resolve(LISTENER_INCIDENT)  # ingesting again: a halt's incident is over

        rt.listener = Listener(
            config.listener, store, metrics, clock, on_critical=on_critical, on_recovered=on_recovered
        )
        rt.on_signal.append(rt.listener.request_stop)
        rt.on_stop.append(rt.listener.close)
        rt.scheduler.add(Job("listener", rt.listener.poll_once, config.listener.poll_interval))

    rt.parts["slo"] = "slo" in parts
    if rt.parts["slo"]:
        reporter = SloReporter(store, metrics, config.slo, clock, engine=engine)
        rt.scheduler.add(Job("slo", reporter.run_once, config.slo.report_interval))
        rt.scheduler.add(
            Job("retention", lambda: purge_old_results(store, clock, config.slo.retention), RETENTION_SECONDS)
        )

    if rt.parts["alerts"]:
        # Last, so that notices raised while the other parts stop still go out.
        rt.on_stop.append(lambda: notifier.stop(timeout=2.0))
    rt.on_stop.append(session.close)


def serve(
    config: Config,
    *,
    parts: frozenset[str] = ALL_PARTS,
    duration: float | None = None,
    title: str = "BLOCKTRUST MONITORING SYSTEM",
    prime_listener: bool = False,
    cleanup: Callable[[], None] | None = None,
) -> NoReturn:
    """Run until SIGTERM/SIGINT (or ``duration``), shut down cleanly, run ``cleanup`` (what the caller
    started around the exporter) and end the process. Logging must be set up."""
    rt = build_runtime(config, parts)
    for line in banner_lines(config, rt.parts, title=title):
        print(line, file=sys.stderr, flush=True)
    if prime_listener and rt.listener is not None and rt.schema_ready.is_set():
        rt.listener.poll_once()  # so the first check round already sees a heartbeat
    try:
        server = HttpServer(config.server.listen, rt.registry, rt.ready)
    except OSError as exc:
        rt.store.close()
        raise CliError(f"cannot listen on {config.server.listen}: {exc.strerror}", EXIT_FAILURE) from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received; shutting down signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    rt.scheduler.start()
    log.info("exporter started version=%s listen=%s", exporter_version(), config.server.listen)
    stop.wait(duration)
    deadline = time.monotonic() + SHUTDOWN_DEADLINE_SECONDS
    shutdown(rt, server, deadline)
    if cleanup is not None:
        _run_before([cleanup], deadline)
    exit_by(deadline, EXIT_OK)


def with_listen(config: Config, listen: str | None) -> Config:
    if not listen:
        return config
    try:
        return Config.model_validate({**config.model_dump(by_alias=True), "server": {"listen": listen}})
    except ValidationError:
        raise CliError(f'--listen: expected HOST:PORT like "0.0.0.0:9108", got {listen!r}', EXIT_USAGE) from None


def cmd_run(args: argparse.Namespace) -> int:
    config = with_listen(load(args), args.listen)
    setup_logging(fmt=args.log_format or config.log.format, level=config.log.level, secrets=config.secrets())
    return serve(config, duration=args.duration)


def cmd_listen(args: argparse.Namespace) -> int:
    """The seed's listener worker: only the listener (and the alerts its reorg guard raises)."""
    config = with_listen(load(args, with_checks=False), args.listen)
    setup_logging(fmt=args.log_format or config.log.format, level=config.log.level, secrets=config.secrets())
    if config.listener.rpc_url is None:
        raise CliError(f"{config.source}: listener.rpc_url: required by listen (POLYGON_RPC_URL)", EXIT_USAGE)
    return serve(config, parts=frozenset({"listener", "alerts"}), duration=args.duration,
                 title="BLOCKTRUST BLOCKCHAIN EVENT LISTENER")


def shutdown(rt: Runtime, server: HttpServer, deadline: float) -> None:
    """Finish in-flight work, flush the store, release everything, before ``deadline``."""
    for wrap_up in rt.on_signal:
        wrap_up()
    finished = rt.scheduler.stop(SHUTDOWN_JOBS_SECONDS)
    if not finished:
        for abandon in rt.on_overdue:
            abandon()
        finished = rt.scheduler.stop(SHUTDOWN_ABANDON_SECONDS)
    _run_before(rt.on_stop, deadline - FLUSH_RESERVE_SECONDS)
    flushed = _flush_before(rt.writer, deadline)
    if not flushed:
        log.error("store unreachable at shutdown; results lost count=%d", len(rt.writer))
    if finished:
        rt.store.close()  # a job still running may yet write; its results then go with the process
    server.stop()
    log.info("exporter stopped jobs_finished=%s store_flushed=%s", finished, flushed)


def _run_before(hooks: Sequence[Callable[[], None]], deadline: float) -> None:
    """Release resources in order, giving up (and leaving them to the exit) at the deadline."""

    def run_all() -> None:
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")

    worker = threading.Thread(target=run_all, name="shutdown-hooks", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        log.warning("shutdown hooks still running at their deadline; moving on")


def _flush_before(writer: BufferedWriter, deadline: float) -> bool:
    """The final flush, given up at the deadline (a store that hangs must not hold the exit)."""
    done = threading.Event()
    outcome: list[bool] = []

    def flush() -> None:
        outcome.append(writer.flush())
        done.set()

    threading.Thread(target=flush, name="final-flush", daemon=True).start()
    return done.wait(max(0.0, deadline - time.monotonic())) and outcome == [True]


def exit_by(deadline: float, code: int) -> NoReturn:
    """End the process once shutdown is done. Worker threads of libraries (APScheduler's pool, a
    check still waiting on a socket) would otherwise be joined at interpreter exit (concurrent.futures
    joins its workers even when they are daemons): give the non-daemon ones until the deadline, then go."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    lingering = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    log.debug("exiting threads_left=%s", ",".join(sorted(lingering)) or "none")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ------------------------------------------------------------------------------ other subcommands
def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args)
    sys.stdout.write(effective_config_yaml(config))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    config = load(args, with_checks=False)
    setup_logging(fmt=config.log.format, level=config.log.level, secrets=config.secrets())
    store = make_store(config)
    try:
        version = store.migrate()
    except StoreError as exc:
        raise CliError(Redactor(config.secrets())(f"migrate: {exc}"), EXIT_FAILURE) from None
    finally:
        store.close()
    print(f"schema version {version} ({store.kind})")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    config = load(args, with_checks=False)
    setup_logging(fmt=config.log.format, level="warning", secrets=config.secrets())
    store = make_store(config)
    try:
        return report_command(store, config.slo, SystemClock(), args, sys.stdout)
    except StoreError as exc:
        raise CliError(Redactor(config.secrets())(f"report: {exc}"), EXIT_FAILURE) from None
    finally:
        store.close()


def cmd_rules(args: argparse.Namespace) -> int:
    sys.stdout.write(render_rules(load(args)))
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    setup_logging()
    return simulator_cli.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from exporter.demo import run as run_demo  # pulls in the dev chain tooling, which `run` never needs

    return run_demo(args, load(args))


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
    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--listen", help="HOST:PORT to serve /metrics on, overriding server.listen")
    serving.add_argument("--log-format", choices=["logfmt", "json"], help="override log.format")
    serving.add_argument("--duration", type=_duration_arg, help="stop by itself after this long (e.g. 60s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
            *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common, *parents], help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    add("run", cmd_run, "run the exporter: checks, listener, alerts, SLO report (default)", serving)
    add("listen", cmd_listen, "run only the chain listener (the seed's listener worker)", serving)
    add("check-config", cmd_check_config, "validate and print the effective configuration, secrets masked")
    add("migrate", cmd_migrate, "create or upgrade the database schema")
    add_report_arguments(add("report", cmd_report, "print the SLO report from the store"))
    add("rules", cmd_rules, "print the Prometheus SLO rules generated from the configuration")
    simulator_cli.add_arguments(add("simulate", cmd_simulate, "run the Blocktrust API simulator alone"))
    demo_parser = add("demo", cmd_demo, "run everything locally: simulator, anvil chain, exporter", serving)
    demo_parser.add_argument("--fail", action="append", default=[], metavar="PATH=FAULT",
                             help="make the simulator fail an endpoint, e.g. /api/explorer/stats=500")
    demo_parser.add_argument("--workdir", default="var/demo", help="where the demo keeps its files")
    add("version", cmd_version, "print the version")
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

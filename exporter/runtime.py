"""The runtime: the only place that wires the parts together
(config -> metrics -> store -> components -> scheduler -> HTTP server), runs them, and takes them
apart in order on SIGTERM/SIGINT. Not for arguments or commands: ``cli.py``.
"""

from __future__ import annotations

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
from prometheus_client import CollectorRegistry

from exporter.alerting.dependencies import LOGIN, check_dependencies
from exporter.alerting.engine import AlertEngine, check_policies, owned_checks
from exporter.alerting.event_rules import CompiledRule, compile_rules
from exporter.alerting.heartbeat import HeartbeatPinger, round_healthy
from exporter.alerting.notifier import Notifier, build_notifier
from exporter.alerting.rule_runner import EventRuleRunner
from exporter.banner import banner_fields, banner_lines, exporter_version
from exporter.clock import Clock, SystemClock
from exporter.config import (
    CHAIN_KINDS,
    LISTENER_QUARANTINE_INCIDENT,
    LISTENER_REORG_INCIDENT,
    CheckSpec,
    Config,
    ConfigError,
    StoreSettings,
)
from exporter.listener.contracts import load_contracts
from exporter.listener.endpoints import EndpointPool
from exporter.listener.finality import default_reorg_depth
from exporter.listener.gc_thresholds import raise_gc_thresholds
from exporter.listener.rpc import RangeRefusedError, RpcError, TransientRpcError
from exporter.listener.service import Listener, backlog_left
from exporter.metrics import Metrics
from exporter.probes.chain import ChainReader, resolve_view_calls
from exporter.probes.runner import CheckRound, ListenerStartGrace, resolve_checks
from exporter.progress import AT_HEAD_MARGIN_BLOCKS, CatchUpReporter, RoundReporter
from exporter.redact import Redactor
from exporter.replicas import Placement
from exporter.retention import purge_old_results
from exporter.scheduler import Job, Scheduler
from exporter.server import HttpServer
from exporter.slo import INCIDENT_PREFIX as SLO_INCIDENT_PREFIX
from exporter.slo import SloReporter
from exporter.status import StatusBuilder, status_routes
from exporter.store import Store, StoreError, StoreTimeouts, open_store
from exporter.store.base import CheckResult, MigrationError
from exporter.store.buffer import BufferedWriter
from exporter.web import WebConfigError, WebSecurity, load_web_config

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
REMOVED_CHECK_INTERVALS = 3  # an unconfigured check's incident is resolved after this long with no result
RETENTION_SECONDS = 3600.0
LISTENER_INCIDENT = LISTENER_REORG_INCIDENT  # the incident a too-deep reorg opens (a reserved name)
LISTENER_INCIDENTS = (LISTENER_REORG_INCIDENT, LISTENER_QUARANTINE_INCIDENT)  # the listener's own
TAGGED_HEAD_MARGIN_BLOCKS = 256  # following "safe"/"finalized" keeps the listener this far behind, or so
# /readyz waits this long for the store's ping: a stalled store (whose calls end only at
# store.call_timeout) must not hold the answer past Kubernetes' default probe timeout of 1 s.
READY_PING_SECONDS = 0.5


class ExitError(Exception):
    """A one-line message for stderr and the exit code the process ends with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def store_timeouts(settings: StoreSettings) -> StoreTimeouts:
    """The deadlines of ``store.*_timeout``."""
    return StoreTimeouts(
        call=settings.call_timeout,
        statement=settings.statement_timeout,
        lock=settings.lock_timeout,
        pool=settings.pool_timeout,
        connect=settings.connect_timeout,
        idle_in_transaction=settings.idle_in_transaction_timeout,
        tcp_user=settings.tcp_user_timeout,
        migration=settings.migration_timeout,
    )


def make_store(config: Config, *, read_only: bool = False, create: bool = True) -> Store:
    """The configured store (``read_only``: for commands that only read; ``create=False``: no SQLite
    file is created; see ``open_store``)."""
    url = config.store.url.get_secret_value() if config.store.url is not None else None
    try:
        return open_store(
            url,
            sqlite_path=config.store.sqlite_path,
            pool_size=config.store.pool_size,
            timeouts=store_timeouts(config.store),
            read_only=read_only,
            create=create,
        )
    except ValueError as exc:
        raise ExitError(f"{config.source}: store.url: {exc}", EXIT_USAGE) from None
    except StoreError as exc:
        raise ExitError(Redactor(config.secrets())(str(exc)), EXIT_FAILURE) from None


def event_rules(config: Config) -> list[CompiledRule] | None:
    """The enabled contract-event rules, compiled against the contracts' ABI (``ConfigError``, one line,
    for a bad rule). None when there is nothing to check them against: no listener and no readable
    ``contracts_config`` (a process that sees no contract events runs no rules)."""
    listener = config.listener
    listener_on = listener.enabled and bool(listener.rpc_endpoints)
    if not config.alerting.event_rules:
        return []
    try:
        specs = load_contracts(listener.contracts_config, listener.event_types)
    except ConfigError:
        if listener_on:
            raise
        return None
    catalogue = {spec.stored_type: {i.name: i.abi_type for i in spec.inputs} for spec in specs}
    renamed = {spec.name: spec.stored_type for spec in specs if spec.name != spec.stored_type}
    return compile_rules(config.alerting, catalogue, config.source, renamed)


def web_security(config: Config) -> WebSecurity:
    """TLS and basic auth from ``server.web_config_file``; a bad file is one line and exit 2."""
    try:
        return load_web_config(config.server.web_config_file)
    except WebConfigError as exc:
        raise ExitError(str(exc), EXIT_USAGE) from None


class ReadinessPing:
    """The store's ping for ``/readyz`` with a short deadline: the ping runs on its own daemon thread,
    and the caller waits at most ``wait`` seconds for it. One ping at a time: a probe arriving while
    the last ping is still waiting on a stalled store waits for that same ping (no thread pile-up)."""

    def __init__(self, ping: Callable[[], None], wait: float = READY_PING_SECONDS) -> None:
        self._ping = ping
        self._wait = wait
        self._lock = threading.Lock()
        self._current: _Ping | None = None

    def check(self) -> str | None:
        """None when the store answered within the deadline; else why not (``StoreError`` text)."""
        with self._lock:
            ping = self._current
            if ping is None or ping.done.is_set():  # start a fresh ping; never reuse an old answer
                ping = self._current = _Ping()
                threading.Thread(target=ping.run, args=(self._ping,), name="readyz-ping", daemon=True).start()
        if not ping.done.wait(self._wait):
            return f"store did not answer within {self._wait:g}s"
        return None if ping.error is None else f"store unreachable: {ping.error}"


@dataclass
class _Ping:
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None

    def run(self, ping: Callable[[], None]) -> None:
        try:
            ping()
        except Exception as exc:  # StoreError; anything else is not an answer either
            self.error = exc
        finally:
            self.done.set()


# ------------------------------------------------------------------------------ run
ALL_PARTS = frozenset({"checks", "listener", "alerts", "slo"})


def run_parts(config: Config) -> frozenset[str]:
    """The parts ``run`` starts: all of them, but the listener when ``listener.elsewhere`` says a
    ``listen`` process follows the chain (this one then only judges the heartbeat it writes)."""
    return ALL_PARTS - {"listener"} if config.listener.elsewhere else ALL_PARTS


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
    stop: threading.Event = field(default_factory=threading.Event)  # ``serve`` shuts down once set
    exit_code: int = EXIT_OK  # what ``serve`` ends the process with
    on_signal: list[Callable[[], None]] = field(default_factory=list)  # wrap up now (nothing is lost)
    on_overdue: list[Callable[[], None]] = field(default_factory=list)  # the grace is over: abandon work
    on_stop: list[Callable[[], None]] = field(default_factory=list)  # release resources once it has
    # More of /healthz: each says (False, why) when a part's own thread died (the alert engine, a channel).
    health_checks: list[Callable[[], tuple[bool, str]]] = field(default_factory=list)
    redact: Redactor = field(default_factory=lambda: Redactor([]))  # the process's one redactor (JWT too)
    ready_ping: ReadinessPing = field(init=False)
    _chain_rpc: EndpointPool | None = field(default=None, init=False, repr=False)
    _chain_rpc_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.ready_ping = ReadinessPing(self.store.ping)

    def chain_rpc(self, session: requests.Session) -> EndpointPool:
        """The process's one pool of the listener's endpoints (contract-event rules and chain checks
        call through it): the listener's own when it runs here, else one built on first use over
        ``session``. One pool, so each endpoint's state (heads, cool-downs, chain id) and its
        ``blocktrust_listener_rpc_endpoint_*`` series are those of every caller."""
        if self.listener is not None:
            return self.listener.rpc
        with self._chain_rpc_lock:
            if self._chain_rpc is None:
                self._chain_rpc = EndpointPool.for_listener(self.config.listener, session, self.metrics, self.clock)
            return self._chain_rpc

    def ensure_schema(self) -> None:
        """Migrate once the store answers; until then results wait in the buffer."""
        if not self.schema_ready.is_set():
            version = self.store.migrate()
            self.schema_ready.set()
            log.info("store ready kind=%s schema_version=%d", self.store.kind, version)

    def store_job(self) -> None:
        try:
            self.ensure_schema()
        except MigrationError as exc:
            # The store came back and refused the migration: retrying would fail the same way.
            log.critical("%s; exiting", self.redact(str(exc)))
            self.exit_code = EXIT_FAILURE
            self.stop.set()
            return
        except StoreError as exc:
            self.metrics.store_write_errors.inc()
            log.error("store unreachable; retrying in %gs error=%r", STORE_RETRY_SECONDS, str(exc))
            return
        self.writer.wake()  # the writer thread retries on its own too; now the schema is there

    def healthy(self) -> tuple[bool, str]:
        """``/healthz``: the process answers, no scheduled job is stalled (see ``scheduler.py``) and no
        part's own thread (the alert engine, a channel's worker) has died."""
        live, reason = self.scheduler.health()
        if not live:
            return live, reason
        for check in self.health_checks:
            live, reason = check()
            if not live:
                return live, reason
        return True, reason

    def ready(self) -> tuple[bool, str]:
        """``/readyz``: healthy, and the store answers with its schema migrated."""
        if not self.scheduler.running:
            return False, "scheduler not running"
        live, reason = self.healthy()
        if not live:
            return False, reason
        # Asked first (within READY_PING_SECONDS, however the store hangs): a store that does not
        # answer is why the schema is not there yet either.
        problem = self.ready_ping.check()
        if problem is not None:
            return False, self.redact(problem)
        if not self.schema_ready.is_set():
            return False, "store not migrated yet"
        return True, "ready"


def build_runtime(
    config: Config, parts: frozenset[str] = ALL_PARTS, clock: Clock | None = None, redactor: Redactor | None = None
) -> Runtime:
    """Assemble the components ``parts`` asks for and schedule their jobs (not started yet). ``redactor``
    masks secrets in every output (give the log handler's, so that the JWT is masked there too)."""
    clock = clock or SystemClock()
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=config.slo.latency_ms / 1000, version=exporter_version())
    store = make_store(config)
    writer = BufferedWriter(store, metrics, capacity=config.store.buffer_size, retry_seconds=STORE_RETRY_SECONDS)
    redact = redactor if redactor is not None else Redactor(config.secrets())
    rt = Runtime(config, clock, registry, metrics, store, writer, Scheduler(metrics, clock), redact=redact)
    rt.scheduler.add(Job("store", rt.store_job, STORE_RETRY_SECONDS, run_at_start=False))
    try:
        rt.ensure_schema()  # before the components, which read the store as they start
    except MigrationError as exc:
        store.close()  # the database answered and refused: retrying would fail the same way
        raise ExitError(redact(str(exc)), EXIT_FAILURE) from None
    except StoreError as exc:
        log.error("store unreachable at start; will retry every %gs error=%r", STORE_RETRY_SECONDS, str(exc))
    try:
        _add_components(rt, parts, redact)
    except ConfigError as exc:
        store.close()
        raise ExitError(str(exc), EXIT_USAGE) from None
    return rt


def _add_components(rt: Runtime, parts: frozenset[str], redact: Redactor) -> None:
    config, clock, metrics, store = rt.config, rt.clock, rt.metrics, rt.store
    checks = resolve_checks(config) if "checks" in parts else []
    listener_on = "listener" in parts and config.listener.enabled and bool(config.listener.rpc_endpoints)

    # Alerts: the engine decides, the notifier's workers send (off the check path). When the listener
    # runs in another process (`listen`), each process manages only its own incidents.
    if listener_on and not checks:
        owned: Callable[[str], bool] | None = owned_checks(LISTENER_INCIDENTS)
    elif not listener_on:
        owned = owned_checks(exclude=LISTENER_INCIDENTS)
    else:
        owned = None
    session = requests.Session()
    # Notices go through the store's outbox: retried across restarts and replicas, never lost silently.
    notifier = build_notifier(config.alerting, metrics, clock, session, redact=redact, store=store)
    known: Callable[[str], bool] | None = None
    dependencies = check_dependencies(checks, config.source)
    if checks:
        # The process that runs the checks resolves the incidents of checks no longer configured.
        names = frozenset(check.name for check in checks) | (frozenset({LOGIN}) if LOGIN in dependencies else set())

        def known(check_name: str) -> bool:
            if check_name.startswith(SLO_INCIDENT_PREFIX):
                return check_name.removeprefix(SLO_INCIDENT_PREFIX) in names
            return check_name in names or check_name in LISTENER_INCIDENTS

    engine = AlertEngine(
        store,
        notifier,
        clock,
        metrics,
        config.alerting,
        policies=check_policies(config.alerting, checks),
        redact=redact,
        owned=owned,
        known=known,
        # An unconfigured check's incident is left open while any process (a replica on another
        # configuration) recorded a result for it within three check intervals.
        removed_after=REMOVED_CHECK_INTERVALS * config.checks.interval,
        dependencies=dependencies,
    )
    rt.parts["alerts"] = "alerts" in parts
    if rt.parts["alerts"]:
        notifier.start()
        engine.start()  # from now on no caller (a check round) waits for the engine's store calls
        rt.health_checks += [engine.health, notifier.health]
        rt.scheduler.add(Job("alerts", engine.tick, ALERT_TICK_SECONDS, run_at_start=False))
        _add_event_rules(rt, notifier, redact)

    rt.parts["checks"] = bool(checks)  # (the banner lists the parts in this order)
    rt.parts["listener"] = listener_on
    if listener_on:

        def on_critical(title: str, detail: str) -> None:
            engine.raise_critical(LISTENER_INCIDENT, title, detail)

        def on_quarantined(title: str, detail: str) -> None:
            # Open until an operator has dealt with the quarantined rows (re-inserted or deleted them).
            engine.raise_critical(LISTENER_QUARANTINE_INCIDENT, title, detail)

        def on_quarantine_cleared() -> None:
            engine.resolve(LISTENER_QUARANTINE_INCIDENT)

        def on_recovered() -> None:
            engine.resolve(LISTENER_INCIDENT)  # ingesting again: a halt's incident is over

        settings = config.listener
        # "Caught up" allows for the blocks the listener keeps behind the head on purpose.
        margin = settings.confirmations + AT_HEAD_MARGIN_BLOCKS
        margin += TAGGED_HEAD_MARGIN_BLOCKS if settings.follow != "latest" else 0
        catch_up = CatchUpReporter(clock, margin=margin)  # a progress line every few seconds of a backlog
        rt.listener = Listener(
            settings,
            store,
            metrics,
            clock,
            on_critical=on_critical,
            on_recovered=on_recovered,
            on_progress=catch_up.observe,
            on_quarantined=on_quarantined,
            on_quarantine_cleared=on_quarantine_cleared,
        )
        try:
            rt.listener.check_chain()  # a URL of another network: one line, exit 2
        except ConfigError:
            rt.listener.close()
            raise
        rt.on_signal.append(rt.listener.request_stop)
        rt.on_stop.append(rt.listener.close)
        # A poll that used its time budget with backlog left runs again at once (back to back).
        rt.scheduler.add(Job("listener", rt.listener.poll_once, settings.poll_interval, again=backlog_left))

    if checks:
        report_round = RoundReporter()
        pinger = _heartbeat(rt, session, redact)

        def on_results(results: Sequence[CheckResult]) -> None:
            if rt.parts["alerts"]:
                engine.observe(results)
            if results:  # a standby replica (checks.run_on) runs no check: no round line
                report_round(results)  # "round 12: 9/9 ok, slowest api.events 14 ms"
            if pinger is not None:
                writing = rt.schema_ready.is_set() and not rt.writer.in_outage
                pinger.round_done(round_healthy(results, rt.healthy()[0], writing))

        def forget(names: Sequence[str]) -> None:
            for name in names:
                metrics.forget_check(name)  # another replica reports it now

        # Replicas on one store: which checks this one runs (checks.run_on).
        placement = Placement(config.checks.run_on, store, clock, config.checks.interval, on_dropped=forget)
        log.info("checks.run_on=%s replica=%s", placement.run_on, placement.replica_id)
        if placement.run_on != "all":
            # Not called here: start-up must not wait on the store (the first round asks it, see assign).
            rt.scheduler.add(Job("replicas", placement.heartbeat, placement.heartbeat_interval))
        rt.on_stop.insert(0, placement.leave)  # first: the others take over at once

        # The listener checks wait for this process's listener's first poll (ListenerStartGrace).
        grace = ListenerStartGrace(rt.listener.first_poll_done, clock, config.listener.max_lag) if rt.listener else None
        chain = chain_checks_reader(config, checks, metrics, clock, session, pool=lambda: rt.chain_rpc(session))
        round_ = CheckRound(
            config,
            metrics=metrics,
            record=rt.writer.record,
            clock=clock,
            store=store,
            on_results=on_results,
            hold=grace,
            redactor=redact,
            assign=placement.assign,
            chain=chain,
        )
        rt.on_overdue.append(round_.cancel)
        rt.on_stop.append(round_.close)
        rt.scheduler.add(Job("checks", round_.run_once, config.checks.interval))

    rt.parts["slo"] = "slo" in parts
    if rt.parts["slo"]:
        # It judges only the checks this process runs (a replica may run others).
        reporter = SloReporter(store, metrics, config.slo, clock, engine=engine, checks=[c.name for c in checks])
        rt.scheduler.add(Job("slo", reporter.run_once, config.slo.report_interval))
        rt.scheduler.add(
            Job("retention", lambda: purge_old_results(store, clock, config.slo.retention), RETENTION_SECONDS)
        )

    if rt.parts["alerts"]:
        # Last, so that notices raised while the other parts stop still go out.
        rt.on_stop.append(lambda: engine.stop(timeout=2.0))
        rt.on_stop.append(lambda: notifier.stop(timeout=2.0))
    rt.on_stop.append(session.close)


def _add_event_rules(rt: Runtime, notifier: Notifier, redact: Redactor) -> None:
    """The contract-event rules' job, every listener poll interval (README "Contract-event rules")."""
    config = rt.config
    rules = event_rules(config)
    if rules is None:
        log.info("event rules off: no contracts_config to check them against")
        return
    if not rules:
        return
    listener = config.listener
    finalized: Callable[[], int | None] | None = None
    if listener.rpc_endpoints and listener.enabled:
        session = requests.Session()
        rt.on_stop.append(session.close)

        def finalized() -> int | None:
            try:
                # Asked when the job runs: by then the listener (built after the rules) shares its pool.
                block = rt.chain_rpc(session).block("finalized")
            except (RpcError, TransientRpcError) as exc:  # not served (an old node), or down: the fallback depth
                log.debug("event rules: no finalized block from the node: %s", redact(str(exc)))
                return None
            return None if block is None else block.number

    fallback_depth = (
        listener.max_reorg_depth
        if listener.max_reorg_depth is not None
        else default_reorg_depth(listener.expected_chain_id, None).blocks
    )
    runner = EventRuleRunner(
        rules,
        rt.store,
        notifier,
        rt.clock,
        rt.metrics,
        # Following safe/finalized blocks, the listener stores only final events.
        # Where the node names no finalized block: the configured depth, else the chain table's depth
        # for expected_chain_id (64 when unknown), as the listener would roll back.
        finalized_depth=None if listener.follow != "latest" else fallback_depth,
        finalized=finalized,
        redact=redact,
    )
    rt.scheduler.add(Job("event_rules", runner.run_once, listener.poll_interval))
    described = (f"{r.name} ({r.spec.event}, {r.spec.severity}, {r.spec.mode}, {r.spec.confirmations})" for r in rules)
    log.info("event rules: %s", ", ".join(described))


def chain_checks_reader(
    config: Config,
    checks: Sequence[CheckSpec],
    metrics: Metrics,
    clock: Clock,
    session: requests.Session,
    *,
    pool: Callable[[], EndpointPool] | None = None,
) -> ChainReader | None:
    """The chain kinds' view of the chain: the endpoint pool of the listener's settings (``pool()``, the
    process's shared one; without it, one of its own over ``session``) and each ``eth_call`` check's
    resolved call; None when no chain check runs (they are off without an RPC URL). ``ConfigError``
    for an ``eth_call`` that does not fit the ABIs."""
    if not config.listener.rpc_endpoints or not any(spec.kind in CHAIN_KINDS for spec in checks):
        return None
    views = resolve_view_calls(config, checks)
    rpc = pool() if pool is not None else EndpointPool.for_listener(config.listener, session, metrics, clock)
    return ChainReader(rpc, views, errors=(RpcError, TransientRpcError, RangeRefusedError))


def _heartbeat(rt: Runtime, session: requests.Session, redact: Redactor) -> HeartbeatPinger | None:
    """The dead man's switch, when ``alerting.heartbeat_url`` is set: started, and stopped first at
    shutdown (a stopping exporter must not look alive)."""
    settings = rt.config.alerting
    if settings.heartbeat_url is None:
        return None
    pinger = HeartbeatPinger(
        settings.heartbeat_url.get_secret_value(),
        session,
        rt.metrics,
        method=settings.heartbeat_method,
        timeout=settings.timeout,
        redact=redact,
    )
    pinger.start()
    rt.on_signal.append(lambda: pinger.stop(timeout=1.0))
    return pinger


def serve(
    config: Config,
    *,
    parts: frozenset[str] = ALL_PARTS,
    duration: float | None = None,
    title: str = "BLOCKTRUST MONITORING SYSTEM",
    cleanup: Callable[[], None] | None = None,
    log_format: str = "logfmt",
    redactor: Redactor | None = None,
) -> NoReturn:
    """Run until SIGTERM/SIGINT (or ``duration``), shut down cleanly, run ``cleanup`` (what the caller
    started around the exporter) and end the process. Logging must be set up, in ``log_format``
    (the banner follows it: plain lines, or one JSON record)."""
    security = web_security(config)  # before anything starts: a bad file is a usage error
    rt = build_runtime(config, parts, redactor=redactor)
    if rt.parts.get("listener"):
        raise_gc_thresholds()  # for the catch-up's allocations (gc_thresholds.py)
    print_banner(config, rt.parts, title=title, security=security, log_format=log_format)
    if security.auth is not None and security.tls is None:
        log.warning("basic auth without TLS: passwords cross the network readable; add tls_server_config")
    try:
        server = http_server(rt, security)
    except OSError as exc:
        rt.store.close()
        raise ExitError(f"cannot listen on {config.server.listen}: {exc.strerror}", EXIT_FAILURE) from None
    stop = rt.stop

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received; shutting down signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    rt.writer.start()  # results are written off the check thread from now on
    rt.scheduler.start()
    log.info("exporter started version=%s listen=%s", exporter_version(), config.server.listen)
    stop.wait(duration)
    deadline = time.monotonic() + SHUTDOWN_DEADLINE_SECONDS
    shutdown(rt, server, deadline)
    if cleanup is not None:
        _run_before([cleanup], deadline)
    exit_by(deadline, rt.exit_code)


def print_banner(config: Config, parts: dict[str, bool], *, title: str, security: WebSecurity, log_format: str) -> None:
    """The start-up banner on stderr: 16 lines for a person, or with ``log_format`` json one log record
    carrying the same fields (``event: banner``), so that a log shipper parses every line."""
    access = security.describe()
    if log_format == "json":
        fields = banner_fields(config, parts, title=title, scheme=security.scheme, access=access)
        log.info("%s v%s starting", title, fields["version"], extra={"event": "banner", **fields})
        return
    for line in banner_lines(config, parts, title=title, scheme=security.scheme, access=access):
        print(line, file=sys.stderr, flush=True)


def http_server(rt: Runtime, security: WebSecurity) -> HttpServer:
    """The server for ``rt``: every route it serves (the status page included), behind ``security``
    (TLS, basic auth). Not started; ``OSError`` if the address is taken."""
    return HttpServer(
        rt.config.server.listen,
        rt.registry,
        rt.ready,
        rt.healthy,
        extra_routes=status_routes(status_builder(rt)),
        guard=security.wrap,
        tls=security.tls,
    )


def status_builder(rt: Runtime) -> StatusBuilder:
    """The status page's data source: the checks this process runs, and the reorg count when the
    listener runs here (another process's listener shows through its heartbeat rows only)."""
    registry = rt.registry
    return StatusBuilder(
        rt.config,
        rt.store,
        rt.clock,
        checks=resolve_checks(rt.config) if rt.parts.get("checks") else (),
        version=exporter_version(),
        reorgs=(lambda: registry.get_sample_value("blocktrust_listener_reorgs_total")) if rt.listener else None,
        store_check=rt.ready_ping.check,  # at most READY_PING_SECONDS, however the store hangs
    )


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
    rt.writer.stop(timeout=0)  # the final flush below takes over (after a write in progress)
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
    """End the process once shutdown is done. Worker threads of libraries (a check's pool, a check
    still waiting on a socket) would otherwise be joined at interpreter exit (concurrent.futures
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

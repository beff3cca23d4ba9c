"""One round of checks: run them concurrently, bounded, then record every result once.

``CheckRound(config, ...)`` resolves the checks (the nine defaults of SPEC §1 overlaid with
``checks.items`` by name), builds the shared JWT session and HTTP client, and owns a thread
pool of ``checks.concurrency`` workers. ``run_once()`` never raises: it runs every check
(each bounded by its hard deadline), waits at most ``checks.interval`` for the round so a hung
API can never delay the next one, then updates the four check metrics, hands all results to
``record`` (one store write per round) and to ``on_results`` (the alerting engine).

Not for scheduling (``scheduler.py`` calls ``run_once``) nor for storage or alert decisions.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.clock import Clock
from exporter.config import CHAIN_KINDS, CheckSpec, Config, ConfigError, default_checks
from exporter.config.checks import LISTENER_CHECKS
from exporter.metrics import Metrics
from exporter.probes import conditions
from exporter.probes.chain import ChainReader
from exporter.probes.httpclient import HttpClient
from exporter.probes.kinds import PROBES
from exporter.probes.probe import ERROR_CLASSES, HeartbeatSource, Outcome, ProbeContext
from exporter.probes.session import JwtSession
from exporter.redact import Redactor
from exporter.store.base import CheckResult

_CANCEL_POLL_SECONDS = 0.1  # how quickly a round in flight notices cancel()

log = logging.getLogger(__name__)

ResultSink = Callable[[Sequence[CheckResult]], None]
HoldCheck = Callable[[CheckSpec], bool]
AssignChecks = Callable[[Sequence[CheckSpec]], Sequence[CheckSpec]]


class ListenerStartGrace:
    """The start-up grace of an in-process listener: a ``CheckRound`` ``hold``.

    The ``listener.lag`` and ``listener.progress`` checks judge the listener's heartbeat, which the
    listener writes at the end of its first poll (or of each range it stores while catching up). A
    round that runs before that would report a listener that never had a chance as failing
    (``no_heartbeat``), and the SLO would count it. So, until ``first_poll`` is set (the first poll
    returned, whatever its outcome, or stored a heartbeat), the rounds skip those checks: no result,
    no metric sample, no incident. The grace ends at the latest ``limit`` seconds (``listener.max_lag``:
    the heartbeat age ``listener.lag`` tolerates anyway) after the first round asked, so a first poll
    that hangs is reported. Thread-safe."""

    def __init__(self, first_poll: threading.Event, clock: Clock, limit: float) -> None:
        self._first_poll = first_poll
        self._clock = clock
        self._limit = limit
        self._since: float | None = None
        self._over = False
        self._lock = threading.Lock()

    def __call__(self, spec: CheckSpec) -> bool:
        """True while ``spec`` must wait for the listener's first poll."""
        if spec.kind not in LISTENER_CHECKS:
            return False
        with self._lock:
            if self._over:
                return False
            now = self._clock.monotonic()
            if self._since is None:
                self._since = now
            if self._first_poll.is_set() or now - self._since >= self._limit:
                self._over = True
                return False
            return True


def validate_conditions(config: Config) -> None:
    """Parse every condition of ``checks.items``; ``ConfigError`` naming the first that does not parse
    (``config.yaml: checks.items[0].conditions[1]: ...``). The configuration keeps conditions as
    text; their language belongs to the probes (``conditions.py``)."""
    for i, spec in enumerate(config.checks.items):
        for j, text in enumerate(spec.conditions):
            try:
                conditions.parse(text)
            except conditions.ConditionSyntaxError as exc:
                raise ConfigError(f"{config.source}: checks.items[{i}].conditions[{j}]: {exc}") from None
        for j, text in enumerate(spec.non_decreasing):
            try:
                conditions.parse_placeholder(text)
            except conditions.ConditionSyntaxError as exc:
                raise ConfigError(f"{config.source}: checks.items[{i}].non_decreasing[{j}]: {exc}") from None


def resolve_checks(config: Config) -> list[CheckSpec]:
    """The enabled checks: defaults (those the configuration can run) overlaid by ``checks.items``.

    Raises ``ConfigError`` when a check cannot work with this configuration, so the problem
    shows at start-up rather than as a check failing forever.
    """
    validate_conditions(config)
    defaults = default_checks() if config.checks.include_defaults else []
    if config.api.base_url is None:
        defaults = [spec for spec in defaults if spec.path is None]  # no API to probe
    if not config.listener.heartbeat_expected:
        # No listener here (no RPC URL) and none elsewhere: the banner says these are not run.
        defaults = [spec for spec in defaults if spec.name not in LISTENER_CHECKS]
    by_name = {spec.name: spec for spec in defaults}
    for item in config.checks.items:
        by_name[item.name] = item  # a user item replaces the default of the same name
    checks = [spec for spec in by_name.values() if spec.enabled]
    if not config.listener.rpc_endpoints:
        checks = [spec for spec in checks if spec.kind not in CHAIN_KINDS]  # off: the banner names them
    for spec in checks:
        if spec.kind in LISTENER_CHECKS and not config.listener.heartbeat_expected:
            raise ConfigError(
                f"{config.source}: checks: {spec.name}: no listener writes a heartbeat to judge (set "
                "listener.rpc_url, or listener.elsewhere: true when `listen` runs in another process)"
            )
        if spec.kind not in PROBES:
            raise ConfigError(f"{config.source}: checks: {spec.name}: unknown kind {spec.kind!r}")
        if spec.path is not None and spec.url is None and config.api.base_url is None:
            raise ConfigError(
                f"{config.source}: checks: {spec.name}: has a path but api.base_url (API_BASE) is not set"
            )
    needing_login = [spec.name for spec in checks if spec.auth]
    if needing_login and (not config.api.email or config.api.password is None):
        raise ConfigError(
            f"{config.source}: api.email and api.password (JWT_MONITOR_EMAIL, JWT_MONITOR_PASS) are "
            f"required by checks with auth: {', '.join(needing_login)}"
        )
    return checks


def run_one(
    config: Config,
    name: str,
    *,
    clock: Clock,
    store: HeartbeatSource | None = None,
    redactor: Redactor | None = None,
    chain: ChainReader | None = None,
) -> CheckResult:
    """Run the enabled check ``name`` once as a round would (its own login, its deadline), recording
    nothing and feeding no alert; ``KeyError`` when no enabled check has that name. ``chain``: the
    RPC for a chain kind (``chain.head``, ``eth_call``, ``balance``). For ``blocktrust-exporter check NAME``."""
    spec = next((spec for spec in resolve_checks(config) if spec.name == name), None)
    if spec is None:
        raise KeyError(name)
    tree = config.model_dump(by_alias=True)
    tree["checks"] = {**tree["checks"], "include_defaults": False, "items": [spec.model_dump(by_alias=True)]}
    alone = Config.model_validate(tree)
    metrics = Metrics(CollectorRegistry(), slo_latency_seconds=config.slo.latency_ms / 1000, version="check")
    checks = CheckRound(
        alone, metrics=metrics, record=lambda _results: None, clock=clock, store=store, redactor=redactor, chain=chain
    )
    try:
        [result] = checks.run_once()
    finally:
        checks.close()
    return result


class CheckRound:
    """Runs the configured checks; see the module docstring. Call ``close()`` when done."""

    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics,
        record: ResultSink,
        clock: Clock,
        store: HeartbeatSource | None = None,
        client: HttpClient | None = None,
        on_results: ResultSink | None = None,
        timer: Callable[[], float] = time.perf_counter,
        hold: HoldCheck | None = None,
        redactor: Redactor | None = None,
        assign: AssignChecks | None = None,
        chain: ChainReader | None = None,
    ) -> None:
        """``hold``: asked for each check at each round; True skips it this round, unrecorded
        (e.g. ``ListenerStartGrace``). ``assign``: asked at the start of each round which of the
        checks this process runs (``exporter.replicas.Placement``: replicas sharing a store); the
        others are not run here, unrecorded. Default: all of them. ``chain``: the RPC for the chain
        kinds (``chain.head``, ``eth_call``, ``balance``); without it they fail with ``config``."""
        self.checks = resolve_checks(config)
        self._hold = hold
        self._assign = assign
        # Results leave the probes here, and only here: every text in them is masked once, for the
        # store, the alerts, the status page and the logs alike (a server may echo any secret).
        self._redactor = redactor if redactor is not None else Redactor(config.secrets())
        self._metrics = metrics
        self._record = record
        self._on_results = on_results
        self._clock = clock
        self._timer = timer
        self._owns_client = client is None
        self._client = client or HttpClient(timer=timer)
        self._budget = config.checks.interval
        self._cancelled = threading.Event()
        self._failing: set[str] = set()  # checks whose last run failed: their next success is logged
        self.session = _session(config, self._client, clock, self._redactor) if config.api.base_url else None
        self._ctx = ProbeContext(
            client=self._client,
            session=self.session,
            clock=clock,
            heartbeats=store,
            base_url=config.api.base_url,
            default_timeout=config.checks.timeout,
            max_body_bytes=config.checks.max_body_bytes,
            max_listener_lag=config.listener.max_lag,
            chain=chain,
        )
        workers = max(1, min(config.checks.concurrency, len(self.checks)))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check")

    def cancel(self) -> None:
        """Shutting down: a round in flight returns at once, recording the checks that finished and
        dropping those still running (they were not failures; there is just no time left)."""
        self._cancelled.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_client:
            self._client.close()

    def run_once(self) -> list[CheckResult]:
        """Run every check once and record the results; never raises."""
        try:
            timed = self._run_all()
        except Exception:
            log.exception("check round failed")
            return []
        self._publish(timed)
        return [result for result, _ in timed]

    def _run_all(self) -> list[tuple[CheckResult, float]]:
        if self.session is not None:
            self.session.start_round()
        round_ts = self._clock.now()
        round_start = self._timer()
        specs = self.checks if self._assign is None else self._assign(self.checks)
        held = [spec.name for spec in specs if self._hold is not None and self._hold(spec)]
        if held:
            log.info("waiting for the listener's first poll; not run this round checks=%s", ",".join(held))
        futures: list[tuple[CheckSpec, Future[tuple[CheckResult, float]]]] = [
            (spec, self._pool.submit(self._run_check, spec)) for spec in specs if spec.name not in held
        ]
        pending = {future for _, future in futures}
        while pending and not self._cancelled.is_set():
            remaining = self._budget - (self._timer() - round_start)
            if remaining <= 0:
                break
            _, pending = wait(pending, timeout=min(remaining, _CANCEL_POLL_SECONDS))
        timed: list[tuple[CheckResult, float]] = []
        for spec, future in futures:
            if future.done() and not future.cancelled():
                timed.append(future.result())  # _run_check never raises
                continue
            if self._cancelled.is_set():
                future.cancel()
                log.info("check interrupted by shutdown; not recorded check=%s", spec.name)
                continue
            # Queued behind slow checks, or running past the round (a timeout longer than the
            # interval): record the miss now; a late verdict is dropped rather than delaying this round.
            future.cancel()
            outcome = Outcome(
                ok=False, error="round_timeout", reason=f"not finished within the {self._budget:g}s round"
            )
            timed.append(self._result(spec, outcome, round_ts, self._timer() - round_start))
        return timed

    def _run_check(self, spec: CheckSpec) -> tuple[CheckResult, float]:
        ts = self._clock.now()
        start = self._timer()
        try:
            outcome = PROBES[spec.kind](spec, self._ctx)
        except Exception as exc:  # a probe bug must not hide the other checks
            log.exception("check %s crashed", spec.name)
            outcome = Outcome(ok=False, error="internal_error", reason=type(exc).__name__)
        seconds = outcome.seconds if outcome.seconds is not None else self._timer() - start
        return self._result(spec, outcome, ts, seconds)

    def _result(self, spec: CheckSpec, outcome: Outcome, ts: datetime, seconds: float) -> tuple[CheckResult, float]:
        details = {
            key: self._redactor(value) if isinstance(value, str) else value for key, value in outcome.details().items()
        }
        result = CheckResult(
            check_name=spec.name,
            ok=outcome.ok,
            latency_ms=round(seconds * 1000),
            details=details,
            ts=ts,
            uid=uuid.uuid4().hex,
        )
        return result, seconds

    def _record_failure_class(self, result: CheckResult) -> None:
        try:
            self._metrics.record_failure(result.check_name, *failure_labels(result.details))
        except Exception:
            log.exception("cannot update the failure class of %s", result.check_name)

    def _publish(self, timed: list[tuple[CheckResult, float]]) -> None:
        for result, seconds in timed:
            try:
                self._metrics.record_check(result.check_name, result.ok, seconds, result.ts.timestamp())
            except Exception:
                log.exception("cannot update the metrics of %s", result.check_name)
            lag = result.details.get("lag_seconds")
            if isinstance(lag, float | int):
                # The heartbeat the listener.lag check read (also when the listener runs elsewhere).
                self._metrics.heartbeat_seen(result.ts.timestamp() - lag)
            if not result.ok:
                self._record_failure_class(result)
                self._failing.add(result.check_name)
                log.warning(
                    "check failed check=%s error=%s reason=%r",
                    result.check_name,
                    result.details["error"],
                    result.details["reason"],
                )
            elif result.check_name in self._failing:
                self._failing.discard(result.check_name)
                log.info("check recovered check=%s", result.check_name)
        results = [result for result, _ in timed]
        for name, sink in (("record", self._record), ("on_results", self._on_results)):
            if sink is None:
                continue
            try:
                sink(results)
            except Exception:
                log.exception("check round: %s failed", name)


def failure_labels(details: dict[str, Any]) -> tuple[str, int | None]:
    """The bounded (error class, HTTP status) of a failed result's details: a class outside
    ``ERROR_CLASSES`` reads ``internal_error``, a status outside 100-599 none."""
    error = details.get("error")
    status = details.get("status_code")
    error_class = error if isinstance(error, str) and error in ERROR_CLASSES else "internal_error"
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return error_class, status
    return error_class, None


def _session(config: Config, client: HttpClient, clock: Clock, redactor: Redactor) -> JwtSession:
    assert config.api.base_url is not None
    return JwtSession(
        client,
        clock,
        login_url=config.api.base_url + config.api.login_path,
        email=config.api.email,
        password=config.api.password,
        refresh_margin=config.api.token_refresh_margin,
        default_lifetime=config.api.default_token_lifetime,
        timeout=config.checks.timeout,
        max_body_bytes=config.checks.max_body_bytes,
        redactor=redactor,
    )

"""Every Prometheus metric the exporter exposes (SPEC §4), defined once.

``Metrics`` registers on the ``CollectorRegistry`` it is given (never the global default), so
each test builds a fresh registry and reads values with ``registry.get_sample_value``. Other
modules receive the ``Metrics`` object and only update it; none defines a metric of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# Check latencies: fine below a second (where the SLO objective usually is), coarse above.
_CHECK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def check_buckets(slo_latency_seconds: float) -> tuple[float, ...]:
    """The check histogram's bounds, always including the latency objective so that the
    latency SLO can be computed exactly from ``_bucket{le="<objective>"}``."""
    return tuple(sorted({*_CHECK_BUCKETS, round(slo_latency_seconds, 6)}))


class HeartbeatAge(Collector):
    """``blocktrust_listener_lag_seconds``, computed at scrape time from the newest heartbeat seen.

    A gauge set by a job would freeze at its last value exactly when the listener (or the job)
    stops, which is when the lag matters; this one keeps growing. Absent until a heartbeat is seen.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._newest: float | None = None
        self._lock = threading.Lock()

    def seen(self, unix_time: float) -> None:
        with self._lock:
            self._newest = unix_time if self._newest is None else max(self._newest, unix_time)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            newest = self._newest
        if newest is not None:
            yield GaugeMetricFamily(
                "blocktrust_listener_lag_seconds",
                "Age of the listener's newest heartbeat.",
                value=max(0.0, self._now() - newest),
            )


# Families whose ``_created`` sample client_python adds (the time the series was created).
_WITH_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


def _without_created(metric: Metric) -> Metric:
    if metric.type not in _WITH_CREATED:
        return metric
    trimmed = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    trimmed.samples = [s for s in metric.samples if s.name != metric.name + "_created"]
    return trimmed


class Exposition(Collector):
    """What ``/metrics`` serves: ``registry`` without client_python's ``_created`` samples, which
    Prometheus ignores and which made 38 of 282 series.

    A view over the one registry served, rather than ``prometheus_client.disable_created_metrics()``:
    that flips a module-wide switch for every registry in the process (a test's, a library's), which
    is the global state the injected registry exists to avoid. ``restricted_registry`` keeps the
    ``?name[]=`` filter of client_python's WSGI app working.
    """

    def __init__(self, registry: Collector | CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            yield _without_created(metric)

    def restricted_registry(self, names: Iterable[str]) -> Exposition:
        if isinstance(self._registry, CollectorRegistry):
            return Exposition(self._registry.restricted_registry(names))
        return self


class Metrics:
    """The exporter's metrics, registered on ``registry``, with client_python's ``process_*`` (on
    Linux), ``python_info`` and ``python_gc_*`` collectors, which the default registry would have:
    restarts (``process_start_time_seconds``), memory and file descriptors are alertable."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        slo_latency_seconds: float,
        version: str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        # --- checks ---
        self.check_up = Gauge(
            "blocktrust_check_up",
            "1 if the last run of the check succeeded, else 0.",
            ["check"],
            registry=registry,
        )
        self.check_duration = Histogram(
            "blocktrust_check_duration_seconds",
            "Duration of check runs, successful or not.",
            ["check"],
            buckets=check_buckets(slo_latency_seconds),
            registry=registry,
        )
        self.check_runs = Counter(
            "blocktrust_check_runs",
            "Check runs by result (success or failure).",
            ["check", "result"],
            registry=registry,
        )
        self.check_last_run = Gauge(
            "blocktrust_check_last_run_timestamp_seconds",
            "Unix time of the check's last run.",
            ["check"],
            registry=registry,
        )
        # --- listener ---
        self.listener_head_block = Gauge(
            "blocktrust_listener_head_block",
            "Chain head block seen by the listener.",
            registry=registry,
        )
        self.listener_processed_block = Gauge(
            "blocktrust_listener_processed_block",
            "Last block whose events are stored.",
            registry=registry,
        )
        self.listener_lag = HeartbeatAge(now)
        registry.register(self.listener_lag)
        self.listener_events = Counter(
            "blocktrust_listener_events",
            "Contract events stored, by type.",
            ["type"],
            registry=registry,
        )
        self.listener_reorgs = Counter(
            "blocktrust_listener_reorgs",
            "Chain reorganisations rolled back.",
            registry=registry,
        )
        self.listener_quarantined = Counter(
            "blocktrust_listener_quarantined_events",
            "Events the store refused for good, kept in quarantined_events instead of events.",
            registry=registry,
        )
        self.listener_unknown_logs = Counter(
            "blocktrust_listener_unknown_logs",
            "Logs whose topic matches no followed ABI event (skipped).",
            registry=registry,
        )
        # --- listener completeness (bloom re-reads near the head, the audit of final blocks) ---
        self.listener_bloom_rechecks = Counter(
            "blocktrust_listener_bloom_rechecks",
            "Blocks whose logsBloom matched the followed contracts while eth_getLogs returned none of their "
            "logs, re-read by block hash, by result (recovered, empty, unconfirmed).",
            ["result"],
            registry=registry,
        )
        self.listener_missing_logs = Counter(
            "blocktrust_listener_missing_logs",
            "Events the audit found on chain but not stored, below the checkpoint (stored on finding).",
            registry=registry,
        )
        self.listener_audited_logs = Counter(
            "blocktrust_listener_audited_logs",
            "Events the audit re-read from final blocks (the completeness SLI's denominator).",
            registry=registry,
        )
        self.listener_audited_block = Gauge(
            "blocktrust_listener_audited_block",
            "Newest block the audit has re-read.",
            registry=registry,
        )
        self.rpc_requests = Counter(
            "blocktrust_listener_rpc_requests",
            "JSON-RPC calls by method and outcome.",
            ["method", "outcome"],
            registry=registry,
        )
        self.rpc_duration = Histogram(
            "blocktrust_listener_rpc_duration_seconds",
            "JSON-RPC call latency.",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=registry,
        )
        # Per endpoint of the RPC pool (exporter.listener.endpoints). ``endpoint`` is the endpoint's
        # index in listener.rpc_urls ("0", "1"...): URLs carry API keys, so never a URL in a label.
        self.rpc_endpoint_requests = Counter(
            "blocktrust_listener_rpc_endpoint_requests",
            "JSON-RPC requests sent to one endpoint of the pool (a batch counts once).",
            ["endpoint"],
            registry=registry,
        )
        self.rpc_endpoint_errors = Counter(
            "blocktrust_listener_rpc_endpoint_errors",
            "Failed requests of one endpoint by class (range, rate_limit, transient, permanent, batch, wrong_chain).",
            ["endpoint", "class"],
            registry=registry,
        )
        self.rpc_endpoint_range_limit = Gauge(
            "blocktrust_listener_rpc_endpoint_range_limit_blocks",
            "The eth_getLogs range width (blocks) the endpoint's refusals taught; max_chunk_size until one.",
            ["endpoint"],
            registry=registry,
        )
        self.rpc_endpoint_head_lag = Gauge(
            "blocktrust_listener_rpc_endpoint_head_lag_blocks",
            "How many blocks the endpoint's head is behind the best head of the pool.",
            ["endpoint"],
            registry=registry,
        )
        self.rpc_endpoint_up = Gauge(
            "blocktrust_listener_rpc_endpoint_up",
            "1 if the endpoint is in rotation; 0 while cooling down, stalled or dropped (wrong chain).",
            ["endpoint"],
            registry=registry,
        )
        self.rpc_endpoint_rotations = Counter(
            "blocktrust_listener_rpc_endpoint_rotations",
            "Times a call left this endpoint for another, by reason "
            "(rate_limit, transient, permanent, stalled, behind, wrong_chain).",
            ["endpoint", "reason"],
            registry=registry,
        )
        # --- SLO, incidents, alerts ---
        self.slo_uptime = Gauge(
            "blocktrust_slo_uptime_ratio",
            "Share of successful runs over the SLO window (from the DB).",
            ["check"],
            registry=registry,
        )
        self.slo_latency_p99 = Gauge(
            "blocktrust_slo_latency_p99_seconds",
            "99th percentile latency of successful runs over the SLO window (from the DB).",
            ["check"],
            registry=registry,
        )
        self.incidents_open = Gauge(
            "blocktrust_incidents_open",
            "Open incidents by severity.",
            ["severity"],
            registry=registry,
        )
        for severity in ("info", "warn", "crit"):
            self.incidents_open.labels(severity=severity).set(0)
        self.alerts_sent = Counter(
            "blocktrust_alerts_sent",
            "Notifications by channel and outcome.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.alert_delivery_attempts = Counter(
            "blocktrust_alert_delivery_attempts",
            "HTTP requests made to deliver notices, by channel.",
            ["channel"],
            registry=registry,
        )
        self.alert_delivery_failures = Counter(
            "blocktrust_alert_delivery_failures",
            "Failed delivery requests by channel and reason class (network, server_error, rate_limited, "
            "rejected, bad_answer, migrated, internal).",
            ["channel", "reason"],
            registry=registry,
        )
        self.alert_outbox_pending = Gauge(
            "blocktrust_alert_outbox_pending_notices",
            "Notices persisted in the outbox, waiting for their channel (as of this process's last look).",
            ["channel"],
            registry=registry,
        )
        self.alert_notices_abandoned = Counter(
            "blocktrust_alert_notices_abandoned",
            "Notices given up on after bounded retries (each also logged as an error), by channel and reason class.",
            ["channel", "reason"],
            registry=registry,
        )
        self.alerting_errors = Counter(
            "blocktrust_alerting_errors",
            "Unexpected errors (bugs) in an alerting thread, by worker (a channel's name, or engine); the "
            "thread logs the traceback and carries on.",
            ["worker"],
            registry=registry,
        )
        self.alert_engine_queue_full = Counter(
            "blocktrust_alert_engine_queue_full",
            "Work (a round of results, a tick, an incident raised or resolved) the alert engine's queue was "
            "too full to take, each also logged as an error.",
            registry=registry,
        )
        # --- the exporter itself ---
        self.store_write_errors = Counter(
            "blocktrust_store_write_errors",
            "Failed writes to the store (retried later).",
            registry=registry,
        )
        self.store_buffered = Gauge(
            "blocktrust_store_buffered_results",
            "Check results waiting in memory for the store.",
            registry=registry,
        )
        self.store_dropped = Counter(
            "blocktrust_store_dropped_results",
            "Check results dropped because the outage buffer was full (oldest first).",
            registry=registry,
        )
        # Not "job": Prometheus's own target label, which would turn this one into "exported_job".
        self.job_runs = Counter(
            "blocktrust_job_runs",
            "Scheduled job runs by task (the scheduler's job) and outcome.",
            ["task", "outcome"],
            registry=registry,
        )
        self.job_reruns = Counter(
            "blocktrust_scheduler_job_reruns",
            "Runs a job asked to start at once after the previous one (back to back: a listener catching up).",
            ["task"],
            registry=registry,
        )
        self.job_last_success = Gauge(
            "blocktrust_scheduler_job_last_success_timestamp_seconds",
            "Unix time the scheduled job last completed a run without error; absent until it has.",
            ["task"],
            registry=registry,
        )
        self.job_interval = Gauge(
            "blocktrust_scheduler_job_interval_seconds",
            "How often the scheduled job runs (monotonic time).",
            ["task"],
            registry=registry,
        )
        self.build_info = Gauge(
            "blocktrust_exporter_build_info",
            "Always 1; the version label tells the build.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version=version).set(1)

    def heartbeat_seen(self, unix_time: float) -> None:
        """A ``listener.tick`` heartbeat written at ``unix_time`` was written or read."""
        self.listener_lag.seen(unix_time)

    def record_check(self, check: str, ok: bool, seconds: float, at_unix: float) -> None:
        """Update the four check metrics for one result."""
        self.check_up.labels(check=check).set(1 if ok else 0)
        self.check_duration.labels(check=check).observe(seconds)
        self.check_runs.labels(check=check, result="success" if ok else "failure").inc()
        self.check_last_run.labels(check=check).set(at_unix)

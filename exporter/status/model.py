"""The status document: everything the status page shows, as one JSON-ready dict (API version 1).

``StatusBuilder.build()`` reads the store (newest result per check, 24 h of results bucketed in the
database, the SLO report of ``exporter.slo``, open incidents, the listener's heartbeat and stored
events) and returns the document that ``/api/v1/status`` serves and the page renders. Its shape is
``docs/status.schema.json`` (documented in ``docs/status.md``); a change of shape that removes or
renames a field needs a new API version. Not for rendering: ``page.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.clock import Clock
from exporter.config import HEARTBEAT_CHECK, CheckSpec, Config
from exporter.slo import SloLine, compute_report
from exporter.store import CheckResult, Incident, Store, StoreError

API_VERSION = 1
HISTORY_SECONDS = 86_400.0
HISTORY_BUCKETS = 48  # half an hour each: fits a phone's width as bars of a few pixels
EVENTS_WINDOW_SECONDS = 86_400.0
# A check whose newest result is older than this many intervals (plus its timeout) no longer runs.
STALE_INTERVALS = 3
# The listener is "behind" when more blocks than its confirmations plus this margin are unprocessed
# (right after a poll it is ``confirmations`` behind the head it saw).
BEHIND_MARGIN_BLOCKS = 2
REASON_MAX_CHARS = 300
SEVERITY_ORDER = {"crit": 0, "warn": 1, "info": 2}

ReorgCount = Callable[[], float | None]


def iso(moment: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC with a ``Z`` (seconds precision)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _finite(value: float | None, digits: int = 3) -> float | None:
    """JSON has no infinity: an overspent budget with no allowed failure is reported as null."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


@dataclass(frozen=True)
class StatusBuilder:
    """Builds the status document. ``checks``: the checks this process runs (listed even before
    their first result); checks found only in the store's last 24 h are listed too. ``reorgs``:
    the listener's reorg count when the listener runs in this process, else ``None``.
    ``store_check``: asked first, returns why the store cannot answer now (``None`` if it can), so
    that a stalled store gives a 503 at once rather than after each query's deadline."""

    config: Config
    store: Store
    clock: Clock
    checks: Sequence[CheckSpec] = ()
    version: str = ""
    reorgs: ReorgCount | None = None
    store_check: Callable[[], str | None] | None = None
    _severity: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_severity", {spec.name: spec.severity for spec in self.checks})

    def build(self) -> dict[str, Any]:
        """The document; raises ``StoreError`` when the store does not answer."""
        problem = self.store_check() if self.store_check is not None else None
        if problem is not None:
            raise StoreError(problem)
        now = self.clock.now()
        bucket_seconds = HISTORY_SECONDS / HISTORY_BUCKETS
        until = datetime.fromtimestamp(math.ceil(now.timestamp() / bucket_seconds) * bucket_seconds, UTC)
        since = until - timedelta(seconds=HISTORY_SECONDS)
        history: dict[str, tuple[list[int], list[int]]] = {}
        for bucket in self.store.result_buckets(since, until, bucket_seconds):
            if bucket.check_name == HEARTBEAT_CHECK or not 0 <= bucket.index < HISTORY_BUCKETS:
                continue
            runs, failures = history.setdefault(bucket.check_name, ([0] * HISTORY_BUCKETS, [0] * HISTORY_BUCKETS))
            runs[bucket.index] += bucket.runs
            failures[bucket.index] += bucket.failures
        names = list(dict.fromkeys([*(spec.name for spec in self.checks), *sorted(history)]))
        latest = self.store.latest_results([*names, HEARTBEAT_CHECK])
        report = compute_report(self.store, self.config.slo, self.clock)
        slo_lines = {line.check_name: line for line in report.lines}
        checks = [self._check(name, latest.get(name), history.get(name), slo_lines.get(name), now) for name in names]
        incidents = sorted(self.store.open_incidents(), key=lambda i: (SEVERITY_ORDER.get(i.severity, 9), i.opened_at))
        states = [c["state"] for c in checks]
        return {
            "api_version": API_VERSION,
            "generated_at": iso(now),
            "timezone": "UTC",
            "exporter_version": self.version,
            "refresh_seconds": self.config.status_page.refresh,
            "summary": {
                "checks": len(checks),
                **{state: states.count(state) for state in ("up", "down", "stale", "pending")},
                "open_incidents": len(incidents),
            },
            "links": {
                "metrics": "/metrics",
                "status_json": "/api/v1/status",
                "dashboards": [{"title": d.title, "url": d.url} for d in self.config.status_page.dashboards],
            },
            "history_window": {
                "since": iso(since),
                "until": iso(until),
                "bucket_seconds": bucket_seconds,
                "buckets": HISTORY_BUCKETS,
            },
            "slo_window": {
                "since": iso(report.since),
                "until": iso(report.until),
                "window_seconds": (report.until - report.since).total_seconds(),
                "uptime_target_percent": report.uptime_target_percent,
                "latency_objective_ms": report.latency_objective_ms,
                "min_runs": report.min_runs,
            },
            "checks": checks,
            "incidents": [self._incident(incident, now) for incident in incidents],
            "listener": self._listener(latest.get(HEARTBEAT_CHECK), now),
        }

    def _check(
        self,
        name: str,
        result: CheckResult | None,
        history: tuple[list[int], list[int]] | None,
        slo: SloLine | None,
        now: datetime,
    ) -> dict[str, Any]:
        runs, failures = history or ([0] * HISTORY_BUCKETS, [0] * HISTORY_BUCKETS)
        details = result.details if result is not None and isinstance(result.details, dict) else {}
        reason = details.get("reason")
        error = details.get("error")
        status_code = details.get("status_code")
        return {
            "name": name,
            "state": self._state(result, now),
            "severity": self._severity.get(name),
            "last_run": iso(result.ts) if result else None,
            # max: a replica whose clock runs ahead may have written a row "in the future".
            "age_seconds": round(max(0.0, (now - result.ts).total_seconds()), 3) if result else None,
            "ok": result.ok if result else None,
            "latency_ms": result.latency_ms if result else None,
            "status_code": status_code if isinstance(status_code, int) and not isinstance(status_code, bool) else None,
            "error": str(error)[:REASON_MAX_CHARS] if error else None,
            "reason": str(reason)[:REASON_MAX_CHARS] if reason else None,
            "history": {"runs": runs, "failures": failures},
            "slo": None if slo is None else self._slo(slo),
        }

    def _state(self, result: CheckResult | None, now: datetime) -> str:
        if result is None:
            return "pending"
        stale_after = STALE_INTERVALS * self.config.checks.interval + self.config.checks.timeout
        if (now - result.ts).total_seconds() > stale_after:
            return "stale"
        return "up" if result.ok else "down"

    @staticmethod
    def _slo(line: SloLine) -> dict[str, Any]:
        return {
            "runs": line.runs,
            "failures": line.failures,
            "uptime_percent": _finite(line.uptime_percent),
            "uptime_ok": line.uptime_ok,
            "p99_latency_ms": _finite(line.p99_latency_ms, 1),
            "latency_ok": line.latency_ok,  # None: no successful run, no p99 to judge
            "enough_runs": line.enough_runs,
            # Honest arithmetic, not clamped: -19900 is 200 times the allowed failures (the page
            # says "budget exhausted").
            "error_budget_left_percent": _finite(line.error_budget_left_percent, 1),
            "last_failure": iso(line.last_failure),
        }

    @staticmethod
    def _incident(incident: Incident, now: datetime) -> dict[str, Any]:
        return {
            "id": incident.id,
            "check": incident.check_name,
            "severity": incident.severity,
            "title": incident.title,
            "detail": incident.detail,
            "opened_at": iso(incident.opened_at),
            "age_seconds": round(max(0.0, (now - incident.opened_at).total_seconds()), 3),
            "last_notified_at": iso(incident.last_notified_at),
            # Notices held back because a check this one depends on was failing when it opened (and
            # none sent since): ``suppressed_by`` names that dependency (exporter/alerting/dependencies.py).
            "suppressed": incident.suppressed_by is not None and incident.last_notified_at is None,
            "suppressed_by": incident.suppressed_by,
        }

    def _listener(self, heartbeat: CheckResult | None, now: datetime) -> dict[str, Any] | None:
        if heartbeat is None:
            return None
        details = heartbeat.details if isinstance(heartbeat.details, dict) else {}
        head, processed = _int(details.get("head_block")), _int(details.get("processed_block"))
        behind = _int(details.get("blocks_behind"))
        if behind is None and head is not None and processed is not None:
            behind = max(0, head - processed)
        lag = max(0.0, (now - heartbeat.ts).total_seconds())
        settings = self.config.listener
        if lag > settings.max_lag:
            state = "stale"
        elif behind is not None and behind > settings.confirmations + BEHIND_MARGIN_BLOCKS:
            state = "behind"
        else:
            state = "ok"
        reorgs = self.reorgs() if self.reorgs is not None else None
        events = self.store.event_counts(now - timedelta(seconds=EVENTS_WINDOW_SECONDS))
        return {
            "state": state,
            "head_block": head,
            "processed_block": processed,
            "blocks_behind": behind,
            "heartbeat_at": iso(heartbeat.ts),
            "lag_seconds": round(lag, 3),
            "max_lag_seconds": settings.max_lag,
            "reorgs_total": None if reorgs is None else int(reorgs),
            "events_24h": events,
            "quarantined_events": self.store.quarantined_count(),
        }


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

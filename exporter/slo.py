"""The SLO report: per check over the SLO window, uptime %, p99 latency of successful runs, failures,
last failure and error budget left (SPEC §2's SQL, computed by the store identically on PostgreSQL
and SQLite).

``SloReporter.run_once`` is the scheduled job (every 12 minutes by default): it logs the table, sets
``blocktrust_slo_uptime_ratio`` / ``blocktrust_slo_latency_p99_seconds`` and opens a warn incident
through the alert engine while a check misses its objective (``slo.<check>``), resolving it once the
check is back within, or once the check has no run left in the window (removed, renamed, stopped).
A check with fewer than ``slo.min_runs`` runs in the window gets no verdict: its incident neither opens
nor resolves (at start, one early failure in six runs is not an SLO miss). An incident's detail gives
the numbers of the report that opened it and says "as of" when.
``report_command`` is ``blocktrust-exporter report``: the same numbers, printed, with no side effects.
Not for deleting old rows: that is ``retention``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from prometheus_client import Gauge

from exporter.clock import Clock
from exporter.config import HEARTBEAT_CHECK, SLO_INCIDENT_PREFIX, SloSettings, parse_duration
from exporter.metrics import Metrics
from exporter.store.base import SchemaMissingError, SloRow, Store

log = logging.getLogger(__name__)

INCIDENT_PREFIX = SLO_INCIDENT_PREFIX  # reserved in the configuration: no check may be named so


class IncidentRaiser(Protocol):
    """The part of the alert engine the reporter uses."""

    def raise_incident(self, check_name: str, severity: str, title: str, detail: str) -> None: ...

    def resolve(self, check_name: str) -> None: ...


@dataclass(frozen=True)
class SloLine:
    """One check's numbers over the window, and whether it meets each objective."""

    check_name: str
    runs: int
    successes: int
    failures: int
    uptime_percent: float
    p99_latency_ms: float | None
    last_failure: datetime | None
    error_budget_left_percent: float  # 100 = untouched, 0 = spent, negative = overspent
    uptime_ok: bool
    latency_ok: bool | None  # None when no successful run gave a latency to judge
    enough_runs: bool = True  # runs >= slo.min_runs: the SLO incident may open or resolve

    @property
    def ok(self) -> bool:
        """Within both objectives (a latency with nothing to judge does not miss)."""
        return self.uptime_ok and self.latency_ok is not False


@dataclass(frozen=True)
class SloReport:
    since: datetime
    until: datetime
    uptime_target_percent: float
    latency_objective_ms: int
    lines: tuple[SloLine, ...]
    min_runs: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "window_seconds": (self.until - self.since).total_seconds(),
            "uptime_target_percent": self.uptime_target_percent,
            "latency_objective_ms": self.latency_objective_ms,
            "min_runs": self.min_runs,
            "checks": [
                {
                    "check": line.check_name,
                    "runs": line.runs,
                    "successes": line.successes,
                    "failures": line.failures,
                    "uptime_percent": line.uptime_percent,
                    "p99_latency_ms": line.p99_latency_ms,
                    "last_failure": line.last_failure.isoformat() if line.last_failure else None,
                    "error_budget_left_percent": line.error_budget_left_percent,
                    "uptime_ok": line.uptime_ok,
                    "latency_ok": line.latency_ok,
                    "enough_runs": line.enough_runs,
                }
                for line in self.lines
            ],
        }

    def to_table(self) -> str:
        header = (
            f"SLO report {_time(self.since)} .. {_time(self.until)}: "
            f"uptime target {self.uptime_target_percent:g}%, p99 objective {self.latency_objective_ms} ms"
        )
        columns = ("check", "runs", "uptime %", "p99 ms", "failures", "last failure", "budget left", "status")
        rows = [
            (
                line.check_name,
                str(line.runs),
                f"{line.uptime_percent:.3f}",
                "-" if line.p99_latency_ms is None else f"{line.p99_latency_ms:.1f}",
                str(line.failures),
                _time(line.last_failure) if line.last_failure else "-",
                f"{line.error_budget_left_percent:.1f}%",
                _status(line),
            )
            for line in self.lines
        ]
        if not rows:
            return f"{header}\n(no check results in the window)"
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        left_aligned = {0, 5, 7}

        def fmt(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.ljust(w) if i in left_aligned else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        return "\n".join([header, fmt(columns), *(fmt(r) for r in rows)])


def _status(line: SloLine) -> str:
    verdict = "ok" if line.ok else "BREACH"
    return verdict if line.enough_runs else f"({verdict}: too few runs)"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def error_budget_left(runs: int, failures: int, uptime_target_percent: float) -> float:
    """Percent of the allowed failures not yet used: ``100 * (1 - failures / allowed)``."""
    allowed = runs * (100.0 - uptime_target_percent) / 100.0
    if allowed <= 0:
        return 100.0 if failures == 0 else float("-inf")
    return 100.0 * (1.0 - failures / allowed)


def build_report(rows: Sequence[SloRow], settings: SloSettings, since: datetime, until: datetime) -> SloReport:
    lines = tuple(
        SloLine(
            check_name=row.check_name,
            runs=row.total,
            successes=row.successes,
            failures=row.failures,
            uptime_percent=row.uptime_percent,
            p99_latency_ms=row.p99_latency_ms,
            last_failure=row.last_failure,
            error_budget_left_percent=error_budget_left(row.total, row.failures, settings.uptime_target),
            uptime_ok=row.uptime_percent >= settings.uptime_target,
            latency_ok=None if row.p99_latency_ms is None else row.p99_latency_ms <= settings.latency_ms,
            enough_runs=row.total >= settings.required_runs,
        )
        for row in sorted(rows, key=lambda r: r.check_name)
    )
    return SloReport(since, until, settings.uptime_target, settings.latency_ms, lines, settings.required_runs)


def compute_report(store: Store, settings: SloSettings, clock: Clock, window: float | None = None) -> SloReport:
    """The report over the ``window`` seconds (default: the configured SLO window) ending now."""
    until = clock.now()
    since = until - timedelta(seconds=settings.window if window is None else window)
    return build_report(store.slo_report(since, until, exclude=[HEARTBEAT_CHECK]), settings, since, until)


def breach_detail(line: SloLine, settings: SloSettings, as_of: datetime | None = None) -> str:
    """Why ``line`` misses its objectives; ``as_of``: the report's end, appended so that an incident
    kept open for hours does not pass its first numbers off as current."""
    problems: list[str] = []
    if not line.uptime_ok:
        problems.append(
            f"Uptime {line.uptime_percent:.2f}% < {settings.uptime_target:g}% target "
            f"({line.failures} of {line.runs} runs failed)"
        )
    if line.latency_ok is False and line.p99_latency_ms is not None:
        problems.append(f"p99 latency {line.p99_latency_ms:.0f} ms > {settings.latency_ms} ms objective")
    detail = "; ".join(problems)
    return f"{detail} (as of {_time(as_of)})" if as_of is not None else detail


class SloReporter:
    """The scheduled SLO job: report, export, and keep one warn incident per check out of objective."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        settings: SloSettings,
        clock: Clock,
        engine: IncidentRaiser | None = None,
        *,
        checks: Collection[str] | None = None,
    ) -> None:
        """``checks``: the checks this process runs, the only ones it judges (opens or resolves
        ``slo.<check>`` for); None: every check in the report."""
        self._store = store
        self._checks = None if checks is None else frozenset(checks)
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._engine = engine
        self._exported: set[str] = set()

    def run_once(self) -> SloReport:
        """One report; raises ``StoreError`` when the store cannot answer (the scheduler logs and counts it)."""
        report = compute_report(self._store, self._settings, self._clock)
        self._export(report)
        if self._engine is not None:
            self._judge(report, self._engine)
        log.info("%s", report.to_table())
        return report

    def _export(self, report: SloReport) -> None:
        seen = {line.check_name for line in report.lines}
        for line in report.lines:
            self._metrics.slo_uptime.labels(check=line.check_name).set(line.uptime_percent / 100.0)
            if line.p99_latency_ms is None:
                self._forget(self._metrics.slo_latency_p99, line.check_name)
            else:
                self._metrics.slo_latency_p99.labels(check=line.check_name).set(line.p99_latency_ms / 1000.0)
        # A check with no run left in the window has no SLO value: drop it rather than export a stale one.
        for check_name in self._exported - seen:
            self._forget(self._metrics.slo_uptime, check_name)
            self._forget(self._metrics.slo_latency_p99, check_name)
        self._exported = seen

    @staticmethod
    def _forget(gauge: Gauge, check_name: str) -> None:
        with contextlib.suppress(KeyError):  # never exported: nothing to drop
            gauge.remove(check_name)

    def _runs(self, check_name: str) -> bool:
        return self._checks is None or check_name in self._checks

    def _judge(self, report: SloReport, engine: IncidentRaiser) -> None:
        judged: set[str] = set()
        for line in report.lines:
            if not self._runs(line.check_name):
                continue  # another replica's check: that replica judges it
            name = INCIDENT_PREFIX + line.check_name
            judged.add(name)
            if not line.enough_runs:
                continue  # too few runs for a verdict: an open incident stays open, none opens
            if line.ok:
                engine.resolve(name)
            else:
                detail = breach_detail(line, self._settings, as_of=report.until)
                engine.raise_incident(name, "warn", f"SLO missed: {line.check_name}", detail)
        # A check with no run left in the window will never be judged back within its objective, so
        # its SLO incident would stay open (and remind) for ever. Asked of the store, not of memory,
        # so an incident left by an earlier run of the exporter is found too.
        for incident in self._store.open_incidents():
            name = incident.check_name
            if (
                name.startswith(INCIDENT_PREFIX)
                and name not in judged
                and self._runs(name.removeprefix(INCIDENT_PREFIX))
            ):
                engine.resolve(name)


# ----------------------------------------------------------------------------- the CLI command
def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``blocktrust-exporter report``."""
    parser.add_argument(
        "--window",
        type=_window_arg,
        default=None,
        help='how far back to look, e.g. "24h", "7d", "90m" (default: slo.window from the config)',
    )
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def _window_arg(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the window must be longer than 0")
    return seconds


def report_command(store: Store, settings: SloSettings, clock: Clock, args: argparse.Namespace, out: TextIO) -> int:
    """Print the report (``args.window``, ``args.format``) to ``out``; returns the exit code, 0.

    A missed objective is a finding, not a failure of the command (1 means a runtime failure
    throughout the CLI); scripts read ``status`` / ``uptime_ok`` / ``latency_ok`` instead. A store
    with no schema yet (nothing was ever recorded in it) gives the empty report and one warning
    line; ``StoreError`` otherwise."""
    try:
        report = compute_report(store, settings, clock, args.window)
    except SchemaMissingError as exc:
        log.warning("nothing recorded yet: %s; `run` or `migrate` creates the schema", exc)
        until = clock.now()
        since = until - timedelta(seconds=settings.window if args.window is None else args.window)
        report = build_report([], settings, since, until)
    if args.format == "json":
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(report.to_table() + "\n")
    return 0

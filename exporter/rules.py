"""Prometheus rules derived from the exporter's own configuration (``blocktrust-exporter rules``).

A pure function from ``Config`` to the text of ``prometheus/rules/slo.yml``: recording rules for each
check's availability and latency error ratios, multiwindow multi-burn-rate alerts in the manner of the
SRE workbook with windows computed for the configured SLO period, budget and check interval, and the
alerts whose thresholds or labels come from the configuration (listener lag, a check failing with
its own severity, a check that stopped running). Keeping the objectives in one place means
``config.yaml`` and Prometheus cannot disagree. Burn-rate alerts follow each check's severity
(crit: pages and tickets, warn: tickets, info: none), and ``explain`` states for every generated
alert how soon it fires and how soon it ends once the check recovers.

Not for the alerts that need no objective (exporter down, store write errors: hand-written in
``prometheus/rules/blocktrust.yml``) and not for evaluating anything: Prometheus does that. The
arithmetic is explained in ``docs/slo-alerting.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml
from prometheus_client import utils as _client_utils

from exporter.config import CheckSpec, Config, Severity
from exporter.config.checks import default_checks

# The SRE workbook's tiers for a 30-day period: (name, severity, share of the error budget spent
# when the alert fires, long window). burn factor = share * 30 d / long window -> 14.4, 6, 3, 1.
_WORKBOOK_PERIOD_S = 30 * 86_400.0
_WORKBOOK_TIERS: tuple[tuple[str, Severity, float, float], ...] = (
    ("page-fast", "crit", 0.02, 3_600.0),
    ("page-slow", "crit", 0.05, 6 * 3_600.0),
    ("ticket-fast", "warn", 0.10, 86_400.0),
    ("ticket-slow", "warn", 0.10, 3 * 86_400.0),
)
# A probe runs once per check interval, so a window holds few runs. An alert must never fire on a
# lone failed probe: each long window is made long enough that its threshold needs this many failures.
MIN_FAILED_RUNS = 3
# The seed's latency objective is "p99 under SLO_LATENCY_MS": 99 % of runs must be that fast.
LATENCY_OBJECTIVE_RATIO = 0.99
DASHBOARD_PATH = "/d/blocktrust-slo/blocktrust-slo-overview"
# The workbook's short window: a twelfth of the long one. It is what ends an alert once the check
# has recovered: pages use exactly this (in whole runs).
SHORT_WINDOW_SHARE = 12

# How client_python writes a float (the ``le`` label among others); untyped upstream.
_go_float: Callable[[float], str] = _client_utils.floatToGoString

_RUNS = "blocktrust_check_runs_total"
_DURATION = "blocktrust_check_duration_seconds"
_BY = "sum by (job, check)"


@dataclass(frozen=True)
class BurnTier:
    """One multiwindow burn-rate alert: fire when both windows burn faster than ``factor``."""

    name: str
    severity: Severity
    factor: float  # burn rate: multiples of the error ratio that would spend exactly the budget
    long_window_s: float
    short_window_s: float
    budget_spent: float  # share of the period's budget spent in the long window when it fires

    def threshold(self, budget: float) -> float:
        return self.factor * budget


def duration(seconds: float) -> str:
    """Prometheus duration text (``42m``, ``1h40m``, ``1500ms``) for a whole number of milliseconds."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a window must be positive, got {seconds!r}")
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out += f"{count}{unit}"
    return out


def _round_up(seconds: float, step: float) -> float:
    # A whole number of check intervals: windows then hold whole runs. The epsilon absorbs float noise.
    return math.ceil(seconds / step - 1e-9) * step


def burn_tiers(period_s: float, budget: float, check_interval_s: float) -> list[BurnTier]:
    """The workbook's four tiers, re-derived for ``period_s``, error ``budget`` and probe interval.

    The burn factors (how much faster than "exactly spends the budget") are the workbook's; the
    share of the budget spent before firing is raised until it is worth ``MIN_FAILED_RUNS`` failed
    runs, and the long window follows from share, period and factor. The short window ends an alert
    once the check recovers: for pages it is the workbook's long/12 in whole runs, so a page stops
    within minutes of the recovery. For tickets it is the longest window in which one failed run
    still crosses the threshold (no shorter than long/12): shorter, a steady low-rate burn would
    leave it empty between failures and the ticket would flap; the price is a ticket that outlives
    a short incident by up to that window (``rules --explain`` says how long).
    """
    budget_runs = period_s * budget / check_interval_s  # failed runs the whole period may afford
    max_factor = 1.0 / budget  # every run failing
    tiers: list[BurnTier] = []
    for name, severity, workbook_share, workbook_long in _WORKBOOK_TIERS:
        # Never above half of the maximum: a threshold near 100 % errors could never be crossed.
        factor = min(workbook_share * _WORKBOOK_PERIOD_S / workbook_long, max_factor / 2)
        # Half a run below MIN_FAILED_RUNS so that the threshold never sits on a whole number of runs,
        # where float rounding in rate() would decide.
        share = min(1.0, max(workbook_share, (MIN_FAILED_RUNS - 0.5) / budget_runs))
        long_s = _round_up(share * period_s / factor, check_interval_s)
        short_s = _round_up(long_s / SHORT_WINDOW_SHARE, check_interval_s)
        if severity != "crit":
            # The most runs in which one failure still exceeds the threshold ratio (factor * budget).
            one_failure_runs = max(1, math.ceil(1.0 / (factor * budget)) - 1)
            short_s = max(short_s, one_failure_runs * check_interval_s)
        short_s = min(short_s, long_s)
        tiers.append(BurnTier(name, severity, factor, long_s, short_s, factor * long_s / period_s))
    return tiers


@dataclass(frozen=True)
class _Sli:
    key: str  # "availability" / "latency"
    record: str  # recorded series name without the window suffix
    budget: float
    what: str  # for alert texts

    def ratio_name(self, window: str) -> str:
        return f"{self.record}:ratio_rate{window}"


def _slis(config: Config) -> list[_Sli]:
    objective = config.slo.uptime_target / 100.0
    return [
        _Sli("availability", "check:blocktrust_check_errors", round(1.0 - objective, 10), "failed runs"),
        _Sli(
            "latency",
            "check:blocktrust_check_slow_runs",
            round(1.0 - LATENCY_OBJECTIVE_RATIO, 10),
            f"runs slower than {config.slo.latency_ms} ms",
        ),
    ]


def _ratio_expr(sli: _Sli, window: str, le: str) -> str:
    if sli.key == "availability":
        # "or ... * 0": the failure series only exists after a first failure; a healthy check reads 0.
        return (
            f'({_BY} (rate({_RUNS}{{result="failure"}}[{window}]))\n'
            f"  or {_BY} (rate({_RUNS}[{window}])) * 0)\n"
            f"/ {_BY} (rate({_RUNS}[{window}]))"
        )
    return f'1 - {_BY} (rate({_DURATION}_bucket{{le="{le}"}}[{window}]))\n  / {_BY} (rate({_DURATION}_count[{window}]))'


def _windows(tiers: list[BurnTier], period_s: float) -> list[float]:
    found = {t.long_window_s for t in tiers} | {t.short_window_s for t in tiers} | {period_s}
    return sorted(found)


def template_literal(text: str) -> str:
    """``text`` as it must be written into an annotation (a Go template) for Prometheus to show it
    as written: each ``{{`` becomes the action ``{{ "{{" }}``, so that an operator's URL such as
    ``https://wiki/{{page}}`` neither makes promtool refuse the file nor runs as a template."""
    return text.replace("{{", '{{ "{{" }}')


def _runbook(config: Config, alert: str) -> str:
    # Without a configured base the link is the bare anchor: Alertmanager's template prefixes it
    # with ALERT_RUNBOOK_URL (docs/observability-bundle.md), never with a repository path.
    return f"{template_literal(config.alerting.runbook_url or '')}#{alert.lower()}"


def _dashboard(config: Config, *, per_check: bool = True) -> str:
    # Without alerting.dashboard_url the link is a path that Alertmanager's template prefixes with
    # ALERT_DASHBOARD_URL; a check name is URL-encoded into the query.
    base = template_literal(str(config.alerting.dashboard_url or "").rstrip("/"))
    return f"{base}{DASHBOARD_PATH}" + ("?var-check={{ $labels.check | urlquery }}" if per_check else "")


def _ratio_rules(sli: _Sli, tiers: list[BurnTier], config: Config, le: str) -> list[dict[str, object]]:
    period = duration(config.slo.window)
    rules: list[dict[str, object]] = [
        {"record": sli.ratio_name(duration(w)), "expr": _ratio_expr(sli, duration(w), le)}
        for w in _windows(tiers, config.slo.window)
    ]
    fastest = tiers[0]
    rules += [
        {
            "record": f"check:blocktrust_slo_{sli.key}_budget:remaining_ratio",
            "expr": f"1 - {sli.ratio_name(period)} / {_go_float(sli.budget)}",
        },
        {
            "record": f"check:blocktrust_slo_{sli.key}:burn_rate",
            "expr": f"{sli.ratio_name(duration(fastest.long_window_s))} / {_go_float(sli.budget)}",
        },
        {
            "record": f"blocktrust_slo:{sli.key}_objective:ratio",
            "expr": f"vector({_go_float(round(1.0 - sli.budget, 10))})",
        },
    ]
    return rules


def _checks_by_severity(config: Config) -> dict[Severity, list[str]]:
    """The declared checks' names (regex-escaped) by configured severity."""
    names: dict[Severity, list[str]] = {"crit": [], "warn": [], "info": []}
    for spec in declared_checks(config):
        names[spec.severity].append(re.escape(spec.name))
    return names


def _burn_selector(tier: BurnTier, config: Config) -> str | None:
    """Which checks a tier alerts for: pages for crit checks only, tickets for every check but the
    info ("dashboards only") ones. Checks the configuration does not name count as warn. None: no
    check gets this tier."""
    names = _checks_by_severity(config)
    if tier.severity == "crit":
        return f"{{check=~`{'|'.join(names['crit'])}`}}" if names["crit"] else None
    return f"{{check!~`{'|'.join(names['info'])}`}}" if names["info"] else ""


def _burn_alert(sli: _Sli, tier: BurnTier, config: Config, selector: str) -> dict[str, object]:
    long_w, short_w = duration(tier.long_window_s), duration(tier.short_window_s)
    budget = _go_float(sli.budget)
    alert = f"BlocktrustSLO{sli.key.capitalize()}Burn"
    remaining = f"check:blocktrust_slo_{sli.key}_budget:remaining_ratio"
    # The alert's value is the measured burn rate over the long window ("and" keeps the left side);
    # the time left is the remaining budget at that rate, asked of Prometheus when the text is made.
    time_left = (
        f'{{{{ with printf "clamp_min({remaining}{{job=%q,check=%q}}, 0) * {_go_float(config.slo.window)} / %f" '
        "$labels.job $labels.check $value | query }}{{ $left := first . | value }}"
        "{{ if gt $left 0.0 }}the rest of the error budget lasts {{ humanizeDuration $left }}"
        "{{ else }}the error budget is already spent{{ end }}{{ else }}the time left is unknown{{ end }}"
    )
    return {
        "alert": alert,
        "expr": (
            f"{sli.ratio_name(long_w)}{selector} / {budget} > {_go_float(tier.factor)}\n"
            f"and\n{sli.ratio_name(short_w)}{selector} / {budget} > {_go_float(tier.factor)}"
        ),
        "labels": {"severity": tier.severity, "slo": sli.key, "burn": tier.name, "window": long_w},
        "annotations": {
            "summary": (
                f"{{{{ $labels.check }}}} is burning its {sli.key} error budget "
                f'{{{{ printf "%.1f" $value }}}}x as fast as the objective allows'
            ),
            "description": (
                f'{{{{ printf "%.1f" $value }}}}x the sustainable rate of {sli.what} over the last {long_w} '
                f"(the objective allows {sli.budget * 100:g} % over {duration(config.slo.window)}); "
                f"at this rate {time_left}. This alert fires above {tier.factor:g}x and ends once the "
                f"last {short_w} are back under it."
            ),
            "runbook_url": _runbook(config, alert),
            "dashboard": _dashboard(config),
        },
    }


def _objective_alerts(config: Config) -> dict[str, object]:
    max_lag = _go_float(config.listener.max_lag)
    not_run = duration(3 * config.checks.interval)
    rules: list[dict[str, object]] = [
        {
            "alert": "BlocktrustListenerLagging",
            "expr": f"blocktrust_listener_lag_seconds > {max_lag}",
            "for": duration(2 * config.listener.poll_interval),
            # The check that measures the same thing: a failing listener.lag (crit) inhibits this.
            "labels": {"severity": "warn", "check": "listener.lag"},
            "annotations": {
                "summary": "Chain listener is lagging",
                "description": f"The newest listener heartbeat is {{{{ $value | humanizeDuration }}}} "
                f"old (allowed: {duration(config.listener.max_lag)}).",
                "runbook_url": _runbook(config, "BlocktrustListenerLagging"),
                "dashboard": _dashboard(config, per_check=False),
            },
        },
    ]
    rules += _check_failing_alerts(config)
    rules.append(
        {
            "alert": "BlocktrustCheckNotRunning",
            "expr": f"time() - blocktrust_check_last_run_timestamp_seconds > {_go_float(3 * config.checks.interval)}",
            "for": not_run,
            "labels": {"severity": "warn"},
            "annotations": {
                "summary": "{{ $labels.check }} has stopped running",
                "description": "The last run of {{ $labels.check }} was {{ $value | humanizeDuration }} ago "
                f"(expected every {duration(config.checks.interval)}).",
                "runbook_url": _runbook(config, "BlocktrustCheckNotRunning"),
                "dashboard": _dashboard(config),
            },
        }
    )
    return {"name": "blocktrust-objectives", "rules": rules}


def declared_checks(config: Config) -> list[CheckSpec]:
    """Every check the configuration can run: SPEC's nine (unless excluded) overlaid by
    ``checks.items``, enabled ones only. Unlike the prober's list it does not depend on API_BASE or
    the listener being set where the rules are generated."""
    by_name = {spec.name: spec for spec in (default_checks() if config.checks.include_defaults else [])}
    by_name.update((item.name, item) for item in config.checks.items)
    return [spec for spec in by_name.values() if spec.enabled]


def _failing_groups(config: Config) -> list[tuple[Severity, int, list[str]]]:
    """The checks' ``BlocktrustCheckFailing`` groups: (severity, failure threshold, regex-escaped
    names), crit, info then warn, each by threshold; the last is always warn at
    ``alerting.failure_threshold`` with no names (every check not in another group)."""
    default = config.alerting.failure_threshold
    groups: dict[tuple[Severity, int], list[str]] = {}
    for spec in declared_checks(config):
        key = (spec.severity, spec.failure_threshold or default)
        if key != ("warn", default):
            groups.setdefault(key, []).append(re.escape(spec.name))
    order: dict[Severity, int] = {"crit": 0, "info": 1, "warn": 2}
    found = [(sev, threshold, names) for (sev, threshold), names in groups.items()]
    found.sort(key=lambda group: (order[group[0]], group[1] != default, group[1]))
    return [*found, ("warn", default, [])]


def _check_failing_alerts(config: Config) -> list[dict[str, object]]:
    """``BlocktrustCheckFailing`` with each check's own severity and ``failure_threshold`` (as the
    exporter's alerts use them; by default ``alerting.failure_threshold``) failed runs. Checks not
    named here are ``warn``. The text says what failed: the error class (and HTTP status) of
    ``blocktrust_check_last_failure_info``."""
    groups = _failing_groups(config)
    others = [name for _, _, names in groups for name in names]
    failure = (
        '{{ with printf "blocktrust_check_last_failure_info{job=%q,instance=%q,check=%q}" '
        "$labels.job $labels.instance $labels.check | query }}{{ with first . }}: "
        '{{ label "class" . }}{{ with label "status_code" . }} (HTTP {{ . }}){{ end }}{{ end }}{{ end }}'
    )
    rules: list[dict[str, object]] = []
    for severity, threshold, names in groups:
        rest = f"check!~`{'|'.join(others)}`" if others else ""  # the catch-all warn group
        selector = f"check=~`{'|'.join(names)}`" if names else rest
        rule: dict[str, object] = {
            "alert": "BlocktrustCheckFailing",
            "expr": f"blocktrust_check_up{{{selector}}} == 0",
        }
        hold = (threshold - 1) * config.checks.interval
        if hold > 0:
            rule["for"] = duration(hold)
        rule["labels"] = {"severity": severity}
        rule["annotations"] = {
            "summary": "{{ $labels.check }} failing" + failure,
            "description": f"The last {threshold} runs of {{{{ $labels.check }}}} failed"
            f"{failure}; the exporter's log (and its own alert) give the details.",
            "runbook_url": _runbook(config, "BlocktrustCheckFailing"),
            "dashboard": _dashboard(config),
        }
        rules.append(rule)
    return rules


def build_rule_groups(config: Config) -> dict[str, object]:
    """The rule file as a mapping (``{"groups": [...]}``)."""
    le = _go_float(round(config.slo.latency_ms / 1000.0, 6))  # exactly as client_python writes it
    groups: list[dict[str, object]] = []
    for sli in _slis(config):
        tiers = burn_tiers(config.slo.window, sli.budget, config.checks.interval)
        # One group per SLI, ratios first: rules of a group run in order, so an alert reads the
        # ratios of the same evaluation (separate groups run concurrently, one interval apart).
        rules = _ratio_rules(sli, tiers, config, le)
        for tier in tiers:
            selector = _burn_selector(tier, config)
            if selector is not None:
                rules.append(_burn_alert(sli, tier, config, selector))
        groups.append({"name": f"blocktrust-slo-{sli.key}", "rules": rules})
    groups.append(_objective_alerts(config))
    return {"groups": groups}


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Multi-line PromQL reads better as a literal block.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def render_rules(config: Config) -> str:
    """The text of ``prometheus/rules/slo.yml`` for ``config`` (deterministic)."""
    header = (
        "# Generated by `blocktrust-exporter rules` from the exporter's configuration; do not edit.\n"
        f"# SLO period {duration(config.slo.window)}, availability objective "
        f"{config.slo.uptime_target:g} %, latency objective {config.slo.latency_ms} ms "
        f"for {LATENCY_OBJECTIVE_RATIO * 100:g} % of runs, check interval "
        f"{duration(config.checks.interval)}, listener max lag {duration(config.listener.max_lag)}.\n"
        "# The arithmetic: docs/slo-alerting.md\n"
    )
    body = yaml.dump(build_rule_groups(config), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)
    return header + body


@dataclass(frozen=True)
class Timing:
    """When one generated alert fires and ends, for ``rules --explain``: ``fires`` after a total
    outage of the check begins, ``ends`` at most this long after it recovers (both in seconds,
    before Prometheus' scrape and evaluation delay and any Alertmanager group wait)."""

    alert: str
    severity: Severity
    applies_to: str
    fires_s: float
    ends_s: float
    how: str


def _failures_over(threshold: float, runs: int) -> int:
    # The ratio must exceed the threshold: the least number of failed runs out of ``runs`` that does.
    return min(runs, math.floor(threshold * runs + 1e-9) + 1)


def explain(config: Config) -> list[Timing]:
    """Detection and reset time of every alert ``render_rules`` generates for ``config``."""
    step = config.checks.interval
    timings: list[Timing] = []
    for sli in _slis(config):
        for tier in burn_tiers(config.slo.window, sli.budget, step):
            selector = _burn_selector(tier, config)
            if selector is None:
                continue
            threshold = tier.threshold(sli.budget)
            long_runs, short_runs = round(tier.long_window_s / step), round(tier.short_window_s / step)
            needed = max(_failures_over(threshold, long_runs), _failures_over(threshold, short_runs))
            clean = short_runs - _failures_over(threshold, short_runs) + 1  # good runs until under it
            applies = "crit checks" if tier.severity == "crit" else "all but info checks"
            timings.append(
                Timing(
                    f"BlocktrustSLO{sli.key.capitalize()}Burn {tier.name}",
                    tier.severity,
                    applies,
                    needed * step,
                    clean * step,
                    f"burn > {tier.factor:g}x over {duration(tier.long_window_s)} and {duration(tier.short_window_s)}",
                )
            )
    default = config.alerting.failure_threshold
    for severity, threshold, names in _failing_groups(config):
        applies = f"{severity} checks"
        if threshold != default:
            applies = ", ".join(name.replace("\\", "") for name in names)  # the checks with their own
        timings.append(
            Timing(
                "BlocktrustCheckFailing",
                severity,
                applies,
                threshold * step,
                step,
                f"{threshold} failed runs in a row; ends at the first passing run",
            )
        )
    poll = config.listener.poll_interval
    timings.append(
        Timing(
            "BlocktrustListenerLagging",
            "warn",
            "listener",
            config.listener.max_lag + 2 * poll,
            poll,
            f"newest heartbeat older than {duration(config.listener.max_lag)} for {duration(2 * poll)}",
        )
    )
    timings.append(
        Timing(
            "BlocktrustCheckNotRunning",
            "warn",
            "every check",
            6 * step,
            step,
            f"no run for {duration(3 * step)}, held {duration(3 * step)}; ends at the next run",
        )
    )
    return timings


def render_explanation(config: Config) -> str:
    """``explain`` as an aligned text table, one alert per line."""
    header = ("ALERT", "SEVERITY", "FOR", "FIRES AFTER", "ENDS WITHIN", "CONDITION")
    rows = [header] + [
        (t.alert, t.severity, t.applies_to, duration(t.fires_s), duration(t.ends_s), t.how) for t in explain(config)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ]
    note = (
        f"# Times for a check that fails every run (one run every {duration(config.checks.interval)}), from "
        "the first failed run; add Prometheus' scrape and evaluation interval and Alertmanager's group_wait.\n"
        "# ENDS WITHIN: after the check passes again (a burn-rate alert ends when its short window is clean).\n"
    )
    return note + "\n".join(lines) + "\n"

"""The SLO rules generator (exporter/rules.py) and the rule files it and we ship, checked with promtool."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import Config, default_checks, load_config
from exporter.metrics import Metrics
from exporter.rules import MIN_FAILED_RUNS, burn_tiers, duration, explain, render_rules
from tests.bundle.conftest import REPO, tool

PROMETHEUS_DIR = REPO / "prometheus"
SPEC_VARS = ("SLO_UPTIME_TARGET", "SLO_LATENCY_MS", "MONITOR_CHECK_INTERVAL", "MAX_LISTENER_LAG_SEC")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SPEC_VARS and not k.startswith(("ALERT_", "JWT_"))}


def test_committed_slo_rules_are_what_the_cli_generates_from_config_yaml() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "exporter", "rules", "--config", "config.yaml"],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    committed = (PROMETHEUS_DIR / "rules" / "slo.yml").read_text()
    assert printed == committed, (
        "prometheus/rules/slo.yml is stale: run `blocktrust-exporter rules > prometheus/rules/slo.yml`"
    )
    assert committed == render_rules(load_config(REPO / "config.yaml", env={}))


def test_the_workbook_tiers_come_back_for_a_30_day_slo_with_plenty_of_runs() -> None:
    tiers = burn_tiers(30 * 86_400, 0.001, 1.0)
    assert [(t.factor, duration(t.long_window_s), duration(t.short_window_s)) for t in tiers] == [
        (14.4, "1h", "5m"),
        (6.0, "6h", "30m"),
        (3.0, "1d", "2h"),
        (1.0, "3d", "6h"),
    ]
    assert [t.severity for t in tiers] == ["crit", "crit", "warn", "warn"]


def test_the_default_24h_slo_gets_windows_sized_for_one_run_a_minute() -> None:
    tiers = burn_tiers(86_400, 0.005, 60.0)
    assert [(t.factor, duration(t.long_window_s), duration(t.short_window_s)) for t in tiers] == [
        (14.4, "35m", "3m"),  # pages: the workbook's long/12, so a page ends minutes after recovery
        (6.0, "1h24m", "7m"),
        (3.0, "2h47m", "1h6m"),  # tickets: one failure still counts, so a slow burn does not flap
        (1.0, "8h20m", "3h19m"),
    ]


@pytest.mark.parametrize("period", [3_600.0, 86_400.0, 7 * 86_400.0, 30 * 86_400.0])
@pytest.mark.parametrize("target", [90.0, 99.0, 99.5, 99.9, 99.99])
@pytest.mark.parametrize("interval", [1.0, 15.0, 60.0, 300.0])
def test_every_tier_needs_several_failures_and_its_short_window_sees_one(
    period: float, target: float, interval: float
) -> None:
    budget = 1 - target / 100
    for tier in burn_tiers(period, budget, interval):
        threshold = tier.threshold(budget)
        long_runs = round(tier.long_window_s / interval)
        short_runs = round(tier.short_window_s / interval)
        assert long_runs * interval == pytest.approx(tier.long_window_s), "windows hold whole runs"
        assert short_runs * interval == pytest.approx(tier.short_window_s)
        assert 0 < threshold < 1, f"{tier.name}: a threshold of {threshold} could never be crossed"
        assert tier.short_window_s <= tier.long_window_s
        failures_needed = int(threshold * long_runs) + 1  # the ratio must exceed the threshold
        if tier.budget_spent < 1.0:  # (a period too short to afford MIN_FAILED_RUNS caps the share at 1)
            assert failures_needed >= MIN_FAILED_RUNS, f"{tier.name}: fires on {failures_needed} failure(s)"
        # Either one failure in the short window is enough, and the window is the longest for which
        # that holds (a steady burn just over the threshold always keeps one failure in it: no
        # flapping between failures), or the workbook's long/12 is longer still.
        one_failure_is_enough = short_runs * threshold < 1 <= (short_runs + 1) * threshold
        workbook_short = short_runs == math.ceil(long_runs / 12 - 1e-9) or short_runs == long_runs
        assert one_failure_is_enough or workbook_short, f"{tier.name}: short window of {short_runs} runs"


@pytest.mark.parametrize("latency_ms", [800, 1000, 250, 1500])
def test_the_latency_rules_use_the_bucket_bound_the_exporter_exposes(latency_ms: int) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=latency_ms / 1000, version="test")
    metrics.record_check("api.health", ok=True, seconds=0.1, at_unix=0)
    exposed = generate_latest(registry).decode()
    rules = render_rules(Config.model_validate({"slo": {"latency_ms": latency_ms}}))
    bounds = {line.split('le="')[1].split('"')[0] for line in rules.splitlines() if 'le="' in line}
    assert len(bounds) == 1
    assert f'blocktrust_check_duration_seconds_bucket{{check="api.health",le="{bounds.pop()}"}}' in exposed


def test_objectives_from_the_configuration_reach_the_rules() -> None:
    config = Config.model_validate(
        {"slo": {"uptime_target": 99.9, "window": "7d"}, "listener": {"max_lag": "5m"}, "checks": {"interval": "30s"}}
    )
    doc = yaml.safe_load(render_rules(config))
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    objective = next(r for r in rules if r.get("record") == "blocktrust_slo:availability_objective:ratio")
    assert objective["expr"] == "vector(0.999)"
    lag = next(r for r in rules if r.get("alert") == "BlocktrustListenerLagging")
    assert lag["expr"] == "blocktrust_listener_lag_seconds > 300.0"
    budget = next(r for r in rules if r.get("record") == "check:blocktrust_slo_availability_budget:remaining_ratio")
    assert "ratio_rate7d / 0.001" in budget["expr"]
    fast = next(r for r in rules if r.get("labels", {}).get("burn") == "page-fast")
    assert "/ 0.001 > 14.4" in fast["expr"]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"slo": {"uptime_target": 99.9, "window": "30d"}},
        {"checks": {"interval": "1s", "timeout": "1s"}, "slo": {"latency_ms": 250}},
        {"checks": {"include_defaults": False}, "alerting": {"failure_threshold": 1}},
        {
            "checks": {
                "items": [
                    {"name": name, "url": "https://a.test/", "severity": severity}
                    for name, severity in (("Site-1_a.b", "crit"), ("0.x--y__z", "info"), ("a", "crit"))
                ]
            }
        },
    ],
    ids=["defaults", "30d-99.9", "fast-checks", "no-checks-declared", "every-allowed-name-character"],
)
def test_generated_rules_pass_promtool(settings: dict[str, object], tmp_path: Path) -> None:
    rules = tmp_path / "slo.yml"
    rules.write_text(render_rules(Config.model_validate(settings)))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------- promtool
def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "config", "prometheus.yml"],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_shipped_rule_files_are_valid() -> None:
    files = sorted(str(p) for p in (PROMETHEUS_DIR / "rules").glob("*.yml"))
    assert [Path(f).name for f in files] == ["blocktrust.yml", "slo.yml"]
    result = subprocess.run([tool("promtool"), "check", "rules", *files], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # promtool runs every rule unit test file
def test_rule_unit_tests_pass() -> None:
    """Fast burn pages in time, slow burn tickets, steady state is silent, listener lag fires, ..."""
    tests = sorted(str(p) for p in (PROMETHEUS_DIR / "tests").glob("*_test.yml"))
    assert len(tests) == 2
    result = subprocess.run([tool("promtool"), "test", "rules", *tests], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


@pytest.mark.slow
def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """With the fast-burn threshold loosened, the fast-burn unit test notices."""
    shutil.copytree(PROMETHEUS_DIR, tmp_path / "prometheus")
    slo = tmp_path / "prometheus" / "rules" / "slo.yml"
    assert "/ 0.005 > 14.4\n" in slo.read_text()
    slo.write_text(slo.read_text().replace("/ 0.005 > 14.4\n", "/ 0.005 > 40\n"))
    unit = tmp_path / "prometheus" / "tests" / "slo_test.yml"
    doc = yaml.safe_load(unit.read_text())
    doc["tests"] = [t for t in doc["tests"] if t["name"].startswith("fast burn")]  # the rest is slow
    unit.write_text(yaml.safe_dump(doc, allow_unicode=True))
    result = subprocess.run([tool("promtool"), "test", "rules", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "fast burn" in result.stdout + result.stderr


def test_every_alert_is_labelled_annotated_and_has_a_runbook_section() -> None:
    runbook = (REPO / "docs" / "runbooks.md").read_text()
    anchors = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in (r for r in group["rules"] if "alert" in r):
                where = f"{path.name}:{rule['alert']}"
                severities = ("none",) if rule["alert"] == "Watchdog" else ("crit", "warn", "info")
                assert rule["labels"]["severity"] in severities, where
                assert set(rule["annotations"]) == {"summary", "description", "runbook_url", "dashboard"}, where
                anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
                assert anchor in anchors, f"{where}: no '## ' section for #{anchor} in docs/runbooks.md"
                assert "/d/blocktrust-slo/" in rule["annotations"]["dashboard"], where
                # Defect 6: links are the external URL's business, never localhost or a repository path.
                for link in (rule["annotations"]["dashboard"], rule["annotations"]["runbook_url"]):
                    assert "localhost" not in link and not link.startswith(("docs/", "http://127.")), where


def _failing_rules(config: Config) -> dict[str, str]:
    doc = yaml.safe_load(render_rules(config))
    rules = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "BlocktrustCheckFailing"]
    return {r["labels"]["severity"]: r["expr"] for r in rules}


def test_check_failing_uses_each_checks_configured_severity() -> None:
    defaults = _failing_rules(Config())
    assert defaults == {
        "crit": r"blocktrust_check_up{check=~`api\.health|chain\.head|listener\.lag`} == 0",
        "warn": r"blocktrust_check_up{check!~`api\.health|chain\.head|listener\.lag`} == 0",
    }
    custom = Config.model_validate(
        {
            "api": {"base_url": "https://api.example.org"},
            "checks": {
                "include_defaults": False,
                "items": [
                    {"name": "shop.home", "path": "/", "severity": "crit"},
                    {"name": "shop.about", "path": "/about", "severity": "info"},
                    {"name": "shop.old", "path": "/old", "severity": "crit", "enabled": False},
                ],
            },
        }
    )
    assert _failing_rules(custom) == {
        "crit": r"blocktrust_check_up{check=~`shop\.home`} == 0",
        "info": r"blocktrust_check_up{check=~`shop\.about`} == 0",
        "warn": r"blocktrust_check_up{check!~`shop\.home|shop\.about`} == 0",
    }
    alone = Config.model_validate({"checks": {"include_defaults": False}, "alerting": {"failure_threshold": 1}})
    assert _failing_rules(alone) == {"warn": "blocktrust_check_up{} == 0"}


@pytest.mark.parametrize(
    ("runbook", "dashboard"),
    [
        ("https://wiki.example/{{page}}", "https://grafana.example/{{x}}"),
        ("{{", "https://g.example/{{"),
        ("%{{%", "https://g.example/a{{-"),
        ("{{/*", "https://g.example/{{/*"),
        ('{{"}}"}}', "https://g.example/{{{"),
        ("{{.Foo}}", "https://g.example/{{$labels.check}}"),
    ],
)
def test_hostile_runbook_and_dashboard_urls_pass_promtool_and_stay_literal(
    runbook: str, dashboard: str, tmp_path: Path
) -> None:
    """Operator text in an annotation is written as a Go-template literal: promtool accepts the file,
    and what Prometheus would render (checked with promtool's own template engine in a unit test) is
    the URL exactly as configured."""
    config = Config.model_validate({"alerting": {"runbook_url": runbook, "dashboard_url": dashboard}})
    rules = tmp_path / "slo.yml"
    rules.write_text(render_rules(config))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool's unit tests expand annotations: the lagging alert must show both URLs literally.
    unit = tmp_path / "unit.yml"
    unit.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": "blocktrust_listener_lag_seconds", "values": "1000x60"}],
                        "alert_rule_test": [
                            {
                                "eval_time": "30m",
                                "alertname": "BlocktrustListenerLagging",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {"severity": "warn", "check": "listener.lag"},
                                        "exp_annotations": {
                                            "summary": "Chain listener is lagging",
                                            "description": "The newest listener heartbeat is 16m 40s old "
                                            "(allowed: 3m).",
                                            "runbook_url": f"{runbook}#blocktrustlistenerlagging",
                                            "dashboard": f"{dashboard}/d/blocktrust-slo/blocktrust-slo-overview",
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = subprocess.run([tool("promtool"), "test", "rules", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _alerts_of(rules_text: str) -> list[dict[str, object]]:
    doc = yaml.safe_load(rules_text)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_burn_alerts_follow_each_checks_severity(tmp_path: Path) -> None:
    """Defect 3: a crit check pages and tickets, a warn check only tickets, an info ("dashboards
    only") check gets no burn alert at all; checked by promtool with all three failing."""
    config = Config.model_validate(
        {
            "api": {"base_url": "https://api.example.org"},
            "checks": {
                "include_defaults": False,
                "items": [
                    {"name": "shop.home", "path": "/", "severity": "crit"},
                    {"name": "shop.stats", "path": "/stats", "severity": "warn"},
                    {"name": "shop.board", "path": "/board", "severity": "info"},
                ],
            },
        }
    )
    rules = tmp_path / "slo.yml"
    rules.write_text(render_rules(config))
    series = []
    for check in ("shop.home", "shop.stats", "shop.board"):
        labels = f'job="blocktrust-exporter",instance="exporter:9108",check="{check}"'
        series.append({"series": f'blocktrust_check_runs_total{{{labels},result="success"}}', "values": "0+1x60 60x20"})
        series.append({"series": f'blocktrust_check_runs_total{{{labels},result="failure"}}', "values": "0x60 1+1x20"})
    unit = tmp_path / "unit.yml"
    # Expect nothing: promtool then prints every alert that did fire, which is what is compared.
    expect_none = {"eval_time": "75m", "alertname": "BlocktrustSLOAvailabilityBurn", "exp_alerts": []}
    unit.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": [expect_none]}],
            }
        )
    )
    result = subprocess.run([tool("promtool"), "test", "rules", str(unit)], capture_output=True, text=True, check=False)
    fired = {
        (check, burn)
        for check, burn in re.findall(r'burn="([\w-]+)", check="([\w.]+)"', result.stdout + result.stderr)
        for check, burn in [(burn, check)]
    }
    assert fired == {
        ("shop.home", "page-fast"),
        ("shop.home", "page-slow"),
        ("shop.home", "ticket-fast"),
        ("shop.home", "ticket-slow"),
        ("shop.stats", "ticket-fast"),
        ("shop.stats", "ticket-slow"),
    }, result.stdout + result.stderr


def test_the_default_burn_rules_page_only_for_crit_checks() -> None:
    alerts = _alerts_of((PROMETHEUS_DIR / "rules" / "slo.yml").read_text())
    pages = [a for a in alerts if a["labels"]["severity"] == "crit" and "burn" in a["labels"]]  # type: ignore[index,operator]
    # The crit defaults: api.health, chain.head (crit since the chain-checks merge) and listener.lag.
    assert sorted(spec.name for spec in default_checks() if spec.severity == "crit") == [
        "api.health",
        "chain.head",
        "listener.lag",
    ]
    assert pages and all(r"check=~`api\.health|chain\.head|listener\.lag`" in str(a["expr"]) for a in pages)
    everyone = Config.model_validate({"checks": {"include_defaults": False}})
    assert not [a for a in _alerts_of(render_rules(everyone)) if a["labels"].get("burn", "").startswith("page")]  # type: ignore[attr-defined]


def test_burn_texts_state_the_measured_rate_and_the_time_left() -> None:
    """Defect 8: not the threshold ("14.4x too fast") but the rate measured and how long the budget
    lasts at it (the expression's value is the burn rate of the long window)."""
    burns = [a for a in _alerts_of(render_rules(Config())) if "burn" in a["labels"]]  # type: ignore[operator]
    assert burns
    for alert in burns:
        annotations: dict[str, str] = alert["annotations"]  # type: ignore[assignment]
        assert '{{ printf "%.1f" $value }}x' in annotations["summary"]
        assert "too fast" not in annotations["summary"]
        assert "lasts {{ humanizeDuration $left }}" in annotations["description"]
        long_window = str(alert["expr"]).splitlines()[0]
        assert re.fullmatch(r"check:\S+ / 0\.0(05|1) > [\d.]+", long_window), long_window


def test_explain_states_detection_and_reset_of_every_generated_alert() -> None:
    """Defect 12: ``rules --explain`` lists every generated alert with when it fires and how soon
    it ends; a page ends within its short window."""
    printed = subprocess.run(
        [sys.executable, "-m", "exporter", "rules", "--config", "config.yaml", "--explain"],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    # Columns: ALERT (with its burn tier), SEVERITY, FOR, FIRES AFTER, ENDS WITHIN, CONDITION.
    rows = [re.split(r"\s{2,}", line) for line in printed.splitlines() if line.startswith("Blocktrust")]
    generated = _alerts_of((PROMETHEUS_DIR / "rules" / "slo.yml").read_text())
    assert len(rows) == len(generated)
    assert sorted({r[0].split()[0] for r in rows}) == sorted({str(a["alert"]) for a in generated})
    for slo, tier in (("availability", "page-fast"), ("availability", "page-slow"), ("latency", "page-fast")):
        name = f"BlocktrustSLO{slo.capitalize()}Burn"
        row = next(r for r in rows if r[0] == f"{name} {tier}")
        rule = next(a for a in generated if a["alert"] == name and a["labels"]["burn"] == tier)  # type: ignore[index]
        short_window = str(rule["expr"]).splitlines()[2].split("ratio_rate")[1].split("{")[0]
        assert row[4] == short_window, f"{tier}: ends within {row[4]}, short window {short_window}"


def test_check_failing_waits_for_each_checks_own_failure_threshold(tmp_path: Path) -> None:
    """Defect 3's kind (a per-check setting the generated rules ignored): the exporter opens an
    incident after a check's own ``failure_threshold`` failed runs, so BlocktrustCheckFailing waits as
    long; checked by promtool with a check of threshold 5 (and one of threshold 1) failing for 3 runs,
    then for 5, and stated by ``rules --explain``."""
    config = Config.model_validate(
        {
            "api": {"base_url": "https://api.example.org"},
            "checks": {
                "include_defaults": False,
                "items": [
                    {"name": "shop.home", "path": "/", "severity": "crit", "failure_threshold": 5},
                    {"name": "shop.cart", "path": "/cart", "severity": "crit"},
                    {"name": "shop.stats", "path": "/stats", "failure_threshold": 1},
                ],
            },
        }
    )
    rules = tmp_path / "slo.yml"
    rules.write_text(render_rules(config))
    labels = 'job="blocktrust-exporter",instance="exporter:9108"'
    series = [
        {"series": f'blocktrust_check_up{{{labels},check="{check}"}}', "values": "1 1 0 0 0 0 0 0 0 0"}
        for check in ("shop.home", "shop.cart", "shop.stats")
    ]

    # Expect nothing: promtool then prints, per evaluation time, every alert that did fire.
    expect_none: list[dict[str, object]] = [{"alertname": "BlocktrustCheckFailing", "exp_alerts": []}] * 2
    tests = [{**expect, "eval_time": at} for expect, at in zip(expect_none, ("4m", "6m"), strict=True)]
    unit = tmp_path / "unit.yml"
    unit.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}],
            }
        )
    )
    result = subprocess.run([tool("promtool"), "test", "rules", str(unit)], capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    sections = {at: output.split(f"time: {at},")[1].split("time: ")[0] for at in ("4m", "6m")}
    fired = {at: sorted(re.findall(r'check="([\w.]+)".*?severity="(\w+)"', text)) for at, text in sections.items()}
    # The third failed run (the first was at 2m): threshold 1 and 2 fired, threshold 5 not yet; at the fifth, all.
    assert fired == {
        "4m": [("shop.cart", "crit"), ("shop.stats", "warn")],
        "6m": [("shop.cart", "crit"), ("shop.home", "crit"), ("shop.stats", "warn")],
    }, output
    timings = [(t.severity, t.applies_to, t.fires_s) for t in explain(config) if t.alert == "BlocktrustCheckFailing"]
    assert timings == [
        ("crit", "crit checks", 120.0),
        ("crit", "shop.home", 300.0),
        ("warn", "shop.stats", 60.0),
        ("warn", "warn checks", 120.0),
    ]

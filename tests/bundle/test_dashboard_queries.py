"""The SLO overview's queries, evaluated by ``promtool test rules`` (``promql_expr_test``) on the series
the bundled stack has at a given moment (issue #16 item 11): "Uptime over the SLO window" has a value
from the first scrape, before the SLO report's gauge exists; "Notifications sent" shows Alertmanager's
notifications when the exporter has no channel of its own (the bundled stack); the burn rate per
window and the hours the error budget lasts compute what their descriptions say. The live stack
(test_live_stack.py) then checks that every panel returns data from real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.bundle.conftest import tool
from tests.bundle.grafana import REPO, constant_variables, load, replace_variables

BOARD = "blocktrust-slo.json"
VARIABLES = {"check": ".*", "__rate_interval": "20s", "__interval": "15s", "__range": "1m", **constant_variables(BOARD)}
EXPORTER = 'instance="exporter:9108",job="blocktrust-exporter"'


def _expr(panel_id: int, ref: str = "A") -> str:
    board = load(REPO / "grafana" / "dashboards" / BOARD)
    panel = next(p for p in board["panels"] if p["id"] == panel_id)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    return replace_variables(target["expr"], VARIABLES)


def _promtool(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "panels_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "15s", "tests": tests}))
    return subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, check=False)


def _case(series: dict[str, str], expr: str, at: str, samples: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "interval": "15s",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": [
            {
                "expr": expr,
                "eval_time": at,
                "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
            }
        ],
    }


def test_uptime_has_a_value_from_the_first_scrape_and_then_the_reports(tmp_path: Path) -> None:
    up = f'blocktrust_check_up{{check="api.health",{EXPORTER}}}'
    report = f'blocktrust_slo_uptime_ratio{{check="api.health",{EXPORTER}}}'
    first_scrape = _case({up: "1"}, _expr(1), "0s", [(f'{{check="api.health",{EXPORTER}}}', 1)])
    reported = _case({up: "0 1", report: "_ 0.995"}, _expr(1), "15s", [(report, 0.995)])
    result = _promtool(tmp_path, [first_scrape, reported])
    assert result.returncode == 0, result.stdout + result.stderr


def test_notifications_sent_shows_alertmanagers_when_the_exporter_has_no_channel(tmp_path: Path) -> None:
    sent = 'alertmanager_notifications_total{instance="am:9093",integration="slack",job="alertmanager"}'
    case = _case({sent: "0 1"}, _expr(15, "A"), "15s", [('{integration="slack"}', 1)])
    result = _promtool(tmp_path, [case])
    assert result.returncode == 0, result.stdout + result.stderr


def test_burn_rate_per_window_and_the_hours_the_budget_lasts(tmp_path: Path) -> None:
    errors = f'check:blocktrust_check_errors:ratio_rate35m{{check="api.health",{EXPORTER}}}'
    objective = "blocktrust_slo:availability_objective:ratio"
    per_window = _case(
        {errors: "0.5", objective: "0.75"},  # (values exact in binary: 0.5 / 0.25)
        _expr(24, "A"),
        "0s",
        [(f'{{check="api.health",{EXPORTER},window="35m"}}', 2)],
    )
    remaining = f'check:blocktrust_slo_availability_budget:remaining_ratio{{check="api.health",{EXPORTER}}}'
    burn = f'check:blocktrust_slo_availability:burn_rate{{check="api.health",{EXPORTER}}}'
    other_remaining = f'check:blocktrust_slo_availability_budget:remaining_ratio{{check="api.events",{EXPORTER}}}'
    other_burn = f'check:blocktrust_slo_availability:burn_rate{{check="api.events",{EXPORTER}}}'
    # Half the budget left, burning twice as fast as the budget allows: 0.5 x 24 h / 2 = 6 h. A check
    # burning nothing has no finite time: no row.
    lasts = _case(
        {remaining: "0.5", burn: "2", other_remaining: "1", other_burn: "0"},
        _expr(25, "C"),
        "0s",
        [(f'{{check="api.health",{EXPORTER}}}', 6)],
    )
    result = _promtool(tmp_path, [per_window, lasts])
    assert result.returncode == 0, result.stdout + result.stderr

"""The bundle against the real thing: the exporter (``python -m exporter run``) probing the API
simulator (``python -m exporter simulate``) with /api/health failing, storing into PostgreSQL;
Debian's Prometheus scraping it with the bundled rules (generated for a 1 s check interval, so the
burn-rate windows are seconds long) and evaluation every second; Debian's Alertmanager with the
bundled configuration (shorter group timings) whose Slack and Telegram URLs point at local
recording receivers.

In order: every PromQL expression of the rules and dashboards runs without error, the SLO
overview's main panels return series, the SQL panels return the exporter's rows, and finally the
end-to-end path: the failing endpoint pages on Slack and Telegram with the expected labels and
what failed (the error class and HTTP status), the tickets of the same check are inhibited, the
always-firing Watchdog pings the heartbeat receiver, a second exporter replica going down does not
mute the pages of the survivor, and a resolved notice follows once the fault is removed.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.config import HEARTBEAT_CHECK, load_config
from exporter.demo.devchain import DevChain
from exporter.rules import render_rules
from exporter.store import CheckResult, open_store
from tests.bundle.conftest import (
    REPO,
    Alertmanager,
    Process,
    Prometheus,
    alertmanager_test_config,
    wait_until,
)
from tests.bundle.grafana import constant_variables, replace_variables, run_sql_panels, targets, variable_queries
from tests.support.exporter_process import ExporterProcess, free_port
from tests.support.http_receiver import HttpReceiver, Recorded, Reply

pytestmark = [pytest.mark.postgres, pytest.mark.anvil, pytest.mark.slow]

EMAIL = "monitor@example.org"
PASSWORD = "live-stack-test-password"  # the simulator's and the exporter's, for this run only
TELEGRAM_TOKEN = "123456:live-stack-test"
TELEGRAM_CHAT = "-1001234567"
TELEGRAM_OK = {"ok": True, "result": {"message_id": 1, "date": 0, "chat": {"id": int(TELEGRAM_CHAT), "type": "group"}}}
FAILING_PATH = "/api/health"
FAILING_CHECK = "api.health"
# Every Prometheus panel of the SLO overview must return at least one series from the running stack,
# but "Events stored per second" (12): events are counted by the listener process, and this stack's
# listener runs elsewhere (the fixture writes its heartbeat; the RPC panels get their calls from the
# chain.head check against a local anvil).
NO_DATA_IN_THIS_STACK = {12}
PROMQL_VARIABLES = {
    "check": ".*",
    "__rate_interval": "20s",
    "__interval": "5s",
    "__range": "1m",
    **constant_variables("blocktrust-slo.json"),
}


DASHBOARD_BASE = "https://grafana.example.org"


@dataclass
class Stack:
    simulator_url: str
    database_url: str
    exporter: ExporterProcess
    replica: ExporterProcess  # a second exporter on the same database: a replica for defect 1
    prometheus: Prometheus
    alertmanager: Alertmanager
    slack: HttpReceiver
    telegram: HttpReceiver
    heartbeat: HttpReceiver
    test_rules: Path


def _exporter_config(path: Path, simulator_url: str, database_url: str, chain: DevChain) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "store": {"url": database_url},
                "api": {"base_url": simulator_url, "email": EMAIL},
                "checks": {"interval": "1s", "timeout": "1s"},
                # The listener runs elsewhere (the seed's separate worker): this exporter only checks
                # its heartbeat, which the stack fixture writes, and the chain head (chain.head).
                "listener": {
                    "elsewhere": True,
                    "rpc_url": chain.rpc_url,
                    "contracts_config": str(chain.write_contracts_config(path.parent / "contracts_config.json")),
                },
                "slo": {"report_interval": "2s"},
            }
        )
    )
    return path


def _write_listener_heartbeat(database_url: str) -> None:
    """What a listener process running beside the exporter writes each poll."""
    store = open_store(database_url)
    store.migrate()
    beat = {"processed_block": 100, "head_block": 100, "blocks_behind": 0}
    store.write_results([CheckResult(HEARTBEAT_CHECK, True, 0, beat, datetime.now(UTC), uuid.uuid4().hex)])
    store.close()


def _prometheus_config(
    port: int, rules_dir: Path, exporter_ports: tuple[int, int], alertmanager_port: int
) -> dict[str, Any]:
    """The bundled prometheus.yml with loopback targets and one-second intervals."""
    config: dict[str, Any] = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules_dir / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{alertmanager_port}"]
    ports = {"blocktrust-exporter": exporter_ports, "prometheus": (port,), "alertmanager": (alertmanager_port,)}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in ports[job["job_name"]]]}]
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("live-stack")
    started: list[Any] = []
    slack = HttpReceiver()
    telegram = HttpReceiver(default=Reply(200, TELEGRAM_OK))
    heartbeat = HttpReceiver()
    try:
        sim_port = free_port()
        simulator = Process(
            "simulator",
            [
                sys.executable,
                "-m",
                "exporter",
                "simulate",
                "--host",
                "127.0.0.1",
                "--port",
                str(sim_port),
                "--fail",
                f"{FAILING_PATH}=503",
            ],
            workdir,
            env={"JWT_MONITOR_EMAIL": EMAIL, "JWT_MONITOR_PASS": PASSWORD, "PYTHONPATH": str(REPO)},
        )
        started.append(simulator)
        simulator_url = f"http://127.0.0.1:{sim_port}"
        wait_until("the simulator", lambda: requests.get(simulator_url + "/_simulator/state", timeout=1).ok, 30)

        chain = DevChain.start(workdir / "anvil", block_time=1, state_history=0)  # a fresh head each second
        started.append(chain)
        _write_listener_heartbeat(module_postgres_url)
        config_path = _exporter_config(workdir / "exporter.yaml", simulator_url, module_postgres_url, chain)
        # Two replicas with the default checks.run_on: leader. The replica starts first and takes the
        # checks leader lock; the exporter stands by (it takes over when the replica goes down, in
        # test_a_replica_going_down_does_not_mute_the_survivor, and stays for the later tests).
        replica = ExporterProcess(
            ["run", "--config", str(config_path)], env={"JWT_MONITOR_PASS": PASSWORD}, cwd=workdir
        )
        started.append(replica)
        replica.wait_ready()
        exporter = ExporterProcess(
            ["run", "--config", str(config_path)], env={"JWT_MONITOR_PASS": PASSWORD}, cwd=workdir
        )
        started.append(exporter)
        exporter.wait_ready()

        # The rules Prometheus loads: generated from the exporter's own (test) configuration, as
        # `blocktrust-exporter rules` would, plus the hand-written direct alerts.
        rules_dir = workdir / "rules"
        rules_dir.mkdir()
        test_rules = rules_dir / "slo.yml"
        test_rules.write_text(render_rules(load_config(config_path, env={})))
        # The direct alerts as bundled, with the exporter-down hold shortened from 1m for the test.
        direct = (REPO / "prometheus" / "rules" / "blocktrust.yml").read_text()
        down_hold = '        expr: up{job="blocktrust-exporter"} == 0\n        for: 1m\n'
        assert down_hold in direct
        (rules_dir / "blocktrust.yml").write_text(direct.replace(down_hold, down_hold.replace("1m", "2s")))

        am_config = alertmanager_test_config(
            workdir / "am-config", group_wait="1s", group_interval="2s", repeat_interval="1h"
        )
        alertmanager = Alertmanager(
            am_config,
            workdir / "alertmanager",
            {
                "ALERT_SLACK_WEBHOOK": slack.url + "/services/T000/B000/XXXX",
                "ALERT_TELEGRAM_BOT": TELEGRAM_TOKEN,
                "ALERT_TELEGRAM_CHAT": TELEGRAM_CHAT,
                "ALERT_TELEGRAM_API_URL": telegram.url,
                "ALERT_HEARTBEAT_URL": heartbeat.url + "/ping/live-stack",
                "ALERT_DASHBOARD_URL": DASHBOARD_BASE,
            },
        )
        started.append(alertmanager)
        prometheus = Prometheus(
            lambda port: _prometheus_config(port, rules_dir, (exporter.port, replica.port), alertmanager.port),
            workdir / "prometheus",
        )
        started.append(prometheus)
        yield Stack(
            simulator_url,
            module_postgres_url,
            exporter,
            replica,
            prometheus,
            alertmanager,
            slack,
            telegram,
            heartbeat,
            test_rules,
        )
    finally:
        for process in reversed(started):
            if isinstance(process, ExporterProcess) and process.proc.poll() is not None:
                continue  # the replica test stops one exporter itself (stop() once only)
            process.stop()
        slack.close()
        telegram.close()
        heartbeat.close()


def _rule_expressions(path: Path) -> list[tuple[str, str]]:
    doc = yaml.safe_load(path.read_text())
    return [
        (f"{path.name}:{rule.get('record') or rule.get('alert')}", rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def _wait_for_rule_data(stack: Stack) -> None:
    """Until the recorded burn rate exists: scrapes happened and the rule groups evaluated."""
    wait_until(
        "recorded SLO series",
        lambda: stack.prometheus.series(f'check:blocktrust_slo_availability:burn_rate{{check="{FAILING_CHECK}"}}'),
        timeout=30,
    )


def test_every_rule_and_dashboard_expression_runs_on_real_prometheus(stack: Stack) -> None:
    _wait_for_rule_data(stack)
    expressions = [
        *_rule_expressions(REPO / "prometheus" / "rules" / "slo.yml"),
        *_rule_expressions(REPO / "prometheus" / "rules" / "blocktrust.yml"),
        *_rule_expressions(stack.test_rules),
    ]
    for target in targets():
        if target.datasource_uid == "blocktrust-prometheus":
            name = f"{target.dashboard}#{target.panel_id} {target.panel_title}"
            expressions.append((name, replace_variables(target.query, PROMQL_VARIABLES)))
    assert len(expressions) > 60
    now = time.time()
    failures = []
    for name, expr in expressions:
        # (a "$1" is label_replace's reference to a regex group, not a Grafana variable)
        assert not re.search(r"\$\{?[A-Za-z_]", expr), f"{name}: unexpanded variable in {expr}"
        for params in ({"time": now}, {"start": now - 60, "end": now, "step": 5}):
            body = stack.prometheus.query(expr, **params)
            if body.get("status") != "success" or body.get("warnings"):
                failures.append(f"{name}: {body.get('error') or body.get('warnings')}")
    assert not failures, "\n".join(failures)


def test_slo_overview_main_panels_return_series(stack: Stack) -> None:
    _wait_for_rule_data(stack)
    by_panel: dict[int, list[str]] = {}
    for target in targets():
        if target.dashboard == "blocktrust-slo.json" and target.datasource_uid == "blocktrust-prometheus":
            by_panel.setdefault(target.panel_id, []).append(replace_variables(target.query, PROMQL_VARIABLES))
    assert len(by_panel) >= 24 and set(by_panel) > NO_DATA_IN_THIS_STACK

    def empty_panels() -> list[int]:
        now = time.time()
        empty = []
        for panel_id in sorted(set(by_panel) - NO_DATA_IN_THIS_STACK):
            answers = [stack.prometheus.query(e, start=now - 30, end=now, step=1) for e in by_panel[panel_id]]
            if not any(a["data"]["result"] for a in answers):
                empty.append(panel_id)
        return empty

    # The latency quantiles need two scrapes of the histogram inside the rate window; a few seconds.
    wait_until("every panel to have data", lambda: not empty_panels(), timeout=45)
    up = stack.prometheus.series('blocktrust_check_up{job="blocktrust-exporter"}')
    assert {s["metric"]["check"] for s in up} >= {FAILING_CHECK, "api.events", "synthetic.hash"}


def test_the_check_variable_lists_the_exporters_checks(stack: Stack) -> None:
    """Grafana runs ``label_values(metric, label)`` as a label-values API call."""
    queries = list(variable_queries("blocktrust-prometheus"))
    assert queries
    for dashboard, query in queries:
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"{dashboard}: unexpected variable query {query}"
        answer = requests.get(
            f"{stack.prometheus.url}/api/v1/label/{match.group(2)}/values",
            params={"match[]": match.group(1)},
            timeout=5,
        ).json()
        assert answer["status"] == "success"
        assert FAILING_CHECK in answer["data"] and "api.events" in answer["data"]


def test_sql_panels_return_the_exporters_rows(stack: Stack) -> None:
    checks = tuple(s["metric"]["check"] for s in stack.prometheus.series("blocktrust_check_up"))
    now = datetime.now(UTC)

    def rows() -> dict[str, int]:
        end = datetime.now(UTC) + timedelta(minutes=1)
        return run_sql_panels(stack.database_url, checks, now - timedelta(hours=1), end)

    # The incident opens after the exporter's failure threshold; the panels then all have rows,
    # except "Events stored": this stack runs without the chain listener (see test_dashboards).
    counts = wait_until(
        "rows in every SQL panel but the events one",
        lambda: (r := rows()) and all(n > 0 for k, n in r.items() if k != "blocktrust-postgres.json#8") and r,
        timeout=30,
    )
    assert counts["blocktrust-slo.json#16"] >= 1, "the incident of the failing check"


def _slack_titles(stack: Stack) -> list[str]:
    titles = []
    for request in stack.slack.requests:
        for attachment in request.json().get("attachments", []):
            titles.append(attachment.get("title", ""))
    return titles


def _telegram_messages(stack: Stack) -> list[Recorded]:
    return [r for r in stack.telegram.requests if r.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"]


def test_the_watchdog_pings_the_heartbeat_from_the_real_prometheus(stack: Stack) -> None:
    ping = wait_until("a heartbeat ping", lambda: stack.heartbeat.requests, timeout=30)[0]
    assert ping.path == "/ping/live-stack"
    assert [a["labels"]["alertname"] for a in ping.json()["alerts"]] == ["Watchdog"]


def test_a_replica_going_down_does_not_mute_the_survivor(stack: Stack) -> None:
    """Defect 1 with two real exporters (checks.run_on: leader, the default): the leader pages, the
    standby does not (the checks run once); the leader dies and is reported down, the survivor takes
    over the checks and its page for the failing check is active (before, ExporterDown of one
    muted every exporter, so the survivor's page would have been inhibited)."""
    survivor, dying = f"127.0.0.1:{stack.exporter.port}", f"127.0.0.1:{stack.replica.port}"

    def page_of(instance: str) -> dict[str, Any] | None:
        for alert in stack.alertmanager.alerts():
            labels = alert["labels"]
            if (labels["alertname"], labels.get("check"), labels.get("instance")) == (
                "BlocktrustCheckFailing",
                FAILING_CHECK,
                instance,
            ):
                found: dict[str, Any] = alert
                return found
        return None

    wait_until("the leader's page", lambda: page_of(dying), timeout=60)
    assert page_of(survivor) is None  # the standby runs no check
    stack.replica.stop()
    wait_until(
        "the leader reported down",
        lambda: [
            a
            for a in stack.alertmanager.alerts()
            if a["labels"]["alertname"] == "BlocktrustExporterDown" and a["labels"]["instance"] == dying
        ],
        timeout=30,
    )
    page = wait_until(
        "the survivor's page",
        lambda: (p := page_of(survivor)) is not None and p["status"]["state"] != "unprocessed" and p,
        timeout=60,
    )
    assert page["status"]["state"] == "active", page
    assert not page["status"]["inhibitedBy"]
    # The dead leader is still reported down while the survivor pages: the inhibition had its chance.
    assert any(
        a["labels"]["alertname"] == "BlocktrustExporterDown" and a["labels"]["instance"] == dying
        for a in stack.alertmanager.alerts()
    )


def test_failing_endpoint_pages_and_resolves_through_alertmanager(stack: Stack) -> None:
    # 1. The SLO page arrives on Slack, in the exporter's message style. (api.health is a crit
    #    check, so BlocktrustCheckFailing pages too: a group of its own.)
    def burn_pages() -> list[str]:
        return [
            t
            for t in _slack_titles(stack)
            if t.startswith("🚨 [CRIT]")
            and FAILING_CHECK in t
            and ("error budget" in t or "BlocktrustSLOAvailabilityBurn" in t)
        ]

    assert wait_until("the SLO page on Slack", burn_pages, timeout=60)
    slack_request = stack.slack.requests[0]
    assert slack_request.path == "/services/T000/B000/XXXX"

    # 2. ... with the expected labels, as Alertmanager holds them.
    firing = [
        a
        for a in stack.alertmanager.alerts()
        if a["labels"]["alertname"] == "BlocktrustSLOAvailabilityBurn" and a["labels"]["check"] == FAILING_CHECK
    ]
    pages = [a for a in firing if a["labels"]["severity"] == "crit"]
    assert pages, firing
    assert {"page-fast", "page-slow"} >= {a["labels"]["burn"] for a in pages}
    for alert in pages:
        labels = alert["labels"]
        assert labels["job"] == "blocktrust-exporter" and labels["slo"] == "availability"
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url", "dashboard"}
        assert alert["status"]["state"] == "active"
    # The tickets of the same check are held back while it pages.
    for ticket in (a for a in firing if a["labels"]["severity"] == "warn"):
        assert ticket["status"]["state"] == "suppressed", ticket
    failing = [a for a in stack.alertmanager.alerts() if a["labels"]["alertname"] == "BlocktrustCheckFailing"]
    assert [a["labels"]["severity"] for a in failing if a["labels"]["check"] == FAILING_CHECK] in ([], ["crit"])

    # 3. Crit also goes to Telegram, to the configured chat.
    message = wait_until("the page on Telegram", lambda: _telegram_messages(stack), timeout=30)[0].json()
    assert str(message["chat_id"]) == TELEGRAM_CHAT
    assert message["text"].startswith("🚨 [CRIT]") and FAILING_CHECK in message["text"]
    assert f"Dashboard: {DASHBOARD_BASE}/d/blocktrust-slo/" in message["text"] and "Since " in message["text"]
    assert "localhost" not in message["text"]
    # Defect 6: the page says what failed, as the exporter knew it.
    assert wait_until(
        "the check-failing page naming the failure",
        lambda: [
            a
            for r in stack.slack.requests
            for a in r.json().get("attachments", [])
            if f"🚨 [CRIT] {FAILING_CHECK} failing: http_status (HTTP 503)" in a.get("title", "") + a.get("text", "")
        ],
        timeout=30,
    )

    # 4. Remove the fault: the resolved notice follows once the short windows are clean.
    requests.delete(stack.simulator_url + "/_simulator/faults", params={"path": FAILING_PATH}, timeout=5)
    resolved = wait_until(
        "the resolved notice of the SLO page on Slack",
        lambda: [
            t
            for t in _slack_titles(stack)
            if t.startswith("✅ [RESOLVED]")
            and FAILING_CHECK in t
            and ("error budget" in t or "BlocktrustSLOAvailabilityBurn" in t)
        ],
        timeout=90,
    )
    assert resolved
    up = stack.prometheus.series(f'blocktrust_check_up{{check="{FAILING_CHECK}"}}')
    assert up and up[0]["value"][1] == "1"

"""The bundled Alertmanager configuration: loads in Debian's Alertmanager 0.25 (amtool), routes
each severity to the right receivers, inhibits as documented (real Alertmanager), and gets its
secrets at start from entrypoint.sh without printing them."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.bundle.conftest import REPO, Alertmanager, alertmanager_test_config, tool, wait_until
from tests.support.http_receiver import HttpReceiver

BUNDLED = REPO / "alertmanager" / "alertmanager.yml"
ENTRYPOINT = REPO / "alertmanager" / "entrypoint.sh"
TOKEN = "123456:test-token-never-printed"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("amtool"), *args], capture_output=True, text=True, check=False, timeout=30)


def render(tmp_path: Path, env: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run entrypoint.sh with ``true`` as the 'binary'; return the rendered config and the run."""
    out_dir = tmp_path / "rendered"
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "true"],
        env={"PATH": "/usr/bin:/bin", "AM_CONFIG_SOURCE": str(BUNDLED), "AM_CONFIG_DIR": str(out_dir), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return out_dir / "alertmanager.yml", result


def test_bundled_config_loads_in_alertmanager_0_25() -> None:
    version = amtool("--version")
    assert "0.25" in version.stdout + version.stderr
    result = amtool("check-config", str(BUNDLED))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout and "2 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=crit"], "crit"),
        (["severity=warn"], "warn"),
        (["severity=info"], "blackhole"),
        ([], "blackhole"),
    ],
    ids=["crit", "warn", "info", "no-severity"],
)
def test_each_severity_routes_to_its_receiver(labels: list[str], receiver: str) -> None:
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={BUNDLED}",
        f"--verify.receivers={receiver}",
        "alertname=BlocktrustSLOAvailabilityBurn",
        "check=api.health",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_crit_reaches_slack_and_telegram_and_warn_only_slack(tmp_path: Path) -> None:
    rendered, result = render(tmp_path, {"ALERT_TELEGRAM_BOT": TOKEN, "ALERT_TELEGRAM_CHAT": "-1001234"})
    assert result.returncode == 0, result.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(rendered.read_text())["receivers"]}
    assert set(receivers["crit"]) == {"name", "slack_configs", "telegram_configs"}
    assert set(receivers["warn"]) == {"name", "slack_configs"}
    assert receivers["crit"]["telegram_configs"][0]["chat_id"] == -1001234


def test_entrypoint_fills_in_secrets_privately_and_never_prints_them(tmp_path: Path) -> None:
    rendered, result = render(
        tmp_path,
        {
            "ALERT_TELEGRAM_BOT": TOKEN,
            "ALERT_TELEGRAM_CHAT": "-1001234",
            "ALERT_SLACK_WEBHOOK": "http://127.0.0.1:9/s3cr3t",
        },
    )
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr and "s3cr3t" not in result.stdout + result.stderr
    text = rendered.read_text()
    assert TOKEN in text and "TELEGRAM_BOT_TOKEN_SET_AT_START" not in text
    assert "s3cr3t" not in text, "the Slack URL goes to a file, not into the config"
    slack_file = rendered.parent / "slack_webhook"
    assert slack_file.read_text() == "http://127.0.0.1:9/s3cr3t"
    for path in (rendered, slack_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    check = amtool("check-config", str(rendered))
    assert check.returncode == 0, check.stdout + check.stderr
    assert TOKEN not in check.stdout + check.stderr


def test_entrypoint_without_telegram_drops_the_telegram_block(tmp_path: Path) -> None:
    rendered, result = render(tmp_path, {})
    assert result.returncode == 0, result.stderr
    text = rendered.read_text()
    assert "telegram_configs" not in text and "api_url_file: /run/secrets/alert_slack_webhook" in text
    assert amtool("check-config", str(rendered)).returncode == 0


def test_entrypoint_rejects_a_non_numeric_chat_id(tmp_path: Path) -> None:
    _, result = render(tmp_path, {"ALERT_TELEGRAM_BOT": TOKEN, "ALERT_TELEGRAM_CHAT": "@channel"})
    assert result.returncode == 2
    assert "numeric" in result.stderr


# ------------------------------------------------------------------------- inhibition, for real
@pytest.fixture(scope="module")
def slack() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, slack: HttpReceiver) -> Iterator[Alertmanager]:
    workdir = tmp_path_factory.mktemp("am-inhibit")
    config = alertmanager_test_config(workdir / "config", group_wait="1s")
    manager = Alertmanager(config, workdir, {"ALERT_SLACK_WEBHOOK": slack.url + "/slack"})
    try:
        yield manager
    finally:
        manager.stop()


def _alert(name: str, severity: str, annotations: dict[str, str] | None = None, **labels: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": severity, "job": "blocktrust-exporter", **labels},
        "annotations": annotations or {"summary": f"{name} test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


def _state(manager: Alertmanager, name: str, check: str | None = None) -> dict[str, object] | None:
    for alert in manager.alerts():
        labels = alert["labels"]
        if labels["alertname"] == name and labels.get("check") == check:
            status: dict[str, object] = alert["status"]
            return status
    return None


def test_a_page_inhibits_the_tickets_of_the_same_check_only(alertmanager: Alertmanager) -> None:
    alertmanager.post_alerts(
        [
            _alert("BlocktrustSLOAvailabilityBurn", "crit", check="api.events", burn="page-fast"),
            _alert("BlocktrustCheckFailing", "warn", check="api.events"),
            _alert("BlocktrustCheckFailing", "warn", check="api.stats"),
        ]
    )
    inhibited = wait_until(
        "the api.events ticket to be inhibited",
        lambda: (s := _state(alertmanager, "BlocktrustCheckFailing", "api.events")) and s["inhibitedBy"] and s,
        timeout=15,
    )
    assert inhibited["state"] == "suppressed"
    other = _state(alertmanager, "BlocktrustCheckFailing", "api.stats")
    assert other is not None and other["state"] == "active" and not other["inhibitedBy"]
    page = _state(alertmanager, "BlocktrustSLOAvailabilityBurn", "api.events")
    assert page is not None and page["state"] == "active"


def test_exporter_down_inhibits_every_check_alert(alertmanager: Alertmanager) -> None:
    alertmanager.post_alerts(
        [
            _alert("BlocktrustExporterDown", "crit", instance="exporter:9108"),
            _alert("BlocktrustSLOLatencyBurn", "crit", check="api.contracts", burn="page-fast"),
        ]
    )
    inhibited = wait_until(
        "the check page to be inhibited by ExporterDown",
        lambda: (s := _state(alertmanager, "BlocktrustSLOLatencyBurn", "api.contracts")) and s["inhibitedBy"] and s,
        timeout=15,
    )
    assert inhibited["state"] == "suppressed"
    down = _state(alertmanager, "BlocktrustExporterDown")
    assert down is not None and down["state"] == "active"


def test_slack_message_follows_the_exporters_style(alertmanager: Alertmanager, slack: HttpReceiver) -> None:
    annotations = {
        "summary": "synthetic.hash is spending its availability error budget 14.4x too fast",
        "description": "8.571% failed runs over the last 35m",
        "runbook_url": "https://example.org/runbooks.md#blocktrustsloavailabilityburn",
        "dashboard": "http://localhost:3000/d/blocktrust-slo/blocktrust-slo-overview?var-check=synthetic.hash",
    }
    # Another job: the ExporterDown posted above inhibits everything of job blocktrust-exporter.
    alertmanager.post_alerts(
        [_alert("BlocktrustSLOAvailabilityBurn", "crit", annotations, check="synthetic.hash", job="format-test")]
    )

    def attachment() -> dict[str, str] | None:
        for request in slack.requests:
            for item in request.json().get("attachments", []):
                if "synthetic.hash" in item.get("title", ""):
                    found: dict[str, str] = item
                    return found
        return None

    message = wait_until("the Slack notification", attachment, timeout=15)
    assert message["title"] == "🚨 [CRIT] synthetic.hash is spending its availability error budget 14.4x too fast"
    lines = message["text"].split("\n")
    assert lines[0] == "8.571% failed runs over the last 35m"
    assert lines[1].startswith("Since ") and lines[1].endswith(" UTC")
    assert lines[2:] == [f"Dashboard: {annotations['dashboard']}", f"Runbook: {annotations['runbook_url']}"]
    assert message["color"] == "danger"

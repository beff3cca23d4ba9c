"""The bundled Alertmanager configuration: loads in Debian's Alertmanager 0.25 (amtool) with every
combination of channels, routes each severity (and its common spellings) to the right receivers,
inhibits as documented and scoped to the source (real Alertmanager, two exporter instances), pings
the heartbeat with the Watchdog, renders messages Slack and Telegram take, and gets its secrets at
start from entrypoint.sh without printing them."""

from __future__ import annotations

import itertools
import json
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bundle.conftest import REPO, Alertmanager, alertmanager_test_config, tool, wait_until
from tests.support.http_receiver import HttpReceiver, Reply

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
    assert "1 templates" in result.stdout and "7 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=crit"], "crit"),
        (["severity=critical"], "crit"),
        (["severity=warn"], "warn"),
        (["severity=warning"], "warn"),
        ([], "warn"),
        (["severity=urgent"], "warn"),
        (["severity=info"], "dashboards-only"),
        (["severity=none"], "dashboards-only"),
        (["alertname=Watchdog", "severity=none"], "heartbeat"),
    ],
    ids=["crit", "critical", "warn", "warning", "no-severity", "unknown", "info", "none", "watchdog"],
)
def test_each_severity_routes_to_its_receiver(labels: list[str], receiver: str) -> None:
    """Defect 10: "critical", "warning", a missing or unknown severity are routed, never dropped."""
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={BUNDLED}",
        f"--verify.receivers={receiver}",
        "check=api.health",
        *(labels if any(x.startswith("alertname=") for x in labels) else ["alertname=Burn", *labels]),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_crit_reaches_slack_and_telegram_and_warn_only_slack(tmp_path: Path) -> None:
    rendered, result = render(
        tmp_path,
        {"ALERT_TELEGRAM_BOT": TOKEN, "ALERT_TELEGRAM_CHAT": "-1001234", "ALERT_SLACK_WEBHOOK": "http://127.0.0.1:9/s"},
    )
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
    rendered, result = render(tmp_path, {"ALERT_SLACK_WEBHOOK": "http://127.0.0.1:9/hook"})
    assert result.returncode == 0, result.stderr
    text = rendered.read_text()
    assert "telegram_configs" not in text and "slack_configs" in text
    assert amtool("check-config", str(rendered)).returncode == 0


CHANNELS = {
    "slack": {"ALERT_SLACK_WEBHOOK": "http://127.0.0.1:9/slack"},
    "telegram": {"ALERT_TELEGRAM_BOT": TOKEN, "ALERT_TELEGRAM_CHAT": "-1001234"},
    "webhook": {"ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook?a=1&b=2"},
}
COMBINATIONS = [c for n in range(len(CHANNELS) + 1) for c in itertools.combinations(CHANNELS, n)]
CONFIG_KEYS = {"slack": "slack_configs", "telegram": "telegram_configs", "webhook": "webhook_configs"}


@pytest.mark.parametrize("channels", COMBINATIONS, ids=["+".join(c) or "none" for c in COMBINATIONS])
def test_every_channel_combination_loads_and_routes_warn_somewhere_or_says_so(
    channels: tuple[str, ...], tmp_path: Path
) -> None:
    """Defect 5: Telegram without Slack (and every other combination) loads and sends warn
    somewhere; with no channel at all, start-up says that alerts go nowhere."""
    env = {k: v for name in channels for k, v in CHANNELS[name].items()}
    rendered, result = render(tmp_path, env)
    assert result.returncode == 0, result.stderr
    check = amtool("check-config", str(rendered))
    assert check.returncode == 0, check.stdout + check.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(rendered.read_text())["receivers"]}
    crit = {k for k in receivers["crit"] if k != "name"}
    warn = {k for k in receivers["warn"] if k != "name"}
    assert crit == {CONFIG_KEYS[c] for c in channels}
    for path in {cfg.get("api_url_file") for cfg in receivers["crit"].get("slack_configs", [])}:
        assert Path(path).is_file(), "Slack is only configured with a file that exists"
    if channels:
        assert warn, f"warn goes nowhere with {channels}"
        assert warn <= crit
        assert "go nowhere" not in result.stderr
    else:
        assert not warn
        assert "no notification channel configured" in result.stderr and "go nowhere" in result.stderr
    assert "ALERT_HEARTBEAT_URL" in result.stderr, "start-up says whether the Watchdog pings anything"


@pytest.mark.parametrize(
    ("env", "culprit"),
    [
        ({"ALERT_TELEGRAM_BOT": TOKEN}, "ALERT_TELEGRAM_CHAT"),
        ({"ALERT_TELEGRAM_CHAT": "-100"}, "ALERT_TELEGRAM_BOT"),
        ({"ALERT_WEBHOOK_URL": "ftp://x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_HEARTBEAT_URL": "https://hc-ping.com/a'b"}, "ALERT_HEARTBEAT_URL"),
        ({"ALERT_SLACK_WEBHOOK_FILE": "/nonexistent/slack"}, "ALERT_SLACK_WEBHOOK_FILE"),
        ({"ALERT_WEBHOOK_URL_FILE": "/nonexistent/hook"}, "ALERT_WEBHOOK_URL_FILE"),
    ],
)
def test_entrypoint_names_a_bad_channel_setting(env: dict[str, str], culprit: str, tmp_path: Path) -> None:
    _, result = render(tmp_path, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0], result.stderr


def test_the_heartbeat_url_comes_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "heartbeat"
    secret.write_text("https://hc-ping.com/0000-secret-uuid")
    rendered, result = render(tmp_path, {"ALERT_HEARTBEAT_URL_FILE": str(secret)})
    assert result.returncode == 0, result.stderr
    assert "secret-uuid" not in result.stderr
    heartbeat = {r["name"]: r for r in yaml.safe_load(rendered.read_text())["receivers"]}["heartbeat"]
    assert heartbeat["webhook_configs"][0]["url"] == "https://hc-ping.com/0000-secret-uuid"
    assert heartbeat["webhook_configs"][0]["send_resolved"] is False


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
def heartbeat() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def alertmanager(
    tmp_path_factory: pytest.TempPathFactory, slack: HttpReceiver, heartbeat: HttpReceiver
) -> Iterator[Alertmanager]:
    workdir = tmp_path_factory.mktemp("am-inhibit")
    config = alertmanager_test_config(workdir / "config", group_wait="1s")
    manager = Alertmanager(
        config,
        workdir,
        {"ALERT_SLACK_WEBHOOK": slack.url + "/slack", "ALERT_HEARTBEAT_URL": heartbeat.url + "/ping/uuid"},
    )
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


def _find(manager: Alertmanager, **labels: str) -> dict[str, Any] | None:
    """The status of the one alert whose labels are exactly the test's ``labels`` (plus defaults)."""
    for alert in manager.alerts():
        if all(alert["labels"].get(k) == v for k, v in labels.items()) and len(alert["labels"]) == len(labels):
            status: dict[str, Any] = alert["status"]
            return status
    return None


def _settled(manager: Alertmanager, posted: dict[str, dict[str, str]], expected: dict[str, str]) -> None:
    """Wait until each posted alert (by key) is in its expected state (active / suppressed). The
    inhibitor takes in new alerts asynchronously: each test posts at least one alert that must end
    up suppressed in the same batch, so "active" is only read once the batch has been processed."""
    assert set(posted) == set(expected) and "suppressed" in expected.values()
    seen: dict[str, str] = {}

    def states() -> bool:
        for key, labels in posted.items():
            status = _find(manager, **labels)
            seen[key] = str(status["state"]) if status else "missing"
        return seen == expected

    try:
        wait_until("the expected alert states", states, timeout=15)
    except AssertionError:
        assert seen == expected
        raise


def _posted(manager: Alertmanager, *alerts: dict[str, Any]) -> dict[str, dict[str, str]]:
    manager.post_alerts(list(alerts))
    keyed: dict[str, dict[str, str]] = {}
    for alert in alerts:
        labels: dict[str, str] = alert["labels"]
        keyed[f"{labels['alertname']}/{labels.get('instance', '-')}/{labels.get('check', '-')}"] = labels
    return keyed


def test_exporter_down_inhibits_the_alerts_of_that_exporter_only(alertmanager: Alertmanager) -> None:
    """Defect 1: with two replicas, the survivor's pages go out while the other one is down."""
    job = "two-replicas"
    down = _alert("BlocktrustExporterDown", "crit", job=job, instance="exporter-a:9108")
    own = _alert("BlocktrustCheckFailing", "crit", job=job, instance="exporter-a:9108", check="api.health")
    survivor = _alert("BlocktrustCheckFailing", "crit", job=job, instance="exporter-b:9108", check="api.health")
    burn = _alert("BlocktrustSLOLatencyBurn", "crit", job=job, check="shop.home", burn="page-fast")
    posted = _posted(alertmanager, down, own, survivor, burn)
    _settled(
        alertmanager,
        posted,
        {
            "BlocktrustExporterDown/exporter-a:9108/-": "active",
            "BlocktrustCheckFailing/exporter-a:9108/api.health": "suppressed",
            "BlocktrustCheckFailing/exporter-b:9108/api.health": "active",
            "BlocktrustSLOLatencyBurn/-/shop.home": "active",  # per job: not that exporter's alone
        },
    )


def test_alerts_without_a_check_never_inhibit_each_other(alertmanager: Alertmanager) -> None:
    """Defect 2: two alerts that both lack ``check`` are not "the same check"."""
    crit = _alert("BlocktrustAlertNoticesAbandoned", "crit", job="no-check", channel="slack")
    warn = _alert("BlocktrustStoreWriteErrors", "warn", job="no-check", instance="exporter:9108")
    other = _alert("SomeoneElsesAlert", "warning", job="other-job")
    # The control: a crit and a warn of the same check in the same job are inhibited.
    page = _alert("BlocktrustCheckFailing", "crit", job="no-check", check="shop.home", instance="x:1")
    ticket = _alert("BlocktrustSLOAvailabilityBurn", "warn", job="no-check", check="shop.home", burn="ticket-fast")
    _settled(
        alertmanager,
        _posted(alertmanager, crit, warn, other, page, ticket),
        {
            "BlocktrustAlertNoticesAbandoned/-/-": "active",
            "BlocktrustStoreWriteErrors/exporter:9108/-": "active",
            "SomeoneElsesAlert/-/-": "active",
            "BlocktrustCheckFailing/x:1/shop.home": "active",
            "BlocktrustSLOAvailabilityBurn/-/shop.home": "suppressed",
        },
    )


def test_a_failing_dependency_mutes_its_dependants_on_the_same_instance(alertmanager: Alertmanager) -> None:
    """The default depends_on map: api.* and synthetic.* on api.health, listener.* on chain.head,
    per exporter instance (and the job-level burn alerts of the dependants in the same job)."""
    job = "dependencies"
    a, b = "exporter-a:9108", "exporter-b:9108"
    alerts = [
        _alert("BlocktrustCheckFailing", "crit", job=job, instance=a, check="api.health"),
        _alert("BlocktrustCheckFailing", "warn", job=job, instance=a, check="api.events"),
        _alert("BlocktrustCheckFailing", "warn", job=job, instance=a, check="synthetic.hash"),
        _alert("BlocktrustCheckFailing", "warn", job=job, instance=b, check="api.events"),
        _alert("BlocktrustSLOAvailabilityBurn", "crit", job=job, check="api.stats", burn="page-fast"),
        _alert("BlocktrustCheckFailing", "crit", job=job, instance=b, check="chain.head"),
        _alert("BlocktrustListenerLagging", "warn", job=job, instance=b, check="listener.lag"),
        _alert("BlocktrustListenerStalled", "crit", job=job, instance=a, check="listener.progress"),
    ]
    _settled(
        alertmanager,
        _posted(alertmanager, *alerts),
        {
            f"BlocktrustCheckFailing/{a}/api.health": "active",
            f"BlocktrustCheckFailing/{a}/api.events": "suppressed",
            f"BlocktrustCheckFailing/{a}/synthetic.hash": "suppressed",
            f"BlocktrustCheckFailing/{b}/api.events": "active",  # its own api.health is fine
            "BlocktrustSLOAvailabilityBurn/-/api.stats": "suppressed",
            f"BlocktrustCheckFailing/{b}/chain.head": "active",
            f"BlocktrustListenerLagging/{b}/listener.lag": "suppressed",
            f"BlocktrustListenerStalled/{a}/listener.progress": "active",  # chain.head of a is fine
        },
    )


def test_the_watchdog_pings_the_heartbeat_and_is_never_inhibited(
    alertmanager: Alertmanager, heartbeat: HttpReceiver
) -> None:
    watchdog = _alert("Watchdog", "none", job="prometheus")
    absent = _alert("BlocktrustExporterAbsent", "crit", job="prometheus")
    # The control: ExporterAbsent mutes the job's other alerts, the Watchdog among them if it could.
    other = _alert("BlocktrustStoreWriteErrors", "warn", job="prometheus")
    _settled(
        alertmanager,
        _posted(alertmanager, watchdog, absent, other),
        {
            "Watchdog/-/-": "active",
            "BlocktrustExporterAbsent/-/-": "active",
            "BlocktrustStoreWriteErrors/-/-": "suppressed",
        },
    )
    ping = wait_until("the heartbeat ping", lambda: heartbeat.requests, timeout=15)[0]
    assert ping.path == "/ping/uuid"
    assert ping.json()["alerts"][0]["labels"]["alertname"] == "Watchdog"


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


# ------------------------------------------------------------------------- message templates
TEMPLATES = REPO / "alertmanager" / "templates" / "blocktrust.tmpl"


def _render_template(tmp_path: Path, text: str, alerts: list[dict[str, Any]], templates: Path = TEMPLATES) -> str:
    """What Alertmanager's template engine makes of ``text`` for a group of ``alerts`` (amtool)."""
    data = tmp_path / "data.json"
    firing = any(a["status"] == "firing" for a in alerts)
    data.write_text(
        json.dumps(
            {
                "receiver": "crit",
                "status": "firing" if firing else "resolved",
                "alerts": alerts,
                "groupLabels": {},
                "commonLabels": {},
                "commonAnnotations": {},
                "externalURL": "https://alertmanager.example.org",
            }
        )
    )
    result = amtool(
        "template", "render", f"--template.glob={templates}", f"--template.data={data}", f"--template.text={text}"
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _group_alert(summary: str, description: str = "", **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "BlocktrustCheckFailing", "severity": "crit", **labels},
        "annotations": {"summary": summary, "description": description, "dashboard": "https://g.example/d/x?a=1&b=2"},
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }


def test_telegram_groups_alike_alerts_and_stays_under_its_limit(tmp_path: Path) -> None:
    """Defect 7: twelve alerts differing only by instance are one block; many distinct ones are
    summarised ("and N more") instead of being cut at 4096 characters."""
    alike = [_group_alert("api.health failing", "HTTP 500", instance=f"exporter-{i}:9108") for i in range(12)]
    distinct = [_group_alert(f"check-{i} failing", "x" * 300, instance="exporter-0:9108") for i in range(40)]
    text = _render_template(tmp_path, '{{ template "blocktrust.telegram" . }}', alike + distinct)
    assert len(text) <= 4096
    assert text.count("api.health failing") == 1
    assert "(and 11 more alike; instances: exporter-0:9108, exporter-1:9108" in text
    shown = sum(f"check-{i} failing\n" in text for i in range(40))
    assert 0 < shown < 40
    assert text.rstrip().endswith(f"… and {40 - shown} more alerts (all of them: https://alertmanager.example.org)")


@pytest.mark.parametrize("char", ["x", "é", "🚨"])
def test_telegram_shows_an_alert_too_long_for_one_message_shortened_not_dropped(char: str, tmp_path: Path) -> None:
    """Defect 7's kind: one alert whose description alone is over the limit (any alert routed through
    this Alertmanager may carry one) is shown with its description shortened, never replaced by a
    bare "… and 1 more alerts"; a second alert behind it is shown or summarised, as the room says."""
    long = _group_alert("a failing", char * 5000, instance="x:1")
    for alerts in ([long], [long, _group_alert("b failing", "timeout")]):
        text = _render_template(tmp_path, '{{ template "blocktrust.telegram" . }}', alerts)
        assert len(text.encode("utf-16-le")) // 2 <= 4096  # what Telegram counts
        assert text.startswith(f"🚨 [CRIT] a failing\n{char * 100}")
        assert "…\nSince 2026-01-01 12:00:00 UTC\nDashboard: https://g.example/d/x?a=1&b=2" in text
    summarised = text.rstrip().endswith("… and 1 more alerts (all of them: https://alertmanager.example.org)")
    assert ("\n\n🚨 [CRIT] b failing\ntimeout\n" in text) != summarised


def test_telegram_shows_a_small_group_in_full(tmp_path: Path) -> None:
    alerts = [_group_alert("a failing", "HTTP 500", instance="x:1"), _group_alert("b failing", "timeout")]
    text = _render_template(tmp_path, '{{ template "blocktrust.telegram" . }}', alerts)
    assert text.startswith("🚨 [CRIT] a failing\nHTTP 500\nSince 2026-01-01 12:00:00 UTC\nDashboard: ")
    assert "\n\n🚨 [CRIT] b failing\ntimeout\n" in text and "more" not in text


def test_slack_texts_are_escaped(tmp_path: Path) -> None:
    """Defect 9: a description cannot mention @channel or a user, nor break the markup."""
    alert = _group_alert("<!channel> a & b", "<@U123ABC> said <b>hi</b> & left")
    title = _render_template(tmp_path, '{{ template "blocktrust.title" . }}', [alert])
    text = _render_template(tmp_path, '{{ template "blocktrust.text" . }}', [alert])
    assert title.strip() == "🚨 [CRIT] &lt;!channel&gt; a &amp; b"
    assert text.startswith("&lt;@U123ABC&gt; said &lt;b&gt;hi&lt;/b&gt; &amp; left\n")
    assert "Dashboard: https://g.example/d/x?a=1&amp;b=2" in text
    assert "<" not in title + text and ">" not in title + text


@pytest.mark.parametrize("which", ["blocktrust.text", "blocktrust.telegram"])
def test_links_are_built_from_the_configured_external_urls(which: str, tmp_path: Path) -> None:
    """Defect 6: the rules carry a dashboard path and a runbook anchor; the messages link them under
    ALERT_DASHBOARD_URL and ALERT_RUNBOOK_URL, leave them out when those are unset, and never link
    a localhost Alertmanager."""
    alert = _group_alert("api.health failing: http_status (HTTP 503)", "The last 2 runs failed")
    alert["annotations"].update(
        dashboard="/d/blocktrust-slo/blocktrust-slo-overview?var-check=api.health",
        runbook_url="#blocktrustcheckfailing",
    )
    env = {"ALERT_DASHBOARD_URL": "https://grafana.example.org/", "ALERT_RUNBOOK_URL": "https://wiki.example.org/rb"}
    rendered, result = render(tmp_path / "with", env)
    assert result.returncode == 0, result.stderr
    templates = rendered.parent / "templates" / "blocktrust.tmpl"
    text = _render_template(tmp_path, f'{{{{ template "{which}" . }}}}', [alert], templates)
    dashboard = "https://grafana.example.org/d/blocktrust-slo/blocktrust-slo-overview?var-check=api.health"
    assert f"Dashboard: {dashboard}\n" in text + "\n"
    assert "Runbook: https://wiki.example.org/rb#blocktrustcheckfailing" in text

    rendered, result = render(tmp_path / "without", {})
    assert "ALERT_DASHBOARD_URL" in result.stderr
    templates = rendered.parent / "templates" / "blocktrust.tmpl"
    text = _render_template(tmp_path, f'{{{{ template "{which}" . }}}}', [alert], templates)
    assert "Dashboard:" not in text and "Runbook:" not in text and "/d/blocktrust-slo" not in text
    assert "The last 2 runs failed" in text


def test_a_localhost_alertmanager_is_never_linked(tmp_path: Path) -> None:
    many = [_group_alert(f"check-{i} failing", "x" * 500) for i in range(20)]
    data = {"externalURL": "http://localhost:9093"}
    text = _render_template(tmp_path, '{{ template "blocktrust.telegram" . }}', many)
    assert "(all of them: https://alertmanager.example.org)" in text
    local = tmp_path / "local"
    local.mkdir()
    payload = json.loads((tmp_path / "data.json").read_text()) | data
    (local / "data.json").write_text(json.dumps(payload))
    result = amtool(
        "template",
        "render",
        f"--template.glob={TEMPLATES}",
        f"--template.data={local / 'data.json'}",
        '--template.text={{ template "blocktrust.telegram" . }}',
    )
    assert result.returncode == 0 and "more alerts" in result.stdout and "localhost" not in result.stdout


def test_telegram_alone_delivers_a_warn_alert_on_a_running_alertmanager(tmp_path: Path) -> None:
    """Defect 5 as users met it: Telegram configured, Slack not. Alertmanager must not look for a
    Slack secret file; the warn alert reaches Telegram."""
    ok = {"ok": True, "result": {"message_id": 1, "date": 0, "chat": {"id": -1001234, "type": "group"}}}
    with HttpReceiver(default=Reply(200, ok)) as telegram:
        config = alertmanager_test_config(tmp_path / "config", group_wait="1s")
        manager = Alertmanager(
            config,
            tmp_path,
            {"ALERT_TELEGRAM_BOT": TOKEN, "ALERT_TELEGRAM_CHAT": "-1001234", "ALERT_TELEGRAM_API_URL": telegram.url},
        )
        try:
            manager.post_alerts([_alert("BlocktrustCheckFailing", "warning", check="api.stats", job="tg-only")])
            sent = wait_until("the warn alert on Telegram", lambda: telegram.requests, timeout=15)[0]
            assert sent.path == f"/bot{TOKEN}/sendMessage"
            assert sent.json()["text"].startswith("⚠️ [WARN] BlocktrustCheckFailing test")
            assert "no such file" not in manager.log()
        finally:
            manager.stop()

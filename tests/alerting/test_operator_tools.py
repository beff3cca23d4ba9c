"""Issue 15, acceptance 7 and the operator tools: ``notify-test`` against loopback receivers (exit 0,
each answer printed, secrets masked; exit 1 when a channel refuses), signed webhook notices that a
receiver verifies and a tampered body fails, and ``check NAME`` (exit 0 passed, 1 failed, 2 unknown)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.alerting.signing import SIGNATURE_HEADER, signature, verify
from exporter.cli import main
from exporter.clock import FakeClock
from exporter.demo.simulator.server import BlocktrustSimulator
from tests.alerting.kit import TELEGRAM_TOKEN, channel_receivers
from tests.support.http_receiver import HttpReceiver, Reply

SIGNING_SECRET = "whsec-test-5f2b9c0e8d"
SLACK_SECRET_PATH = "/services/T000/B000/slacksecret"


@pytest.fixture
def receivers() -> Iterator[dict[str, HttpReceiver]]:
    with channel_receivers() as peers:
        yield peers


def write_config(tmp_path: Path, tree: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def alerting_tree(receivers: dict[str, HttpReceiver]) -> dict[str, Any]:
    return {
        "alerting": {
            "slack": {"webhook_url": receivers["slack"].url + SLACK_SECRET_PATH},
            "telegram": {"bot_token": TELEGRAM_TOKEN, "chat_id": "-100123", "base_url": receivers["telegram"].url},
            "webhook": {"url": receivers["webhook"].url + "/hook", "signing_secret": SIGNING_SECRET},
        }
    }


def receiver_verifies(secret: str, body: bytes, header: str, now: float, tolerance: float = 300) -> bool:
    """What docs/alerting.md tells a receiver to do, written independently of exporter.alerting.signing."""
    parts = dict(part.split("=", 1) for part in header.split(","))
    timestamp = parts["t"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return abs(now - int(timestamp)) <= tolerance and hmac.compare_digest(expected, parts["v1"])


def test_notify_test_sends_firing_then_resolved_to_each_channel_and_prints_each_answer(
    tmp_path: Path, receivers: dict[str, HttpReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    # The webhook's answer echoes a secret: what is printed must not.
    receivers["webhook"].script(Reply(200, f"accepted for bot {TELEGRAM_TOKEN}"), Reply(202, "queued"))
    config = write_config(tmp_path, alerting_tree(receivers))
    assert main(["notify-test", "--config", config]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "slack firing: OK (HTTP 200 'ok')",
        "slack resolved: OK (HTTP 200 'ok')",
        'telegram firing: OK (HTTP 200 \'{"ok": true, "result": {"message_id": 1, "chat": {"id": -100123}}}\')',
        'telegram resolved: OK (HTTP 200 \'{"ok": true, "result": {"message_id": 1, "chat": {"id": -100123}}}\')',
        "webhook firing: OK (HTTP 200 'accepted for bot ***')",  # the token echoed back, masked
        "webhook resolved: OK (HTTP 202 'queued')",
    ]
    for name, peer in receivers.items():
        texts = [r.text for r in peer.requests]
        assert len(texts) == 2, name
        assert "notify-test" in texts[0] and "RESOLVED" in texts[1], name
    [firing, resolved] = [r.json() for r in receivers["webhook"].requests]
    assert (firing["check"], firing["state"], resolved["state"]) == ("notify-test", "firing", "resolved")


def test_a_receiver_verifies_the_webhook_signature_and_rejects_a_tampered_body(
    tmp_path: Path, receivers: dict[str, HttpReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, alerting_tree(receivers))
    assert main(["notify-test", "--config", config, "--channel", "webhook"]) == 0
    assert [r.path for r in receivers["slack"].requests + receivers["telegram"].requests] == []
    now = time.time()
    for request in receivers["webhook"].requests:
        header = request.headers[SIGNATURE_HEADER]
        assert header.startswith("t=") and ",v1=" in header
        assert receiver_verifies(SIGNING_SECRET, request.body, header, now)
        assert verify(SIGNING_SECRET, request.body, header, now)
        tampered = request.body.replace(b'"info"', b'"crit"')
        assert tampered != request.body
        assert not receiver_verifies(SIGNING_SECRET, tampered, header, now)
        assert not verify(SIGNING_SECRET, tampered, header, now)
        assert not verify("another-secret", request.body, header, now)
        assert not verify(SIGNING_SECRET, request.body, header, now + 3600)  # a replay an hour later
    assert SIGNING_SECRET not in capsys.readouterr().out


@pytest.mark.parametrize(
    "header",
    ["", "v1=abc", "t=abc,v1=abc", "t=1,t=2,v1=abc", "t=١٢,v1=abc", "garbage"],
)
def test_a_malformed_signature_header_never_verifies(header: str) -> None:
    body = b'{"check": "api.health"}'
    assert not verify(SIGNING_SECRET, body, header, 12.0)
    assert verify(SIGNING_SECRET, body, signature(SIGNING_SECRET, body, 12), 12.0)


def test_notify_test_exits_1_naming_a_channel_that_refused(
    tmp_path: Path, receivers: dict[str, HttpReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    receivers["slack"].script(Reply(403, "invalid_token"), Reply(403, "invalid_token"))
    config = write_config(tmp_path, alerting_tree(receivers))
    assert main(["notify-test", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "slack firing: FAILED (HTTP 403 'invalid_token'; rejected: " in out
    assert "webhook firing: OK" in out
    assert "slacksecret" not in out


def test_notify_test_names_an_unknown_channel_and_exits_2(
    tmp_path: Path, receivers: dict[str, HttpReceiver], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, alerting_tree(receivers))
    assert main(["notify-test", "--config", config, "--channel", "pager"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "blocktrust-exporter: notify-test: no channel 'pager' is configured (configured: slack, telegram, webhook)"
    ]
    assert all(peer.requests == [] for peer in receivers.values())


def test_check_runs_one_check_once_and_exits_by_its_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BlocktrustSimulator(email="monitor@example.org", password="s3cret-Pa55word", clock=FakeClock()) as sim:
        tree = {
            "api": {"base_url": sim.url, "email": "monitor@example.org", "password": "s3cret-Pa55word"},
            "listener": {"enabled": False},
            "store": {"sqlite_path": str(tmp_path / "never-created.db")},
        }
        config = write_config(tmp_path, tree)
        assert main(["check", "api.events", "--config", config]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("api.events: passed in ") and out[0].endswith(" ms: HTTP 200")
        assert sim.state()["requests"].get("/api/explorer/events") == 1  # that check only, once
        assert "/api/health" not in sim.state()["requests"]

        sim.set_fault("/api/explorer/stats", "500")
        assert main(["check", "api.stats", "--config", config]) == 1
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("api.stats: FAILED in ") and "HTTP 500" in out[0]
        assert '"status_code": 500' in out[1]

        assert main(["check", "api.nope", "--config", config]) == 2
        err = capsys.readouterr().err
        assert "check: no enabled check named 'api.nope' (enabled: api.health, api.events," in err
    assert not (tmp_path / "never-created.db").exists()  # nothing recorded

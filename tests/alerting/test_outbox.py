"""Issue #13 kind 5, channels that lie or move, against loopback receivers on both stores: each channel's
success is what its API documents (Slack's body, Telegram's ``ok``), a Telegram migration is followed
(and remembered across a restart), and a notice that could not be delivered waits in the store's outbox:
retried with back-off, delivered once after a restart, held by a maintenance window across a restart,
and given up on loudly (log and metric), never silently."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.alerting.alert import Alert
from exporter.alerting.notifier import build_notifier
from exporter.clock import FakeClock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics
from tests.alerting.kit import (
    CHANNELS,
    TELEGRAM_TOKEN,
    channel_receivers,
    channel_settings,
    table_rows,
)
from tests.alerting.kit import (
    AlertingProcess as Process,
)
from tests.support.http_receiver import HttpReceiver, Reply, refused_url

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
ROUND = 60.0
SUPERGROUP = -1001234567890
OUTBOX_RETRY = 300.0


@pytest.fixture
def receivers() -> Iterator[dict[str, HttpReceiver]]:
    with channel_receivers() as peers:
        yield peers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def processes(store_url: str, clock: FakeClock) -> Iterator[Any]:
    started: list[Process] = []

    def start(settings: AlertingSettings) -> Process:
        started.append(Process(store_url, settings, clock))
        return started[-1]

    yield start
    for process in started:
        process.close()


def settings_for(receivers: dict[str, HttpReceiver], **overrides: Any) -> AlertingSettings:
    # backoff_max is also the outbox's first wait before a notice's next round: 5 minutes, so that the
    # minute-long rounds of a test never reach it by accident.
    return channel_settings(
        receivers["slack"].url,
        receivers["telegram"].url,
        receivers["webhook"].url,
        **{"backoff_max": f"{OUTBOX_RETRY:.0f}s", **overrides},
    )


def texts(peer: HttpReceiver) -> list[str]:
    return [r.json()["text"].splitlines()[0] for r in peer.requests]


def outbox(store_url: str) -> list[tuple[Any, ...]]:
    return table_rows(store_url, "alert_outbox")


# ------------------------------------------------------------------------------ Slack's answers
@pytest.mark.parametrize(
    "refusal",
    [
        Reply(200, "invalid_payload"),  # a 200 whose body is an error: not delivered
        Reply(400, "invalid_payload"),
        Reply(400, "no_text"),
        Reply(404, "channel_not_found"),
        Reply(410, "channel_is_archived"),
        Reply(404, "no_service"),
        Reply(200, {"ok": False, "error": "channel_not_found"}),  # Web API style
        Reply(200, ""),  # an empty 200 is not Slack's "ok" either
    ],
    ids=["200-invalid_payload", "400-invalid_payload", "no_text", "channel_not_found", "archived", "no_service",
         "web-api-ok-false", "empty-200"],
)  # fmt: skip
def test_a_slack_error_answer_is_a_failure_logged_and_retried_from_the_outbox(
    refusal: Reply,
    processes: Any,
    receivers: dict[str, HttpReceiver],
    clock: FakeClock,
    store_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receivers["slack"].script(refusal)
    process = processes(settings_for(receivers))
    with caplog.at_level(logging.WARNING):
        process.rounds("xx")  # fires
        process.delivered()
    assert [r.status for r in receivers["slack"].requests] == [refusal.status]
    assert process.value("blocktrust_alerts_sent_total", channel="slack", outcome="success") == 0
    assert process.value("blocktrust_alert_delivery_failures_total", channel="slack", reason="rejected") == 1
    assert process.value("blocktrust_alert_outbox_pending_notices", channel="slack") == 1
    logged = [r.getMessage() for r in caplog.records if "slack" in r.getMessage()]
    assert any("rejected" in line and "not delivered" in line for line in logged), logged
    # The other channels were not held up, and the notice waits in the store for Slack alone.
    assert [len(receivers[c].requests) for c in ("telegram", "webhook")] == [1, 1]
    assert [row[1] for row in outbox(store_url)] == ["slack"]

    clock.advance(OUTBOX_RETRY)  # the outbox's next round
    process.delivered()
    assert [r.status for r in receivers["slack"].requests] == [refusal.status, 200]
    assert texts(receivers["slack"]) == ["🚨 [CRIT] API /health unavailable"] * 2
    assert process.value("blocktrust_alerts_sent_total", channel="slack", outcome="success") == 1
    assert outbox(store_url) == []
    clock.advance(3600)
    process.delivered()
    assert len(receivers["slack"].requests) == 2  # never sent twice


def test_slack_ok_is_a_delivery(processes: Any, receivers: dict[str, HttpReceiver], store_url: str) -> None:
    receivers["slack"].script(Reply(200, "ok"), Reply(200, {"ok": True, "ts": "1.2"}))
    process = processes(settings_for(receivers))
    process.rounds("xxoo")
    process.delivered()
    assert len(receivers["slack"].requests) == 2
    assert process.value("blocktrust_alerts_sent_total", channel="slack", outcome="success") == 2
    assert outbox(store_url) == []


# ------------------------------------------------------------------------------ Telegram's answers
MIGRATED = Reply(
    400,
    {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": SUPERGROUP},
    },
)


def test_a_telegram_migration_is_followed_logged_and_remembered_across_a_restart(
    processes: Any,
    receivers: dict[str, HttpReceiver],
    store_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receivers["telegram"].script(MIGRATED)
    settings = settings_for(receivers)
    first = processes(settings)
    with caplog.at_level(logging.WARNING):
        first.rounds("xx")
        first.delivered()
    sent = receivers["telegram"].requests
    assert [(r.status, r.json()["chat_id"]) for r in sent] == [(400, "-100123"), (200, str(SUPERGROUP))]
    assert all(r.path == f"/bot{TELEGRAM_TOKEN}/sendMessage" for r in sent)
    assert first.value("blocktrust_alerts_sent_total", channel="telegram", outcome="success") == 1
    assert first.value("blocktrust_alert_delivery_failures_total", channel="telegram", reason="migrated") == 1
    warning = [r.getMessage() for r in caplog.records if "migrated to" in r.getMessage()]
    assert warning and f"Update alerting.telegram.chat_id (ALERT_TELEGRAM_CHAT) to {SUPERGROUP}" in warning[-1]
    assert not any(TELEGRAM_TOKEN in r.getMessage() for r in caplog.records)
    assert outbox(store_url) == []

    first.rounds("oo")  # the resolved notice goes straight to the supergroup
    first.delivered()
    assert [r.json()["chat_id"] for r in receivers["telegram"].requests[2:]] == [str(SUPERGROUP)]
    first.close()

    second = processes(settings)  # a restart, the configuration not updated yet
    second.rounds("xx")
    second.delivered()
    assert [r.json()["chat_id"] for r in receivers["telegram"].requests[3:]] == [str(SUPERGROUP)]


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (Reply(200, "ok"), "bad_answer"),  # a 200 that is not the Bot API's JSON (a proxy's page)
        (Reply(403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"}), "rejected"),
        (Reply(200, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}), "rejected"),
    ],
    ids=["200-not-json", "403-kicked", "200-ok-false"],
)
def test_telegram_success_is_its_ok_field(
    refusal: Reply, reason: str, processes: Any, receivers: dict[str, HttpReceiver], clock: FakeClock
) -> None:
    receivers["telegram"].script(refusal)
    process = processes(settings_for(receivers))
    process.rounds("xx")
    process.delivered()
    assert process.value("blocktrust_alerts_sent_total", channel="telegram", outcome="success") == 0
    assert process.value("blocktrust_alert_delivery_failures_total", channel="telegram", reason=reason) == 1
    clock.advance(OUTBOX_RETRY)
    process.delivered()
    assert len(receivers["telegram"].requests) == 2
    assert process.value("blocktrust_alerts_sent_total", channel="telegram", outcome="success") == 1


# ------------------------------------------------------------------------------ across a restart
def test_a_notice_whose_channel_was_down_across_a_restart_is_delivered_once_after_it(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock
) -> None:
    down = channel_settings(
        refused_url(""), receivers["telegram"].url, receivers["webhook"].url, max_tries=2, backoff_max="5m"
    )
    first = processes(down)
    first.rounds("xx")  # fires; Slack is down
    first.delivered()
    assert first.value("blocktrust_alerts_sent_total", channel="slack", outcome="failure") == 1
    assert [row[1] for row in outbox(store_url)] == ["slack"]
    first.close()  # the process stops with the notice undelivered

    clock.advance(ROUND)
    second = processes(settings_for(receivers))  # restarted, Slack is back
    second.delivered()
    assert texts(receivers["slack"]) == ["🚨 [CRIT] API /health unavailable"]
    assert outbox(store_url) == []
    second.rounds("x" * 5)
    second.delivered()
    assert len(receivers["slack"].requests) == 1  # delivered once: no second firing, no replay
    third = processes(settings_for(receivers))  # another restart replays nothing either
    third.delivered()
    assert len(receivers["slack"].requests) == 1


def test_a_resolved_notice_held_by_maintenance_survives_a_restart(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock
) -> None:
    window = {"checks": ["api.*"], "start": "2026-01-05T10:05:00Z", "end": "2026-01-05T10:30:00Z"}
    settings = settings_for(receivers, maintenance=[window])
    first = processes(settings)
    first.rounds("xx")  # fires at 10:01, before the window
    first.rounds("x" * 5 + "oo")  # resolves at 10:08, inside the window
    first.delivered()
    assert [len(receivers[c].requests) for c in CHANNELS] == [1, 1, 1]  # only the firing notice
    assert len(outbox(store_url)) == 3  # the resolved notice waits, one per channel
    first.close()

    second = processes(settings)
    second.rounds("o" * 10)  # 10:09 .. 10:18
    second.delivered()
    assert [len(receivers[c].requests) for c in CHANNELS] == [1, 1, 1]
    clock.advance(12 * ROUND)  # 10:30: the window is over
    second.delivered()
    assert [len(receivers[c].requests) for c in CHANNELS] == [2, 2, 2]
    assert texts(receivers["slack"])[1] == "✅ [RESOLVED] API /health unavailable"
    assert outbox(store_url) == []


def test_two_replicas_deliver_each_outbox_notice_once(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock
) -> None:
    settings = settings_for(receivers)
    a, b = processes(settings), processes(settings)
    note = Alert("api.health", "crit", "firing", "API /health unavailable", "", START, START, incident_id=1)
    for _ in range(5):
        a.notifier.submit(note)
    a.delivered()
    b.delivered()
    a.delivered()
    assert [len(receivers[c].requests) for c in CHANNELS] == [5, 5, 5]
    assert outbox(store_url) == []


# ------------------------------------------------------------------------------ giving up
def test_a_notice_given_up_on_is_logged_and_counted_never_silent(
    processes: Any,
    store_url: str,
    clock: FakeClock,
    receivers: dict[str, HttpReceiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = channel_settings(
        refused_url(""), receivers["telegram"].url, receivers["webhook"].url, max_tries=1, outbox_give_up_after="10m"
    )
    process = processes(settings)
    with caplog.at_level(logging.ERROR):
        process.rounds("xx")
        for _ in range(30):  # half an hour of outbox rounds
            clock.advance(ROUND)
            process.delivered()
    assert outbox(store_url) == []
    assert process.value("blocktrust_alert_notices_abandoned_total", channel="slack", reason="network") == 1
    given_up = [r.getMessage() for r in caplog.records if "GIVEN UP" in r.getMessage()]
    assert len(given_up) == 1 and "slack" in given_up[0] and "api.health" in given_up[0]
    attempts = process.value("blocktrust_alert_delivery_attempts_total", channel="slack")
    assert 3 <= attempts <= 10  # bounded, with back-off: not one try per poll


def test_without_a_store_a_refused_notice_is_given_up_loudly(
    metrics: Metrics, registry: CollectorRegistry, receivers: dict[str, HttpReceiver], caplog: pytest.LogCaptureFixture
) -> None:
    receivers["slack"].script(Reply(400, "invalid_payload"))
    with requests.Session() as session:
        notifier = build_notifier(settings_for(receivers), metrics, FakeClock(START), session)
        notifier.start()
        with caplog.at_level(logging.ERROR):
            notifier.submit(Alert("api.health", "crit", "firing", "t", "", START, START))
            assert notifier.flush(10)
        notifier.stop(2)
    assert (
        registry.get_sample_value(
            "blocktrust_alert_notices_abandoned_total", {"channel": "slack", "reason": "rejected"}
        )
        == 1
    )
    assert any("GIVEN UP" in r.getMessage() for r in caplog.records)


def test_the_outbox_keeps_no_channel_secret(processes: Any, store_url: str, receivers: dict[str, HttpReceiver]) -> None:
    process = processes(channel_settings(refused_url(""), refused_url(""), refused_url(""), max_tries=1))
    process.rounds("xx")
    process.delivered()
    rows = outbox(store_url)
    assert len(rows) == 3
    text = repr(rows)
    assert "slacksecret" not in text and TELEGRAM_TOKEN not in text


def test_after_an_outage_a_channel_gets_the_firing_notice_and_the_latest_reminder_not_a_burst(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str
) -> None:
    down = channel_settings(
        refused_url(""),
        receivers["telegram"].url,
        receivers["webhook"].url,
        max_tries=1,
        backoff_max="5m",
        reminder_interval="10m",
    )
    first = processes(down)
    first.rounds("x" * 45)  # fires at 10:01, reminds at 10:11, 10:21, 10:31, 10:41; Slack down throughout
    assert len(receivers["webhook"].requests) == 5
    assert len([row for row in outbox(store_url) if row[1] == "slack"]) == 5
    first.close()

    second = processes(settings_for(receivers, reminder_interval="10m"))  # Slack is back
    second.delivered()
    assert texts(receivers["slack"]) == [
        "🚨 [CRIT] API /health unavailable",
        "🚨 [CRIT] Reminder: API /health unavailable",
    ]
    assert "(41m)" in receivers["slack"].requests[1].json()["text"]  # the latest reminder, 10:41
    assert outbox(store_url) == []
    second.rounds("oo")
    assert texts(receivers["slack"])[2:] == ["✅ [RESOLVED] API /health unavailable"]


def test_a_long_retry_after_is_honoured_by_the_outbox(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock
) -> None:
    flood = Reply(
        429, {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 900}}
    )
    receivers["telegram"].script(flood)
    process = processes(settings_for(receivers))  # retry_after_max 5m: too long to wait within a delivery
    process.rounds("xx")
    assert process.value("blocktrust_alert_delivery_failures_total", channel="telegram", reason="rate_limited") == 1
    clock.advance(OUTBOX_RETRY)  # the outbox's usual wait is not enough: Telegram asked for 15 minutes
    process.delivered()
    assert len(receivers["telegram"].requests) == 1
    clock.advance(900 - OUTBOX_RETRY)
    process.delivered()
    assert [r.status for r in receivers["telegram"].requests] == [429, 200]
    assert outbox(store_url) == []

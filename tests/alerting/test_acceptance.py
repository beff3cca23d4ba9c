"""Issue acceptance, end to end on both stores: engine -> notifier -> sender -> local HTTP receivers
standing in for Slack, Telegram and a webhook; FakeClocks drive time (one for check rounds, one for
the notifier's back-off, so retries never shift the round schedule)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.alerting.engine import AlertEngine
from exporter.alerting.notifier import Notifier, build_notifier
from exporter.clock import FakeClock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics
from exporter.store import Store, open_store
from tests.alerting.kit import (
    CHANNELS,
    TELEGRAM_TOKEN,
    channel_receivers,
    channel_settings,
    result,
    table_rows,
)
from tests.support.http_receiver import HttpReceiver, Reply, refused_url

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday
ROUND = 60.0


class Alerting:
    """The alerting half of the exporter, wired as ``runtime.py`` wires it."""

    def __init__(
        self,
        store_url: str,
        settings: AlertingSettings,
        clock: FakeClock,
        metrics: Metrics,
        notifier_clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock
        self.store: Store = open_store(store_url)
        self.store.migrate()
        self.session = requests.Session()
        self.notifier: Notifier = build_notifier(
            settings, metrics, notifier_clock or FakeClock(START), self.session, store=self.store
        )
        self.notifier.start()
        self.engine = AlertEngine(self.store, self.notifier, clock, metrics, settings)

    def rounds(self, pattern: str, check: str = "api.health") -> None:
        for mark in pattern:
            self.engine.observe([result(check, mark == "o", self.clock.now())])
            self.engine.tick()
            self.clock.advance(ROUND)

    def delivered(self) -> None:
        assert self.notifier.flush(10), "the notifier did not finish in time"

    def close(self) -> None:
        self.notifier.stop(5)
        self.session.close()
        self.store.close()


@pytest.fixture
def receivers() -> Iterator[dict[str, HttpReceiver]]:
    with channel_receivers() as peers:
        yield peers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def settings_for(receivers: dict[str, HttpReceiver], **overrides: Any) -> AlertingSettings:
    return channel_settings(receivers["slack"].url, receivers["telegram"].url, receivers["webhook"].url, **overrides)


def sent(registry: CollectorRegistry, channel: str, outcome: str) -> float:
    return registry.get_sample_value("blocktrust_alerts_sent_total", {"channel": channel, "outcome": outcome}) or 0.0


def bodies(peer: HttpReceiver) -> list[Any]:
    return [r.json() for r in peer.requests]


# ------------------------------------------------------------------------------------------ 1
def test_flapping_is_quiet_three_failures_fire_once_recovery_resolves_once(
    store_url: str, receivers: dict[str, HttpReceiver], clock: FakeClock, metrics: Metrics
) -> None:
    alerting = Alerting(store_url, settings_for(receivers), clock, metrics)
    try:
        alerting.rounds("xoxoxoxoxo")
        alerting.delivered()
        assert all(peer.requests == [] for peer in receivers.values())
        assert table_rows(store_url, "monitor_incidents") == []

        alerting.rounds("xxx")
        alerting.delivered()
        assert [len(peer.requests) for peer in receivers.values()] == [1, 1, 1]
        [slack] = bodies(receivers["slack"])
        assert slack["text"].splitlines()[:2] == [
            "🚨 [CRIT] API /health unavailable",
            "Status code: 503; status 503 not in [200]",
        ]
        [telegram] = receivers["telegram"].requests
        assert telegram.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
        assert telegram.json()["chat_id"] == "-100123"
        assert telegram.json()["text"].startswith("<b>🚨 [CRIT] API /health unavailable</b>")
        [hook] = bodies(receivers["webhook"])
        assert (hook["check"], hook["severity"], hook["state"]) == ("api.health", "crit", "firing")
        [incident] = alerting.store.open_incidents()
        assert incident.check_name == "api.health"

        alerting.rounds("oooo")
        alerting.delivered()
        assert [len(peer.requests) for peer in receivers.values()] == [2, 2, 2]
        assert bodies(receivers["slack"])[1]["text"].startswith("✅ [RESOLVED] API /health unavailable")
        assert bodies(receivers["webhook"])[1]["state"] == "resolved"
        rows = table_rows(store_url, "monitor_incidents")
        assert len(rows) == 1 and alerting.store.open_incidents() == []
        assert rows[0][2] is not None  # resolved_at
    finally:
        alerting.close()


def test_resolved_notices_can_be_switched_off_per_channel(
    sqlite_url: str, receivers: dict[str, HttpReceiver], clock: FakeClock, metrics: Metrics
) -> None:
    settings = settings_for(
        receivers,
        telegram={
            "bot_token": TELEGRAM_TOKEN,
            "chat_id": "1",
            "base_url": receivers["telegram"].url,
            "send_resolved": False,
        },
    )
    alerting = Alerting(sqlite_url, settings, clock, metrics)
    try:
        alerting.rounds("xxoo")
        alerting.delivered()
        assert [len(peer.requests) for peer in receivers.values()] == [2, 1, 2]
    finally:
        alerting.close()


# ------------------------------------------------------------------------------------------ 2
def test_restart_mid_incident_sends_no_second_firing_and_reminds_on_time(
    store_url: str, receivers: dict[str, HttpReceiver], clock: FakeClock, metrics: Metrics
) -> None:
    settings = settings_for(receivers, reminder_interval="30m")
    first = Alerting(store_url, settings, clock, metrics)
    first.rounds("xx")  # fires at 10:01
    first.delivered()
    first.close()

    second = Alerting(store_url, settings, clock, metrics)
    try:
        second.rounds("x" * 28)  # up to 10:29: not yet time for a reminder
        second.delivered()
        assert [len(peer.requests) for peer in receivers.values()] == [1, 1, 1]
        second.rounds("xx")  # 10:31 passes the 30 minutes since the firing notice
        second.delivered()
        assert [len(peer.requests) for peer in receivers.values()] == [2, 2, 2]
        reminder = bodies(receivers["webhook"])[1]
        assert (reminder["state"], reminder["reminder"], reminder["time"]) == (
            "firing",
            True,
            "2026-01-05T10:31:00+00:00",
        )
        assert "Reminder: API /health unavailable" in bodies(receivers["slack"])[1]["text"]
    finally:
        second.close()


# ------------------------------------------------------------------------------------------ 3
def test_a_channel_answering_500_500_200_gets_one_delivery(
    sqlite_url: str,
    receivers: dict[str, HttpReceiver],
    clock: FakeClock,
    metrics: Metrics,
    registry: CollectorRegistry,
) -> None:
    receivers["slack"].script(Reply(500), Reply(500))
    notifier_clock = FakeClock(START)
    alerting = Alerting(sqlite_url, settings_for(receivers), clock, metrics, notifier_clock)
    try:
        alerting.rounds("xx")
        alerting.delivered()
        assert [r.status for r in receivers["slack"].requests] == [500, 500, 200]
        assert notifier_clock.slept == [1.0, 2.0]
        assert [sent(registry, c, "success") for c in CHANNELS] == [1, 1, 1]
        assert sent(registry, "slack", "failure") == 0
    finally:
        alerting.close()


def test_telegram_rate_limit_wait_is_honoured(
    sqlite_url: str, receivers: dict[str, HttpReceiver], clock: FakeClock, metrics: Metrics
) -> None:
    receivers["telegram"].script(Reply(429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 13}}))
    notifier_clock = FakeClock(START)
    alerting = Alerting(sqlite_url, settings_for(receivers), clock, metrics, notifier_clock)
    try:
        alerting.rounds("xx")
        alerting.delivered()
        assert [r.status for r in receivers["telegram"].requests] == [429, 200]
        assert notifier_clock.slept == [13.0]
    finally:
        alerting.close()


class StuckClock(FakeClock):
    """A notifier clock whose sleeps block until released: a channel retrying slowly forever."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.release = threading.Event()
        self.sleeping = threading.Event()

    def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        self.release.wait(20)
        super().sleep(seconds)


def test_a_dead_channel_never_delays_check_rounds_and_its_failure_is_counted(
    sqlite_url: str,
    receivers: dict[str, HttpReceiver],
    clock: FakeClock,
    metrics: Metrics,
    registry: CollectorRegistry,
) -> None:
    settings = channel_settings(
        refused_url(""),
        receivers["telegram"].url,
        receivers["webhook"].url,
        reminder_interval="1m",
        max_tries=3,
        queue_size=3,
    )
    notifier_clock = StuckClock(START)
    alerting = Alerting(sqlite_url, settings, clock, metrics, notifier_clock)
    try:
        alerting.rounds("xx")  # fires; Slack's first try is refused and its worker waits to retry
        assert notifier_clock.sleeping.wait(10)
        round_starts = []
        for notices in range(2, 12):  # each further round sends a reminder (interval 1m)
            round_starts.append(clock.monotonic())
            alerting.rounds("x")
            # The healthy channels keep up, round by round: Slack's outage is not theirs.
            receivers["webhook"].wait_for(notices)
            receivers["telegram"].wait_for(notices)
        # Every round started on schedule while Slack's worker was still stuck in its back-off.
        assert not notifier_clock.release.is_set()
        assert round_starts == [round_starts[0] + i * ROUND for i in range(10)]
        # Nothing is dropped: beyond the one in flight, Slack's notices wait in the store's outbox.
        assert sent(registry, "slack", "dropped") == 0
        assert len([row for row in table_rows(sqlite_url, "alert_outbox") if row[1] == "slack"]) == 11
        notifier_clock.release.set()
        alerting.delivered()
        # The oldest failed its delivery and waits for the outbox's next round; the others wait behind it,
        # so a check's notices keep their order. None is given up on.
        assert sent(registry, "slack", "failure") == 1
        assert sent(registry, "slack", "success") == 0
        assert registry.get_sample_value("blocktrust_alert_outbox_pending_notices", {"channel": "slack"}) == 11
        assert sent(registry, "webhook", "success") == sent(registry, "telegram", "success") == 11
    finally:
        notifier_clock.release.set()
        alerting.close()


# ------------------------------------------------------------------------------------------ 6
def test_maintenance_window_holds_notices_and_notifies_after_it_if_still_failing(
    store_url: str, receivers: dict[str, HttpReceiver], clock: FakeClock, metrics: Metrics
) -> None:
    settings = settings_for(
        receivers, maintenance=[{"checks": ["api.*"], "start": "2026-01-05T10:00:00Z", "end": "2026-01-05T10:30:00Z"}]
    )
    alerting = Alerting(store_url, settings, clock, metrics)
    try:
        alerting.rounds("x" * 30)  # 10:00 .. 10:29, all inside the window
        alerting.delivered()
        assert all(peer.requests == [] for peer in receivers.values())
        assert len(alerting.store.open_incidents()) == 1  # recorded anyway
        alerting.rounds("x")  # 10:30: the window is over
        alerting.delivered()
        assert [len(peer.requests) for peer in receivers.values()] == [1, 1, 1]
        hook = bodies(receivers["webhook"])[0]
        assert (hook["state"], hook["since"], hook["time"]) == (
            "firing",
            "2026-01-05T10:00:00+00:00",
            "2026-01-05T10:30:00+00:00",
        )
    finally:
        alerting.close()


def test_an_incident_over_before_its_maintenance_window_ends_is_never_notified(
    sqlite_url: str, receivers: dict[str, HttpReceiver], clock: FakeClock, metrics: Metrics
) -> None:
    settings = settings_for(receivers, maintenance=[{"days": ["mon"], "from": "09:00", "to": "11:00"}])
    alerting = Alerting(sqlite_url, settings, clock, metrics)
    try:
        alerting.rounds("xxxxxoo" + "o" * 70)  # fails and recovers inside, then runs past 11:00
        alerting.delivered()
        assert all(peer.requests == [] for peer in receivers.values())
        assert alerting.store.open_incidents() == []
    finally:
        alerting.close()

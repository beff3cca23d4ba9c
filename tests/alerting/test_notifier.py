"""The notifier's own rules: which channels exist, who gets resolved notices, and what happens to
notices it cannot deliver (counted, never silently lost)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.alerting.alert import Alert
from exporter.alerting.channels.webhook import WebhookChannel
from exporter.alerting.notifier import Notifier, channels_from_settings
from exporter.clock import FakeClock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics

NOW = datetime(2026, 1, 5, tzinfo=UTC)
FIRING = Alert("api.health", "crit", "firing", "API /health unavailable", "", NOW, NOW)
RESOLVED = Alert("api.health", "crit", "resolved", "API /health unavailable", "", NOW, NOW)


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def send(
        self,
        channel: str,
        url: str,
        body: dict[str, Any],
        *,
        deadline: float | None = None,
        judge: Any = None,
        headers: Any = None,
    ) -> bool:
        self.sent.append((channel, url, body))
        return True


def counted(registry: CollectorRegistry, channel: str, outcome: str) -> float:
    return registry.get_sample_value("blocktrust_alerts_sent_total", {"channel": channel, "outcome": outcome}) or 0


def test_only_configured_channels_exist() -> None:
    assert channels_from_settings(AlertingSettings()) == []
    settings = AlertingSettings.model_validate(
        {
            "webhook": {"url": "http://127.0.0.1:9/h", "send_resolved": False},
            "telegram": {"bot_token": "1:abc", "chat_id": "5"},
        }
    )
    assert [(c.name, c.send_resolved) for c in channels_from_settings(settings)] == [
        ("telegram", True),
        ("webhook", False),
    ]


def test_resolved_notices_skip_channels_that_do_not_want_them(metrics: Metrics) -> None:
    sender = RecordingSender()
    notifier = Notifier(
        [WebhookChannel("http://a/", name="a"), WebhookChannel("http://b/", send_resolved=False, name="b")],
        sender,
        metrics,
        FakeClock(NOW),
    )
    notifier.start()
    notifier.submit(FIRING)
    notifier.submit(RESOLVED)
    assert notifier.flush(5)
    notifier.stop(1)
    assert sorted((channel, body["state"]) for channel, _, body in sender.sent) == [
        ("a", "firing"),
        ("a", "resolved"),
        ("b", "firing"),
    ]


def test_undeliverable_notices_are_counted_as_dropped(metrics: Metrics, registry: CollectorRegistry) -> None:
    sender = RecordingSender()
    notifier = Notifier([WebhookChannel("http://a/", name="a")], sender, metrics, FakeClock(NOW), queue_size=2)
    for _ in range(3):  # not started: the third does not fit
        notifier.submit(FIRING)
    assert counted(registry, "a", "dropped") == 1
    notifier.stop(1)  # never started: what was queued cannot go out
    notifier.submit(FIRING)  # stopped: refused
    assert counted(registry, "a", "dropped") == 4
    assert sender.sent == []


def test_every_outcome_series_of_a_configured_channel_exists_from_the_start(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    Notifier([WebhookChannel("http://a/")], RecordingSender(), metrics, FakeClock(NOW))
    assert [counted(registry, "webhook", o) for o in ("success", "failure", "dropped")] == [0, 0, 0]
    assert (
        registry.get_sample_value("blocktrust_alerts_sent_total", {"channel": "webhook", "outcome": "success"}) == 0.0
    )

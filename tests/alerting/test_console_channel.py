"""The console channel (issue 17, item 3): each notice as one log line, firing as a warning and
resolved as info, delivered by the notifier without any HTTP, counted like every channel's."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.alerting.alert import Alert
from exporter.alerting.channels.console import ConsoleChannel, render_line
from exporter.alerting.notifier import Notifier, channels_from_settings
from exporter.clock import FakeClock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics

SINCE = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
AT = datetime(2026, 1, 5, 10, 2, 0, tzinfo=UTC)
FIRING = Alert("api.stats", "crit", "firing", "API /explorer/stats failing", "Status code: 500", SINCE, AT, 3)
RESOLVED = Alert("api.stats", "crit", "resolved", "API /explorer/stats failing", "", SINCE, AT, 3)


class NoHttp:
    def send(
        self,
        channel: str,
        url: str,
        body: dict[str, Any],
        *,
        deadline: float | None = None,
        judge: object = None,
        headers: Any = None,
    ) -> bool:
        raise AssertionError(f"the console channel must not go through the HTTP sender ({channel} {url})")


def test_a_notice_is_one_line_with_headline_detail_and_time() -> None:
    assert render_line(FIRING) == (
        "🚨 [CRIT] API /explorer/stats failing | Status code: 500 | Since 2026-01-05 10:00:00 UTC"
    )
    assert render_line(RESOLVED).startswith("✅ [RESOLVED] API /explorer/stats failing | Resolved at ")


def test_the_console_channel_exists_only_when_enabled() -> None:
    assert channels_from_settings(AlertingSettings()) == []
    settings = AlertingSettings.model_validate({"console": {"enabled": True, "send_resolved": False}})
    assert [(c.name, c.send_resolved) for c in channels_from_settings(settings)] == [("console", False)]


def test_the_notifier_writes_firing_and_resolved_notices_to_the_log(
    metrics: Metrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    settings = AlertingSettings.model_validate({"console": {"enabled": True}})
    notifier = Notifier(channels_from_settings(settings), NoHttp(), metrics, FakeClock(AT))
    notifier.start()
    with caplog.at_level(logging.INFO, logger="exporter.alerting.console"):
        notifier.submit(FIRING)
        notifier.submit(RESOLVED)
        assert notifier.flush(timeout=10)
    notifier.stop(timeout=2)
    notices = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "exporter.alerting.console"]
    assert notices == [
        (logging.WARNING, f"notice: {render_line(FIRING)}"),
        (logging.INFO, f"notice: {render_line(RESOLVED)}"),
    ]
    sent = registry.get_sample_value("blocktrust_alerts_sent_total", {"channel": "console", "outcome": "success"})
    assert sent == 2


def test_the_builder_has_the_shape_of_every_channel() -> None:
    url, body = ConsoleChannel().build_request(FIRING)
    assert (url, body) == ("console:", {"text": render_line(FIRING)})

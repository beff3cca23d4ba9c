"""The dead man's switch (issue 15, the heartbeat half of acceptance 6): a real exporter calls
``alerting.heartbeat_url`` after its healthy rounds and stops when it is stopped; a failing ping is
logged once per streak and counted; what makes a round healthy."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from exporter.alerting.heartbeat import HeartbeatPinger, round_healthy
from exporter.metrics import Metrics
from tests.alerting.kit import result
from tests.support.exporter_process import ExporterProcess
from tests.support.http_receiver import HttpReceiver, Reply, refused_url

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
TOKEN = "0f3c1a2b-hc-uuid-secret"


@pytest.mark.parametrize(
    ("results", "process_ok", "store_ok", "healthy"),
    [
        ([result("api.health", True, NOW)], True, True, True),
        ([result("api.health", False, NOW)], True, True, True),  # the API failing: the monitor works
        ([], True, True, False),  # nothing ran
        ([result("api.health", True, NOW)], False, True, False),  # a stalled job, a dead alert thread
        ([result("api.health", True, NOW)], True, False, False),  # the store refuses writes
        ([result("api.health", False, NOW, error="round_timeout", reason="not finished")], True, True, False),
        ([result("api.health", False, NOW, error="internal_error", reason="KeyError")], True, True, False),
    ],
)
def test_what_makes_a_round_healthy(results: list[object], process_ok: bool, store_ok: bool, healthy: bool) -> None:
    assert round_healthy(results, process_ok, store_ok) is healthy  # type: ignore[arg-type]


def test_a_failing_ping_is_logged_once_per_streak_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test")
    with HttpReceiver(Reply(500), Reply(503), Reply(200), Reply(500)) as service, requests.Session() as session:
        pinger = HeartbeatPinger(f"{service.url}/ping/{TOKEN}", session, metrics, method="POST", redact=_mask)
        with caplog.at_level(logging.INFO, logger="exporter.alerting.heartbeat"):
            assert [pinger.ping() for _ in range(4)] == [False, False, True, False]
        assert [r.method for r in service.requests] == ["POST"] * 4
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "heartbeat ping failed (logged once until it works again): HTTP 500",
        "heartbeat ping works again",
        "heartbeat ping failed (logged once until it works again): HTTP 500",
    ]
    assert registry.get_sample_value("blocktrust_heartbeat_pings_total", {"outcome": "failure"}) == 3
    assert registry.get_sample_value("blocktrust_heartbeat_pings_total", {"outcome": "success"}) == 1
    # A service that is not there: one log line, the token masked, nothing raised.
    down = HeartbeatPinger(refused_url(f"/ping/{TOKEN}"), requests.Session(), metrics, redact=_mask)
    with caplog.at_level(logging.WARNING, logger="exporter.alerting.heartbeat"):
        caplog.clear()
        assert down.ping() is False
    assert len(caplog.records) == 1 and TOKEN not in caplog.text


def _mask(text: str) -> str:
    return text.replace(TOKEN, "***")


@pytest.mark.slow
def test_a_running_exporter_pings_after_healthy_rounds_and_the_pings_stop_when_it_stops(tmp_path: Path) -> None:
    with HttpReceiver(default=Reply(200, "ok")) as target, HttpReceiver(default=Reply(200, "OK")) as service:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "store": {"sqlite_path": str(tmp_path / "store.db")},
                    "listener": {"enabled": False},
                    "checks": {
                        "include_defaults": False,
                        "interval": "1s",
                        "timeout": "500ms",
                        "items": [{"name": "site.home", "url": target.url + "/"}],
                    },
                }
            )
        )
        secret_file = tmp_path / "heartbeat-url"
        secret_file.write_text(f"{service.url}/ping/{TOKEN}\n")
        exporter = ExporterProcess(
            ["run", "--config", str(config)], env={"ALERT_HEARTBEAT_URL_FILE": str(secret_file)}, cwd=tmp_path
        )
        try:
            exporter.wait_ready()
            pings = service.wait_for(2, timeout=15)
            assert {(r.method, r.path) for r in pings} == {("GET", f"/ping/{TOKEN}")}
            assert 'blocktrust_heartbeat_pings_total{outcome="success"}' in exporter.metrics()
        finally:
            exporter.stop()
        after_stop = len(service.requests)
        rounds_before = len(target.requests)
        time.sleep(2.5)  # more than two check intervals: a live exporter would have pinged again
        assert len(service.requests) == after_stop
        assert len(target.requests) == rounds_before
        assert TOKEN not in exporter.output

"""Issue: a failing check was logged at info. A failure is a warning at each failed run; the first
success after it is one info line (``check recovered``); a passing check logs nothing of its own."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock
from exporter.config import HEARTBEAT_CHECK, Config
from exporter.metrics import Metrics
from exporter.probes.runner import CheckRound
from exporter.store import Store
from exporter.store.base import CheckResult

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def test_a_failure_is_a_warning_and_the_recovery_is_info(
    store: Store, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOW)
    config = Config.model_validate(
        {
            "listener": {"elsewhere": True},  # a `listen` process writes the heartbeat
            "checks": {"items": [{"name": "listener.progress", "kind": "listener.progress", "enabled": False}]},
        }
    )
    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test")
    checks = CheckRound(config, metrics=metrics, record=store.write_results, clock=clock, store=store)
    beat = {"processed_block": 1, "head_block": 1, "blocks_behind": 0}
    try:
        with caplog.at_level(logging.INFO, logger="exporter.probes.runner"):
            checks.run_once()  # no heartbeat yet: listener.lag fails
            checks.run_once()  # still failing
            store.write_results([CheckResult(HEARTBEAT_CHECK, True, 1, beat, clock.now(), uuid.uuid4().hex)])
            checks.run_once()  # recovered
            checks.run_once()  # passing: nothing to say
    finally:
        checks.close()
    lines = [(r.levelno, r.getMessage().split(" check=")[0]) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "check failed"),
        (logging.WARNING, "check failed"),
        (logging.INFO, "check recovered"),
    ]

"""Issue: every fresh start failed the listener checks once (``no_heartbeat`` before the in-process
listener's first poll), and the SLO counted it. ``ListenerStartGrace`` holds those checks until the
first poll returned or wrote a heartbeat, at most ``listener.max_lag``; other checks are not held."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock
from exporter.config import HEARTBEAT_CHECK, CheckSpec, Config
from exporter.metrics import Metrics
from exporter.probes.runner import CheckRound, ListenerStartGrace
from exporter.store import Store
from exporter.store.base import CheckResult

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _round(store: Store, clock: FakeClock, registry: CollectorRegistry, hold: ListenerStartGrace) -> CheckRound:
    # No API: the two listener checks only, plus one check of another kind that must not be held.
    config = Config.model_validate(
        {
            "listener": {"max_lag": "60s", "poll_interval": "15s", "elsewhere": True},
            "checks": {"items": [{"name": "other", "url": "http://127.0.0.1:9/x", "timeout": "1s"}]},
        }
    )
    recorded: list[CheckResult] = []

    def record(results: Sequence[CheckResult]) -> None:
        recorded.extend(results)
        store.write_results(results)

    metrics = Metrics(registry, slo_latency_seconds=0.8, version="test")
    return CheckRound(config, metrics=metrics, record=record, clock=clock, store=store, hold=hold)


def test_listener_checks_wait_for_the_first_poll(store: Store, registry: CollectorRegistry) -> None:
    clock = FakeClock(NOW)
    first_poll = threading.Event()
    checks = _round(store, clock, registry, ListenerStartGrace(first_poll, clock, limit=60.0))
    try:
        # Round 1, before the listener's first poll: the listener checks are not run, not recorded.
        names = [result.check_name for result in checks.run_once()]
        assert names == ["other"]
        assert registry.get_sample_value("blocktrust_check_up", {"check": "listener.lag"}) is None
        assert store.latest_result("listener.lag") is None
        # The poll writes its heartbeat and returns: from now on the checks judge it.
        store.write_results(
            [
                CheckResult(
                    HEARTBEAT_CHECK,
                    True,
                    5,
                    {"processed_block": 10, "head_block": 10, "blocks_behind": 0},
                    clock.now(),
                    uuid.uuid4().hex,
                )
            ]
        )
        first_poll.set()
        results = {result.check_name: result for result in checks.run_once()}
        assert sorted(results) == ["listener.lag", "listener.progress", "other"]
        assert results["listener.lag"].ok, results["listener.lag"].details
    finally:
        checks.close()


def test_a_first_poll_that_never_returns_is_reported_after_max_lag(store: Store, registry: CollectorRegistry) -> None:
    clock = FakeClock(NOW)
    checks = _round(store, clock, registry, ListenerStartGrace(threading.Event(), clock, limit=60.0))
    try:
        assert [r.check_name for r in checks.run_once()] == ["other"]
        clock.advance(59)
        assert [r.check_name for r in checks.run_once()] == ["other"]
        clock.advance(1)
        results = {result.check_name: result for result in checks.run_once()}
        assert results["listener.lag"].details["error"] == "no_heartbeat"
        assert results["listener.progress"].ok is False
    finally:
        checks.close()


@pytest.mark.parametrize("kind", ["http", "synthetic.hash"])
def test_the_grace_holds_only_listener_kinds(kind: str) -> None:
    grace = ListenerStartGrace(threading.Event(), FakeClock(NOW), limit=60.0)
    assert grace(CheckSpec(name="x", kind=kind, path="/x")) is False
    assert grace(CheckSpec(name="listener.lag", kind="listener.lag")) is True

"""Issue #13 kind 6: at start, the process that runs the checks resolves the open incidents of checks
no longer in its configuration (removed or renamed), with the reason, and keeps those of checks it
still runs, of their SLO incidents and of the listener."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from exporter.clock import FakeClock
from exporter.config import load_config
from exporter.runtime import build_runtime
from exporter.store import open_store
from tests.alerting.kit import table_rows
from tests.support.http_receiver import refused_url

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_run_resolves_the_incidents_of_checks_no_longer_configured(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    store = open_store(url)
    store.migrate()
    for name in ("api.renamed", "api.health", "slo.api.health", "slo.api.renamed", "listener.reorg"):
        incident = store.open_incident(name, "warn", f"{name} failing", "Status code: 503", T0)
        store.mark_notified(incident.id, T0)
    store.close()
    env = {
        "DATABASE_URL": url,
        "API_BASE": "http://127.0.0.1:9/",
        "JWT_MONITOR_EMAIL": "monitor@example.org",
        "JWT_MONITOR_PASS": "not-a-real-password",
        "ALERT_WEBHOOK_URL": refused_url("/hook"),  # down: the resolved notices stay in the outbox
    }
    config = load_config(None, env=env)
    runtime = build_runtime(config, frozenset({"checks", "alerts", "slo"}), clock=FakeClock(T0.replace(hour=10)))
    try:
        still_open = sorted(i.check_name for i in runtime.store.open_incidents())
        assert still_open == ["api.health", "listener.reorg", "slo.api.health"]
        resolved = {row[6]: row[8] for row in table_rows(url, "monitor_incidents") if row[2] is not None}
        assert resolved == {
            "api.renamed": "Check removed from configuration",
            "slo.api.renamed": "Check removed from configuration",
        }
        # Their resolved notices (the webhook is down) wait in the outbox, saying why.
        notices = [json.loads(row[3]) for row in table_rows(url, "alert_outbox")]
        assert sorted((n["check_name"], n["state"], n["detail"]) for n in notices) == [
            ("api.renamed", "resolved", "Check removed from configuration"),
            ("slo.api.renamed", "resolved", "Check removed from configuration"),
        ]
    finally:
        for hook in runtime.on_stop:
            hook()
        runtime.store.close()

"""Helpers shared by the alerting and SLO tests: result rows, a recording sink, channel settings
pointing at local receivers."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import requests
from prometheus_client import CollectorRegistry

from exporter.alerting.alert import Alert
from exporter.alerting.dependencies import Dependencies
from exporter.alerting.engine import AlertEngine
from exporter.alerting.notifier import Notifier, build_notifier
from exporter.clock import Clock, FakeClock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics
from exporter.redact import Redactor
from exporter.store import Store, open_store
from exporter.store.base import CheckResult
from tests.support.http_receiver import HttpReceiver, Reply

_uids = itertools.count()

TELEGRAM_TOKEN = "123456:TEST-token-abcdef"
# The Bot API's answer to a sendMessage it accepted (abridged).
TELEGRAM_OK = Reply(200, {"ok": True, "result": {"message_id": 1, "chat": {"id": -100123}}})
CHANNELS = ("slack", "telegram", "webhook")


@contextlib.contextmanager
def channel_receivers() -> Iterator[dict[str, HttpReceiver]]:
    """A loopback receiver per channel, each answering success as its API documents it: Slack ``ok``,
    Telegram ``{"ok": true, ...}``, a webhook 2xx."""
    peers = {name: HttpReceiver(default=TELEGRAM_OK if name == "telegram" else None) for name in CHANNELS}
    try:
        yield peers
    finally:
        for peer in peers.values():
            peer.close()


def result(check: str, ok: bool, at: datetime, latency_ms: int = 100, **details: Any) -> CheckResult:
    if not ok and not details:
        details = {"status_code": 503, "error": "bad_status", "reason": "status 503 not in [200]"}
    return CheckResult(check, ok, latency_ms, details, at, f"test-{next(_uids)}")


class RecordingSink:
    """An AlertSink that keeps what it was given."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def submit(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def kinds(self) -> list[tuple[str, str, bool]]:
        return [(a.check_name, a.state, a.reminder) for a in self.alerts]


def channel_settings(slack_url: str, telegram_url: str, webhook_url: str, **overrides: Any) -> AlertingSettings:
    """Every channel configured, each pointing at its own base URL."""
    tree: dict[str, Any] = {
        "slack": {"webhook_url": f"{slack_url}/services/T000/B000/slacksecret"},
        "telegram": {"bot_token": TELEGRAM_TOKEN, "chat_id": "-100123", "base_url": telegram_url},
        "webhook": {"url": f"{webhook_url}/hook"},
        "backoff": "1s",
    }
    tree.update(overrides)
    return AlertingSettings.model_validate(tree)


def table_rows(store_url: str, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
    """Every row of ``table`` (its ``columns``, by default all), read with the raw driver (not
    through the Store under test)."""
    if store_url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as conn:
            return list(conn.execute(f"SELECT {columns} FROM {table} ORDER BY id"))
    import psycopg2

    pg = psycopg2.connect(store_url)
    try:
        with pg.cursor() as cur:
            cur.execute(f"SELECT {columns} FROM {table} ORDER BY id")
            return list(cur.fetchall())
    finally:
        pg.close()


class AlertingProcess:
    """One exporter process's alerting half (engine, notifier on the store's outbox, the redactor of
    the channels' secrets), wired as ``runtime.py`` wires it, on ``clock``."""

    ROUND = 60.0  # seconds between check rounds in ``rounds``

    def __init__(
        self, store_url: str, settings: AlertingSettings, clock: Clock, dependencies: Dependencies | None = None
    ) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, slo_latency_seconds=0.8, version="test")
        self.store: Store = open_store(store_url)
        self.store.migrate()
        self.session = requests.Session()
        secrets = (settings.slack.webhook_url, settings.telegram.bot_token, settings.webhook.url)
        redact = Redactor(s.get_secret_value() for s in secrets if s is not None)
        self.notifier: Notifier = build_notifier(
            settings, self.metrics, clock, self.session, redact=redact, store=self.store
        )
        self.notifier.start()
        self.engine = AlertEngine(
            self.store, self.notifier, clock, self.metrics, settings, redact=redact, dependencies=dependencies
        )

    def rounds(self, pattern: str, check: str = "api.health") -> None:
        """One check round per character ("o" passes, anything else fails), ``ROUND`` s apart; the
        notifier's workers see each moment of the clock, as a real one would let them."""
        assert isinstance(self.clock, FakeClock)
        for mark in pattern:
            self.engine.observe([result(check, mark == "o", self.clock.now())])
            self.engine.tick()
            self.delivered()
            self.clock.advance(self.ROUND)

    def delivered(self) -> None:
        assert self.notifier.flush(10), "the notifier did not finish in time"

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def close(self) -> None:
        self.notifier.stop(5)
        self.session.close()
        self.store.close()

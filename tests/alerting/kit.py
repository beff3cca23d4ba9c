"""Helpers shared by the alerting and SLO tests: result rows, a recording sink, channel settings
pointing at local receivers."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from exporter.alerting.alert import Alert
from exporter.config import AlertingSettings
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


def table_rows(store_url: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, read with the raw driver (not through the Store under test)."""
    if store_url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as conn:
            return list(conn.execute(f"SELECT * FROM {table} ORDER BY id"))
    import psycopg2

    pg = psycopg2.connect(store_url)
    try:
        with pg.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} ORDER BY id")
            return list(cur.fetchall())
    finally:
        pg.close()

"""Acceptance 5: a sentinel secret put in every secret setting appears in no log line, alert body,
incident row or metric after a run in which every check and every channel fails. The API password
(and the PostgreSQL password) is a short one, as the seed's "123" was: short secrets are masked too."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from exporter.alerting.engine import DEFAULT_TITLES, AlertEngine
from exporter.alerting.notifier import build_notifier
from exporter.clock import FakeClock
from exporter.config import Config
from exporter.metrics import Metrics
from exporter.redact import RedactingFilter, Redactor
from exporter.store import open_store
from tests.alerting.kit import result, table_rows
from tests.support.http_receiver import HttpReceiver, Reply, refused_url

SENTINEL = "Zq9xSENTINELx7Wk"
SHORT = "Qx7"  # shorter than any fragment length floor


def with_password(store_url: str) -> str:
    """The test database's URL with the short sentinel as password (trust auth ignores it), or the
    sentinel as file name."""
    if store_url.startswith("sqlite:///"):
        return store_url.replace("store.db", f"{SENTINEL}.db")
    scheme, rest = store_url.split("://", 1)
    user_host = rest.split("@", 1)[-1] if "@" in rest else rest
    user = rest.split("@", 1)[0] if "@" in rest else "postgres"
    return f"{scheme}://{user}:{SHORT}@{user_host}"


@pytest.fixture
def peers() -> Iterator[tuple[HttpReceiver, HttpReceiver]]:
    # Servers that fail and, like some real ones, echo what they got (a token) in the error.
    slack = HttpReceiver(default=Reply(500, f"invalid_token {SENTINEL}"))
    telegram = HttpReceiver(default=Reply(401, {"ok": False, "description": f"Unauthorized bot{SENTINEL}"}))
    yield slack, telegram
    slack.close()
    telegram.close()


def test_no_secret_leaks_from_a_run_where_everything_fails(
    store_url: str,
    peers: tuple[HttpReceiver, HttpReceiver],
    metrics: Metrics,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack, telegram = peers
    config = Config.model_validate(
        {
            "store": {"url": with_password(store_url)},
            "api": {"base_url": "http://127.0.0.1:9", "email": "monitor@example.org", "password": SHORT},
            "listener": {"rpc_url": f"http://127.0.0.1:9/v3/{SENTINEL}"},
            "alerting": {
                "max_tries": 2,
                "slack": {"webhook_url": f"{slack.url}/services/T0/B0/{SENTINEL}"},
                "telegram": {"bot_token": f"987654:{SENTINEL}", "chat_id": "-1", "base_url": telegram.url},
                "webhook": {"url": refused_url(f"/hook?token={SENTINEL}")},
            },
        }
    )
    assert len(config.secrets()) == 6 and all(SENTINEL in s or SHORT in s for s in config.secrets())
    redactor = Redactor(config.secrets())
    caplog.handler.addFilter(RedactingFilter(redactor))
    caplog.set_level(logging.DEBUG)  # urllib3's debug lines name every request path

    clock = FakeClock()
    assert config.store.url is not None
    store = open_store(config.store.url.get_secret_value())
    store.migrate()
    session = requests.Session()
    notifier = build_notifier(config.alerting, metrics, FakeClock(), session, redact=redactor)
    notifier.start()
    engine = AlertEngine(store, notifier, clock, metrics, config.alerting, redact=redactor)
    try:
        for _ in range(3):
            # What libraries put in failure reasons: the URL they could not reach, secrets included.
            engine.observe(
                [
                    result(
                        name,
                        False,
                        clock.now(),
                        status_code=None,
                        error="connection_error",
                        reason=f"Max retries exceeded with url: /v3/{SENTINEL} (password={SHORT})",
                    )
                    for name in DEFAULT_TITLES
                ]
            )
            clock.advance(60)
        engine.raise_critical(
            "listener.reorg", f"Reorg at {SENTINEL}", f"RPC http://127.0.0.1:9/v3/{SENTINEL}, login {SHORT}"
        )
        assert notifier.flush(20)
    finally:
        notifier.stop(5)
        session.close()
        store.close()

    notices = len(DEFAULT_TITLES) + 1
    for channel in ("slack", "telegram", "webhook"):  # every channel failed every notice
        assert (
            registry.get_sample_value("blocktrust_alerts_sent_total", {"channel": channel, "outcome": "failure"})
            == notices
        )
    assert (len(slack.requests), len(telegram.requests)) == (2 * notices, notices)  # 500 retried, 401 not
    assert "***" in caplog.text  # secrets were there to mask
    for secret in (SENTINEL, SHORT):
        for record in caplog.records:
            assert secret not in record.getMessage() and secret not in (record.exc_text or "")
        assert secret not in caplog.text
        for request in slack.requests + telegram.requests:
            assert secret not in request.text
        rows = table_rows(with_password(store_url), "monitor_incidents")
        assert len(rows) == notices and secret not in repr(rows)
        assert secret not in generate_latest(registry).decode()

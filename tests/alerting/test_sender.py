"""The shared sender against a real local HTTP receiver: retries with back-off on 5xx, 429 and
connection errors, Retry-After (seconds, HTTP date, Telegram's JSON) honoured, bounded tries, and
every outcome counted. A FakeClock records each wait instead of sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.alerting.sender import HttpSender, RetryPolicy
from exporter.clock import FakeClock
from exporter.metrics import Metrics
from tests.support.http_receiver import HttpReceiver, Reply, refused_url

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


def sender(session: requests.Session, clock: FakeClock, metrics: Metrics, **policy: float) -> HttpSender:
    return HttpSender(session, clock, metrics, RetryPolicy(**{"max_tries": 4, "timeout": 5.0, **policy}))  # type: ignore[arg-type]


def sent(registry: CollectorRegistry, outcome: str, channel: str = "slack") -> float:
    return registry.get_sample_value("blocktrust_alerts_sent_total", {"channel": channel, "outcome": outcome}) or 0.0


def test_500_500_200_is_one_delivery_after_two_backoffs(
    session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    with HttpReceiver(Reply(500), Reply(502)) as peer:
        assert sender(session, clock, metrics).send("slack", peer.url + "/x", {"text": "hi"})
        assert [r.status for r in peer.requests] == [500, 502, 200]
        assert [r.json() for r in peer.requests] == [{"text": "hi"}] * 3
    assert clock.slept == [1.0, 2.0]  # exponential back-off
    assert (sent(registry, "success"), sent(registry, "failure")) == (1, 0)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(429, headers={"Retry-After": "7"}),
        Reply(503, headers={"Retry-After": format_datetime(START + timedelta(seconds=7), usegmt=True)}),
        Reply(429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 7}}),  # Telegram
    ],
    ids=["retry-after-seconds", "retry-after-http-date", "telegram-parameters"],
)
def test_the_wait_asked_for_is_honoured(
    reply: Reply, session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    with HttpReceiver(reply) as peer:
        assert sender(session, clock, metrics).send("telegram", peer.url, {})
        assert len(peer.requests) == 2
    assert clock.slept == [7.0]
    assert sent(registry, "success", "telegram") == 1


def test_a_redirect_is_a_failure_not_followed(
    session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    with HttpReceiver(Reply(302, headers={"Location": "/elsewhere"})) as peer:
        assert not sender(session, clock, metrics).send("slack", peer.url, {})
        assert [r.path for r in peer.requests] == ["/"]
    assert sent(registry, "failure") == 1


def test_a_client_error_is_not_retried(
    session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    with HttpReceiver(Reply(400, {"ok": False, "description": "Bad Request: chat not found"})) as peer:
        assert not sender(session, clock, metrics).send("slack", peer.url, {})
        assert len(peer.requests) == 1
    assert clock.slept == []
    assert sent(registry, "failure") == 1


def test_a_peer_down_for_good_is_tried_a_bounded_number_of_times(
    session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    assert not sender(session, clock, metrics, backoff=2.0, backoff_max=5.0).send("slack", refused_url(), {})
    assert clock.slept == [2.0, 4.0, 5.0]  # 4 tries, back-off capped
    assert (sent(registry, "success"), sent(registry, "failure")) == (0, 1)


def test_a_wait_longer_than_allowed_gives_up_instead_of_blocking(
    session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    with HttpReceiver(Reply(429, headers={"Retry-After": "3600"})) as peer:
        assert not sender(session, clock, metrics, retry_after_max=300.0).send("slack", peer.url, {})
        assert len(peer.requests) == 1
    assert clock.slept == []
    assert sent(registry, "failure") == 1


def test_no_retry_past_the_deadline(
    session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    with HttpReceiver(Reply(500)) as peer:
        ok = sender(session, clock, metrics, backoff=10.0).send(
            "slack", peer.url, {}, deadline=clock.monotonic() + 5.0
        )
        assert not ok and len(peer.requests) == 1
    assert sent(registry, "failure") == 1

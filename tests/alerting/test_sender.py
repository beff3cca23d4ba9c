"""The shared sender against a real local HTTP receiver: retries with back-off on 5xx, 429 and
connection errors, Retry-After (seconds, HTTP date, Telegram's JSON) honoured, bounded tries, and
every outcome counted. A FakeClock records each wait instead of sleeping."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.alerting.sender import MAX_BODY_BYTES, HttpSender, RetryPolicy
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
        ok = sender(session, clock, metrics, backoff=10.0).send("slack", peer.url, {}, deadline=clock.monotonic() + 5.0)
        assert not ok and len(peer.requests) == 1
    assert sent(registry, "failure") == 1


class SlowAnswer:
    """A raw socket peer that answers 500 and then sends its body in ``pieces`` of ``piece_size`` bytes,
    ``pause`` real seconds apart; it notes whether the client hung up before the body was all sent."""

    def __init__(self, pieces: int, piece_size: int, pause: float) -> None:
        self.pieces, self.piece_size, self.pause = pieces, piece_size, pause
        self.cut_short = threading.Event()
        self.finished = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.recv(65536)  # the request (small: headers and a tiny JSON body)
            size = self.pieces * self.piece_size
            head = f"HTTP/1.1 500 Internal Server Error\r\nContent-Length: {size}\r\n\r\n"
            try:
                conn.sendall(head.encode())
                for _ in range(self.pieces):
                    if self._stop.wait(self.pause):
                        return
                    conn.sendall(b"x" * self.piece_size)
            except OSError:
                self.cut_short.set()
                return
            self.finished.set()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)


@pytest.mark.timeout(30)
def test_a_trickling_answer_cannot_hold_the_worker_past_the_timeout(
    session: requests.Session, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry
) -> None:
    # One byte every 20 ms never trips a per-read timeout; only a deadline on the whole body stops it.
    peer = SlowAnswer(pieces=500, piece_size=1, pause=0.02)
    try:
        assert not sender(session, clock, metrics, max_tries=1, timeout=0.5).send("slack", peer.url, {})
        assert peer.cut_short.wait(5)  # we hung up long before the 10 s of trickle were over
        assert not peer.finished.is_set()
    finally:
        peer.close()
    assert sent(registry, "failure") == 1


@pytest.mark.timeout(30)
def test_only_the_start_of_a_huge_error_body_is_read(
    session: requests.Session,
    clock: FakeClock,
    metrics: Metrics,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = SlowAnswer(pieces=512, piece_size=64 * 1024, pause=0.0)  # 32 MiB, as fast as loopback goes
    try:
        assert not sender(session, clock, metrics, max_tries=1).send("slack", peer.url, {})
        assert peer.cut_short.wait(5) and not peer.finished.is_set()
    finally:
        peer.close()
    assert MAX_BODY_BYTES <= 64 * 1024
    assert "HTTP 500: xxx" in caplog.text  # the start of the body still explains the failure
    assert sent(registry, "failure") == 1

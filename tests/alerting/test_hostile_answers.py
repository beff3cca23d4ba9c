"""Issue #13 kind 5, the outbox at its edges (both stores, loopback receivers): any answer is classified
and never kills a channel's worker (a NUL byte in a body, a Retry-After of ``inf``, ``nan`` or a
trillion seconds); a wait past the give-up horizon is given up on at once and age alone decides a
give-up; stopping interrupts a back-off and releases the claim; retries survive a wall-clock step."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.alerting.alert import Alert
from exporter.alerting.channels.webhook import WebhookChannel
from exporter.alerting.notifier import Notifier, outbox_policy
from exporter.alerting.sender import HttpSender, RetryPolicy
from exporter.clock import Clock, FakeClock, ManualClock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics
from exporter.store import Store
from tests.alerting.kit import AlertingProcess as Process
from tests.alerting.kit import channel_receivers, channel_settings, table_rows
from tests.support.http_receiver import HttpReceiver, Reply

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ROUND = 60.0
OUTBOX_RETRY = 300.0


@pytest.fixture
def receivers() -> Iterator[dict[str, HttpReceiver]]:
    with channel_receivers() as peers:
        yield peers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def processes(store_url: str) -> Iterator[Any]:
    started: list[Process] = []

    def start(settings: AlertingSettings, clock: Clock) -> Process:
        started.append(Process(store_url, settings, clock))
        return started[-1]

    yield start
    for process in started:
        process.close()


def slack_only(receivers: dict[str, HttpReceiver], **overrides: Any) -> AlertingSettings:
    settings = channel_settings(
        receivers["slack"].url,
        receivers["telegram"].url,
        receivers["webhook"].url,
        **{"backoff_max": f"{OUTBOX_RETRY:.0f}s", "max_tries": 1, **overrides},
    )
    return settings.model_copy(update={"telegram": type(settings.telegram)(), "webhook": type(settings.webhook)()})


def texts(peer: HttpReceiver) -> list[str]:
    return [r.json()["text"].splitlines()[0] for r in peer.requests]


# --------------------------------------------------------------- 1. any answer, and the worker lives
@pytest.mark.parametrize("refusal", [Reply(200, "invalid\x00payload"), Reply(503, b"busy\x00\xff" * 3)])
def test_a_nul_byte_in_an_answer_is_stored_sanitized_and_the_worker_carries_on(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock, refusal: Reply
) -> None:
    receivers["slack"].script(refusal)
    process = processes(slack_only(receivers), clock)
    process.rounds("xx")  # the firing notice is refused, its error kept in the outbox
    [row] = table_rows(store_url, "alert_outbox")
    error, claimed_until = str(row[8]), row[9]  # last_error, claimed_until
    assert "\x00" not in error and ("invalid" in error or "busy" in error)
    assert claimed_until is None
    assert process.notifier.health() == (True, "ok")
    clock.advance(OUTBOX_RETRY)
    process.delivered()  # retried (not left claimed for a lease): delivered now
    assert texts(receivers["slack"]) == ["🚨 [CRIT] API /health unavailable"] * 2
    assert table_rows(store_url, "alert_outbox") == []


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "1e3", "5s", "999999999999", "9" * 400])
def test_a_retry_after_header_is_parsed_strictly(clock: FakeClock, metrics: Metrics, value: str) -> None:
    with requests.Session() as session, HttpReceiver(Reply(503, headers={"Retry-After": value})) as peer:
        sender = HttpSender(session, clock, metrics, RetryPolicy(max_tries=3, timeout=5.0, backoff=1.0))
        delivery = sender.send("slack", peer.url, {"text": "hi"})
    if value.startswith("9"):  # a finite, absurd wait: not within the delivery, handed on (bounded) to the outbox
        assert not delivery.delivered and clock.slept == []
        assert delivery.retry_after is not None and delivery.retry_after <= 366 * 86400
    else:  # not a Retry-After: backed off as without one
        assert delivery.delivered and clock.slept == [1.0]


@pytest.mark.parametrize("wait", ["1e400", "-1e400", "NaN", "true", "-3", '"7"'])
def test_a_telegram_retry_after_is_parsed_strictly(clock: FakeClock, metrics: Metrics, wait: str) -> None:
    flood = f'{{"ok": false, "error_code": 429, "parameters": {{"retry_after": {wait}}}}}'
    ok = Reply(200, {"ok": True, "result": {}})
    with requests.Session() as session, HttpReceiver(Reply(429, flood), ok) as peer:
        sender = HttpSender(session, clock, metrics, RetryPolicy(max_tries=3, timeout=5.0, backoff=1.0))
        from exporter.alerting.channels.telegram import judge_telegram

        assert sender.send("telegram", peer.url, {"text": "hi"}, judge=judge_telegram).delivered
    assert clock.slept == [1.0]


def test_a_deeply_nested_answer_is_classified(clock: FakeClock, metrics: Metrics) -> None:
    from exporter.alerting.channels.slack import judge_slack
    from exporter.alerting.channels.telegram import judge_telegram

    nested = "{" + '"a":[' * 30000
    with requests.Session() as session, HttpReceiver(Reply(500, nested), Reply(400, nested)) as peer:
        sender = HttpSender(session, clock, metrics, RetryPolicy(max_tries=1, timeout=5.0))
        assert not sender.send("telegram", peer.url, {}, judge=judge_telegram).delivered
        assert sender.send("slack", peer.url, {}, judge=judge_slack).reason_class == "rejected"


class _Exploding:
    """A channel with a bug its worker cannot catch in a delivery (an escape from ``build_request``)."""

    name = "webhook"
    send_resolved = True

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def build_request(self, alert: Alert) -> tuple[str, dict[str, Any]]:
        raise self.error

    def headers(self, body: bytes, at: float) -> dict[str, str]:
        raise AssertionError("never called")

    def judge(self, status: int, body: str, retry_after: float | None) -> Any:
        raise AssertionError("never called")


def _alert() -> Alert:
    return Alert("api.health", "warn", "firing", "API down", "503", START, START)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread killed on purpose
def test_a_worker_survives_an_unexpected_error_and_health_names_a_dead_one(
    store: Store, clock: FakeClock, metrics: Metrics, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    class FailingOnce:
        """The store, with one unexpected (non-store) error in the worker's outbox pass."""

        def __init__(self) -> None:
            self.failed = False

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def take_notice(self, channel: str, now: datetime, lease_until: datetime) -> Any:
            if not self.failed:
                self.failed = True
                raise RuntimeError("a bug")
            return store.take_notice(channel, now, lease_until)

    with HttpReceiver() as peer, requests.Session() as session:
        sender = HttpSender(session, clock, metrics, RetryPolicy(max_tries=1))
        notifier = Notifier([WebhookChannel(peer.url + "/hook")], sender, metrics, clock, outbox=FailingOnce())
        notifier.start()
        try:
            with caplog.at_level(logging.ERROR):
                notifier.submit(_alert())
                assert notifier.flush(10)
                notifier.submit(_alert())  # the worker is still there for the next one
                assert notifier.flush(10)
            assert len(peer.requests) == 2
            assert any("unexpected error" in r.getMessage() and r.exc_info for r in caplog.records)
            assert registry.get_sample_value("blocktrust_alerting_errors_total", {"worker": "webhook"}) == 1
            assert notifier.health() == (True, "ok")
        finally:
            notifier.stop(5)
    # A worker thread that died anyway (a BaseException no handler catches) is named by health.
    dead = Notifier([_Exploding(SystemExit(3))], HttpSender(requests.Session(), clock, metrics), metrics, clock)
    dead.start()
    dead.submit(_alert())
    deadline = time.monotonic() + 10
    while dead.health()[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dead.health() == (False, "alert worker thread dead for channel(s): webhook")


# ----------------------------------------------------------------- 2. the give-up horizon
def test_a_wait_past_the_give_up_horizon_gives_up_at_once_and_frees_the_next_notice(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock
) -> None:
    receivers["slack"].script(Reply(429, "rate_limited", headers={"Retry-After": "100000"}))
    process = processes(slack_only(receivers), clock)
    process.rounds("xx")
    assert process.value("blocktrust_alert_notices_abandoned_total", channel="slack", reason="rate_limited") == 1
    process.rounds("oo")  # the resolved notice does not wait 27.8 h behind the firing one
    assert texts(receivers["slack"])[-1] == "✅ [RESOLVED] API /health unavailable"
    assert table_rows(store_url, "alert_outbox") == []


def test_age_alone_decides_a_give_up(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock
) -> None:
    process = processes(slack_only(receivers), clock)
    store = process.store
    now = clock.now()
    # A notice due 25 h ago whose next attempt was put far ahead (by an older version, another replica).
    old = store.enqueue_notice(
        "slack", "api.health", _alert().to_json(), now - timedelta(hours=25), now - timedelta(hours=25)
    )
    store.notice_failed(old, now + timedelta(hours=30), "rate_limited: HTTP 429")
    store.enqueue_notice("slack", "api.health", _alert().to_json(), now, now)
    process.notifier.submit(_alert())  # wakes the worker (and queues a third)
    process.delivered()
    assert process.value("blocktrust_alert_notices_abandoned_total", channel="slack", reason="rate_limited") == 1
    assert len(receivers["slack"].requests) == 2
    assert table_rows(store_url, "alert_outbox") == []


# ------------------------------------------------------------ 3. stopping during a back-off
def test_stopping_interrupts_a_back_off_and_releases_the_claim(
    store_url: str, receivers: dict[str, HttpReceiver]
) -> None:
    manual = ManualClock(START)  # nothing moves unless told: a back-off wait blocks for real
    receivers["slack"].script(Reply(503))  # then the channel is back
    first = Process(store_url, slack_only(receivers, max_tries=5), manual)
    try:
        first.notifier.submit(_alert())
        deadline = time.monotonic() + 10
        while not receivers["slack"].requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receivers["slack"].requests, "the first try never came"
        time.sleep(0.1)  # the worker is now waiting out its first back-off
        stopped = threading.Event()

        def stop() -> None:
            first.notifier.stop(5)
            stopped.set()

        threading.Thread(target=stop, daemon=True).start()
        assert stopped.wait(4.5), "stop waited for the back-off"
        [row] = table_rows(store_url, "alert_outbox")
        assert row[9] is None  # claimed_until: released
        assert "released" in str(row[8])
        assert len(receivers["slack"].requests) == 1
    finally:
        first.session.close()
        first.store.close()
    second = Process(store_url, slack_only(receivers), FakeClock(START))
    try:
        second.delivered()
        assert len(receivers["slack"].requests) == 2  # at once, not after a lease
        assert table_rows(store_url, "alert_outbox") == []
    finally:
        second.close()


def test_the_lease_is_one_bounded_delivery() -> None:
    settings = AlertingSettings()
    policy = RetryPolicy(
        max_tries=settings.max_tries,
        timeout=settings.timeout,
        backoff=settings.backoff,
        backoff_max=settings.backoff_max,
        retry_after_max=settings.retry_after_max,
    )
    # 5 tries × (10 s connect + 10 s read) + the wait budget (1+2+4+8 s, at least one 60 s wait) + 10 s.
    assert policy.wait_budget() == 60.0
    assert outbox_policy(settings).lease == 5 * 20 + 60 + 10


def test_waits_within_one_delivery_stay_within_its_budget(clock: FakeClock, metrics: Metrics) -> None:
    replies = [Reply(503, headers={"Retry-After": "50"})] * 3
    with requests.Session() as session, HttpReceiver(*replies) as peer:
        sender = HttpSender(session, clock, metrics, RetryPolicy(max_tries=4, timeout=5.0, backoff=1.0))
        delivery = sender.send("slack", peer.url, {})
    assert not delivery.delivered and delivery.retry_after == 50.0
    assert sum(clock.slept) <= RetryPolicy(max_tries=4, timeout=5.0, backoff=1.0).wait_budget()


# ------------------------------------------------------------------ 4. a wall-clock step
def test_a_retry_is_not_held_back_by_a_wall_clock_step(
    processes: Any, receivers: dict[str, HttpReceiver], store_url: str, clock: FakeClock
) -> None:
    receivers["slack"].script(Reply(503))
    process = processes(slack_only(receivers), clock)
    process.rounds("xx")  # the firing notice failed: its retry is due in OUTBOX_RETRY on this clock
    assert len(receivers["slack"].requests) == 1
    clock.step(-120)  # the wall clock goes back 2 minutes
    clock.advance(OUTBOX_RETRY)  # the retry's wait has passed on the monotonic clock
    process.delivered()
    assert len(receivers["slack"].requests) == 2
    assert table_rows(store_url, "alert_outbox") == []

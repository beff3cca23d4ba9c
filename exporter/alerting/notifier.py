"""Fan-out of alerts to the configured channels, off the check path.

``submit`` only enqueues (never blocks, never raises): each channel has its own bounded queue and
worker thread, so a slow or dead channel delays neither a check round nor the other channels. A
full queue drops the alert and counts ``outcome="dropped"``. Not for deciding what to send (the
``engine``) nor how to retry (the ``sender``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import requests

from exporter.alerting.alert import Alert
from exporter.alerting.channels.console import ConsoleChannel
from exporter.alerting.channels.slack import SlackChannel
from exporter.alerting.channels.telegram import TelegramChannel
from exporter.alerting.channels.webhook import WebhookChannel
from exporter.alerting.sender import Channel, HttpSender, RetryPolicy
from exporter.clock import Clock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics
from exporter.redact import no_redaction

log = logging.getLogger(__name__)

OUTCOMES = ("success", "failure", "dropped")
# How often an idle worker looks up from its queue to see whether it should stop (real seconds).
_IDLE_POLL = 0.2


class Sender(Protocol):
    def send(self, channel: str, url: str, body: dict[str, Any], *, deadline: float | None = None) -> bool: ...


class _Worker:
    def __init__(self, channel: Channel, queue_size: int) -> None:
        self.channel = channel
        self.queue: queue.Queue[Alert] = queue.Queue(maxsize=queue_size)
        self.thread: threading.Thread | None = None


class Notifier:
    """Queues alerts per channel and delivers them with ``sender`` from one worker thread each."""

    def __init__(
        self,
        channels: Sequence[Channel],
        sender: Sender,
        metrics: Metrics,
        clock: Clock,
        *,
        queue_size: int = 1000,
    ) -> None:
        self._sender = sender
        self._metrics = metrics
        self._clock = clock
        self._workers = [_Worker(channel, queue_size) for channel in channels]
        for channel in channels:
            # Every series exists from the start, so increase()/rate() rules see the first failure.
            for outcome in OUTCOMES:
                metrics.alerts_sent.labels(channel=channel.name, outcome=outcome)
        self._stopping = threading.Event()
        self._deadline: float | None = None  # clock.monotonic() after which nothing more is attempted

    def start(self) -> None:
        for worker in self._workers:
            if worker.thread is None:
                worker.thread = threading.Thread(
                    target=self._run, args=(worker,), name=f"alerts-{worker.channel.name}", daemon=True
                )
                worker.thread.start()

    def submit(self, alert: Alert) -> None:
        """Enqueue ``alert`` for every channel that wants it; returns at once."""
        for worker in self._workers:
            channel = worker.channel
            if alert.state == "resolved" and not channel.send_resolved:
                continue
            if self._stopping.is_set():
                self._dropped(channel.name, alert, "the notifier is stopping")
                continue
            try:
                worker.queue.put_nowait(alert)
            except queue.Full:
                self._dropped(channel.name, alert, "its queue is full")

    def flush(self, timeout: float) -> bool:
        """Wait (real seconds) until every queued alert was handled; False on timeout. For tests and shutdown."""
        return all(self._flush_one(worker.queue, timeout) for worker in self._workers)

    @staticmethod
    def _flush_one(pending: queue.Queue[Alert], timeout: float) -> bool:
        with pending.all_tasks_done:
            return pending.all_tasks_done.wait_for(lambda: pending.unfinished_tasks == 0, timeout)

    def stop(self, timeout: float) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, then stop the workers.

        Retries that would end after the deadline are abandoned (counted as failures); alerts still
        queued then are counted as dropped.
        """
        self._deadline = self._clock.monotonic() + timeout
        self._stopping.set()
        # One budget for all workers (real time: this waits for threads, not for the domain clock).
        end = time.monotonic() + timeout
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join(max(end - time.monotonic(), 0.0))
                if worker.thread.is_alive():
                    log.warning("alert worker for %s did not stop within %.0fs", worker.channel.name, timeout)
            else:  # never started: nothing will deliver what is queued
                self._drain(worker, "the notifier never started")

    def _run(self, worker: _Worker) -> None:
        while True:
            try:
                alert = worker.queue.get(timeout=_IDLE_POLL)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            try:
                self._deliver(worker.channel, alert)
            finally:
                worker.queue.task_done()

    def _deliver(self, channel: Channel, alert: Alert) -> None:
        if self._deadline is not None and self._clock.monotonic() >= self._deadline:
            self._dropped(channel.name, alert, "the shutdown deadline passed")
            return
        try:
            if isinstance(channel, ConsoleChannel):  # no network: the notice is a log line
                delivered = channel.deliver(alert)
                self._metrics.alerts_sent.labels(
                    channel=channel.name, outcome="success" if delivered else "failure"
                ).inc()
                return
            url, body = channel.build_request(alert)
            self._sender.send(channel.name, url, body, deadline=self._deadline)
        except Exception:
            # A bug in one channel must not kill its worker: later alerts still deserve a try.
            log.exception("alert to %s failed unexpectedly", channel.name)
            self._metrics.alerts_sent.labels(channel=channel.name, outcome="failure").inc()

    def _drain(self, worker: _Worker, why: str) -> None:
        while True:
            try:
                alert = worker.queue.get_nowait()
            except queue.Empty:
                return
            self._dropped(worker.channel.name, alert, why)
            worker.queue.task_done()

    def _dropped(self, channel: str, alert: Alert, why: str) -> None:
        log.warning("alert %r for %s dropped: %s", alert.title, channel, why)
        self._metrics.alerts_sent.labels(channel=channel, outcome="dropped").inc()


def channels_from_settings(settings: AlertingSettings) -> list[Channel]:
    """The channels whose credentials are configured, in a stable order."""
    channels: list[Channel] = []
    if settings.slack.webhook_url is not None and settings.slack.webhook_url.get_secret_value():
        channels.append(
            SlackChannel(settings.slack.webhook_url.get_secret_value(), send_resolved=settings.slack.send_resolved)
        )
    telegram = settings.telegram
    if telegram.bot_token is not None and telegram.bot_token.get_secret_value() and telegram.chat_id:
        channels.append(
            TelegramChannel(
                telegram.bot_token.get_secret_value(),
                telegram.chat_id,
                base_url=telegram.base_url,
                send_resolved=telegram.send_resolved,
            )
        )
    if settings.webhook.url is not None and settings.webhook.url.get_secret_value():
        channels.append(
            WebhookChannel(settings.webhook.url.get_secret_value(), send_resolved=settings.webhook.send_resolved)
        )
    if settings.console.enabled:
        channels.append(ConsoleChannel(send_resolved=settings.console.send_resolved))
    return channels


def retry_policy(settings: AlertingSettings) -> RetryPolicy:
    return RetryPolicy(
        max_tries=settings.max_tries,
        timeout=settings.timeout,
        backoff=settings.backoff,
        backoff_max=settings.backoff_max,
        retry_after_max=settings.retry_after_max,
    )


def build_notifier(
    settings: AlertingSettings,
    metrics: Metrics,
    clock: Clock,
    session: requests.Session,
    redact: Callable[[str], str] = no_redaction,
) -> Notifier:
    """The notifier for the configured channels, sending with one shared ``requests.Session``
    (thread-safe for plain POSTs) and masking secrets in what it logs with ``redact``."""
    sender = HttpSender(session, clock, metrics, retry_policy(settings), redact=redact)
    return Notifier(channels_from_settings(settings), sender, metrics, clock, queue_size=settings.queue_size)

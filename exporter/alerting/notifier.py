"""Fan-out of alerts to the configured channels, off the check path, through a persisted outbox.

``submit`` never blocks on a channel and never raises. With a store (``outbox``), each notice is first
written to the store's ``alert_outbox`` (one row per channel) and delivered from there by the channel's
worker thread: a notice that could not be delivered is retried with back-off, by this process or
another replica, also after a restart, until ``outbox_give_up_after``; giving up is an error log and
``blocktrust_alert_notices_abandoned_total``. A row is deleted right after the channel accepted it, so
a notice is sent twice only if the process dies (or the store fails) between the channel's
acknowledgement and that delete; another replica takes a claimed row only once its lease (the
longest one delivery can take) has passed. When the store cannot take a notice, it is delivered from
memory (a bounded queue per channel; a full queue drops and counts ``outcome="dropped"``) and put in
the outbox if that delivery fails. Not for deciding what to send (the ``engine``) nor for one
delivery's retries (the ``sender``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import requests

from exporter.alerting.alert import Alert
from exporter.alerting.answer import REASON_CLASSES
from exporter.alerting.channels.console import ConsoleChannel
from exporter.alerting.channels.slack import SlackChannel
from exporter.alerting.channels.telegram import TelegramChannel
from exporter.alerting.channels.webhook import WebhookChannel
from exporter.alerting.sender import Channel, Delivery, Headers, HttpSender, Judge, RetryPolicy
from exporter.clock import Clock
from exporter.config import AlertingSettings
from exporter.metrics import Metrics
from exporter.redact import no_redaction
from exporter.store.base import OutboxNotice, Store, StoreError

log = logging.getLogger(__name__)

OUTCOMES = ("success", "failure", "dropped")
# How often an idle worker looks up from its queue (real seconds): to stop, and to look for notices
# due in the outbox (retries, notices held by a maintenance window, another replica's leftovers).
_IDLE_POLL = 0.2
_OUTBOX_POLL = 5.0
OUTBOX_RETRY_MAX = 900.0  # seconds between two outbox rounds of one notice, at most
_MIGRATION_HOPS = 3
LEASE_MARGIN_SECONDS = 10.0
_WALL_STEP_SECONDS = 1.0  # a change of wall minus monotonic time larger than this is a clock step


class Sender(Protocol):
    def send(
        self,
        channel: str,
        url: str,
        body: dict[str, Any],
        *,
        deadline: float | None = None,
        judge: Judge = ...,
        headers: Headers = ...,
    ) -> Delivery | bool: ...


class Outbox(Protocol):
    """The part of the ``Store`` the notifier uses."""

    def enqueue_notice(
        self, channel: str, check_name: str, alert: dict[str, Any], at: datetime, due_at: datetime
    ) -> int: ...

    def take_notice(self, channel: str, now: datetime, lease_until: datetime) -> OutboxNotice | None: ...

    def take_expired_notice(
        self, channel: str, due_before: datetime, now: datetime, lease_until: datetime
    ) -> OutboxNotice | None: ...

    def notice_delivered(self, notice_id: int) -> None: ...

    def notice_failed(self, notice_id: int, retry_at: datetime, error: str) -> None: ...

    def notice_abandoned(self, notice_id: int) -> None: ...

    def retry_notices_now(self, channel: str, now: datetime) -> int: ...

    def later_notices(self, channel: str, check_name: str, notice_id: int) -> int: ...

    def pending_notices(self) -> dict[str, int]: ...

    def channel_overrides(self, channel: str, setting: str) -> dict[str, str]: ...

    def save_channel_override(self, channel: str, setting: str, configured: str, value: str, at: datetime) -> None: ...


@dataclass(frozen=True)
class OutboxPolicy:
    give_up_after: float = 86400.0  # seconds after a notice was due
    retry_min: float = 60.0  # first wait between outbox rounds of a notice; doubled each round
    retry_max: float = OUTBOX_RETRY_MAX
    lease: float = 600.0  # how long one delivery may take before another replica may try the notice

    def retry_in(self, rounds: int) -> float:
        return float(min(self.retry_min * 2 ** max(rounds - 1, 0), self.retry_max))


class _Worker:
    def __init__(self, channel: Channel, queue_size: int) -> None:
        self.channel = channel
        self.configured = channel  # as configured (a migration changes ``channel``)
        self.queue: queue.Queue[Alert] = queue.Queue(maxsize=queue_size)
        self.later: list[Alert] = []  # from memory, held until their not_before
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()
        self.started = 0  # loop iterations begun and completed, for ``flush``
        self.passes = 0
        self.passed = threading.Condition()
        self.unmarked: list[int] = []  # delivered, but the store missed the delete: never take them again
        self.store_ok = True
        self.claimed: int | None = None  # the outbox notice being delivered now (released if stopped)
        self.wall_offset: float | None = None  # clock.now() - clock.monotonic() at the last pass


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
        outbox: Outbox | None = None,
        policy: OutboxPolicy | None = None,
        redact: Callable[[str], str] = no_redaction,
    ) -> None:
        self._sender = sender
        self._metrics = metrics
        self._clock = clock
        self._outbox = outbox
        self._policy = policy or OutboxPolicy()
        self._redact = redact
        self._workers = [_Worker(channel, queue_size) for channel in channels]
        for channel in channels:
            # Every series exists from the start, so increase()/rate() rules see the first failure.
            for outcome in OUTCOMES:
                metrics.alerts_sent.labels(channel=channel.name, outcome=outcome)
            metrics.alert_delivery_attempts.labels(channel=channel.name)
            for reason in REASON_CLASSES:
                metrics.alert_delivery_failures.labels(channel=channel.name, reason=reason)
                metrics.alert_notices_abandoned.labels(channel=channel.name, reason=reason)
            metrics.alert_outbox_pending.labels(channel=channel.name).set(0)
            metrics.alerting_errors.labels(worker=channel.name)
        self._stopping = threading.Event()
        self._deadline: float | None = None  # clock.monotonic() after which nothing more is attempted

    # ------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start one worker per channel; first apply the moves channels reported earlier (persisted)
        and say what waits in the outbox, also for channels no longer configured."""
        self._load_overrides()
        self._retry_now()
        self._report_pending(at_start=True)
        for worker in self._workers:
            if worker.thread is None:
                worker.thread = threading.Thread(
                    target=self._run, args=(worker,), name=f"alerts-{worker.channel.name}", daemon=True
                )
                worker.thread.start()

    def submit(self, alert: Alert) -> None:
        """Hand ``alert`` over for every channel that wants it; returns at once (one store write per
        channel when there is an outbox)."""
        for worker in self._workers:
            channel = worker.channel
            if alert.state == "resolved" and not channel.send_resolved:
                continue
            if self._persist(channel.name, alert):
                worker.wake.set()
                continue
            if self._stopping.is_set():
                self._dropped(channel.name, alert, "the notifier is stopping")
                continue
            try:
                worker.queue.put_nowait(alert)
                worker.wake.set()
            except queue.Full:
                self._dropped(channel.name, alert, "its queue is full")

    def flush(self, timeout: float) -> bool:
        """Wait (real seconds) until every queued alert was handled and each worker looked at the
        outbox once more; False on timeout. For tests and shutdown."""
        end = time.monotonic() + timeout
        return all(self._flush_one(worker, end) for worker in self._workers)

    def _flush_one(self, worker: _Worker, end: float) -> bool:
        pending = worker.queue
        with pending.all_tasks_done:
            if not pending.all_tasks_done.wait_for(
                lambda: pending.unfinished_tasks == 0, max(end - time.monotonic(), 0.0)
            ):
                return False
        if worker.thread is None:
            return True
        with worker.passed:
            target = worker.started + 1  # a whole iteration (with an outbox pass) begun after this call
            worker.wake.set()
            return worker.passed.wait_for(lambda: worker.passes >= target, max(end - time.monotonic(), 0.0))

    def stop(self, timeout: float) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, then stop the workers.

        Retries that would end after the deadline are abandoned for now: with an outbox the notice
        stays there for the next start (or another replica); without one it is counted as a failure,
        and alerts still queued in memory then are counted as dropped.
        """
        self._deadline = self._clock.monotonic() + timeout
        self._stopping.set()
        stop_sender = getattr(self._sender, "stop", None)
        if callable(stop_sender):
            stop_sender()  # a worker waiting to retry stops waiting now
        # One budget for all workers (real time: this waits for threads, not for the domain clock).
        end = time.monotonic() + timeout
        for worker in self._workers:
            worker.wake.set()
            if worker.thread is not None:
                worker.thread.join(max(end - time.monotonic(), 0.0))
                if worker.thread.is_alive():
                    log.warning("alert worker for %s did not stop within %.0fs", worker.channel.name, timeout)
                    claimed = worker.claimed
                    if claimed is not None:  # still in a request: let the next process have it at once
                        self._release(worker.channel.name, claimed, "the process stopped during its delivery")
            else:  # never started: nothing will deliver what is queued
                self._drain(worker, "the notifier never started")

    def health(self) -> tuple[bool, str]:
        """For ``/healthz``: False, naming the channel, when a started worker thread is no longer running
        (it never should: a worker logs, counts and survives every error)."""
        if self._stopping.is_set():
            return True, "ok"
        dead = [w.channel.name for w in self._workers if w.thread is not None and not w.thread.is_alive()]
        if dead:
            return False, "alert worker thread dead for channel(s): " + ", ".join(dead)
        return True, "ok"

    def _release(self, channel: str, notice_id: int, why: str) -> None:
        """Make a claimed notice due now and unclaimed (``next_attempt_at = now``, ``claimed_until`` NULL)."""
        if self._outbox is None:
            return
        try:
            self._outbox.notice_failed(notice_id, self._clock.now(), f"released: {why}")
            log.info("alert %d to %s released for the next process: %s", notice_id, channel, why)
        except StoreError as exc:
            log.warning("alert %d to %s: could not release it (%s)", notice_id, channel, self._redact(str(exc)))

    # ------------------------------------------------------------------------ the worker
    def _run(self, worker: _Worker) -> None:
        """The worker thread: it never dies of an error (see ``_iteration``)."""
        state = {"last_pass": float("-inf")}
        while True:
            try:
                if self._iteration(worker, state):
                    return
            except Exception:
                # A bug (or an answer no rule foresaw) must not silence this channel for the process life.
                log.exception("alert worker for %s: unexpected error (it carries on)", worker.channel.name)
                self._metrics.alerting_errors.labels(worker=worker.channel.name).inc()
                with worker.passed:
                    worker.passes += 1
                    worker.passed.notify_all()

    def _iteration(self, worker: _Worker, state: dict[str, float]) -> bool:
        """One turn of the worker's loop; True when the worker is to end (stopping)."""
        woken = worker.wake.wait(_IDLE_POLL)
        with worker.passed:
            worker.wake.clear()
            worker.started += 1
        while True:
            try:
                alert = worker.queue.get_nowait()
            except queue.Empty:
                break
            try:
                self._deliver_from_memory(worker, alert)
            finally:
                worker.queue.task_done()
        if self._stopping.is_set():
            self._drain_later(worker)
            return True
        self._release_later(worker)
        if self._outbox is not None and (woken or time.monotonic() - state["last_pass"] >= _OUTBOX_POLL):
            state["last_pass"] = time.monotonic()
            self._outbox_pass(worker)
        with worker.passed:
            worker.passes += 1
            worker.passed.notify_all()
        return False

    def _outbox_pass(self, worker: _Worker) -> None:
        """Deliver every notice of this channel that is due now, oldest first."""
        assert self._outbox is not None
        try:
            self._mark_delivered(worker)
            self._after_wall_step(worker)
            self._abandon_expired(worker)
            while not self._stopping.is_set():
                now = self._clock.now()
                notice = self._outbox.take_notice(worker.channel.name, now, now + timedelta(seconds=self._policy.lease))
                if notice is None:
                    break
                worker.claimed = notice.id
                try:
                    self._deliver_notice(worker, notice)
                except StoreError:
                    raise
                except Exception as exc:
                    log.exception(
                        "alert %d to %s: unexpected error (the worker carries on)", notice.id, worker.channel.name
                    )
                    self._metrics.alerting_errors.labels(worker=worker.channel.name).inc()
                    retry_at = self._clock.now() + timedelta(seconds=self._policy.retry_in(notice.attempts))
                    self._outbox.notice_failed(notice.id, retry_at, f"internal: {type(exc).__name__}")
                finally:
                    worker.claimed = None
            self._report_pending()
            if not worker.store_ok:
                log.info("alert outbox for %s reachable again", worker.channel.name)
                worker.store_ok = True
        except StoreError as exc:
            if worker.store_ok:  # once per outage, not once per poll
                log.error("alert outbox for %s unreachable: %s", worker.channel.name, self._redact(str(exc)))
                worker.store_ok = False

    def _after_wall_step(self, worker: _Worker) -> None:
        """Retries are scheduled in the store as wall timestamps (for other replicas and restarts). When
        the wall clock stepped (wall minus monotonic time moved by more than a second since the last
        pass), a retry this process meant for "in 4 s" could wait for the wall clock to catch up (a
        step back) or be tried early (a step forward): the channel's waiting retries are made due now."""
        assert self._outbox is not None
        offset = self._clock.now().timestamp() - self._clock.monotonic()
        previous, worker.wall_offset = worker.wall_offset, offset
        if previous is None or abs(offset - previous) <= _WALL_STEP_SECONDS:
            return
        count = self._outbox.retry_notices_now(worker.channel.name, self._clock.now())
        log.warning(
            "alert outbox for %s: the wall clock stepped by %+.0fs; %d waiting retr%s made due now",
            worker.channel.name,
            offset - previous,
            count,
            "y" if count == 1 else "ies",
        )

    def _abandon_expired(self, worker: _Worker) -> None:
        """Give up (loudly) on every notice past the give-up horizon, however far off its next attempt
        and however many attempts it had: age alone decides."""
        assert self._outbox is not None
        while not self._stopping.is_set():
            now = self._clock.now()
            horizon = now - timedelta(seconds=self._policy.give_up_after)
            notice = self._outbox.take_expired_notice(
                worker.channel.name, horizon, now, now + timedelta(seconds=self._policy.lease)
            )
            if notice is None:
                return
            last = notice.last_error or "never tried"
            reason_class, _, _ = last.partition(":")
            if reason_class not in REASON_CLASSES:
                reason_class = "internal"
            self._abandon(notice, reason_class, f"still undelivered at the give-up horizon (last: {last})")

    def _deliver_notice(self, worker: _Worker, notice: OutboxNotice) -> None:
        assert self._outbox is not None
        name = worker.channel.name
        try:
            alert = Alert.from_json(notice.alert)
        except (TypeError, ValueError) as exc:
            self._abandon(notice, "internal", f"unreadable notice: {exc}")
            return
        if alert.reminder and self._outbox.later_notices(name, notice.check_name, notice.id):
            # A reminder that waited (the channel was down) while a newer notice of the same incident
            # was queued says nothing the newer one does not: after an outage, one notice per incident
            # rather than a burst of stale reminders.
            log.info("alert %d to %s: a reminder superseded by a newer notice of %s", notice.id, name, alert.check_name)
            self._outbox.notice_delivered(notice.id)
            return
        delivery = self._deliver(worker, alert)
        if delivery.delivered:
            worker.unmarked.append(notice.id)
            self._mark_delivered(worker)
            return
        now = self._clock.now()
        age = (now - notice.due_at).total_seconds()
        reason_class = delivery.reason_class or "internal"
        if delivery.interrupted:  # stopping: the next process (or another replica) takes it at once
            self._release(name, notice.id, f"stopped during its delivery ({reason_class}: {delivery.reason})")
            return
        if age >= self._policy.give_up_after:
            self._abandon(notice, reason_class, delivery.reason)
            return
        left = self._policy.give_up_after - age  # until the give-up horizon
        asked = delivery.retry_after or 0.0
        if asked >= left:
            # The channel will not take it before we would give up anyway: say so now, and let the
            # notices of the same check queued behind this one go.
            self._abandon(
                notice, reason_class, f"{delivery.reason}; asked to wait {asked:.0f}s, past the give-up horizon"
            )
            return
        # Never sooner than the channel asked; never later than the give-up horizon.
        wait = min(max(self._policy.retry_in(notice.attempts), asked), left)
        log.warning(
            "alert %d to %s not delivered (%s: %s); %d round(s) so far, next in %.0fs",
            notice.id,
            name,
            reason_class,
            delivery.reason,
            notice.attempts,
            wait,
        )
        self._outbox.notice_failed(notice.id, now + timedelta(seconds=wait), f"{reason_class}: {delivery.reason}")

    def _mark_delivered(self, worker: _Worker) -> None:
        assert self._outbox is not None
        while worker.unmarked:
            self._outbox.notice_delivered(worker.unmarked[0])
            worker.unmarked.pop(0)

    def _abandon(self, notice: OutboxNotice, reason_class: str, reason: str) -> None:
        assert self._outbox is not None
        log.error(
            "alert %d to %s GIVEN UP after %d round(s) since %s (%s: %s): %s of %s",
            notice.id,
            notice.channel,
            notice.attempts,
            notice.due_at.isoformat(),
            reason_class,
            self._redact(reason),
            notice.alert.get("state"),
            notice.check_name,
        )
        self._metrics.alert_notices_abandoned.labels(channel=notice.channel, reason=reason_class).inc()
        self._outbox.notice_abandoned(notice.id)

    def _deliver_from_memory(self, worker: _Worker, alert: Alert) -> None:
        if alert.not_before is not None and self._clock.now() < alert.not_before:
            worker.later.append(alert)
            return
        if self._deadline is not None and self._clock.monotonic() >= self._deadline:
            if not self._persist(worker.channel.name, alert):  # the next start delivers it
                self._dropped(worker.channel.name, alert, "the shutdown deadline passed")
            return
        delivery = self._deliver(worker, alert)
        if not delivery.delivered and not self._persist(worker.channel.name, alert, retry=True):
            self._metrics.alert_notices_abandoned.labels(
                channel=worker.channel.name, reason=delivery.reason_class or "internal"
            ).inc()
            log.error(
                "alert %r to %s GIVEN UP: not delivered (%s) and the outbox cannot keep it for a retry",
                alert.title,
                worker.channel.name,
                delivery.reason,
            )

    def _release_later(self, worker: _Worker) -> None:
        now = self._clock.now()
        due = [a for a in worker.later if a.not_before is None or a.not_before <= now]
        if due:
            worker.later = [a for a in worker.later if a not in due]
            for alert in due:
                self._deliver_from_memory(worker, alert)

    def _drain_later(self, worker: _Worker) -> None:
        for alert in worker.later:
            if not self._persist(worker.channel.name, alert):
                self._dropped(worker.channel.name, alert, "held in memory when the notifier stopped")
        worker.later = []

    def _deliver(self, worker: _Worker, alert: Alert) -> Delivery:
        """One delivery (with the sender's retries), following a channel that moved."""
        for _ in range(_MIGRATION_HOPS):
            channel = worker.channel
            if isinstance(channel, ConsoleChannel):  # no network: the notice is a log line
                delivered = channel.deliver(alert)
                self._metrics.alerts_sent.labels(
                    channel=channel.name, outcome="success" if delivered else "failure"
                ).inc()
                return Delivery(delivered, 1)
            try:
                url, body = channel.build_request(alert)
                result = self._sender.send(
                    channel.name, url, body, deadline=self._deadline, judge=channel.judge, headers=channel.headers
                )
            except Exception as exc:
                # A bug in one channel must not kill its worker: later alerts still deserve a try.
                log.exception("alert to %s failed unexpectedly", channel.name)
                self._metrics.alerts_sent.labels(channel=channel.name, outcome="failure").inc()
                return Delivery(False, 0, self._redact(f"{type(exc).__name__}: {exc}"), "internal")
            delivery = result if isinstance(result, Delivery) else Delivery(bool(result), 1)
            if delivery.migrate_to is None or not self._follow(worker, delivery.migrate_to):
                return delivery
        return Delivery(False, 0, "the channel kept moving", "migrated")

    def _follow(self, worker: _Worker, chat_id: str) -> bool:
        """Send to where a Telegram group migrated from now on (for the process life, and persisted in
        the store when there is one, so a restart keeps it); the operator is told to update the config."""
        channel = worker.channel
        moved_to = getattr(channel, "moved_to", None)
        old = getattr(channel, "chat_id", None)
        if moved_to is None or old is None or old == chat_id:
            return False
        worker.channel = moved_to(chat_id)
        log.warning(
            "alert channel %s: chat %s migrated to %s (the group became a supergroup); sending there from now on. "
            "Update alerting.telegram.chat_id (ALERT_TELEGRAM_CHAT) to %s",
            channel.name,
            old,
            chat_id,
            chat_id,
        )
        configured = getattr(worker.configured, "chat_id", None)
        if self._outbox is not None and configured is not None:
            try:
                self._outbox.save_channel_override(channel.name, "chat_id", configured, chat_id, self._clock.now())
            except StoreError as exc:
                log.warning("could not remember the migrated chat in the store: %s", self._redact(str(exc)))
        return True

    def _retry_now(self) -> None:
        """A new process tries at once what an earlier one failed to deliver (the channel may be back,
        its configuration fixed) instead of waiting out the earlier back-off."""
        if self._outbox is None:
            return
        for worker in self._workers:
            try:
                self._outbox.retry_notices_now(worker.channel.name, self._clock.now())
            except StoreError as exc:
                log.warning("alert outbox unreachable at start: %s", self._redact(str(exc)))
                return

    def _load_overrides(self) -> None:
        if self._outbox is None:
            return
        for worker in self._workers:
            configured = getattr(worker.channel, "chat_id", None)
            moved_to = getattr(worker.channel, "moved_to", None)
            if configured is None or moved_to is None:
                continue
            try:
                overrides = self._outbox.channel_overrides(worker.channel.name, "chat_id")
            except StoreError as exc:
                log.warning("could not read channel overrides: %s", self._redact(str(exc)))
                return
            chat_id = overrides.get(configured)
            if chat_id and chat_id != configured:
                worker.channel = moved_to(chat_id)
                log.warning(
                    "alert channel %s: chat %s migrated to %s earlier; sending there. "
                    "Update alerting.telegram.chat_id (ALERT_TELEGRAM_CHAT) to %s",
                    worker.channel.name,
                    configured,
                    chat_id,
                    chat_id,
                )

    def _report_pending(self, *, at_start: bool = False) -> None:
        if self._outbox is None:
            return
        try:
            pending = self._outbox.pending_notices()
        except StoreError:
            return
        configured = {worker.channel.name for worker in self._workers}
        for name in configured | set(pending):
            self._metrics.alert_outbox_pending.labels(channel=name).set(pending.get(name, 0))
        if at_start:
            for name, count in sorted(pending.items()):
                if name in configured:
                    log.info("alert outbox: %d notice(s) for %s waiting from before; delivering them", count, name)
                else:
                    log.warning(
                        "alert outbox: %d notice(s) wait for channel %s, which is not configured: kept, not sent",
                        count,
                        name,
                    )

    def _persist(self, channel: str, alert: Alert, *, retry: bool = False) -> bool:
        """Put ``alert`` in the outbox for ``channel``; False when there is none or the store fails."""
        if self._outbox is None:
            return False
        now = self._clock.now()
        due = alert.not_before if alert.not_before is not None and alert.not_before > now else now
        if retry:
            due = now + timedelta(seconds=self._policy.retry_in(1))
        try:
            self._outbox.enqueue_notice(channel, alert.check_name, alert.to_json(), now, due)
        except StoreError as exc:
            log.warning(
                "alert outbox: cannot keep a notice for %s (%s); delivering from memory",
                channel,
                self._redact(str(exc)),
            )
            return False
        return True

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
        secret = settings.webhook.signing_secret
        channels.append(
            WebhookChannel(
                settings.webhook.url.get_secret_value(),
                send_resolved=settings.webhook.send_resolved,
                signing_secret=secret.get_secret_value() if secret is not None else None,
            )
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


def outbox_policy(settings: AlertingSettings) -> OutboxPolicy:
    policy = retry_policy(settings)
    # Long enough for one whole delivery (every try's timeouts and the delivery's wait budget), so that
    # a replica never takes a notice another one is still delivering; a little more for the store calls.
    lease = policy.longest_delivery() + LEASE_MARGIN_SECONDS
    return OutboxPolicy(
        give_up_after=settings.outbox_give_up_after,
        retry_min=max(settings.backoff_max, 1.0),
        retry_max=max(OUTBOX_RETRY_MAX, settings.backoff_max),
        lease=lease,
    )


def build_notifier(
    settings: AlertingSettings,
    metrics: Metrics,
    clock: Clock,
    session: requests.Session,
    redact: Callable[[str], str] = no_redaction,
    *,
    store: Store | None = None,
) -> Notifier:
    """The notifier for the configured channels, sending with one shared ``requests.Session``
    (thread-safe for plain POSTs) and masking secrets in what it logs with ``redact``; with ``store``,
    notices go through its persisted outbox."""
    sender = HttpSender(session, clock, metrics, retry_policy(settings), redact=redact)
    return Notifier(
        channels_from_settings(settings),
        sender,
        metrics,
        clock,
        queue_size=settings.queue_size,
        outbox=store,
        policy=outbox_policy(settings),
        redact=redact,
    )

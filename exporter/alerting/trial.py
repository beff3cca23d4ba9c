"""``notify-test``: a firing then a resolved test notice to each configured channel, and what each
answered, so that an operator sees a channel work (or why not) before an incident needs it.

Each notice is one delivery of one try (no back-off: the answer is what matters), straight through the
sender, never through the outbox: nothing is recorded, nothing retried later. Not for real notices
(``notifier.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from exporter.alerting.alert import Alert
from exporter.alerting.channels.console import ConsoleChannel
from exporter.alerting.sender import Channel, HttpSender
from exporter.redact import no_redaction

TRIAL_CHECK = "notify-test"
TRIAL_TITLE = "Test notice from blocktrust-exporter (notify-test): no action needed"


@dataclass(frozen=True)
class TrialAnswer:
    """What one channel answered to one test notice. ``answer``: the status and the start of the body,
    or why there was none (redacted)."""

    channel: str
    state: str
    ok: bool
    answer: str

    def line(self) -> str:
        """``webhook firing: OK (HTTP 200 "ok")``."""
        return f"{self.channel} {self.state}: {'OK' if self.ok else 'FAILED'} ({self.answer})"


def trial_alerts(now: datetime) -> tuple[Alert, Alert]:
    """The firing and the resolved test notice, at ``now``."""
    firing = Alert(TRIAL_CHECK, "info", "firing", TRIAL_TITLE, "Sent by blocktrust-exporter notify-test", now, now)
    return firing, Alert(TRIAL_CHECK, "info", "resolved", TRIAL_TITLE, "", now, now)


def send_trial(
    channels: Sequence[Channel],
    sender: HttpSender,
    now: datetime,
    redact: Callable[[str], str] = no_redaction,
) -> list[TrialAnswer]:
    """Send both test notices to each channel, in order; one answer per notice (a channel with
    ``send_resolved: false`` is not sent the resolved one, and that counts as OK)."""
    answers: list[TrialAnswer] = []
    for channel in channels:
        for alert in trial_alerts(now):
            if alert.state == "resolved" and not channel.send_resolved:
                answers.append(TrialAnswer(channel.name, alert.state, True, "not sent: send_resolved is false"))
                continue
            answers.append(_send_one(channel, alert, sender, redact))
    return answers


def _send_one(channel: Channel, alert: Alert, sender: HttpSender, redact: Callable[[str], str]) -> TrialAnswer:
    if isinstance(channel, ConsoleChannel):
        delivered = channel.deliver(alert)
        return TrialAnswer(channel.name, alert.state, delivered, "written to the log")
    url, body = channel.build_request(alert)
    delivery = sender.send(channel.name, url, body, judge=channel.judge, headers=channel.headers)
    if delivery.status is None:
        answer = f"no answer: {delivery.reason}"
    else:
        snippet = " ".join(delivery.answer.split())[:120]
        answer = f"HTTP {delivery.status}" + (f" {snippet!r}" if snippet else "")
        if not delivery.delivered:
            answer += f"; {delivery.reason_class}: {delivery.reason}"
    return TrialAnswer(channel.name, alert.state, delivery.delivered, redact(answer))

"""Each channel's pure request builder against the exact JSON it must send (SPEC §5)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.alerting.alert import Alert, format_duration, render_text
from exporter.alerting.channels.slack import SlackChannel
from exporter.alerting.channels.telegram import TelegramChannel
from exporter.alerting.channels.webhook import WebhookChannel

SINCE = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
AT = datetime(2026, 1, 5, 10, 2, 0, tzinfo=UTC)


def alert(**changes: object) -> Alert:
    base: dict[str, object] = {
        "check_name": "api.health",
        "severity": "crit",
        "state": "firing",
        "title": "API /health unavailable",
        "detail": "Status code: 503",
        "since": SINCE,
        "at": AT,
        "incident_id": 7,
    }
    base.update(changes)
    return Alert(**base)  # type: ignore[arg-type]


def test_message_form_follows_the_spec() -> None:
    assert render_text(alert()) == (
        "🚨 [CRIT] API /health unavailable\nStatus code: 503\nSince 2026-01-05 10:00:00 UTC"
    )


@pytest.mark.parametrize(
    ("changes", "expected_first_line"),
    [
        ({"severity": "info"}, "ℹ️ [INFO] API /health unavailable"),
        ({"severity": "warn"}, "⚠️ [WARN] API /health unavailable"),
        ({"reminder": True}, "🚨 [CRIT] Reminder: API /health unavailable"),
        ({"state": "resolved"}, "✅ [RESOLVED] API /health unavailable"),
    ],
)
def test_headline_by_severity_and_state(changes: dict[str, object], expected_first_line: str) -> None:
    assert render_text(alert(**changes)).splitlines()[0] == expected_first_line


def test_resolved_notice_says_when_and_how_long() -> None:
    text = render_text(alert(state="resolved", dashboard_url="https://grafana.example/d/bt"))
    assert text.splitlines()[1:] == [
        "Status code: 503",
        "Resolved at 2026-01-05 10:02:00 UTC after 2m (since 2026-01-05 10:00:00 UTC)",
        "Dashboard: https://grafana.example/d/bt",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (120, "2m"), (125, "2m05s"), (3900, "1h05m"), (180000, "2d02h")]
)
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_slack_posts_text_to_the_webhook_itself() -> None:
    channel = SlackChannel("https://hooks.slack.test/services/T/B/X")
    url, body = channel.build_request(alert(detail="body <html> & more"))
    assert url == "https://hooks.slack.test/services/T/B/X"
    assert body == {
        "text": "🚨 [CRIT] API /health unavailable\nbody &lt;html&gt; &amp; more\nSince 2026-01-05 10:00:00 UTC"
    }


def test_telegram_builds_send_message_with_escaped_html() -> None:
    channel = TelegramChannel("123:ABC", "-100123", base_url="http://127.0.0.1:9/")
    url, body = channel.build_request(alert(title="Listener <lag> & co", detail="a<b>c</b>"))
    assert url == "http://127.0.0.1:9/bot123:ABC/sendMessage"
    assert body == {
        "chat_id": "-100123",
        "text": "<b>🚨 [CRIT] Listener &lt;lag&gt; &amp; co</b>\na&lt;b&gt;c&lt;/b&gt;\nSince 2026-01-05 10:00:00 UTC",
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }


def test_webhook_body_is_machine_readable() -> None:
    url, body = WebhookChannel("http://127.0.0.1:9/hook").build_request(alert(state="resolved"))
    assert url == "http://127.0.0.1:9/hook"
    assert body == {
        "check": "api.health",
        "severity": "crit",
        "state": "resolved",
        "title": "API /health unavailable",
        "detail": "Status code: 503",
        "time": "2026-01-05T10:02:00+00:00",
        "since": "2026-01-05T10:00:00+00:00",
        "reminder": False,
        "provisional": False,
        "incident_id": 7,
        "dashboard_url": None,
        "text": render_text(alert(state="resolved")),
    }


def test_channel_reprs_hide_their_secrets() -> None:
    for channel in (
        SlackChannel("https://hooks.slack.test/services/SECRETPATH"),
        TelegramChannel("123:SECRETTOKEN", "1"),
        WebhookChannel("https://hooks.test/SECRETPATH"),
    ):
        assert "SECRET" not in repr(channel)


@pytest.mark.parametrize(
    "changes",
    [
        {"detail": "x" * 10_000},
        {"detail": "🚨" * 3_000},  # two UTF-16 units each: Telegram counts those
        {"detail": "<&>" * 2_000},  # escaping makes the HTML longer, not the visible text
        {"title": "t" * 5_000, "detail": "d" * 5_000},
    ],
    ids=["long-detail", "emoji", "escaped", "long-title-and-detail"],
)
def test_telegram_text_over_the_limit_is_shortened_with_a_note_not_refused(changes: dict[str, object]) -> None:
    """Defect 7, the exporter's own channel: Telegram refuses a text over 4096 characters (the
    notice would be lost); the detail (then the title) is cut with a note, the other lines stay."""
    import html

    from exporter.alerting.channels.telegram import TEXT_LIMIT, visible_length

    channel = TelegramChannel("1:A", "-1")
    _, body = channel.build_request(alert(dashboard_url="https://grafana.example/d/bt", **changes))
    visible = html.unescape(body["text"].replace("<b>", "").replace("</b>", ""))
    assert visible_length(visible) <= TEXT_LIMIT
    assert visible_length(visible) > TEXT_LIMIT - 100, "no more is cut than needed"
    assert "more characters; the exporter's log has them all)" in visible
    assert visible.endswith("Since 2026-01-05 10:00:00 UTC\nDashboard: https://grafana.example/d/bt")
    assert "\ud83d" not in visible


def test_telegram_text_within_the_limit_is_untouched() -> None:
    _, body = TelegramChannel("1:A", "-1").build_request(alert(detail="y" * 3_000))
    assert "more characters" not in body["text"] and body["text"].count("y") == 3_000


def test_dashboard_urls_are_url_encoded_and_slack_text_escaped() -> None:
    """Defect 9 in the exporter's own channels: a dashboard URL with a space or markup in it is
    percent-encoded (the whole URL stays one link), the rest of the text is escaped for Slack."""
    hostile = alert(
        title="<!channel> down",
        detail="<@U123> & co",
        dashboard_url="https://g.example/d/x?var-check=a b&x=<!channel>é",
    )
    _, body = SlackChannel("https://hooks.slack.test/T/B/X").build_request(hostile)
    assert body["text"].splitlines() == [
        "🚨 [CRIT] &lt;!channel&gt; down",
        "&lt;@U123&gt; &amp; co",
        "Since 2026-01-05 10:00:00 UTC",
        "Dashboard: https://g.example/d/x?var-check=a%20b&amp;x=%3C!channel%3E%C3%A9",
    ]
    _, body = TelegramChannel("1:A", "-1").build_request(hostile)
    assert "Dashboard: https://g.example/d/x?var-check=a%20b&amp;x=%3C!channel%3E%C3%A9" in body["text"]
    # An already encoded URL is left as it is.
    assert render_text(alert(dashboard_url="https://g.example/d?q=a%20b")).endswith(
        "Dashboard: https://g.example/d?q=a%20b"
    )

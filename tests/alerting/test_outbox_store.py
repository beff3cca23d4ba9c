"""The store's side of issue #13 kinds 5 and 6, on SQLite and PostgreSQL: compare-and-set transitions of
an incident (one winner per notice and per resolution) and the outbox's queue semantics (order per
check, leases, retry at start, held notices)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exporter.store import Store

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def alert(check: str, n: int) -> dict[str, object]:
    return {"check_name": check, "n": n}


def test_notices_and_resolutions_are_compare_and_set(store: Store) -> None:
    incident = store.open_incident("api.health", "crit", "API /health unavailable", "503", T0)
    assert store.claim_notice(incident.id, T0 + MINUTE, None) is True  # the first notice: one winner
    assert store.claim_notice(incident.id, T0 + MINUTE, None) is False
    # A reminder is due when the last notice is at or before now - interval; one winner again.
    assert store.claim_notice(incident.id, T0 + 5 * MINUTE, T0) is False  # 10:01 is after 10:00
    assert store.claim_notice(incident.id, T0 + 11 * MINUTE, T0 + MINUTE) is True
    assert store.claim_notice(incident.id, T0 + 11 * MINUTE, T0 + MINUTE) is False
    resolved = store.resolve_incident(incident.id, T0 + 20 * MINUTE, "Check removed from configuration")
    assert resolved is not None and resolved.resolved_at == T0 + 20 * MINUTE
    assert resolved.last_notified_at == T0 + 11 * MINUTE
    assert store.resolve_incident(incident.id, T0 + 21 * MINUTE) is None  # already resolved: no second winner
    assert store.claim_notice(incident.id, T0 + 40 * MINUTE, T0 + 30 * MINUTE) is False  # no reminder after


def test_a_reminder_can_be_claimed_for_an_incident_nobody_announced(store: Store) -> None:
    """The opener died before its firing notice: another replica's reminder is still due."""
    incident = store.open_incident("api.health", "crit", "t", "d", T0)
    assert store.claim_notice(incident.id, T0 + 10 * MINUTE, T0) is True


def test_the_outbox_keeps_each_checks_order_and_leases_what_it_hands_out(store: Store) -> None:
    first = store.enqueue_notice("slack", "api.health", alert("api.health", 1), T0, T0)
    store.enqueue_notice("slack", "api.health", alert("api.health", 2), T0, T0)
    other = store.enqueue_notice("slack", "api.events", alert("api.events", 1), T0, T0)
    store.enqueue_notice("webhook", "api.health", alert("api.health", 1), T0, T0)
    assert store.pending_notices() == {"slack": 3, "webhook": 1}

    taken = store.take_notice("slack", T0, T0 + 10 * MINUTE)
    assert taken is not None and (taken.id, taken.alert, taken.attempts) == (first, alert("api.health", 1), 1)
    # The first is leased: not handed out again; api.health's second waits behind it; api.events does not.
    again = store.take_notice("slack", T0, T0 + 10 * MINUTE)
    assert again is not None and again.id == other
    assert store.take_notice("slack", T0, T0 + 10 * MINUTE) is None

    store.notice_failed(first, T0 + 5 * MINUTE, "network: refused")
    assert store.take_notice("slack", T0 + MINUTE, T0 + 11 * MINUTE) is None  # not due yet
    assert store.retry_notices_now("slack", T0 + MINUTE) == 1  # a new process: due at once
    retried = store.take_notice("slack", T0 + MINUTE, T0 + 11 * MINUTE)
    assert retried is not None and (retried.id, retried.attempts, retried.last_error) == (first, 2, "network: refused")
    store.notice_delivered(first)
    second = store.take_notice("slack", T0 + MINUTE, T0 + 11 * MINUTE)
    assert second is not None and second.alert == alert("api.health", 2)
    assert store.later_notices("slack", "api.health", first) == 1
    assert store.later_notices("slack", "api.health", second.id) == 0


def test_a_held_notice_stays_held_and_a_leased_one_stays_leased_at_start(store: Store) -> None:
    held = store.enqueue_notice("slack", "api.health", alert("api.health", 1), T0, T0 + 30 * MINUTE)
    store.enqueue_notice("slack", "api.events", alert("api.events", 1), T0, T0)
    leased = store.take_notice("slack", T0, T0 + 10 * MINUTE)
    assert leased is not None and leased.check_name == "api.events"
    assert store.retry_notices_now("slack", T0 + MINUTE) == 0
    assert store.take_notice("slack", T0 + MINUTE, T0 + 11 * MINUTE) is None
    later = store.take_notice("slack", T0 + 30 * MINUTE, T0 + 40 * MINUTE)
    assert later is not None and later.id == held


def test_channel_overrides_are_remembered(store: Store) -> None:
    assert store.channel_overrides("telegram", "chat_id") == {}
    store.save_channel_override("telegram", "chat_id", "-100123", "-1001234567890", T0)
    store.save_channel_override("telegram", "chat_id", "-100123", "-1009999999999", T0 + MINUTE)
    assert store.channel_overrides("telegram", "chat_id") == {"-100123": "-1009999999999"}

"""The contract-event rule evaluator, pure: filter, template, threshold within a window, cooldown and
provisional retractions, with an injected clock (no store, no chain)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.alerting.alert import Alert, headline
from exporter.alerting.event_rules import CompiledRule, compile_rules
from exporter.alerting.rule_eval import RuleEvaluator, RuleMemory
from exporter.clock import FakeClock
from exporter.config import AlertingSettings, ConfigError
from exporter.store.base import StoredEvent

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = "0x" + "ab" * 20
CATALOGUE = {
    "FailSafeTriggered": {"user": "address", "tokenId": "uint256", "timestamp": "uint256"},
    "Minted": {"tokenId": "uint256", "user": "address"},
}


def rules(**overrides: Any) -> list[CompiledRule]:
    rule = {
        "name": "r",
        "event": "FailSafeTriggered",
        "title": "FailSafe triggered",
        "message": "by {args.user} for token {args.tokenId} in {transactionHash}",
    }
    explorer = overrides.pop("explorer_url", None)
    rule.update(overrides)
    settings = AlertingSettings.model_validate({"event_rules": [rule], "explorer_url": explorer})
    return compile_rules(settings, CATALOGUE, "config.yaml")


def event(event_id: int, token: int = 7, at: datetime = T0, block: int = 10) -> StoredEvent:
    data = {
        "blockNumber": block,
        "blockHash": "0x" + "11" * 32,
        "transactionHash": f"0x{event_id:064x}",
        "logIndex": 0,
        "address": "0x" + "22" * 20,
        "args": {"user": USER, "tokenId": str(token), "timestamp": "1700000000"},
    }
    return StoredEvent(event_id, "FailSafeTriggered", data, block, at)


def test_one_event_fires_once_naming_user_token_and_explorer_link() -> None:
    (rule,) = rules(explorer_url="https://polygonscan.com/")
    memory = RuleMemory()
    notices, last = RuleEvaluator(rule).observe(memory, [event(1)], float("inf"), T0)
    assert last == 1
    assert [(n.kind, n.since) for n in notices] == [("firing", T0)]
    assert notices[0].title == "FailSafe triggered"
    assert notices[0].detail == (
        f"by {USER} for token 7 in 0x{1:064x}\nExplorer: https://polygonscan.com/tx/0x{1:064x}"
    )


@pytest.mark.parametrize(
    ("expression", "tokens_matching"),
    [
        ('args.tokenId == "7"', [7]),
        ("int(args.tokenId) >= 8", [8, 9]),
        ('args.user.startsWith("0xab") && blockNumber > 5', [7, 8, 9]),
        ('type == "Minted"', []),
    ],
)
def test_filter_selects_events(expression: str, tokens_matching: list[int]) -> None:
    (rule,) = rules(filter=expression)
    memory, evaluator = RuleMemory(), RuleEvaluator(rule)
    fired = []
    for token in (7, 8, 9):
        notices, _ = evaluator.observe(memory, [event(token, token)], float("inf"), T0)
        fired += [token for _ in notices]
    assert fired == tokens_matching


def test_threshold_within_window_then_cooldown() -> None:
    (rule,) = rules(threshold=3, within="10m", cooldown="30m")
    clock = FakeClock(T0)
    evaluator, memory = RuleEvaluator(rule), RuleMemory()
    fired = []
    # Two matches, then a gap longer than the window: the count starts again.
    for i, step in enumerate([0, 60, 601, 1, 1, 1, 1]):
        clock.advance(step)
        notices, _ = evaluator.observe(memory, [event(i + 1, at=clock.now())], float("inf"), clock.now())
        fired += [(i + 1, n.kind) for n in notices]
    # Events 3, 4, 5 are three within 10 min: one notice; 6 and 7 fall in the cooldown.
    assert fired == [(5, "firing")]
    # Past the cooldown, three more matches notify again.
    clock.advance(30 * 60)
    notices = []
    for i in range(3):
        notices += evaluator.observe(memory, [event(20 + i, at=clock.now())], float("inf"), clock.now())[0]
    assert [n.kind for n in notices] == ["firing"]
    assert notices[0].detail.endswith("3 matching events within 10m")


def test_ten_events_threshold_three_long_cooldown_one_notice() -> None:
    (rule,) = rules(threshold=3, within="10m", cooldown="1h")
    evaluator, memory = RuleEvaluator(rule), RuleMemory()
    notices, last = evaluator.observe(memory, [event(i) for i in range(1, 11)], float("inf"), T0)
    assert (len(notices), last) == (1, 10)


def test_confirmed_rule_stops_at_the_first_event_not_deep_enough() -> None:
    (rule,) = rules()
    evaluator, memory = RuleEvaluator(rule), RuleMemory()
    notices, last = evaluator.observe(memory, [event(1, block=10), event(2, block=12)], 11, T0)
    assert (len(notices), last) == (1, 1)


def test_provisional_notice_is_retracted_when_its_event_is_gone_and_forgotten_once_final() -> None:
    (rule,) = rules(mode="provisional")
    evaluator, memory = RuleEvaluator(rule), RuleMemory()
    notices, _ = evaluator.observe(memory, [event(1, block=10), event(2, token=8, block=11)], float("inf"), T0)
    assert [(n.kind, n.provisional) for n in notices] == [("firing", True), ("firing", True)]
    # Event 1 reorged out; event 2's block is final now.
    retracted = evaluator.reconcile(memory, present={2}, final_block=11)
    assert [n.kind for n in retracted] == ["retracted"]
    assert "token 7" in retracted[0].detail and "reorganisation" in retracted[0].detail
    assert memory.pending == []
    assert evaluator.reconcile(memory, present=set(), final_block=11) == []


def test_a_retracted_threshold_notice_gives_back_the_events_that_remain() -> None:
    """A reorg that removes one of the three events of a provisional threshold-3 notice retracts it;
    the two that remain still count, so when the removed transaction is mined again (a new row), three
    matching events exist within the window again and the rule fires again (also after a restart:
    the memory goes through JSON)."""
    (rule,) = rules(mode="provisional", threshold=3, within="10m", cooldown="1h")
    evaluator, memory = RuleEvaluator(rule), RuleMemory()
    notices, _ = evaluator.observe(memory, [event(i, block=10 + i) for i in (1, 2, 3)], float("inf"), T0)
    assert [n.kind for n in notices] == ["firing"]
    assert [n.kind for n in evaluator.reconcile(memory, present={1, 2}, final_block=0)] == ["retracted"]
    memory = RuleMemory.from_json(memory.to_json())
    notices, _ = evaluator.observe(memory, [event(4, block=14)], float("inf"), T0)
    assert [n.kind for n in notices] == ["firing"]
    assert notices[0].detail.endswith("3 matching events within 10m")


def test_memory_survives_json_round_trip() -> None:
    (rule,) = rules(mode="provisional", threshold=2)
    evaluator, memory = RuleEvaluator(rule), RuleMemory()
    evaluator.observe(memory, [event(1), event(2), event(3)], float("inf"), T0)
    assert RuleMemory.from_json(memory.to_json()) == memory
    assert memory.remembered_ids() == {1, 2, 3}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"filter": "args.tokenId =="},
            "config.yaml: alerting.event_rules[0] (r).filter: bad CEL expression 'args.tokenId ==': "
            "syntax error at column 14",
        ),
        (
            {"filter": "args.nope == 1"},
            "config.yaml: alerting.event_rules[0] (r).filter: CEL expression 'args.nope == 1': "
            "FailSafeTriggered has no argument 'nope' (it has: user, tokenId, timestamp)",
        ),
        (
            {"filter": 'args.tokenId == "1" && args["tokenID"] == "1"'},
            "config.yaml: alerting.event_rules[0] (r).filter: CEL expression "
            '\'args.tokenId == "1" && args["tokenID"] == "1"\': FailSafeTriggered has no argument \'tokenID\' '
            "(it has: user, tokenId, timestamp)",
        ),
        (
            {"filter": "args.tokenId > 5 || blocknumber > 1"},
            "config.yaml: alerting.event_rules[0] (r).filter: CEL expression 'args.tokenId > 5 || blocknumber > 1' "
            "cannot be evaluated: found no matching overload for > applied to '(string, int)' "
            "(uint256 arguments are decimal strings: compare int(args.x))",
        ),
        (
            {"filter": "blocknumber > 1"},
            "config.yaml: alerting.event_rules[0] (r).filter: CEL expression 'blocknumber > 1' cannot be "
            "evaluated: undeclared reference to 'blocknumber'",
        ),
        (
            {"filter": "args.tokenId"},
            "config.yaml: alerting.event_rules[0] (r).filter: CEL expression 'args.tokenId' cannot be "
            "evaluated: it gives a string, not a bool",
        ),
        (
            {"message": "token {args.tokenID}"},
            "config.yaml: alerting.event_rules[0] (r).message: unknown template field {args.tokenID} (known: "
            "address, args.timestamp, args.tokenId, args.user, blockHash, blockNumber, id, logIndex, rule, "
            "transactionHash, type)",
        ),
        (
            {"title": "{transactionHash!r}"},
            "config.yaml: alerting.event_rules[0] (r).title: {transactionHash}: "
            "conversions and format specs are not supported",
        ),
        (
            {"event": "FailSafeTrigered"},
            "config.yaml: alerting.event_rules[0] (r).event: unknown event type 'FailSafeTrigered' "
            "(the contracts declare: FailSafeTriggered, Minted)",
        ),
    ],
)
def test_bad_rules_are_one_line_naming_the_rule(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        rules(**overrides)
    assert str(caught.value) == message


def test_explorer_link_field_needs_an_explorer_url() -> None:
    with pytest.raises(ConfigError, match=r"\{explorer_link\} needs alerting.explorer_url"):
        rules(message="{explorer_link}")
    (rule,) = rules(message="see {explorer_link}", explorer_url="https://amoy.polygonscan.com")
    _, detail = rule.render(event(1))
    assert detail == f"see https://amoy.polygonscan.com/tx/0x{1:064x}"


@pytest.mark.parametrize(
    ("explorer_url", "link"),
    [
        # (a space is refused by the configuration itself: config.types, URLs with whitespace)
        ("https://explorer.example/a|b", "https://explorer.example/a%7Cb"),
        ("https://explorer.example/réseau", "https://explorer.example/r%C3%A9seau"),
        ("https://explorer.example/<!channel>", "https://explorer.example/%3C!channel%3E"),
    ],
)
def test_explorer_link_is_percent_encoded(explorer_url: str, link: str) -> None:
    """One link a chat client follows whole, like the dashboard link (alert.encode_url): a space or a
    non-ASCII letter in the configured base must not cut it, nor "<" reach Slack as markup."""
    tx = f"0x{1:064x}"
    (rule,) = rules(message="see {explorer_link}", explorer_url=explorer_url)
    assert rule.render(event(1))[1] == f"see {link}/tx/{tx}"
    (rule,) = rules(explorer_url=explorer_url)  # the link appended when the message has none
    assert rule.render(event(1))[1].endswith(f"\nExplorer: {link}/tx/{tx}")


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        ({"state": "firing", "provisional": True}, "🚨 [CRIT] Provisional: FailSafe triggered"),
        ({"state": "retracted", "provisional": False}, "↩️ [RETRACTED] FailSafe triggered"),
    ],
)
def test_provisional_and_retracted_headlines(alert: dict[str, Any], expected: str) -> None:
    made = Alert("event_rule.failsafe", "crit", title="FailSafe triggered", detail="", since=T0, at=T0, **alert)
    assert headline(made) == expected

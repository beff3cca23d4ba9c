"""The rules runner on both stores, without a chain: where a rule starts, the depth it waits for
(confirmations, the node's finalized block, the fallback depth), replicas sharing a store, and the
store methods it uses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry

from exporter.alerting.event_rules import compile_rules
from exporter.alerting.rule_runner import EventRuleRunner
from exporter.clock import FakeClock
from exporter.config import HEARTBEAT_CHECK, AlertingSettings
from exporter.metrics import Metrics
from exporter.store import Checkpoint, CheckResult, EventRecord, Store
from exporter.store.base import RuleState
from tests.alerting.kit import RecordingSink

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CATALOGUE = {"FailSafeTriggered": {"user": "address", "tokenId": "uint256", "timestamp": "uint256"}}


def _runner(
    store: Store,
    metrics: Metrics,
    sink: RecordingSink,
    confirmations: int | str = "finalized",
    finalized: Callable[[], int | None] | None = None,
) -> EventRuleRunner:
    rule = {
        "name": "failsafe",
        "event": "FailSafeTriggered",
        "severity": "crit",
        "title": "FailSafe triggered",
        "message": "token {args.tokenId}",
        "confirmations": confirmations,
    }
    rules = compile_rules(AlertingSettings.model_validate({"event_rules": [rule]}), CATALOGUE)
    return EventRuleRunner(rules, store, sink, FakeClock(T0), metrics, finalized_depth=5, finalized=finalized)


def _store_block(store: Store, block: int, head: int, tokens: list[int], minted: int = 0) -> None:
    """Events of ``block`` committed as the listener does (FailSafe triggers of ``tokens``, then
    ``minted`` other events), with a heartbeat naming ``head``."""
    events = [
        EventRecord(
            "FailSafeTriggered",
            {
                "blockNumber": block,
                "blockHash": f"0x{block:064x}",
                "transactionHash": f"0x{block * 100 + i:064x}",
                "logIndex": i,
                "address": "0x" + "33" * 20,
                "args": {"user": "0x" + "ab" * 20, "tokenId": str(token), "timestamp": "1"},
            },
            block,
            f"0x{block:064x}",
            f"0x{block * 100 + i:064x}",
            i,
        )
        for i, token in enumerate(tokens)
    ]
    events += [
        EventRecord("Minted", {"blockNumber": block, "args": {}}, block, f"0x{block:064x}", f"0x{block:062x}{i:02x}", i)
        for i in range(len(tokens), len(tokens) + minted)
    ]
    details = {"head_block": head, "processed_block": block}
    beat = CheckResult(HEARTBEAT_CHECK, True, 1, details, T0, f"hb-{block}-{head}")
    store.commit_blocks("listener", events, Checkpoint(block, f"0x{block:064x}"), beat)


def _tokens(sink: RecordingSink) -> list[str]:
    return [a.detail.removeprefix("token ") for a in sink.alerts]


def test_a_new_rule_starts_after_the_stored_events_and_resumes_from_its_saved_cursor(
    store: Store, metrics: Metrics
) -> None:
    _store_block(store, 1, 100, [1])  # history: not replayed
    sink = RecordingSink()
    _runner(store, metrics, sink, confirmations=0).run_once()
    _store_block(store, 2, 100, [2, 3])
    _runner(store, metrics, sink, confirmations=0).run_once()
    _runner(store, metrics, sink, confirmations=0).run_once()  # a restart: nothing twice
    assert _tokens(sink) == ["2", "3"]
    assert [(a.check_name, a.severity, a.state) for a in sink.alerts] == [("event_rule.failsafe", "crit", "firing")] * 2
    assert (
        metrics.registry.get_sample_value("blocktrust_event_rule_notices_total", {"rule": "failsafe", "kind": "firing"})
        == 2
    )
    assert store.newest_event_id() == 3 and store.existing_event_ids([1, 3, 99]) == {1, 3}
    assert [e.id for e in store.events_after(1, "FailSafeTriggered", 10)] == [2, 3]
    assert store.events_after(0, "Minted", 10) == []


def test_confirmations_wait_for_the_stored_head(store: Store, metrics: Metrics) -> None:
    sink = RecordingSink()
    runner = _runner(store, metrics, sink, confirmations=3)
    runner.run_once()
    _store_block(store, 10, 12, [1])
    runner.run_once()
    assert _tokens(sink) == []
    _store_block(store, 11, 13, [])  # three blocks on top of block 10
    runner.run_once()
    assert _tokens(sink) == ["1"]


def test_finalized_is_the_nodes_finalized_block_else_the_fallback_depth(store: Store, metrics: Metrics) -> None:
    answers: list[int | None] = [None, None, 10]
    sink = RecordingSink()
    runner = _runner(store, metrics, sink, finalized=lambda: answers.pop(0))
    runner.run_once()
    _store_block(store, 10, 14, [1])
    runner.run_once()  # the node names none; 4 blocks on top of 10 < the fallback depth 5
    assert _tokens(sink) == []
    runner.run_once()  # the node says block 10 is finalized
    assert _tokens(sink) == ["1"]


class _StaleReads:
    """A store whose ``load_rule_state`` answers what another replica read before the first one saved."""

    def __init__(self, store: Store, stale: RuleState) -> None:
        self._store = store
        self._stale = stale

    def load_rule_state(self, rule: str) -> RuleState:
        return self._stale

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_replicas_racing_on_one_state_notify_once(store: Store, metrics: Metrics) -> None:
    sink_a, sink_b = RecordingSink(), RecordingSink()
    a = _runner(store, metrics, sink_a, confirmations=0)
    a.run_once()
    _store_block(store, 5, 5, [7])
    stale = store.load_rule_state("failsafe")
    a.run_once()
    other_metrics = Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="t")
    b = _runner(cast(Store, _StaleReads(store, stale)), other_metrics, sink_b, confirmations=0)
    b.run_once()  # evaluates the same event from the same state, but its save loses
    assert (_tokens(sink_a), _tokens(sink_b)) == (["7"], [])
    assert store.load_rule_state("failsafe").version == stale.version + 1


def test_the_cursor_moves_past_other_types_once_caught_up_but_not_past_an_event_waiting_for_depth(
    store: Store, metrics: Metrics
) -> None:
    sink = RecordingSink()
    runner = _runner(store, metrics, sink, confirmations=3)
    runner.run_once()
    _store_block(store, 10, 10, [1])  # waits for three blocks on top
    _store_block(store, 11, 11, [], minted=5)
    runner.run_once()
    assert store.load_rule_state("failsafe").last_event_id == 0
    _store_block(store, 13, 13, [], minted=2)
    runner.run_once()
    assert _tokens(sink) == ["1"]
    assert store.load_rule_state("failsafe").last_event_id == store.newest_event_id() == 8

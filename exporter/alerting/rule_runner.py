"""Runs the contract-event rules over what the listener stored, as one scheduled job.

Each run, per rule: load its state (``event_rule_state``: the last event id evaluated and the
evaluator's memory), read the head as the listener stored it (its last ``listener.tick`` heartbeat: no
RPC call), reconcile provisional notices with the events still stored, evaluate the new events, then
save the state as a compare-and-set on its version and, only if that save won, hand the notices to the
notifier (its persisted outbox: one per channel, retried). So a restart resumes after the last event
evaluated and sends nothing twice, and of replicas sharing the store one sends each notice. A rule
first run on a store that already holds events starts after the newest one (history is not replayed).

Depth: ``confirmations: N`` acts on an event once N blocks are on top of its block; ``finalized`` is
every stored event when the listener itself follows ``safe``/``finalized`` blocks, else the node's
``finalized`` block (``finalized``: one RPC call per run, when the process has an RPC client), else,
where the node does not serve that tag, ``finalized_depth`` blocks (the listener's
``max_reorg_depth``: what it can still roll back).
Not for deciding (``rule_eval.py``) nor compiling (``event_rules.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from exporter.alerting.alert import Alert
from exporter.alerting.engine import AlertSink
from exporter.alerting.event_rules import CompiledRule
from exporter.alerting.rule_eval import RuleEvaluator, RuleMemory, RuleNotice
from exporter.clock import Clock
from exporter.config import HEARTBEAT_CHECK
from exporter.metrics import Metrics
from exporter.redact import no_redaction
from exporter.store.base import Store

log = logging.getLogger(__name__)

CHECK_PREFIX = "event_rule."  # a notice's check name: event_rule.<rule>
BATCH_SIZE = 500  # events read per query
MAX_BATCHES = 20  # per rule and run: a backlog continues at the next run
NOTICE_KINDS = ("firing", "retracted")


class EventRuleRunner:
    """Evaluates ``rules`` against ``store`` and submits their notices to ``sink``; ``run_once`` is the
    scheduled job (it raises ``StoreError`` when the store fails: the scheduler logs it)."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        store: Store,
        sink: AlertSink,
        clock: Clock,
        metrics: Metrics,
        *,
        finalized_depth: int | None,
        finalized: Callable[[], int | None] | None = None,
        redact: Callable[[str], str] = no_redaction,
    ) -> None:
        """``finalized_depth``: blocks on top of an event for ``confirmations: finalized`` where the node
        names no finalized block; None when every stored event is final (the listener follows
        ``finalized`` or ``safe`` blocks). ``finalized()``: the node's finalized block number, None when
        it does not serve the tag or cannot be asked now (it must not raise)."""
        self._evaluators = [RuleEvaluator(rule) for rule in rules]
        self._store = store
        self._sink = sink
        self._clock = clock
        self._metrics = metrics
        self._finalized_depth = finalized_depth
        self._finalized = finalized
        self._redact = redact
        for rule in rules:
            for kind in NOTICE_KINDS:
                metrics.event_rule_notices.labels(rule=rule.name, kind=kind)

    def run_once(self) -> None:
        head = self._head()
        finalized = None
        wanted = any(e.rule.spec.confirmations == "finalized" for e in self._evaluators)
        if self._finalized is not None and self._finalized_depth is not None and wanted:
            finalized = self._finalized()
        for evaluator in self._evaluators:
            final_block = self._final_block(evaluator, head, finalized)
            for _ in range(MAX_BATCHES):
                if not self._run_rule(evaluator, final_block):
                    break

    def _head(self) -> int | None:
        """The chain head the listener last saw (its heartbeat), None before its first heartbeat."""
        beat = self._store.latest_result(HEARTBEAT_CHECK)
        head = beat.details.get("head_block") if beat is not None else None
        return head if isinstance(head, int) and not isinstance(head, bool) else None

    def _final_block(self, evaluator: RuleEvaluator, head: int | None, finalized: int | None) -> float:
        """The newest block deep enough for the rule: its events may be acted on as final."""
        depth = evaluator.rule.spec.confirmations
        if depth == "finalized":
            if self._finalized_depth is None:
                return math.inf
            if finalized is not None:
                return float(finalized)
            depth = self._finalized_depth
        return -math.inf if head is None else float(head - depth)

    def _run_rule(self, evaluator: RuleEvaluator, final_block: float) -> bool:
        """One batch of one rule; True when a full batch was read (more may wait)."""
        rule = evaluator.rule
        saved = self._store.load_rule_state(rule.name)
        if saved.version == 0:
            start = self._store.newest_event_id()
            if self._store.save_rule_state(rule.name, 0, start, RuleMemory().to_json(), self._clock.now()):
                log.info("event rule %s: starts after event %d", rule.name, start)
            return True  # read the state back (this process's, or a replica's that saved first)
        memory = RuleMemory.from_json(saved.state)
        notices: list[RuleNotice] = []
        remembered = memory.remembered_ids()
        if evaluator.provisional and remembered:
            notices += evaluator.reconcile(memory, self._store.existing_event_ids(sorted(remembered)), final_block)
        # Read before the events: everything up to it is committed (one ingester, ids in commit order).
        newest = self._store.newest_event_id()
        events = self._store.events_after(saved.last_event_id, rule.spec.event, BATCH_SIZE)
        ready = math.inf if evaluator.provisional else final_block
        now = self._clock.now()
        fired, last_id = evaluator.observe(memory, events, ready, now)
        notices += fired
        last_event_id = saved.last_event_id if last_id is None else last_id
        if len(events) < BATCH_SIZE and (not events or last_id == events[-1].id):
            # Caught up: the other types' events up to ``newest`` need no second look, and a rule of a
            # rare type must not scan them again at every run.
            last_event_id = max(last_event_id, newest)
        if last_event_id == saved.last_event_id and memory.to_json() == saved.state:
            return False
        if not self._store.save_rule_state(rule.name, saved.version, last_event_id, memory.to_json(), now):
            log.info("event rule %s: another process evaluated it first; its notices are that one's", rule.name)
            return False
        for notice in notices:
            self._submit(rule, notice)
        return len(events) == BATCH_SIZE and last_id == events[-1].id

    def _submit(self, rule: CompiledRule, notice: RuleNotice) -> None:
        now = self._clock.now()
        self._sink.submit(
            Alert(
                check_name=CHECK_PREFIX + rule.name,
                severity=rule.spec.severity,
                state=notice.kind,
                title=self._redact(notice.title),
                detail=self._redact(notice.detail),
                since=notice.since or now,
                at=now,
                provisional=notice.provisional,
            )
        )
        self._metrics.event_rule_notices.labels(rule=rule.name, kind=notice.kind).inc()
        log.warning("event rule %s: %s notice: %s", rule.name, notice.kind, self._redact(notice.title))

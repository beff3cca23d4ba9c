"""When a contract-event rule notifies: threshold within a window, cooldown, provisional retractions.

Pure: it reads nothing and sends nothing. ``RuleEvaluator.observe`` takes the rule's stored events in
id order with the newest block it may act on (``ready_block``: for a ``confirmed`` rule the deepest
block with enough confirmations, so it stops at the first event not that deep yet); ``reconcile``
takes which of its remembered events are still stored (a reorg's rewind deletes them). Both change the
``RuleMemory`` in place and return the notices due. The window is counted on the events' stored times,
the cooldown on the injected ``now`` of each notice. Not for compiling rules (``event_rules.py``) nor
for the store and the notifier (``rule_runner.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from exporter.alerting.event_rules import CompiledRule, FilterError
from exporter.store.base import StoredEvent

log = logging.getLogger(__name__)

NoticeKind = Literal["firing", "retracted"]


@dataclass(frozen=True)
class RuleNotice:
    """One notice of a rule: ``firing`` (``provisional`` when its events may still be reorged out) or
    ``retracted`` (a provisional notice whose events a reorg removed)."""

    kind: NoticeKind
    title: str
    detail: str
    provisional: bool = False
    since: datetime | None = None  # a firing notice: when its (last) event was stored


@dataclass
class _Pending:
    """A provisional notice not final yet: the events it was based on and the newest one's block;
    ``matches`` (id, stored time, block) of those events, given back to the count if a reorg
    retracts the notice (empty in a state saved before it was kept)."""

    event_ids: list[int]
    block: int
    title: str
    detail: str
    matches: list[tuple[int, float, int]] = field(default_factory=list)


@dataclass
class RuleMemory:
    """What a rule remembers between evaluations (stored as JSON in ``event_rule_state``):
    ``matches`` (event id, stored time in epoch seconds, block) since the last notice, at most
    ``threshold`` of them; ``last_notice`` (epoch seconds) for the cooldown; ``pending`` notices."""

    matches: list[tuple[int, float, int]] = field(default_factory=list)
    last_notice: float | None = None
    pending: list[_Pending] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "matches": [list(m) for m in self.matches],
            "last_notice": self.last_notice,
            "pending": [
                {
                    "event_ids": p.event_ids,
                    "block": p.block,
                    "title": p.title,
                    "detail": p.detail,
                    "matches": [list(m) for m in p.matches],
                }
                for p in self.pending
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleMemory:
        return cls(
            matches=[(int(i), float(t), int(b)) for i, t, b in data.get("matches", [])],
            last_notice=None if data.get("last_notice") is None else float(data["last_notice"]),
            pending=[
                _Pending(
                    [int(i) for i in p["event_ids"]],
                    int(p["block"]),
                    str(p["title"]),
                    str(p["detail"]),
                    [(int(i), float(t), int(b)) for i, t, b in p.get("matches", [])],
                )
                for p in data.get("pending", [])
            ],
        )

    def remembered_ids(self) -> set[int]:
        """The events whose removal changes something (matches in the window, pending notices)."""
        return {m[0] for m in self.matches} | {i for p in self.pending for i in p.event_ids}


class RuleEvaluator:
    """Evaluates one compiled rule; keeps no state of its own (``RuleMemory`` is passed in)."""

    def __init__(self, rule: CompiledRule) -> None:
        self.rule = rule
        self._filter_error_logged = False

    @property
    def provisional(self) -> bool:
        return self.rule.spec.mode == "provisional"

    def observe(
        self, memory: RuleMemory, events: Sequence[StoredEvent], ready_block: float, now: datetime
    ) -> tuple[list[RuleNotice], int | None]:
        """Evaluate ``events`` (id order) up to the first one above ``ready_block``; the notices due and
        the id of the last event evaluated (None: none was)."""
        notices: list[RuleNotice] = []
        last_id: int | None = None
        for event in events:
            if event.block_number > ready_block:
                break
            last_id = event.id
            if not self._matches(event):
                continue
            notice = self._count(memory, event, now)
            if notice is not None:
                notices.append(notice)
        return notices, last_id

    def reconcile(self, memory: RuleMemory, present: set[int], final_block: float) -> list[RuleNotice]:
        """Forget matches a reorg removed; retract each pending notice left with fewer than
        ``threshold`` of its events (its cooldown is lifted: that notice no longer stands, and its
        events that remain count again towards the next one); let go of pending notices whose newest
        block is at or below ``final_block``."""
        memory.matches = [m for m in memory.matches if m[0] in present]
        notices: list[RuleNotice] = []
        kept: list[_Pending] = []
        for pending in memory.pending:
            remaining = sum(1 for i in pending.event_ids if i in present)
            if remaining < self.rule.spec.threshold:
                counted = {m[0] for m in memory.matches}
                back = [m for m in pending.matches if m[0] in present and m[0] not in counted]
                memory.matches = sorted(memory.matches + back)[-self.rule.spec.threshold :]
                notices.append(
                    RuleNotice(
                        "retracted",
                        pending.title,
                        "A chain reorganisation removed the event(s) of this notice:\n" + pending.detail,
                    )
                )
                memory.last_notice = None
            elif pending.block > final_block:
                kept.append(pending)
        memory.pending = kept
        return notices

    def _matches(self, event: StoredEvent) -> bool:
        try:
            return self.rule.matches(event)
        except FilterError as exc:
            if not self._filter_error_logged:  # once per process: every event may fail alike
                self._filter_error_logged = True
                log.warning(
                    "event rule %s: filter not evaluable on event %d (no match): %s", self.rule.name, event.id, exc
                )
            return False

    def _count(self, memory: RuleMemory, event: StoredEvent, now: datetime) -> RuleNotice | None:
        spec = self.rule.spec
        stored = event.stored_at.timestamp()
        memory.matches.append((event.id, stored, event.block_number))
        memory.matches = [m for m in memory.matches if m[1] > stored - spec.window][-spec.threshold :]
        if len(memory.matches) < spec.threshold:
            return None
        moment = now.timestamp()
        if memory.last_notice is not None and moment - memory.last_notice < spec.cooldown:
            return None
        title, detail = self.rule.render(event)
        if spec.threshold > 1:
            detail += f"\n{spec.threshold} matching events within {_seconds(spec.window)}"
        if self.provisional:
            ids = [m[0] for m in memory.matches]
            memory.pending.append(_Pending(ids, max(m[2] for m in memory.matches), title, detail, list(memory.matches)))
        memory.matches = []
        memory.last_notice = moment
        return RuleNotice("firing", title, detail, provisional=self.provisional, since=event.stored_at)


def _seconds(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 or not math.isclose(seconds % 60, 0) else f"{seconds / 60:g}m"

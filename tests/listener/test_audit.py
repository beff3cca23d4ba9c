"""The audit's schedule and window over a real store (both backends), with ranges served by a stub
fetcher: when it runs, which blocks it reads, where a fresh database starts it, what it counts."""

from __future__ import annotations

from typing import Any

from exporter.clock import FakeClock
from exporter.config.models import AuditSettings
from exporter.listener.audit import AUDIT_CHECKPOINT, LogAudit
from exporter.listener.contracts import parse_contracts
from exporter.listener.decode import LogDecoder
from exporter.listener.fetch import FetchedRange
from exporter.metrics import Metrics
from exporter.store import Store
from exporter.store.base import BlockRef, Checkpoint
from tests.listener.spec_abi import contracts_document


class StubChain:
    """Serves ranges of at most ``width`` blocks (no logs: the exact-set checks are on anvil, in
    test_listener_completeness.py); records the ranges asked for."""

    def __init__(self, width: int = 50) -> None:
        self.width = width
        self.asked: list[tuple[int, int]] = []

    def fetch(self, start: int, last: int) -> FetchedRange:
        end = min(last, start + self.width - 1)
        self.asked.append((start, end))
        return FetchedRange(start, end, [], (BlockRef(end, _hash(end), _hash(end - 1)),))


def _hash(number: int) -> str:
    return "0x" + f"{number:064x}"


def _audit(store: Store, metrics: Metrics, clock: FakeClock, chain: StubChain, **settings: Any) -> LogAudit:
    return LogAudit(
        AuditSettings(**{"interval": "60s", "window": 100, **settings}),
        chain.fetch,
        LogDecoder(parse_contracts(contracts_document(), "c.json", {}), metrics),
        store,
        metrics=metrics,
        clock=clock,
    )


def test_the_first_run_waits_one_interval_and_each_run_reads_at_most_the_window(store: Store, metrics: Metrics) -> None:
    clock = FakeClock()
    chain = StubChain(width=40)
    audit = _audit(store, metrics, clock, chain)
    assert not audit.due()
    clock.advance(60)
    assert audit.due()
    outcome = audit.run(checkpoint_block=1_000, final_block=900)
    assert (outcome.first, outcome.last) == (801, 900)  # the window below the final block, on an older database
    assert chain.asked == [(801, 840), (841, 880), (881, 900)]
    assert store.load_checkpoint(AUDIT_CHECKPOINT) == Checkpoint(900, _hash(900))
    assert metrics.registry.get_sample_value("blocktrust_listener_audited_block") == 900
    assert not audit.due()

    clock.advance(60)
    chain.asked.clear()
    outcome = audit.run(checkpoint_block=950, final_block=1_200)  # never above the checkpoint
    assert (outcome.first, outcome.last) == (901, 950) and chain.asked == [(901, 940), (941, 950)]
    clock.advance(60)
    chain.asked.clear()
    outcome = audit.run(checkpoint_block=5_000, final_block=5_000)  # far behind: one window per run
    assert (outcome.first, outcome.last) == (951, 1_050)


def test_on_a_fresh_database_the_audit_never_reads_below_the_listeners_first_block(
    store: Store, metrics: Metrics
) -> None:
    clock = FakeClock()
    chain = StubChain()
    _audit(store, metrics, clock, chain).starts_at(500)
    restarted = _audit(store, metrics, clock, chain)  # the cursor was written at once: a restart keeps it
    clock.advance(60)
    assert restarted.run(checkpoint_block=520, final_block=490).last < 500  # nothing final yet
    assert chain.asked == []
    clock.advance(60)
    outcome = restarted.run(checkpoint_block=560, final_block=530)
    assert (outcome.first, outcome.last) == (500, 530) and chain.asked == [(500, 530)]

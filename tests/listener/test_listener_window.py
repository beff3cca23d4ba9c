"""The window of concurrent range fetches (issue 14): several ranges are fetched at once, but they are
committed strictly in block order, whatever order the answers come in, and a slow store stops the
fetching instead of letting fetched ranges pile up. On a real anvil chain behind a proxy that makes
some ``eth_getLogs`` answers slower than later ones; both store backends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock, SystemClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.listener.fetch import FetchedRange
from exporter.listener.service import backlog_left
from exporter.metrics import Metrics
from exporter.scheduler import Job, Scheduler
from exporter.store import Store
from exporter.store.base import Checkpoint, CheckResult, CommitOutcome, EventRecord
from tests.listener.conftest import chain_keys, listener_settings, stored_checkpoint, stored_keys
from tests.listener.lagging_node import LaggingNode
from tests.support.latency_proxy import LatencyProxy

CHUNK = 10


def _backlog(chain: DevChain) -> int:
    """About 190 blocks with events spread over them: deep ranges (no headers) and ranges within
    anvil's reorg depth of 64 (every header), all in ``CHUNK``-block ranges."""
    for _ in range(6):
        chain.emit_batch(1)
        chain.mine(30)
    return chain.head()


class _CommitSpy:
    """The store, with a hook run after each ``commit_blocks`` of the listener's checkpoint (the audit
    keeps its cursor there too) and an optional one before."""

    def __init__(self, store: Store, after: Any, before: Any = None) -> None:
        self._store = store
        self._after = after
        self._before = before

    def commit_blocks(
        self,
        name: str,
        events: Sequence[EventRecord],
        checkpoint: Checkpoint,
        heartbeat: CheckResult | None = None,
    ) -> CommitOutcome:
        if name != "listener":
            return self._store.commit_blocks(name, events, checkpoint, heartbeat)
        if self._before is not None:
            self._before()
        outcome = self._store.commit_blocks(name, events, checkpoint, heartbeat)
        self._after(checkpoint)
        return outcome

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _slow_every_third_range(call: dict[str, Any]) -> float:
    """Ranges starting in every third chunk answer late: the two after them overtake them."""
    if call.get("method") != "eth_getLogs" or "fromBlock" not in call["params"][0]:
        return 0.0
    return 0.2 if (int(call["params"][0]["fromBlock"], 16) // CHUNK) % 3 == 0 else 0.0


def test_the_window_commits_in_block_order_when_answers_come_out_of_order(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    head = _backlog(chain)
    commits: list[int] = []
    mismatches: list[int] = []

    def check(checkpoint: Checkpoint) -> None:
        if checkpoint.block_number != (commits[-1] if commits else -1):
            commits.append(checkpoint.block_number)
        # Contiguous: at every commit the table holds exactly the chain's events up to the checkpoint.
        if stored_keys(store_url) != chain_keys(chain, up_to=checkpoint.block_number):
            mismatches.append(checkpoint.block_number)

    with LatencyProxy(chain.rpc_url, _slow_every_third_range) as proxy:
        settings = listener_settings(proxy.url, contracts_path, chunk_size=CHUNK, max_chunk_size=CHUNK, fetch_window=4)
        spy: Any = _CommitSpy(store, check)
        listener = Listener(settings, spy, metrics, FakeClock())  # a fake clock: the poll budget never runs out
        try:
            outcome = listener.poll_once()
        finally:
            listener.close()
    assert outcome.status == "ingested" and outcome.processed_block == head
    assert proxy.answered_out_of_order(), "the proxy never made a later range overtake an earlier one"
    assert proxy.max_logs_in_flight >= 2
    assert commits == sorted(commits) and len(set(commits)) == len(commits), commits
    assert len(commits) >= head // CHUNK
    assert mismatches == []
    assert stored_keys(store_url) == chain_keys(chain)


def test_the_rest_of_a_range_the_provider_narrows_is_fetched_across_the_window(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    """One range planned over the whole backlog, a provider that serves 10 blocks per getLogs: the
    refused range comes back to the window, which fetches it again ``fetch_window`` pieces at a time,
    not piece after piece on the one worker that drew the range (which made a catch-up behind a
    10-block cap run at the sequential latency floor)."""
    head = _backlog(chain)
    with LatencyProxy(
        chain.rpc_url, lambda call: 0.05 if call.get("method") == "eth_getLogs" else 0.0, max_range=10
    ) as proxy:
        settings = listener_settings(
            proxy.url, contracts_path, chunk_size=head + 1, max_chunk_size=head + 1, fetch_window=4, max_reorg_depth=1
        )
        commits: list[int] = []
        spy: Any = _CommitSpy(store, lambda checkpoint: commits.append(checkpoint.block_number))
        listener = Listener(settings, spy, metrics, FakeClock())
        try:
            outcome = listener.poll_once()
        finally:
            listener.close()
    assert outcome.status == "ingested" and outcome.processed_block == head
    assert proxy.refused >= 1  # the first width was refused and a narrower one learned
    assert proxy.max_logs_in_flight == 4, proxy.max_logs_in_flight
    assert commits == sorted(commits)
    assert stored_keys(store_url) == chain_keys(chain)


def test_a_slow_store_stops_the_fetching_at_the_window(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    head = _backlog(chain)
    window = 3
    lock = threading.Lock()
    counts = {"fetched": 0, "committed": 0}
    outstanding: list[int] = []  # ranges fetched but not committed, seen after each fetch
    gate = threading.Event()

    def committed(checkpoint: Checkpoint) -> None:
        with lock:
            counts["committed"] += 1

    settings = listener_settings(
        chain.rpc_url, contracts_path, chunk_size=CHUNK, max_chunk_size=CHUNK, fetch_window=window
    )
    # Each commit waits until the workers had every chance to run ahead (or 0.1 s): a slow database.
    spy: Any = _CommitSpy(store, committed, before=lambda: gate.wait(0.1))
    listener = Listener(settings, spy, metrics, FakeClock())
    fetch_span = listener._fetcher.fetch_span

    def counted(start: int, end: int, unsafe_from: int, cancel: threading.Event) -> FetchedRange:
        fetched = fetch_span(start, end, unsafe_from, cancel)
        with lock:
            counts["fetched"] += 1
            outstanding.append(counts["fetched"] - counts["committed"])
        return fetched

    listener._fetcher.fetch_span = counted  # type: ignore[method-assign]
    try:
        outcome = listener.poll_once()
    finally:
        listener.close()
    assert outcome.processed_block == head
    assert counts["fetched"] >= head // CHUNK  # a backlog many times the window
    assert max(outstanding) <= window, outstanding
    assert max(outstanding) == window, outstanding  # the window did fill: the bound was what held it
    assert stored_keys(store_url) == chain_keys(chain)


def test_the_scheduler_runs_a_catching_up_listener_back_to_back_without_skips(
    chain: DevChain,
    contracts_path: Path,
    store: Store,
    store_url: str,
    metrics: Metrics,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ``listen`` wiring (``runtime``): each poll stops at its time budget (here none: one window
    per poll) with backlog left and asks for the next at once. With a poll interval of a minute, only
    back-to-back polls can catch up within the wait; the scheduler never reports a skipped run."""
    head = _backlog(chain)
    settings = listener_settings(
        chain.rpc_url, contracts_path, chunk_size=CHUNK, max_chunk_size=CHUNK, poll_interval=60.0, max_lag=600.0
    )
    listener = Listener(settings, store, metrics, SystemClock(), poll_budget=0.0)
    scheduler = Scheduler(metrics)
    scheduler.add(Job("listener", listener.poll_once, settings.poll_interval, again=backlog_left))
    try:
        with caplog.at_level(logging.INFO):
            scheduler.start()
            deadline = time.monotonic() + 60
            while (stored_checkpoint(store_url) or -1) < head:
                assert time.monotonic() < deadline, "the backlog was not worked off back to back"
                time.sleep(0.05)
            assert scheduler.stop(10)
    finally:
        listener.close()
    reruns = registry.get_sample_value("blocktrust_scheduler_job_reruns_total", {"task": "listener"})
    assert reruns is not None and reruns >= head // CHUNK // settings.fetch_window - 1
    assert not [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert stored_keys(store_url) == chain_keys(chain)


def test_a_range_refused_by_a_capped_endpoint_is_narrowed_when_another_endpoint_lags(
    chain: DevChain, contracts_path: Path, store: Store, store_url: str, metrics: Metrics
) -> None:
    """Two endpoints: the first (preferred) serves any range but lags 60 blocks behind, the second is
    at the head but serves 10 blocks per getLogs. The newest blocks can only come from the second: a
    range it refuses must be planned again narrower, not at the width the lagging endpoint's sizer
    hands out (the same width again: refused again, the poll never got past the lagging head)."""
    head = _backlog(chain)
    with LaggingNode(chain.rpc_url) as lagging, LatencyProxy(chain.rpc_url, max_range=10) as capped:
        lagging.lag = 60
        settings = listener_settings(
            f"{lagging.url},{capped.url}",
            contracts_path,
            chunk_size=50,
            max_chunk_size=50,
            fetch_window=2,
            max_reorg_depth=1,
        )
        listener = Listener(settings, store, metrics, FakeClock())  # a fake clock: no poll budget
        outcomes: list[Any] = []
        polling = threading.Thread(target=lambda: outcomes.append(listener.poll_once()), daemon=True)
        try:
            polling.start()
            polling.join(timeout=30)
            spinning = polling.is_alive()
            if spinning:
                listener.request_stop()
                polling.join(timeout=10)
        finally:
            listener.close()
    assert not spinning, f"the poll was still refused after {capped.refused} refusals"
    assert outcomes[0].status == "ingested" and outcomes[0].processed_block == head
    assert capped.refused <= 10, capped.refused
    assert stored_keys(store_url) == chain_keys(chain)

"""The listener reports each commit to ``on_progress`` (issue 17, item 3): what the catch-up progress
line is made of. On a real anvil chain with a backlog of small ranges, the lines count up block by
block and end with "caught up"."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.progress import CatchUpReporter
from exporter.store import Store
from tests.listener.conftest import listener_settings

BACKLOG_BLOCKS = 120
CHUNK = 10


def test_a_backlog_is_reported_range_by_range_until_caught_up(
    chain: DevChain, contracts_path: Path, store: Store, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    chain.emit_each_event()
    chain.mine(BACKLOG_BLOCKS)
    head = chain.head()
    clock, reporter_clock = FakeClock(), FakeClock()  # the listener's own stands still: no poll budget runs out
    commits: list[tuple[int, int, int]] = []
    reporter = CatchUpReporter(reporter_clock, margin=5, every=0.0)

    def on_progress(head: int, processed: int, events: int) -> None:
        commits.append((head, processed, events))
        reporter_clock.advance(1)  # each range takes a (fake) second
        reporter.observe(head, processed, events)

    settings = listener_settings(chain.rpc_url, contracts_path, chunk_size=CHUNK, max_chunk_size=CHUNK)
    listener = Listener(settings, store, metrics, clock, on_progress=on_progress)
    try:
        with caplog.at_level(logging.INFO, logger="exporter.progress"):
            assert listener.poll_once().status == "ingested"
    finally:
        listener.close()
    processed = [block for _, block, _ in commits]
    assert processed == sorted(processed) and processed[-1] == head
    assert len(commits) >= BACKLOG_BLOCKS // CHUNK
    assert sum(events for _, _, events in commits) == 7  # the seven SPEC events, each once
    lines = [r.getMessage() for r in caplog.records]
    progress = [line for line in lines if line.startswith("listener catching up:")]
    assert len(progress) >= BACKLOG_BLOCKS // CHUNK - 2
    blocks = [int(m.group(1)) for m in (re.match(r"listener catching up: block (\d+) of", p) for p in progress) if m]
    assert blocks == sorted(blocks) and len(set(blocks)) == len(blocks)
    assert any(", events/s" not in line and "events/s, ETA " in line for line in progress[1:]), progress
    caught_up = re.fullmatch(r"listener caught up at block (\d+): \d+ blocks, \d+ events in \d+s", lines[-1])
    assert caught_up is not None and int(caught_up.group(1)) >= head - 5, lines[-1]

"""The listener on a PostgreSQL that hangs instead of failing (issue 13, kind 4): a TCP proxy that
keeps accepting and stops forwarding, mid-ingest or from the first connect. Every poll ends by the
store's deadlines with the checkpoint kept (a store outage, as when the server is down), and after
the recovery the events table is exactly the chain's: nothing lost, nothing twice. Join timeouts
only detect a hang."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener, PollOutcome
from exporter.metrics import Metrics
from exporter.store import StoreTimeouts, open_store
from tests.listener.conftest import (
    chain_keys,
    listener_settings,
    stored_checkpoint,
    stored_keys,
    wait_leader_lock_released,
)
from tests.support.tcp_proxy import TcpProxy

FAST = StoreTimeouts(call=1.0, statement=0.8, lock=0.5, pool=1.0, connect=2, idle_in_transaction=5, tcp_user=1)
HANG = 30.0  # seconds: a poll still running after this is hung, whatever the machine's load


def _poll(listener: Listener) -> PollOutcome:
    done: list[PollOutcome] = []
    worker = threading.Thread(target=lambda: done.append(listener.poll_once()), daemon=True)
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), f"a poll on the stalled store still running after {HANG:g}s: hung"
    return done[0]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {HANG:g}s"
        time.sleep(0.005)


@pytest.mark.parametrize("when", ["mid-ingest", "at connect"])
def test_the_listener_on_a_stalled_store_keeps_its_checkpoint_and_loses_no_event(
    when: str, chain: DevChain, contracts_path: Path, postgres_url: str, metrics: Metrics
) -> None:
    for _ in range(6):  # ~380 blocks, a few hundred events
        chain.emit_batch(5)
        chain.mine(60)
    setup = open_store(postgres_url)
    setup.migrate()
    setup.close()
    database = postgres_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        store = open_store(f"postgresql://postgres@{proxy.address}/{database}", timeouts=FAST)
        settings = listener_settings(chain.rpc_url, contracts_path, chunk_size=2, max_chunk_size=2)
        listener = Listener(settings, store, metrics, FakeClock())
        try:
            if when == "at connect":
                proxy.stall()
                outcome = _poll(listener)
            else:
                polled: list[PollOutcome] = []
                poll = threading.Thread(target=lambda: polled.append(listener.poll_once()), daemon=True)
                poll.start()
                _until(lambda: (stored_checkpoint(postgres_url) or 0) >= 60, "ingesting")
                proxy.stall()  # ranges are still being fetched and committed
                poll.join(HANG)
                assert not poll.is_alive(), f"the poll on the stalled store still running after {HANG:g}s: hung"
                [outcome] = polled
            assert outcome.status == "error", outcome
            kept = stored_checkpoint(postgres_url)
            assert _poll(listener).status == "error"  # still stalled: the checkpoint does not move
            assert stored_checkpoint(postgres_url) == kept
            if kept is not None:
                assert stored_keys(postgres_url) == chain_keys(chain, up_to=kept)  # no partial range
            assert (metrics.registry.get_sample_value("blocktrust_store_write_errors_total") or 0) >= 2

            proxy.restore()  # what was held back (the cut sessions' ends too) now reaches the server
            wait_leader_lock_released(postgres_url)
            outcomes = [_poll(listener) for _ in range(3)]
            assert outcomes[-1].processed_block == chain.head(), outcomes
            assert stored_keys(postgres_url) == chain_keys(chain)  # every event, each once
        finally:
            listener.close()
            store.close()

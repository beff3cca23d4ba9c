"""A database whose newest stored event is above the chain's head (a seed of another network, a bogus
row, a node far behind at start) and no checkpoint: the listener waits without a heartbeat, as it does
when the node lags behind a checkpoint, so listener.lag turns red instead of staying green for ever."""

from __future__ import annotations

from pathlib import Path

from exporter.clock import FakeClock
from exporter.config.checks import HEARTBEAT_CHECK
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.store import Store
from exporter.store.base import Checkpoint, EventRecord
from tests.listener.conftest import listener_settings


def test_stored_events_above_the_head_and_no_checkpoint_write_no_heartbeat(
    chain: DevChain, contracts_path: Path, store: Store, metrics: Metrics
) -> None:
    chain.mine(5)
    ahead = chain.head() + 1_000_000
    seed = EventRecord("Minted", {"blockNumber": ahead}, ahead, "0xb", "0xt", 0)
    store.commit_blocks("seed-import", [seed], Checkpoint(ahead, "0xb"))  # not the listener's checkpoint
    assert store.newest_event_block() == ahead
    settings = listener_settings(chain.rpc_url, contracts_path, start_block="latest")  # the default
    listener = Listener(settings, store, metrics, FakeClock())
    try:
        outcome = listener.poll_once()
        chain.mine(2)
        again = listener.poll_once()
    finally:
        listener.close()
    assert outcome.status == again.status == "idle"
    assert "above" in outcome.message, outcome.message
    assert store.latest_result(HEARTBEAT_CHECK) is None  # nothing says the listener is healthy

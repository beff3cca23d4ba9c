"""The endpoint pool on a real anvil: every corpus answer replayed during a backlog ingest, failover
from a rate-limited then stalled endpoint, a wrong-chain endpoint refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.store import open_store
from tests.listener.conftest import chain_keys, listener_settings, stored_keys
from tests.listener.test_refusals import CORPUS
from tests.support.corpus_proxy import CorpusProxy
from tests.support.exporter_process import run_command


def _backlog(chain: DevChain, rounds: int, gap: int) -> None:
    for _ in range(rounds):
        chain.emit_batch(2)
        chain.mine(gap)


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.slow
def test_every_corpus_answer_replayed_during_a_backlog_ingest_ends_exact(
    chain: DevChain, contracts_path: Path, postgres_url: str, metrics: Metrics
) -> None:
    _backlog(chain, rounds=6, gap=10)  # ~66 blocks: within max_reorg_depth, so headers come in batches
    # Every entry in corpus order, one batch refusal last (after it the provider gets single calls).
    batch = [e for e in CORPUS if e.get("batch")]
    entries = [e for e in CORPUS if not e.get("batch")] + batch[:1]
    store = open_store(postgres_url)
    store.migrate()
    clock = FakeClock()
    with CorpusProxy(chain.rpc_url) as proxy:
        proxy.replay(entries)
        settings = listener_settings(
            proxy.url, contracts_path, chunk_size=8, max_chunk_size=16, max_retry_after=1.0, max_reorg_depth=200
        )
        listener = Listener(settings, store, metrics, clock)
        try:
            for poll in range(200):
                outcome = listener.poll_once()
                if not proxy.pending and outcome.processed_block == chain.head():
                    break
                if outcome.processed_block == chain.head():  # caught up: the chain goes on, with events
                    if poll % 3 == 0:
                        chain.emit_batch(1)
                    chain.mine(4)
        finally:
            listener.close()
            store.close()
        assert proxy.pending == [], "the ingest ended before every answer was replayed"
        assert proxy.replayed == [e["name"] for e in entries]
    assert outcome.processed_block == chain.head()
    # The exact set of one raw eth_getLogs, each (transactionHash, logIndex) once.
    assert stored_keys(postgres_url) == chain_keys(chain)
    assert _sample(metrics, "blocktrust_listener_rpc_endpoint_errors_total", endpoint="0", **{"class": "range"}) >= 10
    assert _sample(metrics, "blocktrust_listener_rpc_endpoint_errors_total", endpoint="0", **{"class": "batch"}) == 1


def test_a_rate_limited_then_stalled_endpoint_is_passed_over_within_one_poll(
    chain: DevChain, contracts_path: Path, sqlite_url: str, metrics: Metrics
) -> None:
    _backlog(chain, rounds=3, gap=5)
    store = open_store(sqlite_url)
    store.migrate()
    clock = FakeClock()
    with CorpusProxy(chain.rpc_url, retry_after_seconds=30) as first, CorpusProxy(chain.rpc_url) as second:
        settings = listener_settings(
            f"{first.url},{second.url}", contracts_path, head_stall_timeout=5.0, max_retry_after=60.0
        )
        listener = Listener(settings, store, metrics, clock)
        try:
            first.rate_limit_all = True  # the preferred endpoint answers 429 to everything
            outcome = listener.poll_once()
            assert outcome.processed_block == chain.head(), outcome  # one poll, through the second
            assert stored_keys(sqlite_url) == chain_keys(chain)
            assert first.forwarded["eth_getLogs"] == 0
            assert (
                _sample(metrics, "blocktrust_listener_rpc_endpoint_rotations_total", endpoint="0", reason="rate_limit")
                >= 1
            )

            first.rate_limit_all = False
            frozen = first.freeze_head()  # now its head stalls: it knows nothing newer
            clock.advance(60)  # the Retry-After is over: the first endpoint is usable again
            _backlog(chain, rounds=2, gap=4)
            outcome = listener.poll_once()
            assert outcome.processed_block == chain.head() > frozen, outcome
            assert stored_keys(sqlite_url) == chain_keys(chain)  # 0 events lost
            lag = _sample(metrics, "blocktrust_listener_rpc_endpoint_head_lag_blocks", endpoint="0")
            assert lag == chain.head() - frozen

            clock.advance(10)  # longer than head_stall_timeout, while the second's head moves on
            chain.mine(3)
            listener.poll_once()
            assert (
                _sample(metrics, "blocktrust_listener_rpc_endpoint_rotations_total", endpoint="0", reason="stalled")
                == 1
            )
            assert _sample(metrics, "blocktrust_listener_rpc_endpoint_up", endpoint="0") == 0
            assert _sample(metrics, "blocktrust_listener_rpc_endpoint_up", endpoint="1") == 1
        finally:
            listener.close()
            store.close()


def test_an_endpoint_of_another_chain_is_refused_at_start_with_one_line(
    chain: DevChain, contracts_path: Path, tmp_path: Path
) -> None:
    with CorpusProxy(chain.rpc_url) as other:
        other.chain_id = 137  # a Polygon URL next to a local chain's (anvil: 31337)
        config = tmp_path / "config.yaml"
        config.write_text(f"listener:\n  contracts_config: {contracts_path}\n", encoding="utf-8")
        env = {
            "PATH": "/usr/bin:/bin",
            "POLYGON_RPC_URL": f"{chain.rpc_url},{other.url}",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        }
        proc = run_command(["listen", "--config", str(config)], env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    problem = [line for line in proc.stderr.splitlines() if "chain id" in line]
    assert len(problem) == 1, proc.stderr
    assert "listener.rpc_urls[1]" in problem[0] and "137" in problem[0] and "31337" in problem[0]
    assert "Traceback" not in proc.stderr and "secret-key" not in proc.stderr

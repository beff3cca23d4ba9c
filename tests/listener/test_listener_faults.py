"""Faults between the listener and its peers: a misbehaving RPC provider (fault proxy) and a
PostgreSQL that goes away mid-ingest (TCP proxy). Either way the final table is exact."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener, PollOutcome
from exporter.metrics import Metrics
from exporter.store import open_store
from tests.listener.conftest import (
    chain_keys,
    listener_settings,
    stored_checkpoint,
    stored_keys,
    wait_leader_lock_released,
)
from tests.support.rpc_fault_proxy import Fault, RpcFaultProxy
from tests.support.tcp_proxy import TcpProxy


def _backlog(chain: DevChain, rounds: int, per_type: int, gap: int) -> None:
    for _ in range(rounds):
        chain.emit_batch(per_type)
        chain.mine(gap)


def test_exact_table_through_a_faulty_rpc_provider(
    chain: DevChain, contracts_path: Path, postgres_url: str, metrics: Metrics
) -> None:
    _backlog(chain, rounds=8, per_type=10, gap=25)  # 560 events over ~220 blocks
    store = open_store(postgres_url)
    store.migrate()
    clock = FakeClock()
    with RpcFaultProxy(chain.rpc_url, seed=5, hang_seconds=2.0) as proxy:
        proxy.max_logs_results = 120  # a provider cap: refusals that suggest a range which fits
        every_fault = list(Fault)
        # A timeout of a wide eth_getLogs is a range refusal by design (classify_failure): the scripted
        # one goes to a call that is not, so that the "timeout" outcome is seen whatever order the
        # concurrent requests arrive in.
        proxy.script(Fault.TIMEOUT, methods=["eth_chainId", "eth_blockNumber", "eth_getBlockByNumber"])
        proxy.script(*(fault for fault in every_fault if fault is not Fault.TIMEOUT))
        proxy.set_rates(
            {
                Fault.RATE_LIMIT: 0.03,
                Fault.SERVER_ERROR: 0.03,
                Fault.TIMEOUT: 0.005,
                Fault.TRUNCATED_JSON: 0.03,
                Fault.DISCONNECT: 0.02,
                Fault.LOGS_TOO_MANY: 0.02,
                Fault.LOGS_TOO_MANY_WITH_RANGE: 0.02,
                Fault.RANGE_TOO_LARGE: 0.02,
            }
        )
        settings = listener_settings(proxy.url, contracts_path, chunk_size=40, max_chunk_size=160, rpc_timeout=0.4)
        listener = Listener(settings, store, metrics, clock)
        outcomes: list[PollOutcome] = []
        try:
            for _ in range(60):
                outcomes.append(listener.poll_once())
                if outcomes[-1].processed_block == chain.head():
                    break
        finally:
            listener.close()
            store.close()
        injected = dict(proxy.injected)
    assert outcomes[-1].processed_block == chain.head(), outcomes[-5:]
    assert stored_keys(postgres_url) == chain_keys(chain)
    assert all(injected.get(fault, 0) >= 1 for fault in every_fault), injected
    assert clock.slept, "back-off must wait on the injected clock"

    def count(outcome: str) -> float:
        samples = metrics.registry.collect()
        return sum(
            s.value
            for family in samples
            for s in family.samples
            if s.name == "blocktrust_listener_rpc_requests_total" and s.labels["outcome"] == outcome
        )

    for outcome in (
        "success",
        "rate_limited",
        "http_error",
        "timeout",
        "invalid_response",
        "range_refused",
        "connection_error",
    ):
        assert count(outcome) >= 1, outcome


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 5432) as proxy:
        yield proxy


def _via(proxy: TcpProxy, url: str) -> str:
    return url.replace("127.0.0.1:5432", proxy.address)


def test_postgres_unreachable_mid_ingest_keeps_the_checkpoint_and_loses_nothing(
    chain: DevChain, contracts_path: Path, postgres_url: str, metrics: Metrics, pg_proxy: TcpProxy
) -> None:
    _backlog(chain, rounds=6, per_type=5, gap=60)  # ~380 blocks
    store = open_store(_via(pg_proxy, postgres_url))
    store.migrate()
    settings = listener_settings(chain.rpc_url, contracts_path, chunk_size=2, max_chunk_size=2)
    listener = Listener(settings, store, metrics, FakeClock())
    try:
        result: list[PollOutcome] = []
        poll = threading.Thread(target=lambda: result.append(listener.poll_once()))
        poll.start()
        deadline = time.monotonic() + 30
        while (stored_checkpoint(postgres_url) or 0) < 60 and time.monotonic() < deadline:
            time.sleep(0.005)
        pg_proxy.cut()  # mid-ingest: ranges are still being fetched and committed
        poll.join(timeout=30)
        assert result and result[0].status == "error"
        assert "store unavailable" not in result[0].message  # the message is the store's own reason

        kept = stored_checkpoint(postgres_url)
        assert kept is not None and 60 <= kept < chain.head()
        assert stored_keys(postgres_url) == chain_keys(chain, up_to=kept)  # no partial range
        assert listener.poll_once().status == "error"  # still down: the checkpoint does not move
        assert stored_checkpoint(postgres_url) == kept
        assert metrics.registry.get_sample_value("blocktrust_store_write_errors_total") == 2

        pg_proxy.restore()
        wait_leader_lock_released(postgres_url)
        # The first poll after the recovery resumes: no pooled connection that died in the cut is
        # used again (one idle at the cut used to fail this poll about 1 run in 4).
        outcome = listener.poll_once()
        assert outcome.status == "ingested" and outcome.processed_block == chain.head(), outcome
        assert stored_keys(postgres_url) == chain_keys(chain)
    finally:
        listener.close()
        store.close()

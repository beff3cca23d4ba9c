"""Two listener replicas on one PostgreSQL: exactly one ingests; when it dies the other takes over
at its next poll, and the table stays exact. Each replica reaches PostgreSQL through its own TCP
proxy, so 'dies' means its connections are reset, as when its process or host goes away."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener import Listener
from exporter.metrics import Metrics
from exporter.store import Store, open_store
from tests.listener.conftest import (
    chain_keys,
    listener_settings,
    query,
    stored_keys,
    wait_leader_lock_released,
)
from tests.support.tcp_proxy import TcpProxy


def _replica(chain: DevChain, contracts_path: Path, url: str) -> tuple[Listener, Metrics, Store]:
    store = open_store(url)
    store.migrate()
    metrics = Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="test")
    return Listener(listener_settings(chain.rpc_url, contracts_path), store, metrics, FakeClock()), metrics, store


def _ingested(metrics: Metrics) -> float:
    return sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "blocktrust_listener_events_total"
    )


def test_one_replica_ingests_and_the_other_takes_over_when_it_dies(
    chain: DevChain, contracts_path: Path, postgres_url: str
) -> None:
    chain.emit_each_event()
    with TcpProxy("127.0.0.1", 5432) as proxy_a, TcpProxy("127.0.0.1", 5432) as proxy_b:
        a, metrics_a, store_a = _replica(chain, contracts_path, postgres_url.replace("127.0.0.1:5432", proxy_a.address))
        b, metrics_b, store_b = _replica(chain, contracts_path, postgres_url.replace("127.0.0.1:5432", proxy_b.address))
        try:
            assert a.poll_once().status == "ingested"
            assert b.poll_once().status == "standby"
            for _ in range(3):  # more events, polls in both orders: only the leader ingests
                chain.emit_each_event()
                assert b.poll_once().status == "standby"
                assert a.poll_once().status == "ingested"
            assert _ingested(metrics_a) == 28 and _ingested(metrics_b) == 0
            assert stored_keys(postgres_url) == chain_keys(chain)

            chain.emit_each_event()
            proxy_a.cut()  # replica A dies: its session, and so its advisory lock, goes away
            wait_leader_lock_released(postgres_url)
            outcome = b.poll_once()  # B's very next poll takes over
            assert outcome.status == "ingested" and outcome.events == 7
            assert _ingested(metrics_b) == 7

            proxy_a.restore()  # A comes back: it must not ingest next to B
            chain.emit_each_event()
            assert a.poll_once().status == "standby"
            assert b.poll_once().status == "ingested"
            assert stored_keys(postgres_url) == chain_keys(chain)
            ticks = query(postgres_url, "SELECT count(*) FROM monitor_metrics WHERE check_name = 'listener.tick'")
            assert ticks[0][0] == 6  # one heartbeat per leader poll; standbys write none
        finally:
            for replica, store in ((a, store_a), (b, store_b)):
                replica.close()
                store.close()

"""The endpoint pool against scripted loopback nodes: failover, cool-downs, chain ids, batches, metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from exporter.clock import FakeClock
from exporter.config import ConfigError
from exporter.listener.confirm import EmptyBlockConfirmer
from exporter.listener.endpoints import EndpointPool, shown_endpoint
from exporter.listener.rpc import BlockHeader, LogFilter, RpcError, TransientRpcError
from exporter.metrics import Metrics
from tests.listener.scripted_node import Reply, ScriptedNode
from tests.listener.test_refusals import CORPUS

FILTER = LogFilter(addresses=("0x" + "11" * 20,), topics0=("0x" + "aa" * 32,))
CHAIN = Reply(result="0x89")  # eth_chainId: 137


def header(number: int) -> dict[str, str]:
    return {"number": hex(number), "hash": "0x" + f"{number:064x}", "parentHash": "0x" + f"{number - 1:064x}"}


@pytest.fixture
def nodes() -> Iterator[list[ScriptedNode]]:
    started = [ScriptedNode(), ScriptedNode()]
    yield started
    for node in started:
        node.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_pool(nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock, **kwargs: Any) -> EndpointPool:
    return EndpointPool(
        [node.url for node in nodes],
        requests.Session(),
        metrics,
        clock,
        timeout=2,
        chunk_size=100,
        max_chunk_size=1000,
        **kwargs,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_the_endpoint_shown_is_scheme_and_host_only() -> None:
    assert shown_endpoint("https://user:pw@polygon-mainnet.infura.io/v3/KEY?x=1") == "https://polygon-mainnet.infura.io"
    assert shown_endpoint("http://127.0.0.1:8545/") == "http://127.0.0.1:8545"


def test_a_rate_limited_endpoint_is_left_at_once_and_cooled_for_its_retry_after(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    first, second = nodes
    first.replies.extend([CHAIN, Reply(status=429, body=b"slow down", headers={"Retry-After": "120"})])
    second.replies.extend([CHAIN, Reply(result="0x10")])
    pool = make_pool(nodes, metrics, clock, max_retry_after=300)
    assert pool.call("eth_blockNumber", []) == "0x10"
    second.replies.append(Reply(result="0x11"))
    clock.advance(119)  # still cooling: the second serves without the first being asked
    assert pool.call("eth_blockNumber", []) == "0x11"
    assert len(first.requests) == 2
    assert sample(metrics, "blocktrust_listener_rpc_endpoint_rotations_total", endpoint="0", reason="rate_limit") == 1
    assert (
        sample(metrics, "blocktrust_listener_rpc_endpoint_errors_total", endpoint="0", **{"class": "rate_limit"}) == 1
    )
    clock.advance(2)  # cooled down: the first is preferred again (its chain id checked once more)
    first.replies.extend([CHAIN, Reply(result="0x12")])
    assert pool.call("eth_blockNumber", []) == "0x12"


def test_a_retry_after_beyond_the_maximum_is_cut_to_it(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    first, second = nodes
    first.replies.extend([CHAIN, Reply(status=429, body=b"", headers={"Retry-After": "86400"})])
    second.replies.extend([CHAIN, Reply(result="0x1")])
    pool = make_pool(nodes, metrics, clock, max_retry_after=60)
    pool.call("eth_blockNumber", [])
    clock.advance(61)
    first.replies.extend([CHAIN, Reply(result="0x2")])
    assert pool.call("eth_blockNumber", []) == "0x2"


def test_when_every_endpoint_fails_the_last_error_reaches_the_caller(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    first, second = nodes
    first.replies.extend([CHAIN, Reply(status=503, body=b"down")])
    second.replies.extend([CHAIN, Reply(status=502, body=b"down")])
    pool = make_pool(nodes, metrics, clock)
    with pytest.raises(TransientRpcError, match="HTTP 502"):
        pool.call("eth_blockNumber", [])
    with pytest.raises(TransientRpcError, match="no usable RPC endpoint") as info:
        pool.call("eth_blockNumber", [])  # both cooling: nobody is asked, the wait is told
    assert info.value.retry_after == pytest.approx(1.0)


def test_one_endpoint_behaves_as_the_single_client_did(metrics: Metrics, clock: FakeClock) -> None:
    node = ScriptedNode()
    try:
        node.replies.extend([Reply(status=503, body=b"down"), Reply(result="0x5")])
        pool = make_pool([node], metrics, clock)
        with pytest.raises(TransientRpcError):
            pool.block_number()
        assert pool.block_number() == 5  # no cool-down, no eth_chainId call
        assert [r["method"] for r in node.requests] == ["eth_blockNumber", "eth_blockNumber"]
        assert pool.chain_id() is None
    finally:
        node.close()


def test_logs_come_only_from_an_endpoint_whose_head_has_the_range(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    behind, ahead = nodes
    behind.replies.extend([CHAIN, Reply(result="0x64")])  # head 100
    ahead.replies.extend([CHAIN, Reply(result="0x6e")])  # head 110
    pool = make_pool(nodes, metrics, clock)
    assert pool.block_number() == 110
    assert sample(metrics, "blocktrust_listener_rpc_endpoint_head_lag_blocks", endpoint="0") == 10
    ahead.replies.append(Reply(result=[{"logIndex": "0x0"}]))
    assert pool.get_logs(101, 110, FILTER) == [{"logIndex": "0x0"}]
    behind.replies.append(Reply(result=[]))
    assert pool.get_logs(91, 100, FILTER) == []  # the preferred endpoint has these blocks
    assert [r["method"] for r in behind.requests] == ["eth_chainId", "eth_blockNumber", "eth_getLogs"]


def test_an_endpoint_that_later_serves_another_chain_is_dropped_with_a_log_line(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = nodes
    first.replies.extend([CHAIN, Reply(status=503, body=b"down")])
    second.replies.extend([CHAIN, Reply(result="0x1")])
    pool = make_pool(nodes, metrics, clock, expected_chain_id=137)
    pool.call("eth_blockNumber", [])
    clock.advance(5)
    first.replies.append(Reply(result="0x1"))  # back after its failure, now on Ethereum mainnet
    second.replies.append(Reply(result="0x2"))
    with caplog.at_level(logging.ERROR):
        assert pool.call("eth_blockNumber", []) == "0x2"
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "endpoint 0" in dropped[0] and "chain id 1" in dropped[0]
    assert "/v3/secret-key" not in dropped[0]
    assert sample(metrics, "blocktrust_listener_rpc_endpoint_up", endpoint="0") == 0
    assert (
        sample(metrics, "blocktrust_listener_rpc_endpoint_errors_total", endpoint="0", **{"class": "wrong_chain"}) == 1
    )
    clock.advance(3600)  # the second's chain id is due for a re-check; the first is not asked
    second.replies.extend([CHAIN, Reply(result="0x3")])
    assert pool.call("eth_blockNumber", []) == "0x3"  # never asked again
    assert len(first.requests) == 3


def test_check_chain_at_start_names_the_endpoint_in_one_line(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    first, second = nodes
    first.replies.append(CHAIN)
    second.replies.append(Reply(result="0x13882"))  # Amoy
    pool = make_pool(nodes, metrics, clock, expected_chain_id=137)
    with pytest.raises(ConfigError) as info:
        pool.check_chain()
    message = str(info.value)
    assert message == (
        f"listener.rpc_urls[1] ({shown_endpoint(second.url)}): serves chain id 80002 (eth_chainId), "
        "expected 137 (listener.expected_chain_id)"
    )
    assert "\n" not in message and "secret-key" not in message


@pytest.mark.parametrize("entry", [e for e in CORPUS if e.get("batch")], ids=lambda e: e["name"])
def test_a_refused_batch_falls_back_to_single_calls_for_good(
    entry: dict[str, Any], metrics: Metrics, clock: FakeClock
) -> None:
    node = ScriptedNode()
    try:
        if "error" in entry:
            refusal = Reply(
                status=entry.get("status", 200),
                body=json.dumps({"jsonrpc": "2.0", "id": None, "error": entry["error"]}).encode(),
            )
        else:
            refusal = Reply(status=entry["status"], body=entry["body"].encode())
        node.replies.extend([refusal, Reply(result=header(7)), Reply(result=header(8))])
        pool = make_pool([node], metrics, clock)
        assert [h.number for h in pool.blocks([7, 8]) if h] == [7, 8]
        node.replies.extend([Reply(result=header(9)), Reply(result=header(10))])
        assert [h.number for h in pool.blocks([9, 10]) if h] == [9, 10]
        assert [isinstance(r, list) for r in node.requests] == [True, False, False, False, False]
        assert sample(metrics, "blocktrust_listener_rpc_endpoint_errors_total", endpoint="0", **{"class": "batch"}) == 1
    finally:
        node.close()


def test_a_permanent_error_everywhere_is_an_rpc_error(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    bad_params = Reply(error={"code": -32602, "message": "invalid argument 0: hex string without 0x prefix"})
    nodes[0].replies.extend([CHAIN, bad_params])
    nodes[1].replies.extend([CHAIN, bad_params])
    pool = make_pool(nodes, metrics, clock)
    with pytest.raises(RpcError, match="-32602"):
        pool.block(5)
    assert sample(metrics, "blocktrust_listener_rpc_endpoint_rotations_total", endpoint="0", reason="permanent") == 1


def test_each_endpoint_learns_its_own_range_limit(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    first, _ = nodes
    first.replies.extend([CHAIN, Reply(error={"code": -32602, "message": "range 100 exceeds limit of 40"})])
    pool = make_pool(nodes, metrics, clock)
    with pytest.raises(Exception, match="exceeds limit") as info:
        pool.get_logs(1, 100, FILTER)
    pool.sizer.refused(1, 100, getattr(info.value, "suggested", None))
    assert pool.sizer.size == 40
    assert sample(metrics, "blocktrust_listener_rpc_endpoint_range_limit_blocks", endpoint="0") == 40
    assert sample(metrics, "blocktrust_listener_rpc_endpoint_range_limit_blocks", endpoint="1") == 1000


def test_an_endpoint_whose_head_is_unknown_does_not_serve_the_newest_blocks(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    first, second = nodes
    first.replies.extend([CHAIN, Reply(status=429, body=b"", headers={"Retry-After": "1"})])
    second.replies.extend([CHAIN, Reply(result="0x6e")])
    pool = make_pool(nodes, metrics, clock)
    assert pool.block_number() == 110  # the first was rate limited: its head is unknown
    clock.advance(2)
    second.replies.append(Reply(result=[{"logIndex": "0x1"}]))
    assert pool.get_logs(101, 110, FILTER) == [{"logIndex": "0x1"}]
    assert [r["method"] for r in first.requests] == ["eth_chainId", "eth_blockNumber"]


def test_a_re_read_by_hash_goes_only_to_an_endpoint_whose_head_has_the_block(
    nodes: list[ScriptedNode], metrics: Metrics, clock: FakeClock
) -> None:
    # The first endpoint lags (head 5) and, like besu before 24.12 or reth before 2024-03, answers []
    # for a block hash it does not know: asked about block 8, it would "confirm" the block empty.
    first, second = nodes
    block_hash = "0x" + f"{8:064x}"
    log = {"blockNumber": "0x8", "blockHash": block_hash, "logIndex": "0x0", "transactionHash": "0x" + "ee" * 32}
    first.replies.extend([CHAIN, Reply(result="0x5"), Reply(result=[])])
    second.replies.extend([CHAIN, Reply(result="0xa"), Reply(result=[log])])
    pool = make_pool(nodes, metrics, clock)
    assert pool.block_number() == 10
    confirmer = EmptyBlockConfirmer(pool, FILTER, metrics)
    confirmed = confirmer.confirm([BlockHeader(8, block_hash, "0x" + f"{7:064x}", (1 << 2048) - 1)], [])
    assert confirmed.unconfirmed is None
    assert confirmed.logs == [log]
    assert [r["method"] for r in first.requests] == ["eth_chainId", "eth_blockNumber"]  # never asked

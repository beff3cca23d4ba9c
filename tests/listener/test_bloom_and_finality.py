"""The logsBloom test (checked against a real node's headers) and the default reorg depth by chain."""

from __future__ import annotations

import pytest
import requests

from exporter.clock import FakeClock
from exporter.demo.devchain import DevChain
from exporter.listener.bloom import BloomQuery, bloom_bits, bloom_contains, parse_bloom
from exporter.listener.finality import DEFAULT_REORG_DEPTH, default_reorg_depth, resolve_reorg_depth
from exporter.listener.rpc import BlockHeader, RpcClient
from exporter.metrics import Metrics
from tests.listener.conftest import chain_logs

ADDRESS = "0x" + "11" * 20
TOPIC = "0x" + "22" * 32


def _bloom_of(*items: bytes) -> int:
    bloom = 0
    for item in items:
        for bit in bloom_bits(item):
            bloom |= 1 << bit
    return bloom


def test_a_query_matches_only_a_bloom_holding_one_of_its_addresses_and_one_of_its_topics() -> None:
    query = BloomQuery([ADDRESS, "0x" + "33" * 20], [TOPIC])
    address, topic = bytes.fromhex(ADDRESS[2:]), bytes.fromhex(TOPIC[2:])
    assert query.may_match(_bloom_of(address, topic))
    assert not query.may_match(_bloom_of(address))  # our contract, another event
    assert not query.may_match(_bloom_of(topic))  # our event signature, another contract
    assert not query.may_match(0)
    assert query.may_match((1 << 2048) - 1)  # a saturated bloom: always "maybe"


@pytest.mark.parametrize("value", [None, "0x", "0x" + "0" * 511, "0x" + "g" * 512, 5])
def test_a_missing_or_malformed_bloom_tells_nothing(value: object) -> None:
    assert parse_bloom(value) is None


def test_every_log_sets_its_address_and_topics_in_the_header_bloom_of_a_real_node(
    chain: DevChain, metrics: Metrics
) -> None:
    chain.emit_each_event()
    rpc = RpcClient(chain.rpc_url, requests.Session(), metrics, FakeClock(), timeout=5)
    logs = chain_logs(chain)
    assert len(logs) == 7
    query = BloomQuery(list(chain.addresses.values()), [log["topics"][0] for log in logs])
    for log in logs:
        header = rpc.block(int(log["blockNumber"], 16))
        assert isinstance(header, BlockHeader) and header.logs_bloom is not None
        for item in [log["address"], *log["topics"]]:
            assert bloom_contains(header.logs_bloom, bytes.fromhex(item[2:])), (log["blockNumber"], item)
        assert query.may_match(header.logs_bloom)
    chain.mine(1)
    empty = rpc.block(chain.head())
    assert isinstance(empty, BlockHeader) and empty.logs_bloom == 0 and not query.may_match(0)


@pytest.mark.parametrize(
    ("chain_id", "finality_distance", "blocks", "source"),
    [
        (137, None, 256, "chain 137"),
        (80002, 3, 256, "chain 80002"),  # Amoy: a short finalized distance never lowers the table
        (1, 96, 128, "chain 1"),
        (31337, 64, 64, "chain 31337"),  # anvil: finalized is head - 64
        (424242, None, DEFAULT_REORG_DEPTH, "default"),
        (424242, 900, 900, "finalized tag"),  # an unknown chain whose node is final 900 blocks back
        (137, 400, 400, "finalized tag"),
    ],
)
def test_the_default_reorg_depth_follows_the_chain_and_its_finalized_distance(
    chain_id: int, finality_distance: int | None, blocks: int, source: str
) -> None:
    depth = default_reorg_depth(chain_id, finality_distance)
    assert (depth.blocks, depth.source, depth.chain_id) == (blocks, source, chain_id)


def test_a_configured_reorg_depth_wins_and_the_finalized_tag_is_then_not_read() -> None:
    def unread() -> int | None:
        raise AssertionError("the finalized tag was read although a depth is configured")

    depth = resolve_reorg_depth(12, lambda: 137, unread)
    assert (depth.blocks, depth.source, depth.chain_id) == (12, "configured", 137)
    assert resolve_reorg_depth(None, lambda: 137, lambda: None).blocks == 256

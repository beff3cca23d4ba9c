"""Re-reading by block hash the blocks whose bloom matches but that got no log (a scripted node)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from exporter.clock import FakeClock
from exporter.listener.confirm import EmptyBlockConfirmer
from exporter.listener.retry import FetchCancelledError
from exporter.listener.rpc import BlockHeader, LogFilter, RpcClient
from exporter.metrics import Metrics
from tests.listener.scripted_node import Reply, ScriptedNode

SATURATED = (1 << 2048) - 1  # a busy block: every bloom test says "maybe"
ADDRESS = "0x" + "11" * 20
TOPIC = "0x" + "22" * 32


def _hash(number: int) -> str:
    return "0x" + f"{number:064x}"


def _header(number: int, bloom: int | None) -> BlockHeader:
    return BlockHeader(number, _hash(number), _hash(number - 1), bloom)


def _log(number: int, index: int, block_hash: str | None = None) -> dict[str, object]:
    return {"blockNumber": hex(number), "blockHash": block_hash or _hash(number), "logIndex": hex(index)}


@pytest.fixture
def node() -> Iterator[ScriptedNode]:
    scripted = ScriptedNode()
    try:
        yield scripted
    finally:
        scripted.close()


def _confirmer(node: ScriptedNode, metrics: Metrics) -> EmptyBlockConfirmer:
    rpc = RpcClient(node.url, requests.Session(), metrics, FakeClock(), timeout=2)
    return EmptyBlockConfirmer(rpc, LogFilter((ADDRESS,), (TOPIC,)), metrics)


def test_only_matching_blocks_without_logs_are_re_read_and_what_they_hold_is_kept_in_order(
    node: ScriptedNode, metrics: Metrics
) -> None:
    headers = [
        _header(10, SATURATED),
        _header(11, None),
        _header(12, 0),
        _header(13, SATURATED),
        _header(14, SATURATED),
    ]
    node.replies.extend([Reply(result=[]), Reply(result=[_log(14, 0), _log(14, 1)])])
    confirmed = _confirmer(node, metrics).confirm(headers, [_log(13, 3)])
    # 11 has no bloom (nothing known), 12 cannot hold ours, 13 got a log: only 10 and 14 are re-read.
    assert [r["params"][0]["blockHash"] for r in node.requests] == [_hash(10), _hash(14)]
    assert node.requests[0]["params"][0]["address"] == [ADDRESS]
    assert confirmed.unconfirmed is None
    assert [(e["blockNumber"], e["logIndex"]) for e in confirmed.logs] == [
        ("0xd", "0x3"),
        ("0xe", "0x0"),
        ("0xe", "0x1"),
    ]

    def rechecks(result: str) -> float:
        return metrics.registry.get_sample_value("blocktrust_listener_bloom_rechecks_total", {"result": result}) or 0.0

    assert (rechecks("empty"), rechecks("recovered"), rechecks("unconfirmed")) == (1, 1, 0)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(error={"code": -32000, "message": "unknown block"}),  # the node lacks the block
        Reply(result=[_log(11, 0, block_hash=_hash(99))]),  # logs of another block
        Reply(result=None),  # not a list
        Reply(status=503),
    ],
    ids=["unknown-block", "foreign-logs", "null", "http-503"],
)
def test_a_block_whose_re_read_fails_ends_the_range_before_it(
    node: ScriptedNode, metrics: Metrics, reply: Reply
) -> None:
    headers = [_header(10, SATURATED), _header(11, SATURATED), _header(12, SATURATED)]
    node.replies.extend([Reply(result=[]), reply])
    confirmed = _confirmer(node, metrics).confirm(headers, [_log(12, 0)])
    assert confirmed.unconfirmed == 11 and confirmed.reason
    assert confirmed.logs == []  # block 12's log waits with its block
    assert len(node.requests) == 2  # nothing is asked after the first unconfirmed block


def test_a_cancelled_fetch_stops_between_re_reads(node: ScriptedNode, metrics: Metrics) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FetchCancelledError):
        _confirmer(node, metrics).confirm([_header(10, SATURATED)], [], cancel)
    assert node.requests == []

"""The JSON-RPC client against a real loopback HTTP server: classification, metrics, no secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from exporter.clock import FakeClock, SystemClock
from exporter.listener.rpc import (
    BatchRefusedError,
    LogFilter,
    RangeRefusedError,
    RpcClient,
    RpcError,
    TransientRpcError,
)
from exporter.metrics import Metrics
from tests.listener.scripted_node import Reply, ScriptedNode

FILTER = LogFilter(addresses=("0x" + "11" * 20, "0x" + "22" * 20), topics0=("0x" + "aa" * 32, "0x" + "bb" * 32))


@pytest.fixture
def node() -> Iterator[ScriptedNode]:
    server = ScriptedNode()
    yield server
    server.close()


@pytest.fixture
def client(node: ScriptedNode, metrics: Metrics) -> Iterator[RpcClient]:
    with requests.Session() as session:
        yield RpcClient(node.url, session, metrics, SystemClock(), timeout=0.5)


def _count(metrics: Metrics, method: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "blocktrust_listener_rpc_requests_total", {"method": method, "outcome": outcome}
    )
    return value or 0.0


def test_get_logs_is_one_call_for_all_addresses_and_topics(
    node: ScriptedNode, client: RpcClient, metrics: Metrics
) -> None:
    node.replies.append(Reply(result=[{"logIndex": "0x0"}]))
    assert client.get_logs(16, 31, FILTER) == [{"logIndex": "0x0"}]
    assert len(node.requests) == 1
    assert node.requests[0]["method"] == "eth_getLogs"
    assert node.requests[0]["params"] == [
        {
            "fromBlock": "0x10",
            "toBlock": "0x1f",
            "address": list(FILTER.addresses),
            "topics": [list(FILTER.topics0)],
        }
    ]
    assert _count(metrics, "eth_getLogs", "success") == 1
    assert (
        metrics.registry.get_sample_value("blocktrust_listener_rpc_duration_seconds_count", {"method": "eth_getLogs"})
        == 1
    )


def test_block_header_and_number(node: ScriptedNode, client: RpcClient) -> None:
    node.replies.extend(
        [
            Reply(result="0x2a"),
            Reply(
                result={
                    "number": "0x29",
                    "hash": "0x" + "01" * 32,
                    "parentHash": "0x" + "02" * 32,
                    "extraData": "0x" + "ff" * 97,
                }
            ),  # Polygon POA extra data: not our business
            Reply(result=None),
        ]
    )
    assert client.block_number() == 42
    header = client.block(41)
    assert header is not None and (header.number, header.hash) == (41, "0x" + "01" * 32)
    assert node.requests[1]["params"] == ["0x29", False]
    assert client.block("finalized") is None


@pytest.mark.parametrize(
    ("reply", "outcome", "retry_after"),
    [
        (Reply(status=429, body=b"slow down", headers={"Retry-After": "2"}), "rate_limited", 2.0),
        (Reply(status=503, body=b"<html>bad gateway</html>"), "http_error", None),
        (Reply(body=b'{"jsonrpc":"2.0","id":1,"result":[{"a":'), "invalid_response", None),
        (Reply(body=b"[]"), "invalid_response", None),
        (Reply(delay=1.0, result=[]), "timeout", None),
        (
            Reply(error={"code": -32005, "message": "daily request count exceeded, request rate limited"}),
            "rate_limited",
            None,
        ),
    ],
    ids=["429", "503", "truncated-json", "not-jsonrpc", "timeout", "rate-limit-error"],
)
def test_transient_failures(
    node: ScriptedNode, client: RpcClient, metrics: Metrics, reply: Reply, outcome: str, retry_after: float | None
) -> None:
    node.replies.append(reply)
    with pytest.raises(TransientRpcError) as info:
        client.get_logs(7, 7, FILTER)  # one block: a timeout of a wider range narrows it instead (below)
    assert info.value.outcome == outcome
    assert info.value.retry_after == retry_after
    assert "secret-key" not in str(info.value)
    assert _count(metrics, "eth_getLogs", outcome) == 1


def test_connection_refused_is_transient_and_hides_the_url(metrics: Metrics) -> None:
    with requests.Session() as session:
        client = RpcClient("http://127.0.0.1:9/v3/secret-key", session, metrics, SystemClock(), timeout=0.5)
        with pytest.raises(TransientRpcError) as info:
            client.block_number()
    assert info.value.outcome == "connection_error"
    assert "secret-key" not in str(info.value) and "127.0.0.1" not in str(info.value)


@pytest.mark.parametrize(
    ("error", "suggested"),
    [
        (
            {
                "code": -32005,
                "message": "query returned more than 10000 results",
                "data": {"from": "0x10", "to": "0x20", "limit": 10000},
            },
            (16, 32),
        ),
        (
            {
                "code": -32602,
                "message": "Log response size exceeded. You can make eth_getLogs requests with up to a 2K "
                "block range and no limit on the response size, or you can request any block range with a cap of 10K "
                "logs in the response. Based on your parameters, this block range should work: [0x10, 0x1f]",
            },
            (16, 31),
        ),
        ({"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"}, (16, 10_015)),  # the width named
        ({"code": -32000, "message": "query returned more than 10000 results"}, None),
        ({"code": -32600, "message": "block range too large"}, None),
    ],
    ids=["infura-data", "alchemy-message", "32614", "geth-message", "range-too-large"],
)
def test_range_refusals_carry_the_suggested_range(
    node: ScriptedNode, client: RpcClient, metrics: Metrics, error: dict[str, object], suggested: tuple[int, int] | None
) -> None:
    node.replies.append(Reply(error=error))
    with pytest.raises(RangeRefusedError) as info:
        client.get_logs(16, 100, FILTER)
    assert info.value.suggested == suggested
    assert _count(metrics, "eth_getLogs", "range_refused") == 1


def test_other_node_errors_are_permanent(node: ScriptedNode, client: RpcClient, metrics: Metrics) -> None:
    node.replies.append(Reply(error={"code": -32602, "message": "invalid argument 0: hex string without 0x prefix"}))
    with pytest.raises(RpcError, match="-32602"):
        client.get_logs(0, 1, FILTER)
    assert _count(metrics, "eth_getLogs", "rpc_error") == 1


def test_headers_in_one_batch_request(node: ScriptedNode, client: RpcClient, metrics: Metrics) -> None:
    def header(n: int) -> dict[str, str]:
        return {"number": hex(n), "hash": f"0x{n:064x}", "parentHash": f"0x{n - 1:064x}"}

    # One JSON array for the batch, deliberately out of order; ids are 1..3 on a fresh client.
    answers = [
        {"jsonrpc": "2.0", "id": 2, "result": header(8)},
        {"jsonrpc": "2.0", "id": 1, "result": header(7)},
        {"jsonrpc": "2.0", "id": 3, "result": None},
    ]
    node.replies.append(Reply(body=json.dumps(answers).encode()))
    found = client.blocks([7, 8, 9])
    assert [h.number if h else None for h in found] == [7, 8, None]  # answers matched by id, not order
    assert len(node.requests) == 1 and isinstance(node.requests[0], list) and len(node.requests[0]) == 3
    assert _count(metrics, "eth_getBlockByNumber", "success") == 3


def test_a_batch_answer_missing_an_element_is_transient(node: ScriptedNode, client: RpcClient) -> None:
    node.replies.append(Reply(body=b'[{"jsonrpc":"2.0","id":1,"result":null}]'))
    with pytest.raises(TransientRpcError, match="lacks 1 of 2"):
        client.blocks([1, 2])


def test_a_trickling_answer_ends_at_the_call_deadline(node: ScriptedNode, client: RpcClient, metrics: Metrics) -> None:
    # Each byte comes well within the 0.5 s read timeout, the whole answer would take ~4 s.
    node.replies.append(Reply(result=[{"logIndex": "0x" + "0" * 40}], trickle=0.05))
    with pytest.raises(TransientRpcError, match=r"not complete within 0\.5s") as info:
        client.get_logs(10, 10, FILTER)  # one block (a wider range is narrowed instead: see below)
    assert info.value.outcome == "timeout"
    assert _count(metrics, "eth_getLogs", "timeout") == 1


@pytest.mark.parametrize("send_length", [True, False], ids=["declared", "undeclared"])
def test_an_answer_over_the_byte_cap_is_transient(node: ScriptedNode, metrics: Metrics, send_length: bool) -> None:
    node.replies.append(Reply(result=[{"data": "0x" + "ab" * 100_000}], send_length=send_length))
    node.replies.append(Reply(result=[]))
    with requests.Session() as session:
        client = RpcClient(node.url, session, metrics, SystemClock(), timeout=5, max_response_bytes=150_000)
        with pytest.raises(TransientRpcError, match="150000") as info:
            client.get_logs(10, 10, FILTER)  # one block (a wider range is narrowed instead: see below)
        assert info.value.outcome == "oversize"
        assert client.get_logs(0, 10, FILTER) == []  # the next call works (a fresh connection)
    assert _count(metrics, "eth_getLogs", "oversize") == 1


def test_a_gzip_compressed_answer_is_decoded(node: ScriptedNode, client: RpcClient) -> None:
    """Hosted providers compress their answers (requests asks for it with Accept-Encoding)."""
    import gzip
    import json

    body = gzip.compress(json.dumps({"jsonrpc": "2.0", "id": 1, "result": "0x10"}).encode())
    node.replies.append(Reply(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}))
    assert client.block_number() == 16


@pytest.mark.parametrize(
    "reply",
    [
        Reply(delay=1.0, result=[]),
        Reply(result=[{"data": "0x" + "00" * 100_000}]),
        Reply(status=502, body=b"<html>502 Bad Gateway</html>"),
        Reply(status=504, body=b"upstream request timeout"),
    ],
    ids=["timeout", "oversize", "502", "504"],
)
def test_a_wide_range_that_times_out_or_overflows_is_a_range_refusal(
    node: ScriptedNode, metrics: Metrics, reply: Reply
) -> None:
    with requests.Session() as session:
        client = RpcClient(node.url, session, metrics, SystemClock(), timeout=0.5, max_response_bytes=150_000)
        node.replies.append(reply)
        with pytest.raises(RangeRefusedError) as info:
            client.get_logs(0, 10, FILTER)
        assert info.value.suggested is None  # no suggestion: the sizer halves


def test_a_batch_refused_as_a_whole_is_a_batch_refusal(node: ScriptedNode, client: RpcClient) -> None:
    refusal = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch requests are disabled"}}
    node.replies.append(Reply(body=json.dumps(refusal).encode()))  # one object for the whole batch
    with pytest.raises(BatchRefusedError):
        client.blocks([1, 2])
    node.replies.append(Reply(status=400, body=b"Bad Request"))
    with pytest.raises(BatchRefusedError):
        client.blocks([1, 2])


def test_retry_after_as_an_http_date_is_honoured_uncapped(node: ScriptedNode, metrics: Metrics) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    with requests.Session() as session:
        client = RpcClient(node.url, session, metrics, clock, timeout=2)
        node.replies.append(
            Reply(status=429, body=b"slow down", headers={"Retry-After": "Mon, 30 Nov 2026 12:02:00 GMT"})
        )
        with pytest.raises(TransientRpcError) as info:
            client.block_number()
    assert info.value.rate_limited
    assert info.value.retry_after == 120.0  # a date two minutes ahead; not cut to 30 s


def test_an_unreadable_retry_after_date_is_a_plain_rate_limit(node: ScriptedNode, client: RpcClient) -> None:
    # A year too large for a datetime once raised OverflowError out of the client (no failover, no retry).
    node.replies.append(
        Reply(status=429, body=b"slow down", headers={"Retry-After": "Mon, 30 Nov 99999999999999999999 00:00:00 GMT"})
    )
    with pytest.raises(TransientRpcError) as info:
        client.block_number()
    assert info.value.rate_limited and info.value.retry_after is None


def test_a_batch_over_the_node_limit_answered_with_one_error_element_is_a_batch_refusal(
    node: ScriptedNode, client: RpcClient
) -> None:
    # geth (and bor, erigon) answer a batch over --rpc.batch-request-limit with a list holding one
    # error that carries the first call's id; it once read as "batch answer lacks 1 of 2", retried for ever.
    too_large = [{"jsonrpc": "2.0", "id": 1, "error": {"code": -32600, "message": "batch too large"}}]
    node.replies.append(Reply(body=json.dumps(too_large).encode()))
    with pytest.raises(BatchRefusedError):
        client.blocks([1, 2])


def test_a_batch_refusal_in_every_element_is_a_batch_refusal(node: ScriptedNode, client: RpcClient) -> None:
    # A refusal repeated in each element (ids 1 and 2 answered) once read as a permanent node error.
    error = {"code": -32600, "message": "Batch of more than 3 requests are not allowed on free tier"}
    node.replies.append(Reply(body=json.dumps([{"jsonrpc": "2.0", "id": i, "error": error} for i in (1, 2)]).encode()))
    with pytest.raises(BatchRefusedError):
        client.blocks([1, 2])


def test_batch_answers_with_ids_echoed_as_strings_are_matched(node: ScriptedNode, client: RpcClient) -> None:
    def header(n: int) -> dict[str, str]:
        return {"number": hex(n), "hash": f"0x{n:064x}", "parentHash": f"0x{n - 1:064x}"}

    answers = [{"jsonrpc": "2.0", "id": "2", "result": header(8)}, {"jsonrpc": "2.0", "id": "1", "result": header(7)}]
    node.replies.append(Reply(body=json.dumps(answers).encode()))
    assert [h.number if h else None for h in client.blocks([7, 8])] == [7, 8]


@pytest.mark.parametrize("entry", [None, "0x" + "ab" * 32, ["0x1"]])
def test_a_get_logs_answer_with_an_entry_that_is_not_a_log_object_is_transient(
    node: ScriptedNode, client: RpcClient, entry: object
) -> None:
    # Such an entry once reached the fetcher, whose hash checks raised AttributeError out of the poll
    # (and the decoder would have skipped it as malformed: a lost log had the node meant one).
    log = {"blockNumber": "0x1", "blockHash": "0x" + "00" * 32, "logIndex": "0x0", "topics": [], "data": "0x"}
    node.replies.append(Reply(result=[log, entry]))
    with pytest.raises(TransientRpcError, match="not a log object"):
        client.get_logs(0, 1, FILTER)


@pytest.mark.parametrize(
    "reply",
    [
        # The headers promise more than comes before the connection closes (IncompleteRead).
        Reply(body=b'{"jsonrpc":"2.0","id":1,"result":[{"a', headers={"Content-Length": "100000"}, send_length=False),
        # No length: the JSON simply stops short where a proxy cut it.
        Reply(body=b'{"jsonrpc":"2.0","id":1,"result":[{"address":"0x', send_length=False),
    ],
    ids=["incomplete_body", "json_stops_short"],
)
def test_a_wide_get_logs_whose_answer_is_cut_off_is_a_range_refusal(
    node: ScriptedNode, client: RpcClient, metrics: Metrics, reply: Reply
) -> None:
    # Once a plain transient error: the same wide range was asked again, cut off again, for ever.
    node.replies.append(reply)
    with pytest.raises(RangeRefusedError):
        client.get_logs(0, 10, FILTER)
    node.replies.append(reply)
    with pytest.raises(TransientRpcError) as info:  # one block: nothing narrower to ask for
        client.get_logs(5, 5, FILTER)
    assert info.value.cut_off
    node.replies.append(reply)
    with pytest.raises(TransientRpcError):  # any other call: try again
        client.block_number()


@pytest.mark.parametrize(
    "message",
    [
        "invalid project id secret-key for this network",  # the key echoed as it is in the path
        "no access for https://127.0.0.1/v3/secret-key",  # the whole URL echoed
    ],
)
def test_a_provider_message_echoing_the_api_key_is_masked(node: ScriptedNode, client: RpcClient, message: str) -> None:
    # The reason reaches logs, the status page and chain check rows; the URL's key must not.
    node.replies.append(Reply(error={"code": -32002, "message": message}))
    with pytest.raises(RpcError) as info:
        client.block_number()
    node.replies.append(Reply(status=403, error={"code": -32002, "message": message}))
    with pytest.raises(RpcError) as again:
        client.block_number()
    for exc in (info.value, again.value):
        assert "secret-key" not in str(exc) and "***" in str(exc)


def test_a_header_of_another_block_than_the_one_asked_for_is_transient(node: ScriptedNode, client: RpcClient) -> None:
    # A caching proxy answering "latest" (block 50) for block 41: stored as block 41's hash, it would
    # later look like a reorg of block 41 (events rolled back and read again).
    block_50 = {"number": "0x32", "hash": "0x" + "05" * 32, "parentHash": "0x" + "04" * 32}
    node.replies.append(Reply(result=block_50))
    with pytest.raises(TransientRpcError, match="asked for block 41, got block 50"):
        client.block(41)
    answers = [{"jsonrpc": "2.0", "id": 2, "result": block_50}, {"jsonrpc": "2.0", "id": 3, "result": block_50}]
    node.replies.append(Reply(body=json.dumps(answers).encode()))
    with pytest.raises(TransientRpcError, match="asked for block 49, got block 50"):
        client.blocks([49, 50])

"""The RPC fault proxy forwards to a real anvil and injects each fault it promises, countably and
reproducibly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from exporter.demo.devchain import DevChain
from tests.support.rpc_fault_proxy import Fault, RpcFaultProxy

pytestmark = pytest.mark.anvil

SUGGESTED = re.compile(r"Try with this block range \[(0x[0-9a-f]+), (0x[0-9a-f]+)\]\.$")


@pytest.fixture
def proxy(chain: DevChain) -> Iterator[RpcFaultProxy]:
    with RpcFaultProxy(chain.rpc_url, seed=1, hang_seconds=10) as started:
        yield started


def call(url: str, method: str, params: list[Any] | None = None, timeout: float = 10) -> requests.Response:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}
    return requests.post(url, json=body, timeout=timeout)


def get_logs(url: str, first: int, last: int) -> requests.Response:
    return call(url, "eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(last)}])


def test_without_a_schedule_every_call_is_forwarded(chain: DevChain, proxy: RpcFaultProxy) -> None:
    chain.emit_each_event()
    assert call(proxy.url, "eth_blockNumber").json()["result"] == hex(chain.head())
    assert len(get_logs(proxy.url, 0, chain.head()).json()["result"]) == 7
    assert proxy.forwarded == {"eth_blockNumber": 1, "eth_getLogs": 1}
    assert proxy.total_injected == 0


def test_rate_limit_is_a_429_with_retry_after(proxy: RpcFaultProxy) -> None:
    proxy.script(Fault.RATE_LIMIT)
    response = call(proxy.url, "eth_blockNumber")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert call(proxy.url, "eth_blockNumber").status_code == 200
    assert proxy.injected == {Fault.RATE_LIMIT: 1} and proxy.forwarded["eth_blockNumber"] == 1


def test_server_error_is_a_5xx_without_json(proxy: RpcFaultProxy) -> None:
    proxy.script(Fault.SERVER_ERROR)
    response = call(proxy.url, "eth_blockNumber")
    assert 500 <= response.status_code <= 504
    with pytest.raises(ValueError):
        response.json()
    assert proxy.injected == {Fault.SERVER_ERROR: 1}


def test_timeout_holds_the_request_past_the_client_timeout(proxy: RpcFaultProxy) -> None:
    proxy.script(Fault.TIMEOUT)
    with pytest.raises(requests.Timeout):
        call(proxy.url, "eth_blockNumber", timeout=0.3)
    assert call(proxy.url, "eth_blockNumber").status_code == 200
    assert proxy.injected == {Fault.TIMEOUT: 1}


def test_truncated_json_is_a_complete_200_with_half_a_body(proxy: RpcFaultProxy) -> None:
    proxy.script(Fault.TRUNCATED_JSON)
    response = call(proxy.url, "eth_chainId")
    assert response.status_code == 200 and response.content.startswith(b'{"jsonrpc"')
    with pytest.raises(ValueError):
        response.json()
    assert proxy.injected == {Fault.TRUNCATED_JSON: 1}


def test_disconnect_closes_the_connection_mid_body(proxy: RpcFaultProxy) -> None:
    proxy.script(Fault.DISCONNECT)
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        call(proxy.url, "eth_chainId")
    assert proxy.injected == {Fault.DISCONNECT: 1}


@pytest.mark.parametrize(
    ("fault", "code", "suggests"),
    [
        (Fault.LOGS_TOO_MANY_WITH_RANGE, -32005, True),
        (Fault.LOGS_TOO_MANY, -32005, False),
        (Fault.RANGE_TOO_LARGE, -32614, False),
    ],
)
def test_logs_refusals_hit_only_eth_get_logs(
    chain: DevChain, proxy: RpcFaultProxy, fault: Fault, code: int, suggests: bool
) -> None:
    chain.mine(0x30)
    proxy.script(fault)
    assert "result" in call(proxy.url, "eth_blockNumber").json()  # not a getLogs: passes
    error = get_logs(proxy.url, 0x10, 0x30).json()["error"]
    assert error["code"] == code
    match = SUGGESTED.search(error["message"])
    assert bool(match) == suggests
    if match:
        assert (match.group(1), match.group(2)) == ("0x10", "0x20")
    if code == -32005:
        assert error["message"].startswith("query returned more than 10000 results.")
    assert "result" in get_logs(proxy.url, 0x10, 0x30).json()
    assert proxy.injected == {fault: 1}


def test_script_can_target_a_method_and_runs_in_order(proxy: RpcFaultProxy) -> None:
    proxy.script(Fault.RATE_LIMIT, Fault.SERVER_ERROR, methods=["eth_getBlockByNumber"])
    assert call(proxy.url, "eth_blockNumber").status_code == 200
    assert call(proxy.url, "eth_getBlockByNumber", ["latest", False]).status_code == 429
    assert call(proxy.url, "eth_getBlockByNumber", ["latest", False]).status_code >= 500
    assert call(proxy.url, "eth_getBlockByNumber", ["latest", False]).status_code == 200
    assert proxy.pending_script == 0


def test_a_batch_keeps_its_other_answers_when_get_logs_is_refused(proxy: RpcFaultProxy) -> None:
    proxy.script(Fault.RANGE_TOO_LARGE)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_getLogs", "params": [{"fromBlock": "0x0", "toBlock": "0x1"}]},
    ]
    answers = {a["id"]: a for a in requests.post(proxy.url, json=batch, timeout=10).json()}
    assert "result" in answers[1]
    assert answers[2]["error"]["code"] == -32614 and "result" not in answers[2]


def test_provider_limits_refuse_like_a_real_provider_and_suggest_a_range_that_fits(
    chain: DevChain, proxy: RpcFaultProxy
) -> None:
    first = chain.head() + 1
    for _ in range(6):
        chain.emit_each_event()  # 7 blocks, one log each
    last = chain.head()
    proxy.max_logs_results = 10
    error = get_logs(proxy.url, first, last).json()["error"]
    match = SUGGESTED.search(error["message"])
    assert error["code"] == -32005 and match
    start, end = int(match.group(1), 16), int(match.group(2), 16)
    assert (start, end) == (first, first + 9)
    assert len(get_logs(proxy.url, start, end).json()["result"]) == 10
    proxy.max_logs_range = 5
    assert get_logs(proxy.url, first, first + 5).json()["error"]["code"] == -32614
    assert len(get_logs(proxy.url, first, first + 4).json()["result"]) == 5
    assert proxy.injected == {Fault.LOGS_TOO_MANY_WITH_RANGE: 1, Fault.RANGE_TOO_LARGE: 1}


def test_random_faults_are_reproducible_from_the_seed(chain: DevChain) -> None:
    rates = {Fault.RATE_LIMIT: 0.2, Fault.SERVER_ERROR: 0.1, Fault.LOGS_TOO_MANY: 0.2}

    def outcomes(seed: int) -> list[int]:
        with RpcFaultProxy(chain.rpc_url, seed=seed) as proxy:
            proxy.set_rates(rates)
            seen = [call(proxy.url, "eth_blockNumber").status_code for _ in range(60)]
            # LOGS_TOO_MANY draws cannot hit eth_blockNumber: they pass, and are not counted.
            assert proxy.total_injected == sum(code != 200 for code in seen)
            assert set(proxy.injected) <= {Fault.RATE_LIMIT, Fault.SERVER_ERROR}
            return seen

    first, again, other = outcomes(5), outcomes(5), outcomes(6)
    assert first == again
    assert first != other
    assert 0 < sum(code != 200 for code in first) < 60


def test_rates_above_one_are_refused(proxy: RpcFaultProxy) -> None:
    with pytest.raises(ValueError):
        proxy.set_rates({Fault.RATE_LIMIT: 0.6, Fault.TIMEOUT: 0.6})

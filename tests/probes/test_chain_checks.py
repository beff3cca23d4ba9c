"""The chain kinds against a real anvil with the project's own contracts (issue #15, chain checks):
``chain.head`` fails when anvil stops mining and passes when it resumes, ``eth_call`` checks judge
the decoded result of FailSafe.triggered and IdentityNFT.nextTokenId (a counter that must not go
back), and ``balance`` fails below its threshold and on a short runway, saying the runway."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.clock import Clock, FakeClock, SystemClock
from exporter.config import Config, ConfigError
from exporter.demo.devchain import Call, DevChain, calldata
from exporter.metrics import Metrics
from exporter.probes.runner import CheckRound, resolve_checks
from exporter.runtime import chain_checks_reader
from exporter.store.base import CheckResult

WALLET = "0x00000000000000000000000000000000000bEEF1"
COIN = 10**18


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevChain]:
    with DevChain.start(tmp_path_factory.mktemp("anvil"), state_history=16) as started:
        started.write_contracts_config(started.log_path.parent / "contracts_config.json")
        yield started


def _round(
    chain: DevChain, items: list[dict[str, Any]], clock: Clock, contracts: Path | None = None
) -> Callable[[], dict[str, CheckResult]]:
    """A CheckRound of ``items`` only, wired as the runtime wires it; returns a run-once function."""
    config = Config.model_validate(
        {
            "listener": {
                "rpc_url": chain.rpc_url,
                "contracts_config": str(contracts or chain.log_path.parent / "contracts_config.json"),
                "rpc_timeout": "5s",
            },
            "checks": {"include_defaults": False, "items": items, "interval": "10s", "timeout": "5s"},
        }
    )
    metrics = Metrics(CollectorRegistry(), slo_latency_seconds=0.8, version="test")
    session = requests.Session()
    reader = chain_checks_reader(config, resolve_checks(config), metrics, clock, session)
    assert reader is not None
    checks = CheckRound(config, metrics=metrics, record=lambda _: None, clock=clock, chain=reader)

    def run() -> dict[str, CheckResult]:
        return {result.check_name: result for result in checks.run_once()}

    return run


def _until(run: Callable[[], dict[str, CheckResult]], name: str, ok: bool, timeout: float = 20.0) -> CheckResult:
    """Run rounds until check ``name`` is ``ok``; the last result (bounded polling of a real chain)."""
    deadline = time.monotonic() + timeout
    while True:
        result = run()[name]
        if result.ok is ok or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_chain_head_fails_when_anvil_stops_mining_and_passes_when_it_resumes(chain: DevChain) -> None:
    run = _round(chain, [{"name": "chain.head", "kind": "chain.head", "max_age": "3s"}], SystemClock())
    chain.rpc("evm_setIntervalMining", [1])
    try:
        fresh = _until(run, "chain.head", ok=True)
        assert fresh.ok, fresh.details
        chain.rpc("evm_setAutomine", [False])
        chain.rpc("evm_setIntervalMining", [0])  # no more blocks
        stalled = _until(run, "chain.head", ok=False)
        assert not stalled.ok and stalled.details["error"] == "stale_head", stalled.details
        assert "is not moving" in stalled.details["reason"]
        chain.rpc("evm_setIntervalMining", [1])  # mining resumes
        resumed = _until(run, "chain.head", ok=True)
        assert resumed.ok, resumed.details
        assert resumed.details["head_block"] > stalled.details["head_block"]
    finally:
        chain.rpc("evm_setIntervalMining", [0])
        chain.rpc("evm_setAutomine", [True])


def test_eth_call_checks_judge_the_decoded_result_and_a_counter_that_goes_back(chain: DevChain) -> None:
    token = 7_000 + chain.head()
    run = _round(
        chain,
        [
            {
                "name": "failsafe.token",
                "kind": "eth_call",
                "contract": "FailSafe",
                "function": "triggered",
                "args": [token],
                "conditions": ["[BODY] == false"],
            },
            {
                "name": "nft.counter",
                "kind": "eth_call",
                "contract": "IdentityNFT",
                "function": "nextTokenId()",
                "conditions": ["[BODY] >= 1"],
                "non_decreasing": ["[BODY]"],
            },
        ],
        FakeClock(),
    )
    before = chain.snapshot()
    first = run()
    assert first["failsafe.token"].ok, first["failsafe.token"].details
    assert first["nft.counter"].ok, first["nft.counter"].details
    counter = int(first["nft.counter"].details["result"])

    nft, failsafe = chain.addresses["IdentityNFT"], chain.addresses["FailSafe"]
    chain.send(Call(nft, calldata("mint(address)", ["address"], [chain.account])))
    chain.send(Call(failsafe, calldata("trigger(uint256)", ["uint256"], [token])))
    second = run()
    assert int(second["nft.counter"].details["result"]) == counter + 1 and second["nft.counter"].ok
    triggered = second["failsafe.token"]
    assert not triggered.ok and triggered.details["error"] == "condition_failed", triggered.details
    assert triggered.details["reason"] == "FailSafe.triggered(uint256): [BODY] == false: [BODY] is true"

    chain.revert(before)  # the chain forgets the mint: the counter goes back
    third = run()
    assert third["failsafe.token"].ok
    went_back = third["nft.counter"]
    assert not went_back.ok and went_back.details["error"] == "went_back", went_back.details
    assert f"went back to {counter} (it was {counter + 1})" in went_back.details["reason"]


def test_an_eth_call_to_an_address_without_the_contract_fails_saying_so(chain: DevChain) -> None:
    # The project's ABIs at addresses where nothing is deployed: the node answers "0x".
    fake = Path(__file__).parents[1] / "data" / "contracts_fake_addresses.json"
    item = {"name": "nft.counter", "kind": "eth_call", "contract": "IdentityNFT", "function": "nextTokenId"}
    result = _round(chain, [item], FakeClock(), contracts=fake)()["nft.counter"]
    assert not result.ok and result.details["error"] == "wrong_shape", result.details
    assert result.details["reason"] == (
        "eth_call nextTokenId(): cannot decode the output: no output (is there a contract at this address?)"
    )


def test_balance_fails_below_its_threshold_and_on_a_short_runway_and_says_the_runway(chain: DevChain) -> None:
    clock = FakeClock(datetime(2026, 11, 30, tzinfo=UTC))
    item = {"name": "wallet.gas", "kind": "balance", "address": WALLET, "min_balance": 5, "min_runway": "12h"}
    run = _round(chain, [item], clock)

    def at(coins: int, hours: float) -> CheckResult:
        chain.rpc("anvil_setBalance", [WALLET, hex(coins * COIN)])
        clock.advance(hours * 3600)
        return run()["wallet.gas"]

    first = at(10, 0)
    assert first.ok and first.details["reason"] == "balance 10 POL (min 5); runway unknown: first sample"
    spent = at(9, 1)  # 1 POL an hour: 9 h left, below the 12 h asked for
    assert not spent.ok and spent.details["error"] == "short_runway", spent.details
    assert spent.details["reason"] == (
        "balance 9 POL (min 5); runway 9 h at 24/day (spend over the last 60 min), below 12 h"
    )
    assert spent.details["runway_seconds"] == 9 * 3600 and spent.details["balance_wei"] == str(9 * COIN)
    topped_up = at(100, 1)  # a top-up is not negative spend: 1 POL in 2 h
    assert topped_up.ok, topped_up.details
    assert topped_up.details["reason"] == "balance 100 POL (min 5); runway 8.33 d at 12/day (spend over the last 2 h)"
    low = at(4, 1)
    assert not low.ok and low.details["error"] == "low_balance"
    assert low.details["reason"].startswith("balance 4 POL (min 5); runway ")


def test_an_eth_call_of_a_function_the_abi_lacks_is_refused_when_the_round_is_built(chain: DevChain) -> None:
    """(exit 2 at start: ``build_runtime`` turns the ConfigError into a usage error)."""
    with pytest.raises(ConfigError, match=r"checks: x: function: 'paused' of FailSafe: No element named `paused`"):
        _round(chain, [{"name": "x", "kind": "eth_call", "contract": "FailSafe", "function": "paused"}], FakeClock())

"""Contract-event rules end to end on a real anvil chain: the listener stores, the rules runner reads
the store and notifies through the outbox to loopback Slack, Telegram and webhook receivers, on both
stores. Restarts (a new runner and notifier on the same store) send nothing twice; reorgs before the
confirmation depth send nothing, or a provisional firing then its retraction."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exporter.alerting.event_rules import compile_rules
from exporter.alerting.rule_runner import EventRuleRunner
from exporter.clock import FakeClock
from exporter.config import AlertingSettings
from exporter.demo.devchain import Call, DevChain, calldata
from exporter.listener import Listener
from exporter.listener.contracts import load_contracts
from exporter.store import Store
from tests.alerting.kit import CHANNELS, AlertingProcess, channel_receivers, channel_settings
from tests.listener.conftest import listener_settings
from tests.support.exporter_process import ExporterProcess
from tests.support.http_receiver import HttpReceiver

TOKEN = 424242


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[DevChain]:
    with DevChain.start(tmp_path / "anvil") as started:
        yield started


@pytest.fixture
def peers() -> Iterator[dict[str, HttpReceiver]]:
    with channel_receivers() as receivers:
        yield receivers


class Deployment:
    """A listener and a rules runner with its notifier, as one exporter process wires them."""

    def __init__(self, store: Store, store_url: str, contracts: Path, chain: DevChain, settings: AlertingSettings):
        self.clock = FakeClock(datetime.now(UTC))
        self.process = AlertingProcess(store_url, settings, self.clock)
        catalogue = {
            s.stored_type: {i.name: i.abi_type for i in s.inputs}
            for s in load_contracts(contracts, listener_settings(chain.rpc_url, contracts).event_types)
        }
        self.runner = EventRuleRunner(
            compile_rules(settings, catalogue),
            self.process.store,
            self.process.notifier,
            self.clock,
            self.process.metrics,
            finalized_depth=2,
        )
        self.listener = Listener(listener_settings(chain.rpc_url, contracts), store, self.process.metrics, self.clock)

    def round(self) -> None:
        """One listener poll, then one rules run, then the channels' deliveries."""
        assert self.listener.poll_once().status in ("ingested", "idle")
        self.runner.run_once()
        self.process.delivered()

    def notices(self, rule: str, kind: str) -> float:
        return self.process.value("blocktrust_event_rule_notices_total", rule=rule, kind=kind)

    def close(self) -> None:
        self.listener.close()
        self.process.close()


def _settings(peers: dict[str, HttpReceiver], rules: list[dict[str, Any]] | None = None) -> AlertingSettings:
    overrides: dict[str, Any] = {} if rules is None else {"event_rules": rules}
    return channel_settings(peers["slack"].url, peers["telegram"].url, peers["webhook"].url, **overrides)


def _trigger(chain: DevChain, token: int) -> Call:
    return Call(chain.addresses["FailSafe"], calldata("trigger(uint256)", ["uint256"], [token]))


def _mint(chain: DevChain) -> Call:
    return Call(chain.addresses["IdentityNFT"], calldata("mint(address)", ["address"], [chain.account]))


def _texts(peers: dict[str, HttpReceiver]) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for name in CHANNELS:
        bodies = [r.json() for r in peers[name].requests]
        texts[name] = [body["text"] for body in bodies]
    return texts


def test_failsafe_notifies_once_per_channel_and_threshold_once_across_a_restart(
    chain: DevChain, store: Store, store_url: str, peers: dict[str, HttpReceiver], tmp_path: Path
) -> None:
    contracts = chain.write_contracts_config(tmp_path / "contracts_config.json")
    mints: dict[str, Any] = {"name": "mints", "event": "Minted", "title": "Mint burst"}
    mints |= {"message": "token {args.tokenId}", "threshold": 3, "within": "10m", "cooldown": "1h", "confirmations": 0}
    default_rule = AlertingSettings().event_rules[0].model_dump(by_alias=True)
    settings = _settings(peers, [default_rule, mints])
    first = Deployment(store, store_url, contracts, chain, settings)
    try:
        first.round()  # the rules start after what is stored already
        chain.send(_trigger(chain, TOKEN))
        chain.mine(2)  # "finalized": two blocks deep here
        first.round()
        texts = _texts(peers)
        for name in CHANNELS:
            assert len(texts[name]) == 1, name
            assert "🚨 [CRIT] FailSafe triggered" in texts[name][0]
            assert str(TOKEN) in texts[name][0]
            assert chain.account.lower() in texts[name][0].lower()
        assert peers["webhook"].requests[0].json()["severity"] == "crit"
        assert first.notices("failsafe", "firing") == 1
        for _ in range(5):
            chain.send(_mint(chain))
        first.round()
    finally:
        first.close()
    # A restart: a new process on the same store sees the same events and sends nothing again.
    second = Deployment(store, store_url, contracts, chain, settings)
    try:
        second.round()
        for _ in range(5):
            chain.send(_mint(chain))
        second.round()
        assert second.notices("failsafe", "firing") == 0
        assert second.notices("mints", "firing") == 0  # in the cooldown
    finally:
        second.close()
    texts = _texts(peers)
    for name in CHANNELS:
        assert len(texts[name]) == 2, (name, texts[name])
        assert sum("Mint burst" in text for text in texts[name]) == 1
        assert sum("FailSafe triggered" in text for text in texts[name]) == 1


@pytest.mark.parametrize("mode", ["confirmed", "provisional"])
def test_event_reorged_out_before_its_depth(
    chain: DevChain, store: Store, store_url: str, peers: dict[str, HttpReceiver], tmp_path: Path, mode: str
) -> None:
    contracts = chain.write_contracts_config(tmp_path / "contracts_config.json")
    rule: dict[str, Any] = {"name": "failsafe", "event": "FailSafeTriggered", "severity": "crit"}
    rule["title"] = "FailSafe triggered"
    rule |= {"message": "token {args.tokenId} by {args.user}", "confirmations": 5, "mode": mode}
    deployment = Deployment(store, store_url, contracts, chain, _settings(peers, [rule]))
    try:
        chain.mine(3)
        deployment.round()
        chain.send(_trigger(chain, TOKEN))
        deployment.round()  # one block deep: not confirmed yet
        chain.reorg(2)  # the trigger's block is replaced by an empty one
        chain.mine(10)
        deployment.round()  # the listener rolls back; the rule runs
        deployment.round()
        states = [(r.json()["state"], r.json()["provisional"]) for r in peers["webhook"].requests]
        if mode == "confirmed":
            assert states == []
            assert (deployment.notices("failsafe", "firing"), deployment.notices("failsafe", "retracted")) == (0, 0)
        else:
            assert states == [("firing", True), ("retracted", False)]
            assert (deployment.notices("failsafe", "firing"), deployment.notices("failsafe", "retracted")) == (1, 1)
            slack = [r.json()["text"] for r in peers["slack"].requests]
            assert slack[0].startswith("🚨 [CRIT] Provisional: FailSafe triggered")
            assert slack[1].startswith("↩️ [RETRACTED] FailSafe triggered") and str(TOKEN) in slack[1]
    finally:
        deployment.close()


@pytest.mark.slow
def test_the_exporter_process_notifies_a_finalized_failsafe_once_across_a_restart(
    chain: DevChain, sqlite_url: str, tmp_path: Path
) -> None:
    """The wiring of ``listen``: the default rule, ``finalized`` from anvil's own tag (head - 64). One
    store only: the stores' part is tested on both above; this is the process's wiring (and slow)."""
    contracts = chain.write_contracts_config(tmp_path / "contracts_config.json")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"listener:\n  rpc_url: {chain.rpc_url}\n  contracts_config: {contracts}\n  start_block: 0\n"
        "  poll_interval: 1s\n  max_lag: 30s\n"
    )
    with HttpReceiver() as webhook:
        env = {"DATABASE_URL": sqlite_url, "ALERT_WEBHOOK_URL": f"{webhook.url}/hook"}
        with ExporterProcess(["listen", "--config", str(config)], env=env, cwd=tmp_path) as exporter:
            exporter.wait_ready()
            _wait_for(lambda: "event rule failsafe: starts after event" in exporter.read_log(), exporter)
            chain.send(_trigger(chain, TOKEN))
            chain.mine(70)  # past anvil's finalized block
            (notice,) = webhook.wait_for(1, timeout=15)
            assert exporter.stop()[0] == 0
        body = notice.json()
        assert (body["check"], body["severity"], body["state"]) == ("event_rule.failsafe", "crit", "firing")
        assert str(TOKEN) in body["detail"] and chain.account.lower() in body["detail"].lower()
        with ExporterProcess(["listen", "--config", str(config)], env=env, cwd=tmp_path) as again:
            again.wait_ready()
            chain.mine(5)
            _wait_for(lambda: "blocktrust_event_rule_notices_total" in again.metrics(), again)
            time.sleep(2)  # two rule runs (every poll_interval): none may notify again
            metrics = again.metrics()
            assert again.stop()[0] == 0
        assert 'blocktrust_event_rule_notices_total{kind="firing",rule="failsafe"} 0.0' in metrics
        assert len(webhook.requests) == 1


def _wait_for(condition: Callable[[], bool], exporter: ExporterProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, exporter.read_log()
        time.sleep(0.1)

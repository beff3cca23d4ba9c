"""Issue 15, acceptance 3 end to end: a real anvil, a real ``run`` process (listener in-process,
``POLYGON_RPC_URL`` at anvil), loopback receivers for Slack, Telegram and a webhook.

anvil stops mining: ``chain.head`` fails and is notified once. The listener, caught up and idle, keeps
writing its heartbeat, so ``listener.lag`` keeps passing (it is not stuck); with ``confirmations`` its
processed block stays that many blocks behind a head that no longer moves, so ``listener.progress``
fails: its incident is recorded with ``suppressed_by = chain.head`` and nobody is told. Mining resumes:
every incident resolves, and only ``chain.head``'s end is announced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from exporter.demo.devchain import DevChain
from tests.alerting.kit import TELEGRAM_TOKEN, channel_receivers, table_rows
from tests.support.exporter_process import ExporterProcess
from tests.support.http_receiver import HttpReceiver

CONFIRMATIONS = 2  # the listener stays this many blocks behind the head: a stalled head stalls it too


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevChain]:
    """One anvil for both backends' runs (each test leaves it mining on each transaction again)."""
    with DevChain.start(tmp_path_factory.mktemp("anvil")) as started:
        yield started


def _config(contracts: Path, receivers: dict[str, HttpReceiver]) -> str:
    # chain.head fails once the head is 4 s old and notifies at its first failure; listener.progress
    # needs 8 failed rounds (at least 8 s), so its incident opens while chain.head already fails, as
    # with the defaults (max_age 60s against two 60 s rounds). The RPC URL comes from POLYGON_RPC_URL.
    return f"""
checks:
  interval: 1s
  timeout: 1s
  include_defaults: false
  items:
    - {{name: chain.head, kind: chain.head, max_age: 4s, failure_threshold: 1}}
    - {{name: listener.lag, kind: listener.lag}}
    - {{name: listener.progress, kind: listener.progress, failure_threshold: 8}}
listener:
  contracts_config: {contracts}
  start_block: 0
  poll_interval: 1s
  max_lag: 4s
  confirmations: {CONFIRMATIONS}
alerting:
  backoff: 1s
  slack: {{webhook_url: "{receivers["slack"].url}/services/T000/B000/slacksecret"}}
  telegram: {{bot_token: "{TELEGRAM_TOKEN}", chat_id: "-100123", base_url: "{receivers["telegram"].url}"}}
  webhook: {{url: "{receivers["webhook"].url}/hook"}}
"""


def _notices(receivers: dict[str, HttpReceiver]) -> list[tuple[str, str]]:
    """What the webhook was told, as (check, state); Slack and Telegram must have been told as often."""
    told = [(r.json()["check"], r.json()["state"]) for r in receivers["webhook"].requests]
    assert len(receivers["slack"].requests) == len(receivers["telegram"].requests) == len(told)
    return told


def _latest(store_url: str) -> dict[str, tuple[bool, str]]:
    """Each check's newest result row: (ok, details' error or '')."""
    latest: dict[str, tuple[bool, str]] = {}
    for name, ok, details in table_rows(store_url, "monitor_metrics", "check_name, ok, details"):
        body = json.loads(details) if isinstance(details, str) else details
        latest[name] = (bool(ok), str(body.get("error") or ""))
    return latest


def _rounds(store_url: str) -> int:
    """How many chain.head results are recorded (one per check round)."""
    rows = table_rows(store_url, "monitor_metrics", "check_name")
    return sum(1 for (name,) in rows if name == "chain.head")


def _incidents(store_url: str) -> list[tuple[str, str | None, bool, bool]]:
    """(check, suppressed_by, notified, resolved) of every incident, oldest first."""
    rows = table_rows(store_url, "monitor_incidents", "check_name, suppressed_by, last_notified_at, resolved_at")
    return [(name, by, notified is not None, resolved is not None) for name, by, notified, resolved in rows]


def _until(condition: Callable[[], bool], exporter: ExporterProcess, what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert exporter.proc.poll() is None, exporter.read_log()
        assert time.monotonic() < deadline, f"{what}, not within {timeout:g}s:\n{exporter.read_log()[-4000:]}"
        time.sleep(0.25)


@pytest.mark.slow
def test_a_chain_that_stops_mining_notifies_chain_head_only_and_every_incident_resolves(
    chain: DevChain, store_url: str, tmp_path: Path
) -> None:
    contracts = chain.write_contracts_config(tmp_path / "contracts_config.json")
    chain.rpc("evm_setIntervalMining", [1])
    try:
        _stall_and_resume(chain, contracts, store_url, tmp_path)
    finally:
        chain.rpc("evm_setIntervalMining", [0])
        chain.rpc("evm_setAutomine", [True])


def _stall_and_resume(chain: DevChain, contracts: Path, store_url: str, tmp_path: Path) -> None:
    with channel_receivers() as receivers:
        config = tmp_path / "config.yaml"
        config.write_text(_config(contracts, receivers))
        env = {"DATABASE_URL": store_url, "POLYGON_RPC_URL": chain.rpc_url}
        with ExporterProcess(["run", "--config", str(config)], env=env, cwd=tmp_path) as exporter:
            exporter.wait_ready()
            # Healthy first: every check has passed since the listener caught up.
            _until(lambda: all(ok for ok, _ in _latest(store_url).values()), exporter, "all checks passing")
            _until(lambda: len(_latest(store_url)) == 4, exporter, "a result of each check and a heartbeat")

            chain.rpc("evm_setAutomine", [False])
            chain.rpc("evm_setIntervalMining", [0])  # no more blocks
            _until(
                lambda: [name for name, *_ in _incidents(store_url)] == ["chain.head", "listener.progress"],
                exporter,
                "chain.head and listener.progress incidents",
            )
            # chain.head's notice reaches every channel; listener.progress's is held back.
            receivers["webhook"].wait_for(1, timeout=15)
            latest = _latest(store_url)
            assert latest["chain.head"] == (False, "stale_head")
            assert latest["listener.progress"] == (False, "stalled")
            assert latest["listener.lag"] == (True, "")  # the idle listener's heartbeat is still fresh
            assert _incidents(store_url) == [
                ("chain.head", None, True, False),
                ("listener.progress", "chain.head", False, False),
            ]
            metrics = requests.get(exporter.url + "/metrics", timeout=5).text
            assert 'blocktrust_alert_notices_suppressed_total{check="listener.progress"} 1.0' in metrics

            chain.rpc("evm_setIntervalMining", [1])  # mining resumes
            _until(lambda: all(resolved for *_, resolved in _incidents(store_url)), exporter, "every incident resolved")
            receivers["webhook"].wait_for(2, timeout=15)
            # Three more rounds recorded (and so observed) after that: nothing else may be sent.
            rounds = _rounds(store_url)
            _until(lambda: _rounds(store_url) >= rounds + 3, exporter, "three more check rounds")
            assert _latest(store_url)["listener.lag"] == (True, "")
            assert exporter.stop()[0] == 0
        assert _notices(receivers) == [("chain.head", "firing"), ("chain.head", "resolved")]
        assert _incidents(store_url) == [
            ("chain.head", None, True, True),
            ("listener.progress", "chain.head", False, True),
        ]
        # listener.lag never failed: no incident, and every one of its rows passed.
        lag = [ok for name, ok in table_rows(store_url, "monitor_metrics", "check_name, ok") if name == "listener.lag"]
        assert lag and all(lag)

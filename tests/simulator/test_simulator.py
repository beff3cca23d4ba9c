"""The Blocktrust API simulator: every SPEC §1 endpoint, auth, token expiry on the injected
clock, the login counter, faults from Python, the admin endpoint and the ``--fail`` flag."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from exporter.clock import FakeClock
from exporter.demo.simulator import cli
from exporter.demo.simulator.faults import Fault, parse_fail_flag, parse_fault
from exporter.demo.simulator.server import BlocktrustSimulator

EMAIL, PASSWORD = "sim@example.org", "sim-pass"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[BlocktrustSimulator]:
    with BlocktrustSimulator(email=EMAIL, password=PASSWORD, clock=clock, token_lifetime=600) as running:
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _login(sim: BlocktrustSimulator, http: requests.Session, password: str = PASSWORD) -> requests.Response:
    return http.post(f"{sim.url}/api/explorer/login", json={"email": EMAIL, "password": password}, timeout=5)


def _get(sim: BlocktrustSimulator, http: requests.Session, path: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(sim.url + path, headers=headers, timeout=5)


def test_login_issues_a_token_with_its_lifetime_and_counts(sim: BlocktrustSimulator, http: requests.Session) -> None:
    answer = _login(sim, http)
    assert answer.status_code == 200
    assert answer.json()["expires_in"] == 600 and answer.json()["token"]
    assert _login(sim, http, "wrong").status_code == 401
    assert (sim.logins, sim.failed_logins) == (1, 1)


def test_the_simulator_has_no_default_credentials(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="email and password"):
        BlocktrustSimulator(email="", password="", clock=clock)


def test_every_endpoint_answers_with_the_spec_shape(sim: BlocktrustSimulator, http: requests.Session) -> None:
    assert _get(sim, http, "/api/health").json() == {"status": "ok"}
    token = _login(sim, http).json()["token"]
    events = _get(sim, http, "/api/explorer/events?limit=3&offset=1", token).json()
    assert events["status"] == "ok" and (events["limit"], events["offset"]) == (3, 1)
    assert len(events["events"]) == 3 and set(events["events"][0]) == {"id", "type", "data", "timestamp"}
    assert events["total"] == 25
    contracts = _get(sim, http, "/api/explorer/contracts", token).json()["contracts"]
    assert set(contracts) == {"IdentityNFT", "ProofRegistry", "FailSafe"}
    assert set(_get(sim, http, "/api/explorer/stats", token).json()["stats"]) == {"total_events", "events_24h"}
    hashed = http.post(
        f"{sim.url}/api/signature/hash-file",
        json={"file_content": "olá"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    ).json()
    assert hashed == {"file_hash": hashlib.sha256("olá".encode()).hexdigest()}
    assert "address" in _get(sim, http, "/api/wallet/info", token).json()
    assert set(_get(sim, http, "/api/nft/status", token).json()) == {"has_nft", "nft_id"}
    sim.has_wallet = sim.has_nft = False
    assert _get(sim, http, "/api/wallet/info", token).status_code == 404
    assert _get(sim, http, "/api/nft/status", token).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/api/explorer/events", "/api/explorer/contracts", "/api/explorer/stats", "/api/wallet/info", "/api/nft/status"],
)
def test_bearer_endpoints_need_a_valid_token(sim: BlocktrustSimulator, http: requests.Session, path: str) -> None:
    assert _get(sim, http, path).status_code == 401
    assert _get(sim, http, path, "forged").status_code == 401
    assert _get(sim, http, path, _login(sim, http).json()["token"]).status_code == 200


def test_tokens_expire_on_the_injected_clock(
    sim: BlocktrustSimulator, http: requests.Session, clock: FakeClock
) -> None:
    token = _login(sim, http).json()["token"]
    clock.advance(599)
    assert _get(sim, http, "/api/explorer/stats", token).status_code == 200
    clock.advance(1)
    assert _get(sim, http, "/api/explorer/stats", token).status_code == 401


def test_expire_tokens_invalidates_every_token(sim: BlocktrustSimulator, http: requests.Session) -> None:
    token = _login(sim, http).json()["token"]
    sim.expire_tokens()
    assert _get(sim, http, "/api/explorer/stats", token).status_code == 401


def test_faults_switch_at_runtime_and_counted_ones_wear_off(sim: BlocktrustSimulator, http: requests.Session) -> None:
    sim.set_fault("/api/health", "503")
    assert _get(sim, http, "/api/health").status_code == 503
    sim.clear_faults("/api/health")
    assert _get(sim, http, "/api/health").status_code == 200
    sim.set_fault("/api/health", "times:2,500")
    assert [_get(sim, http, "/api/health").status_code for _ in range(3)] == [500, 500, 200]
    sim.set_fault("/api/health", "malformed")
    with pytest.raises(ValueError):
        _get(sim, http, "/api/health").json()
    sim.set_fault("/api/health", "wrong-shape")
    assert _get(sim, http, "/api/health").json() == {"unexpected": "shape"}
    sim.set_fault("/api/health", "reset")
    with pytest.raises(requests.ConnectionError):
        _get(sim, http, "/api/health")
    assert sim.requests["/api/health"] == 8


def test_wrong_hash_fault(sim: BlocktrustSimulator, http: requests.Session) -> None:
    token = _login(sim, http).json()["token"]
    sim.set_fault("/api/signature/hash-file", "wrong-hash")
    answer = http.post(
        f"{sim.url}/api/signature/hash-file",
        json={"file_content": "a"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    ).json()
    assert answer["file_hash"] != hashlib.sha256(b"a").hexdigest()


def test_admin_endpoint_sets_and_clears_faults(sim: BlocktrustSimulator, http: requests.Session) -> None:
    admin = f"{sim.url}/_simulator/faults"
    assert http.post(admin, json={"path": "/api/explorer/stats", "fault": "500"}, timeout=5).status_code == 200
    token = _login(sim, http).json()["token"]
    assert _get(sim, http, "/api/explorer/stats", token).status_code == 500
    state = http.get(f"{sim.url}/_simulator/state", timeout=5).json()
    assert state["logins"] == 1 and state["faults"] == {"/api/explorer/stats": "500"}
    assert http.post(admin, json={"path": "/x", "fault": "explode"}, timeout=5).status_code == 400
    assert http.delete(admin, timeout=5).status_code == 200
    assert _get(sim, http, "/api/explorer/stats", token).status_code == 200
    assert http.post(f"{sim.url}/_simulator/expire-tokens", timeout=5).status_code == 200
    assert _get(sim, http, "/api/explorer/stats", token).status_code == 401


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("500", Fault(status=500)),
        ("latency:200ms", Fault(latency=0.2)),
        ("delay:2s,503", Fault(latency=2.0, status=503)),
        ("expired", Fault(status=401)),
        ("expired,once", Fault(status=401, times=1)),
        ("wrong-shape", Fault(body="wrong_shape")),
        ("trickle", Fault(body="trickle")),
        ("reset", Fault(reset=True)),
    ],
)
def test_fault_text(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(fault.text()) == fault


@pytest.mark.parametrize("text", ["explode", "latency:soon", "999", "times:x"])
def test_bad_fault_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_fault(text)


def test_fail_flag_and_cli_build(tmp_path: Any) -> None:
    assert parse_fail_flag("/api/explorer/stats=500") == ("/api/explorer/stats", Fault(status=500))
    with pytest.raises(ValueError, match="PATH=FAULT"):
        parse_fail_flag("stats=500")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--port", "0", "--fail", "/api/health=503", "--token-lifetime", "10m"])
    with pytest.raises(ValueError, match="needs credentials"):
        cli.build(args, {})
    sim = cli.build(args, {"JWT_MONITOR_EMAIL": EMAIL, "JWT_MONITOR_PASS": PASSWORD}).start()
    try:
        assert requests.get(sim.url + "/api/health", timeout=5).status_code == 503
        answer = requests.post(f"{sim.url}/api/explorer/login", json={"email": EMAIL, "password": PASSWORD}, timeout=5)
        assert answer.json()["expires_in"] == 600
    finally:
        sim.stop()
    assert json.dumps(sim.state())  # serialisable for the admin endpoint

"""The nine checks of SPEC §1 against the simulator: success and every failure mode each can
meet, asserting the verdict, the metrics in the injected registry and the PostgreSQL row."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from exporter.config.checks import default_checks
from exporter.probes.runner import CheckRound
from exporter.store import open_store
from exporter.store.base import CheckResult

HTTP_CHECKS = {
    "api.health": "/api/health",
    "api.events": "/api/explorer/events",
    "api.contracts": "/api/explorer/contracts",
    "api.stats": "/api/explorer/stats",
    "synthetic.hash": "/api/signature/hash-file",
    "synthetic.wallet_info": "/api/wallet/info",
    "synthetic.nft_status": "/api/nft/status",
}
AUTH_CHECKS = [name for name in HTTP_CHECKS if name != "api.health"]

# fault text -> (details.error, details.status_code)
TRANSPORT_FAULTS = {
    "503": ("http_status", 503),
    "latency:2s": ("timeout", None),
    "trickle": ("timeout", 200),
    "oversized": ("body_too_large", 200),
    "endless": ("body_too_large", 200),
    "reset": ("connection_reset", None),
    "malformed": ("malformed_json", 200),
}


def _cases() -> list[Any]:
    cases = []
    for name in HTTP_CHECKS:
        for fault, (error, status) in TRANSPORT_FAULTS.items():
            cases.append(pytest.param(name, fault, error, status, id=f"{name}-{fault}"))
        if name != "api.health":  # any JSON is a healthy /health answer
            cases.append(pytest.param(name, "wrong-shape", "wrong_shape", 200, id=f"{name}-wrong-shape"))
    cases.append(pytest.param("synthetic.hash", "wrong-hash", "wrong_hash", 200, id="synthetic.hash-wrong-hash"))
    return cases


@pytest.mark.parametrize("name", list(HTTP_CHECKS))
def test_http_check_succeeds_against_a_healthy_api(harness: Any, name: str) -> None:
    [result] = harness.only(name).run_once()
    assert result.ok, result.details
    assert result.details["error"] is None
    assert result.details["status_code"] in (200, 404)
    assert result.details["bytes"] > 0
    harness.assert_recorded(result)


@pytest.mark.parametrize(("name", "fault", "error", "status"), _cases())
def test_http_check_fails_with_a_clear_reason(
    harness: Any, name: str, fault: str, error: str, status: int | None
) -> None:
    harness.sim.set_fault(HTTP_CHECKS[name], fault)
    [result] = harness.only(name).run_once()
    assert not result.ok
    assert result.details["error"] == error, result.details
    assert result.details["status_code"] == status
    assert result.details["reason"]
    harness.assert_recorded(result)
    # What failed reaches Prometheus as a bounded info series, for the alert texts.
    labels = {"check": name, "class": error, "status_code": "" if status is None else str(status)}
    assert harness.sample("blocktrust_check_last_failure_info", labels) == 1


@pytest.mark.parametrize("name", ["synthetic.wallet_info", "synthetic.nft_status"])
@pytest.mark.parametrize("present", [True, False])
def test_wallet_and_nft_are_healthy_with_200_or_404(harness: Any, name: str, present: bool) -> None:
    harness.sim.has_wallet = harness.sim.has_nft = present
    [result] = harness.only(name).run_once()
    assert result.ok, result.details
    assert result.details["status_code"] == (200 if present else 404)
    harness.assert_recorded(result)


@pytest.mark.parametrize("name", AUTH_CHECKS)
def test_expired_token_causes_one_relogin_and_a_retry(harness: Any, name: str) -> None:
    checks = harness.only(name)
    first = checks.run_once()[0]
    assert first.ok and harness.sim.logins == 1
    harness.sim.expire_tokens()  # the server forgets the token before its announced lifetime
    [result] = checks.run_once()
    assert result.ok, result.details
    assert harness.sim.logins == 2
    harness.assert_recorded(result, runs=2)


@pytest.mark.parametrize("name", AUTH_CHECKS)
def test_a_401_that_survives_a_fresh_login_fails_as_unauthorized(harness: Any, name: str) -> None:
    checks = harness.only(name)
    assert checks.run_once()[0].ok  # the first token, from the first round
    harness.sim.set_fault(HTTP_CHECKS[name], "expired")
    [result] = checks.run_once()
    assert not result.ok
    assert result.details["error"] == "unauthorized"
    assert result.details["status_code"] == 401
    assert harness.sim.logins == 2  # the first token, then one fresh login, no more
    harness.assert_recorded(result, runs=2)


@pytest.mark.parametrize("name", AUTH_CHECKS)
def test_a_401_to_the_token_of_this_rounds_login_costs_no_second_login(harness: Any, name: str) -> None:
    harness.sim.set_fault(HTTP_CHECKS[name], "expired")
    [result] = harness.only(name).run_once()
    assert not result.ok
    assert result.details["error"] == "unauthorized"
    assert result.details["status_code"] == 401
    assert "this round's login" in result.details["reason"]
    assert harness.sim.logins == 1  # a fresh token answered 401: another login would not help
    harness.assert_recorded(result)


def test_failed_login_fails_every_check_needing_it_with_one_attempt_per_round(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = harness.config(password="wrong-password")
    checks = harness.round(config)
    results = {result.check_name: result for result in checks.run_once()}
    assert harness.sim.failed_logins == 1  # not one per check
    for name in AUTH_CHECKS:
        result = results[name]
        assert not result.ok
        assert result.details["error"] == "login_failed"
        assert result.details["reason"] == "login answered HTTP 401"
        harness.assert_recorded(result)
    assert results["api.health"].ok  # needs no login
    checks.run_once()
    assert harness.sim.failed_logins == 2  # the next round tries again, once
    assert "wrong-password" not in caplog.text


@pytest.mark.parametrize("name", list(HTTP_CHECKS))
def test_connection_refused(harness: Any, name: str, unused_port: int) -> None:
    spec_round = harness.only(name, base_url=f"http://127.0.0.1:{unused_port}")
    [result] = spec_round.run_once()
    assert not result.ok
    if name == "api.health":
        assert result.details["error"] == "connection_refused"
    else:  # the login is refused first
        assert result.details["error"] == "login_failed"
        assert "connection refused" in result.details["reason"]
    harness.assert_recorded(result)


def test_login_that_times_out_fails_the_checks_within_their_deadline(harness: Any) -> None:
    harness.sim.set_fault("/api/explorer/login", "latency:2s")
    [result] = harness.only("api.stats").run_once()
    assert not result.ok
    assert result.details["error"] == "login_failed"
    assert "no complete answer within 0.3s" in result.details["reason"]
    harness.assert_recorded(result)


def test_all_nine_checks_pass_in_one_round_with_one_login(harness: Any) -> None:
    _heartbeat(harness, age_seconds=5, processed=100, head=100)
    results = harness.round(harness.config()).run_once()
    assert sorted(result.check_name for result in results) == sorted(
        [*HTTP_CHECKS, "listener.lag", "listener.progress"]
    )
    for result in results:
        assert result.ok, (result.check_name, result.details)
        harness.assert_recorded(result)
    assert harness.sim.logins == 1


def test_one_failing_endpoint_fails_only_its_check(harness: Any) -> None:
    _heartbeat(harness, age_seconds=5, processed=100, head=100)
    harness.sim.set_fault("/api/explorer/stats", "500")
    results = {result.check_name: result for result in harness.round(harness.config()).run_once()}
    assert {name for name, result in results.items() if not result.ok} == {"api.stats"}
    assert harness.sample("blocktrust_check_up", {"check": "api.stats"}) == 0
    assert harness.sample("blocktrust_check_up", {"check": "api.health"}) == 1


# -------------------------------------------------------------------------------- listener
def _heartbeat(harness: Any, *, age_seconds: float, processed: int, head: int, details: Any = None) -> None:
    beat = CheckResult(
        check_name="listener.tick",
        ok=True,
        latency_ms=0,
        details=details
        if details is not None
        else {
            "processed_block": processed,
            "head_block": head,
            "blocks_behind": head - processed,
        },
        ts=harness.clock.now() - timedelta(seconds=age_seconds),
        uid=f"beat-{processed}-{head}-{age_seconds}",
    )
    harness.store.write_results([beat])


@pytest.mark.parametrize(
    ("age", "ok", "error"),
    [(0, True, None), (179, True, None), (181, False, "listener_lag"), (None, False, "no_heartbeat")],
)
def test_listener_lag(harness: Any, age: float | None, ok: bool, error: str | None) -> None:
    if age is not None:
        _heartbeat(harness, age_seconds=age, processed=10, head=10)
    [result] = harness.only("listener.lag").run_once()
    assert result.ok is ok
    assert result.details["error"] == error
    if age is not None:
        assert result.details["lag_seconds"] == age
        assert harness.sample("blocktrust_listener_lag_seconds", {}) == age
    harness.assert_recorded(result)


def test_listener_lag_grows_with_the_clock(harness: Any) -> None:
    _heartbeat(harness, age_seconds=0, processed=10, head=10)
    checks = harness.only("listener.lag")
    assert checks.run_once()[0].ok
    harness.clock.advance(181)
    [result] = checks.run_once()
    assert not result.ok and result.details["error"] == "listener_lag"
    harness.assert_recorded(result, runs=2)


# (processed, head) per round -> ok per round
PROGRESS_SCENARIOS = {
    "advancing while behind": ([(100, 110), (105, 112), (111, 113)], [True, True, True]),
    "stalled while behind": ([(100, 110), (100, 120)], [True, False]),
    "idle at the head": ([(100, 100), (100, 100)], [True, True]),
    "recovers after a stall": ([(100, 110), (100, 115), (116, 116)], [True, False, True]),
}


@pytest.mark.parametrize("scenario", list(PROGRESS_SCENARIOS))
def test_listener_progress(harness: Any, scenario: str) -> None:
    beats, expected = PROGRESS_SCENARIOS[scenario]
    checks = harness.only("listener.progress")
    for index, ((processed, head), ok) in enumerate(zip(beats, expected, strict=True)):
        _heartbeat(harness, age_seconds=-index, processed=processed, head=head)
        [result] = checks.run_once()
        assert result.ok is ok, (index, result.details)
        assert result.details["error"] == (None if ok else "stalled")
        assert result.details["processed_block"] == processed
        harness.assert_recorded(result, runs=index + 1)
        harness.clock.advance(60)


@pytest.mark.parametrize(("details", "error"), [(None, "no_heartbeat"), ({"processed_block": "x"}, "wrong_shape")])
def test_listener_progress_without_a_usable_heartbeat(harness: Any, details: Any, error: str) -> None:
    if details is not None:
        _heartbeat(harness, age_seconds=0, processed=0, head=0, details=details)
    [result] = harness.only("listener.progress").run_once()
    assert not result.ok and result.details["error"] == error
    harness.assert_recorded(result)


def test_login_and_request_share_one_timeout(harness: Any) -> None:
    # Each step alone fits in the 0.3 s timeout; together they do not.
    harness.sim.set_fault("/api/explorer/login", "latency:200ms")
    harness.sim.set_fault("/api/explorer/stats", "latency:200ms")
    [result] = harness.only("api.stats").run_once()
    assert not result.ok
    assert result.details["error"] == "timeout"
    assert harness.sim.logins == 1
    harness.assert_recorded(result)


@pytest.mark.parametrize("name", ["listener.lag", "listener.progress"])
def test_listener_checks_fail_clearly_when_the_store_is_down(harness: Any, name: str, unused_port: int) -> None:
    down = open_store(f"postgresql://postgres@127.0.0.1:{unused_port}/gone", connect_timeout=1)
    spec = next(spec for spec in default_checks() if spec.name == name)
    checks = CheckRound(
        harness.config([spec]), metrics=harness.metrics, record=harness.writer.record, clock=harness.clock, store=down
    )
    try:
        [result] = checks.run_once()
    finally:
        checks.close()
        down.close()
    assert not result.ok
    assert result.details["error"] == "store_error"
    assert "cannot read the heartbeat" in result.details["reason"]
    harness.assert_recorded(result)  # the round's row still lands in the (working) result store

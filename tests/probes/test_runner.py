"""The round runner: user checks from a config file end to end, check resolution, the round
budget, and a round that never raises whatever its sinks do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import CHECK_KINDS, Config, ConfigError, load_config
from exporter.config.checks import default_checks
from exporter.probes.kinds import PROBES
from exporter.probes.runner import resolve_checks, validate_conditions

USER_CONFIG = """
api:
  base_url: ${API_BASE}
  email: ${MONITOR_EMAIL}
  password: ${MONITOR_PASS}
checks:
  include_defaults: false
  timeout: 300ms
  items:
    - name: public.health
      url: ${PUBLIC_URL}/api/health
      severity: crit
      conditions:
        - "[STATUS] == 200"
        - "[BODY].status == ok"
        - "[RESPONSE_TIME] < 10000"
    - name: explorer.events.page
      path: /api/explorer/events?limit=5&offset=20
      auth: true
      conditions:
        - "len([BODY].events) == 5"
        - "[BODY].offset == 20"
    - name: hash.known
      method: POST
      path: /api/signature/hash-file
      auth: true
      json_body: {"file_content": "abc"}
      conditions:
        - "[BODY].file_hash == ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    - name: health.degraded
      path: /api/health
      conditions: ["[BODY].status == degraded"]
    - name: disabled.one
      url: http://127.0.0.1:9/never
      enabled: false
"""


def _load(harness: Any, tmp_path: Path, text: str = USER_CONFIG) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    env = {
        "API_BASE": harness.sim.url,
        "PUBLIC_URL": harness.sim.url,
        "MONITOR_EMAIL": harness.email,
        "MONITOR_PASS": harness.password,
    }
    return load_config(path, env)


def test_user_defined_http_checks_from_a_config_file_run_end_to_end(harness: Any, tmp_path: Path) -> None:
    seen: list[Any] = []
    checks = harness.round(_load(harness, tmp_path), on_results=seen.append)
    results = {result.check_name: result for result in checks.run_once()}
    assert set(results) == {"public.health", "explorer.events.page", "hash.known", "health.degraded"}
    assert results["public.health"].ok
    assert results["explorer.events.page"].ok
    assert results["hash.known"].ok, results["hash.known"].details
    degraded = results["health.degraded"]
    assert not degraded.ok
    assert degraded.details["error"] == "condition_failed"
    assert degraded.details["reason"] == '[BODY].status == degraded: [BODY].status is "ok"'
    for result in results.values():
        harness.assert_recorded(result)
    assert seen == [list(results.values())]  # the alerting hook gets the whole round at once
    assert harness.sim.logins == 1


def test_a_bad_condition_in_the_config_file_names_the_check(harness: Any, tmp_path: Path) -> None:
    bad = USER_CONFIG.replace('"[BODY].offset == 20"', '"[BODY].offset = 20"')
    expected = r"config\.yaml: checks\.items\[1\]\.conditions\[1\]: unexpected '= 20' in condition"
    with pytest.raises(ConfigError, match=expected):
        validate_conditions(_load(harness, tmp_path, bad))
    with pytest.raises(ConfigError, match=expected):
        resolve_checks(_load(harness, tmp_path, bad))


def test_every_config_kind_has_a_probe() -> None:
    assert set(PROBES) == set(CHECK_KINDS)


def _config(**tree: Any) -> Config:
    return Config.model_validate(tree)


API = {"base_url": "http://127.0.0.1:1", "email": "m@example.org", "password": "x"}


RPC = {"rpc_url": "http://127.0.0.1:1"}


def test_defaults_are_the_nine_checks_and_chain_head_and_items_override_them_by_name() -> None:
    assert [spec.name for spec in resolve_checks(_config(api=API, listener=RPC))] == [s.name for s in default_checks()]
    override = {"name": "api.health", "path": "/healthz", "timeout": "2s"}
    extra = {"name": "mine", "url": "http://127.0.0.1:1/x"}
    checks = resolve_checks(
        _config(
            api=API,
            listener=RPC,
            checks={
                "items": [override, extra, {"name": "listener.progress", "kind": "listener.progress", "enabled": False}]
            },
        )
    )
    by_name = {spec.name: spec for spec in checks}
    assert by_name["api.health"].path == "/healthz" and by_name["api.health"].timeout == 2.0
    assert "mine" in by_name and "listener.progress" not in by_name
    assert len(checks) == 10


def test_without_an_api_only_the_chain_and_listener_checks_remain() -> None:
    assert [spec.name for spec in resolve_checks(_config(listener=RPC))] == [
        "chain.head",
        "listener.lag",
        "listener.progress",
    ]
    assert resolve_checks(_config(listener={"enabled": False})) == []


def test_without_an_rpc_url_the_listener_and_chain_checks_are_dropped_unless_the_listener_runs_elsewhere() -> None:
    # Issue #16 item 4: no listener anywhere, so listener.lag/listener.progress could only fail.
    assert resolve_checks(_config()) == []
    elsewhere = resolve_checks(_config(listener={"elsewhere": True}))
    assert [spec.name for spec in elsewhere] == ["listener.lag", "listener.progress"]  # chain.head needs the URL
    balance = {"name": "gas", "kind": "balance", "address": "0x" + "ab" * 20, "min_balance": 1}
    assert resolve_checks(_config(checks={"items": [balance]})) == []  # chain kinds are off without a URL
    assert [spec.name for spec in resolve_checks(_config(listener=RPC, checks={"items": [balance]}))] == [
        "chain.head",
        "listener.lag",
        "listener.progress",
        "gas",
    ]


def test_a_redefined_listener_check_without_any_listener_is_a_config_error() -> None:
    item = {"name": "listener.lag", "kind": "listener.lag", "severity": "warn"}
    with pytest.raises(ConfigError, match="no listener writes a heartbeat"):
        resolve_checks(_config(checks={"items": [item]}))


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"api": {"base_url": "http://127.0.0.1:1"}}, "api.email and api.password"),
        ({"checks": {"items": [{"name": "p", "path": "/x"}]}}, "p: has a path but api.base_url"),
    ],
)
def test_checks_that_cannot_work_are_config_errors(tree: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_checks(_config(**tree))


def test_a_hung_api_cannot_hold_the_round_beyond_its_budget(harness: Any) -> None:
    # Checks allowed 5 s each, but the round must end with the 0.5 s interval.
    config = harness.config([spec for spec in default_checks() if spec.name == "api.health"])
    config = config.model_copy(update={"checks": config.checks.model_copy(update={"interval": 0.5, "timeout": 5.0})})
    harness.sim.set_fault("/api/health", "latency:3s")
    [result] = harness.round(config).run_once()
    assert not result.ok
    assert result.details["error"] == "round_timeout"
    harness.assert_recorded(result)


def test_a_round_survives_failing_sinks_and_a_crashing_probe(harness: Any, monkeypatch: Any) -> None:
    def broken(_results: Any) -> None:
        raise RuntimeError("sink down")

    def crash(_spec: Any, _ctx: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setitem(PROBES, "listener.lag", crash)  # the table the runner reads
    checks = harness.round(harness.config(), on_results=broken, record=broken)
    results = {result.check_name: result for result in checks.run_once()}
    assert results["listener.lag"].details["error"] == "internal_error"
    assert results["api.health"].ok
    assert harness.sample("blocktrust_check_up", {"check": "listener.lag"}) == 0

"""Configuration loading: the documented default file, expansion, the env overlay, secrets from files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from exporter.config import (
    CHECK_NAME_CHARSET,
    ENV_VARS,
    HEARTBEAT_CHECK,
    SECRET_ENV_VARS,
    Config,
    ConfigError,
    check_name_problem,
    default_checks,
    load_config,
    parse_duration,
)

REPO = Path(__file__).resolve().parents[2]


def _model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        if name == "source":
            continue
        key = field.alias or name
        path = f"{prefix}{key}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _model_paths(annotation, path + ".")
        else:
            paths.add(path)
    return paths


def _yaml_paths(tree: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key != "event_types":
            paths |= _yaml_paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def test_config_yaml_documents_every_key_with_its_default() -> None:
    text = (REPO / "config.yaml").read_text()
    documented = _yaml_paths(yaml.safe_load(text))
    assert documented == _model_paths(Config)
    loaded = load_config(REPO / "config.yaml", env={})
    assert loaded.model_dump(exclude={"source"}) == Config().model_dump(exclude={"source"})
    for variable in ENV_VARS:
        assert variable in text, f"config.yaml does not mention {variable}"
    for variable in SECRET_ENV_VARS:
        assert f"{variable}_FILE" in text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15),
        ("12m", 720),
        ("24h", 86400),
        ("30d", 2592000),
        ("1m30s", 90),
        ("250ms", 0.25),
        (60, 60),
        ("2.5", 2.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["fast", "", "5 s", "s", "-1s", True, "1x"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


def test_environment_overrides_the_file_and_expansion(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("checks:\n  interval: ${CHECKS_EVERY:-30s}\nlistener:\n  poll_interval: 20s\n")
    assert load_config(path, env={}).checks.interval == 30
    assert load_config(path, env={"CHECKS_EVERY": "45s"}).checks.interval == 45
    assert load_config(path, env={"CHECKS_EVERY": "45s", "MONITOR_CHECK_INTERVAL": "90"}).checks.interval == 90
    assert load_config(path, env={"LISTENER_POLL_INTERVAL": "5"}).listener.poll_interval == 5


def test_a_secret_file_wins_over_the_variable(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("from-file\n")
    config = load_config(None, env={"JWT_MONITOR_PASS": "from-env", "JWT_MONITOR_PASS_FILE": str(secret)})
    assert config.api.password is not None and config.api.password.get_secret_value() == "from-file"
    assert "from-file" in config.secrets()
    assert "from-file" not in repr(config)


def test_every_seed_variable_lands_where_spec_says() -> None:
    env = {
        "API_BASE": "https://api.example.org/",
        "JWT_MONITOR_EMAIL": "m@example.org",
        "JWT_MONITOR_PASS": "pw",
        "POLYGON_RPC_URL": "https://rpc.example.org/key",
        "DATABASE_URL": "postgres://u:p@db/x",
        "LISTENER_POLL_INTERVAL": "10",
        "MONITOR_CHECK_INTERVAL": "30",
        "MAX_LISTENER_LAG_SEC": "120",
        "SLO_LATENCY_MS": "500",
        "SLO_UPTIME_TARGET": "99.9",
        "ALERT_SLACK_WEBHOOK": "https://hooks.example.org/x",
        "ALERT_TELEGRAM_BOT": "1:abc",
        "ALERT_TELEGRAM_CHAT": "42",
        "ALERT_WEBHOOK_URL": "https://hook.example.org/",
    }
    c = load_config(None, env=env)
    assert c.api.base_url == "https://api.example.org"
    assert (c.api.email, c.listener.poll_interval, c.checks.interval) == ("m@example.org", 10, 30)
    assert c.listener.max_lag == 120
    assert (c.slo.latency_ms, c.slo.uptime_target, c.alerting.telegram.chat_id) == (500, 99.9, "42")
    assert len(c.secrets()) == 6


def test_an_empty_variable_counts_as_unset() -> None:
    assert load_config(None, env={"MONITOR_CHECK_INTERVAL": ""}).checks.interval == 60


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(ValueError, match="frozen"):
        config.checks.interval = 5  # type: ignore[misc]


def test_errors_are_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"SLO_UPTIME_TARGET": "lots"})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("environment variable SLO_UPTIME_TARGET: slo.uptime_target:")


def test_a_password_in_api_base_is_a_secret_in_both_forms() -> None:
    config = load_config(None, env={"API_BASE": "https://monitor:p%40ss@api.example.org"})
    assert {"p%40ss", "p@ss"} <= set(config.secrets())


def test_a_doubled_dollar_stays_a_literal_and_a_default_may_hold_a_brace_free_url(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  sqlite_path: /tmp/$${HOME}/x.db\napi:\n  base_url: ${API_URL:-https://api.test}\n")
    config = load_config(path, env={})
    assert (config.store.sqlite_path, config.api.base_url) == ("/tmp/${HOME}/x.db", "https://api.test")


def test_every_name_the_exporter_writes_itself_is_reserved() -> None:
    """The heartbeat, the listener's reorg incident and the SLO report's incidents: a check named so
    would pass for them (rows for the heartbeat, incidents resolved by the SLO report)."""
    from exporter.runtime import LISTENER_INCIDENT
    from exporter.slo import INCIDENT_PREFIX

    for name in (HEARTBEAT_CHECK, LISTENER_INCIDENT, INCIDENT_PREFIX + "api.health", "listener.anything"):
        assert check_name_problem(name), name
    for spec in default_checks():
        assert check_name_problem(spec.name) is None, spec.name


@pytest.mark.parametrize("name", ["a`b", 'a"b', "a'b", "a{b}", "a\tb", "a\x7fb", "a b", ".a", "-a", "a|b", "é"])
def test_check_names_outside_the_charset_are_refused(name: str) -> None:
    assert check_name_problem(name) == f"{name!r} is not a valid check name: use {CHECK_NAME_CHARSET}"


def test_a_duplicate_key_deep_in_a_list_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "alerting:\n  maintenance:\n    - days: [sun]\n      from: '02:00'\n      to: '03:00'\n      to: '04:00'\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}:6: alerting.maintenance[0].to: duplicate key (first at line 5)"


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "checks:\n  items:\n"
        "    - &base {name: a.one, url: 'https://a.test/', severity: crit}\n"
        "    - <<: *base\n      name: a.two\n"
    )
    assert [c.name for c in load_config(path, env={}).checks.items] == ["a.one", "a.two"]


def test_the_default_timeout_need_not_fit_when_no_check_uses_it() -> None:
    settings = {
        "interval": "3s",
        "include_defaults": False,
        "items": [{"name": "a.b", "url": "https://a.test/", "timeout": "2s"}],
    }
    assert Config.model_validate({"checks": settings}).checks.interval == 3
    with pytest.raises(ValueError, match=r"is shorter than checks\.timeout"):
        Config.model_validate({"checks": {**settings, "include_defaults": True}})


def test_an_unquoted_telegram_chat_id_is_its_text(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("alerting:\n  telegram:\n    bot_token: '1:abc'\n    chat_id: -100200300\n")
    assert load_config(path, env={}).alerting.telegram.chat_id == "-100200300"


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e20", "3651d"])
def test_durations_are_finite_and_at_most_ten_years(text: str) -> None:
    with pytest.raises(ValueError, match=r"at most 3650d|must not be negative"):
        parse_duration(text)


def test_a_recursive_alias_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("checks:\n  items: &loop [*loop]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: checks.items[0]")

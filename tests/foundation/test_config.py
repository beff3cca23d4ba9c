"""Configuration loading: the documented default file, expansion, the env overlay, secrets from files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from exporter.cli import main
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


def test_a_secret_file_is_read_stripped_and_kept_secret(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("from-file\n")
    config = load_config(None, env={"JWT_MONITOR_PASS_FILE": str(secret)})
    assert config.api.password is not None and config.api.password.get_secret_value() == "from-file"
    assert "from-file" in config.secrets()
    assert "from-file" not in repr(config)


@pytest.mark.parametrize("name", sorted(ENV_VARS))
def test_a_variable_and_its_file_both_set_is_refused(name: str, tmp_path: Path) -> None:
    """Which one wins is the operator's to say (it used to be the file, silently)."""
    value = tmp_path / "value"
    value.write_text("30\n")
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: "30", f"{name}_FILE": str(value)})
    assert str(info.value) == f"environment variables {name} and {name}_FILE are both set: set only one of them"


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


# ------------------------------------------------------------------------------ ${VAR} after parsing
@pytest.mark.parametrize(
    "value",
    ["abc #def", "'quoted'", '"double"', "12345678", "a: b", "- item", "{x: 1}", "tab\there", "&anchor *alias"],
)
def test_a_variable_is_the_whole_text_of_its_value(value: str, tmp_path: Path) -> None:
    """Expanded after YAML parsing: a '#', quotes, ': ' or digits in the variable are its text, never YAML."""
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  password: ${P}\n  email: 'm-${P}'\n")
    config = load_config(path, env={"P": value})
    assert config.api.password is not None and config.api.password.get_secret_value() == value
    assert config.api.email == f"m-{value}"


def test_a_variable_cannot_inject_a_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("checks:\n  interval: ${INTV}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"INTV": "30s\n  timeout: 1s"})
    assert str(info.value) == f"{path}: checks.interval: expected a duration like \"5s\", got '30s\\n  timeout: 1s'"


def test_variable_text_is_converted_like_an_environment_override(tmp_path: Path) -> None:
    """Numbers and booleans from the environment are text; they validate for numeric and boolean keys,
    as MONITOR_CHECK_INTERVAL or SLO_LATENCY_MS always did."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "checks:\n  concurrency: ${C}\n  include_defaults: ${D:-false}\nslo:\n  latency_ms: ${L}\n"
        "  uptime_target: ${U}\nlistener:\n  enabled: ${E}\n  start_block: ${S}\n"
    )
    config = load_config(path, env={"C": "4", "L": "900", "U": "99.9", "E": "no", "S": "12"})
    assert (config.checks.concurrency, config.checks.include_defaults) == (4, False)
    assert (config.slo.latency_ms, config.slo.uptime_target) == (900, 99.9)
    assert (config.listener.enabled, config.listener.start_block) == (False, 12)
    assert load_config(None, env={"SLO_LATENCY_MS": "700"}).slo.latency_ms == 700


def test_colon_dash_default_is_used_when_the_variable_is_unset_or_empty(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  base_url: ${MY_API:-http://d.example}\n  email: ${MY_MAIL-fallback}\n")
    for env in ({}, {"MY_API": ""}):
        assert load_config(path, env=env).api.base_url == "http://d.example"
    assert load_config(path, env={"MY_API": "http://e.example"}).api.base_url == "http://e.example"
    assert load_config(path, env={}).api.email == "fallback"  # `-`: only when unset
    assert load_config(path, env={"MY_MAIL": "x@example.org"}).api.email == "x@example.org"


def test_references_in_comments_and_keys_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# ${NOT_SET\nchecks:  # ${ALSO_NOT_SET}\n  interval: 30s # ${}\n")
    assert load_config(path, env={}).checks.interval == 30


def test_a_reference_in_a_literal_block_names_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "status_page:\n  dashboards:\n    - title: |\n        first\n        ${UNSET_X}\n      url: http://x\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}:5: status_page.dashboards[0].title: environment variable UNSET_X is not set and has no default"
    )


# ------------------------------------------------------------------------------ text that is not UTF-8
def _check_config(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["check-config", *args])
    return code, capsys.readouterr().err.splitlines()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)


@pytest.mark.usefixtures("clean_env")
def test_a_latin1_config_file_is_one_line_with_the_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("checks:\n  interval: 30s # café\n".encode("latin-1"))
    assert _check_config(capsys, "--config", str(path)) == (
        2,
        [
            f"blocktrust-exporter: {path}: not UTF-8 text: "
            "the first byte that is not UTF-8 is at offset 29; save it as UTF-8"
        ],
    )


@pytest.mark.usefixtures("clean_env")
def test_a_utf16_config_file_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("checks:\n  interval: 30s\n".encode("utf-16"))
    assert _check_config(capsys, "--config", str(path)) == (
        2,
        [
            f"blocktrust-exporter: {path}: not UTF-8 text: it looks like UTF-16 "
            "(it starts with a UTF-16 byte order mark); save it as UTF-8"
        ],
    )


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("name", sorted(ENV_VARS))
def test_a_variable_file_that_is_not_utf8_is_one_line(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "value"
    secret.write_bytes(b"hunter\xff2\n")
    monkeypatch.setenv(f"{name}_FILE", str(secret))
    monkeypatch.chdir(tmp_path)  # no config.yaml here: the defaults and the environment
    assert _check_config(capsys) == (
        2,
        [
            f"blocktrust-exporter: environment variable {name}_FILE: {secret}: not UTF-8 text: "
            "the first byte that is not UTF-8 is at offset 6; save it as UTF-8"
        ],
    )


def test_a_variable_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  email: ${MAIL}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"MAIL": "caf\udce9"})  # os.environ's form of an undecodable byte
    assert str(info.value) == f"{path}:2: api.email: environment variable MAIL: not UTF-8 text"
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"JWT_MONITOR_EMAIL": "caf\udce9"})
    assert str(info.value) == "environment variable JWT_MONITOR_EMAIL: not UTF-8 text"


# ------------------------------------------------------------------------------ NAME_FILE for every variable
def test_every_variable_may_come_from_its_file(tmp_path: Path) -> None:
    """API_BASE_FILE and JWT_MONITOR_EMAIL_FILE used to be ignored without a word."""
    (tmp_path / "base").write_text("https://api.example.org\n")
    (tmp_path / "email").write_text("monitor@example.org\n")
    (tmp_path / "interval").write_text("45s\n")
    config = load_config(
        None,
        env={
            "API_BASE_FILE": str(tmp_path / "base"),
            "JWT_MONITOR_EMAIL_FILE": str(tmp_path / "email"),
            "MONITOR_CHECK_INTERVAL_FILE": str(tmp_path / "interval"),
        },
    )
    assert (config.api.base_url, config.api.email, config.checks.interval) == (
        "https://api.example.org",
        "monitor@example.org",
        45,
    )


# ----------------------------------------------------------------------- limits (issue 13, kind 1)
_COMPANIONS = {"ALERT_TELEGRAM_BOT": {"ALERT_TELEGRAM_CHAT": "42"}}


@pytest.mark.parametrize("name", SECRET_ENV_VARS)
@pytest.mark.parametrize("blank", [" ", "   ", "\t", " \n "])
def test_a_blank_secret_variable_is_refused_in_one_line(name: str, blank: str) -> None:
    """A whitespace-only secret would pass for one that is set (and mask every space of the logs)."""
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: blank, **_COMPANIONS.get(name, {})})
    assert str(info.value).startswith(f"environment variable {name}: ")
    assert str(info.value).endswith(": must not be empty or only whitespace (value hidden: it is a secret)")


@pytest.mark.parametrize(
    "key", ["store.url", "api.password", "listener.rpc_url", "alerting.telegram.bot_token", "alerting.webhook.url"]
)
def test_a_blank_secret_in_the_file_is_refused(key: str, tmp_path: Path) -> None:
    tree: dict[str, Any] = {"alerting": {"telegram": {"chat_id": "42", "bot_token": "1:abc"}}}
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = "  "
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: must not be empty or only whitespace"):
        load_config(path, env={})


def _duration_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every duration key of the configuration (those parsed by parse_duration)."""
    found: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _duration_paths(annotation, f"{prefix}{name}.")
        elif any(getattr(meta, "func", None) is parse_duration for meta in field.metadata):
            found.append(f"{prefix}{name}")
    return found


DURATION_PATHS = _duration_paths(Config)
# Keys whose sane range reaches below 1 ms or above 1 year (each for a reason given in models.py).
MAY_BE_ZERO = {"api.token_refresh_margin"}
MAY_BE_YEARS = {"slo.retention"}


def _with(path: str, value: object) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    node = tree
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return tree


def test_the_duration_keys_are_found() -> None:
    assert {"store.statement_timeout", "alerting.reminder_interval", "listener.poll_interval"} <= set(DURATION_PATHS)
    assert len(DURATION_PATHS) >= 25


@pytest.mark.parametrize("path", DURATION_PATHS)
def test_every_duration_has_a_sane_range(path: str) -> None:
    """1 ms is too short for any of them, and none means anything at 400 days (slo.retention aside);
    the store's timeouts, int32 milliseconds in PostgreSQL, stay far below its 24.8 days."""
    if path not in MAY_BE_ZERO:
        with pytest.raises(ValueError, match=r"expected a duration from .* to .*, got 1ms"):
            Config.model_validate(_with(path, "1ms"))
    if path not in MAY_BE_YEARS:
        with pytest.raises(ValueError, match=r"expected a duration from .* to .*, got 400d"):
            Config.model_validate(_with(path, "400d"))


@pytest.mark.parametrize(
    "path",
    [
        "store.statement_timeout",
        "store.lock_timeout",
        "store.idle_in_transaction_timeout",
        "store.tcp_user_timeout",
        "store.call_timeout",
    ],
)
def test_store_timeouts_stay_within_postgresql_int32_milliseconds(path: str) -> None:
    with pytest.raises(ValueError, match="expected a duration from"):
        Config.model_validate(_with(path, "30d"))


NUMERIC_VARIABLES = {
    "LISTENER_POLL_INTERVAL": "60",
    "MONITOR_CHECK_INTERVAL": "60",
    "MAX_LISTENER_LAG_SEC": "600",
    "SLO_LATENCY_MS": "800",
    "SLO_UPTIME_TARGET": "99.5",
}


def test_every_numeric_variable_is_listed() -> None:
    numeric = {"listener.poll_interval", "checks.interval", "listener.max_lag", "slo.latency_ms", "slo.uptime_target"}
    assert {name for name, path in ENV_VARS.items() if ".".join(path) in numeric} == set(NUMERIC_VARIABLES)


@pytest.mark.parametrize("name", NUMERIC_VARIABLES)
@pytest.mark.parametrize("digits", ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९"])
def test_numeric_variables_take_ascii_digits_only(name: str, digits: str) -> None:
    """The same rule for every variable: "٦٠" is refused by MONITOR_CHECK_INTERVAL as by SLO_LATENCY_MS."""
    value = NUMERIC_VARIABLES[name].translate(str.maketrans("0123456789", digits))
    if digits.isascii():
        load_config(None, env={name: value})
    else:
        with pytest.raises(ConfigError, match=rf"^environment variable {name}: "):
            load_config(None, env={name: value})


@pytest.mark.parametrize(("given", "suggested"), [("0.995", "99.5"), ("0.9", "90"), ("0.999", "99.9")])
def test_an_uptime_target_given_as_a_ratio_is_refused_with_the_percentage(given: str, suggested: str) -> None:
    with pytest.raises(ConfigError, match=rf"it is a percentage, write {suggested}$"):
        load_config(None, env={"SLO_UPTIME_TARGET": given})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://monitor:pa%2Fss@db:5432/blocktrust",  # percent-encoded
        "postgresql://monitor:ab?cd#ef@db:5432/blocktrust",  # libpq takes these raw in a password
        "postgresql://monitor@[::1]:5432/blocktrust",
        "postgresql://monitor@h1:5432,h2:5433/blocktrust?target_session_attrs=read-write",
        "postgresql:///blocktrust?host=/var/run/postgresql",
        "postgres://db",
        "postgresql+psycopg2://monitor:pw@db/blocktrust",
    ],
)
def test_database_urls_libpq_reads_are_accepted(url: str) -> None:
    from exporter.config.database_url import store_url_error

    assert store_url_error(url) is None


def test_a_raw_slash_in_the_password_is_refused_without_echoing_it() -> None:
    from exporter.config.database_url import store_url_error

    problem = store_url_error("postgresql://blocktrust:Xk9/fQ2+Lm8zPw4RtY@db:5432/blocktrust")
    assert problem is not None and "percent-encoded" in problem
    assert "Xk9" not in problem and "fQ2" not in problem


@pytest.mark.parametrize(
    "url", ["https://hc-ping.com/uuid\n", "https://hooks.example.org/a b", "\thttps://h.example.org/", "https://h/\x7f"]
)
def test_a_url_with_whitespace_or_a_control_character_is_refused(url: str) -> None:
    """urlsplit drops a newline without a word and requests sends it as %0A: another path."""
    from exporter.config.types import url_problem

    problem = url_problem(url)
    assert problem is not None and "space or control character" in problem


@pytest.mark.parametrize("text", ["true\n", " true ", "\ttrue"])
def test_a_boolean_variable_with_surrounding_whitespace_reads_like_a_number_does(
    text: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MONITOR_CHECK_INTERVAL=" 30" was read as 30, but LISTENER_ELSEWHERE="true\\n" (a Secret made
    with echo) was refused as not a boolean."""
    from exporter.config import load_config

    monkeypatch.setenv("LISTENER_ELSEWHERE", text)
    config_path = tmp_path / "config.yaml"
    config_path.write_text("log:\n  level: warning\n")
    assert load_config(config_path).listener.elsewhere is True

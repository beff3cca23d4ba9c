"""Loading the configuration: the YAML file, parsed, with ``${VAR}`` references in its text values
expanded from the environment, then the seed's environment variables of SPEC §3, then ``X_FILE``
(later wins). Every problem becomes a one-line ``ConfigError`` that names where the bad value came
from (the file and key path, or the environment variable) and what was expected.

Values from the environment (a variable, an ``X_FILE``, a ``${VAR}`` in the file) are text, and are
converted to the key's type (``"30"`` for an integer); the file's own values must already have it
(``concurrency: "16"`` is refused): see ``EnvText``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from exporter.config.errors import ConfigError, KeyPathError
from exporter.config.files import (
    YamlSyntaxError,
    compose_yaml,
    construct_yaml,
    decode_text,
    key_path,
    yaml_children,
)
from exporter.config.models import Config
from exporter.config.types import EnvText

DEFAULT_CONFIG_PATH = "config.yaml"

# SPEC §3's variables and where each lands. Each may also come from ``<NAME>_FILE`` (the file's text,
# stripped), not only the secrets: one rule, no ``_FILE`` silently ignored. Setting both is an error.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "API_BASE": ("api", "base_url"),
    "JWT_MONITOR_EMAIL": ("api", "email"),
    "JWT_MONITOR_PASS": ("api", "password"),
    "POLYGON_RPC_URL": ("listener", "rpc_url"),
    "DATABASE_URL": ("store", "url"),
    "LISTENER_POLL_INTERVAL": ("listener", "poll_interval"),
    "MONITOR_CHECK_INTERVAL": ("checks", "interval"),
    "MAX_LISTENER_LAG_SEC": ("listener", "max_lag"),
    "LISTENER_ELSEWHERE": ("listener", "elsewhere"),
    "SLO_LATENCY_MS": ("slo", "latency_ms"),
    "SLO_UPTIME_TARGET": ("slo", "uptime_target"),
    "ALERT_SLACK_WEBHOOK": ("alerting", "slack", "webhook_url"),
    "ALERT_TELEGRAM_BOT": ("alerting", "telegram", "bot_token"),
    "ALERT_TELEGRAM_CHAT": ("alerting", "telegram", "chat_id"),
    "ALERT_WEBHOOK_URL": ("alerting", "webhook", "url"),
    "ALERT_WEBHOOK_SIGNING_SECRET": ("alerting", "webhook", "signing_secret"),
    "ALERT_HEARTBEAT_URL": ("alerting", "heartbeat_url"),
    "WEB_CONFIG_FILE": ("server", "web_config_file"),
}
SECRET_ENV_VARS = (
    "JWT_MONITOR_PASS",
    "POLYGON_RPC_URL",
    "DATABASE_URL",
    "ALERT_SLACK_WEBHOOK",
    "ALERT_TELEGRAM_BOT",
    "ALERT_WEBHOOK_URL",
    "ALERT_WEBHOOK_SIGNING_SECRET",
    "ALERT_HEARTBEAT_URL",
)

# ``$${`` is a literal ``${``; otherwise ``${NAME}``, ``${NAME:-default}`` (the default when NAME is
# unset or empty) or ``${NAME-default}`` (only when unset), as in the shell; any other ``${`` is an error.
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$\{")
_REFERENCE_FORMS = 'expected ${NAME}, ${NAME:-default} or ${NAME-default} (write $${ for a literal "${")'
_STR_TAG = "tag:yaml.org,2002:str"


def _bad_reference(rest: str) -> str:
    """Why the ``${`` before ``rest`` (the rest of its text) is no variable reference."""
    inside, closed, _ = rest.partition("}")
    if not closed:
        return f"'${{' without its closing brace: {_REFERENCE_FORMS}"
    if not inside:
        return f"'${{}}' names no variable: {_REFERENCE_FORMS}"
    return f"'${{{inside}}}' is not a variable reference: {_REFERENCE_FORMS}"


def _env_text(env: Mapping[str, str], name: str) -> str:
    value = env[name]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        raise ConfigError(f"environment variable {name}: not UTF-8 text") from None
    return value


def _expand_scalar(text: str, env: Mapping[str, str], where: str) -> tuple[str, bool]:
    """``text`` with its references expanded, and whether any variable (or default) was used."""
    used = False

    def repl(match: re.Match[str]) -> str:
        nonlocal used
        name, operator, default = match.group(1), match.group(2), match.group(3)
        if match.group(0) == "$${":
            return "${"
        if name is None:
            problem = _bad_reference(text[match.end() :].split("\n", 1)[0])
        elif name in env and not (operator == ":-" and env[name] == ""):
            used = True
            try:
                return _env_text(env, name)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        elif default is not None:
            used = True
            return default
        else:
            problem = f"environment variable {name} is not set and has no default"
        raise ConfigError(f"{where}: {problem}")

    return _VAR.sub(repl, text), used


def _expand(root: yaml.Node, env: Mapping[str, str], source: str) -> None:
    """Expand references inside the text values of the parsed document, in place. Expanding after
    parsing keeps the variable's text whole (a ``#``, a quote, ``: `` or a newline in it is text, never
    YAML), and a value that used a variable becomes ``EnvText``: converted like an environment variable.
    Keys and comments are left as written."""
    for path, node in [((), root), *yaml_children(root)]:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "${" in node.value):
            continue
        line = node.start_mark.line + 1
        if node.style == "|":  # a literal block keeps its lines: name the reference's own
            first = _VAR.search(node.value)
            line += 1 + node.value[: first.start() if first else 0].count("\n")
        where = f"{source}:{line}: {key_path(path)}" if path else f"{source}:{line}"
        value, used = _expand_scalar(node.value, env, where)
        node.value = EnvText(value) if used else value


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _read_variable_file(file_var: str, file_path: str) -> str:
    try:
        data = Path(file_path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"environment variable {file_var}: cannot read {file_path}: {exc.strerror}") from None
    value = decode_text(data, f"environment variable {file_var}: {file_path}").strip()
    if not value:  # an empty secret would pass for one set (a login that can never succeed)
        raise ConfigError(f"environment variable {file_var}: {file_path} is empty")
    return value


def _env_overlay(tree: dict[str, Any], env: Mapping[str, str], origins: dict[tuple[str, ...], str]) -> None:
    """SPEC §3's variables over the file. An empty variable counts as unset. ``NAME`` and ``NAME_FILE``
    both set is an error: which one should win is the operator's to say, not ours to guess."""
    for name, path in ENV_VARS.items():
        file_var = f"{name}_FILE"
        given, from_file = env.get(name, ""), env.get(file_var, "")
        if given and from_file:
            raise ConfigError(f"environment variables {name} and {file_var} are both set: set only one of them")
        if from_file:
            value = _read_variable_file(file_var, _env_text(env, file_var))
            origin = f"environment variable {file_var}"
        elif given:
            value, origin = _env_text(env, name), f"environment variable {name}"
        else:
            continue
        _set_path(tree, path, EnvText(value))
        origins[path] = origin


# What a key expects, by pydantic's error type, for "has no value" and "expected ..., got ..." lines.
_EXPECTED = {
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "dict_type": "a mapping",
    "list_type": "a list",
    "string_type": "text",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
}


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    given = error.get("input")
    if given is None and kind in ("model_type", "model_attributes_type"):
        return "an empty section: give it keys, or remove it for the defaults"
    if given is None and kind in _EXPECTED:
        return f"has no value: expected {_EXPECTED[kind]} (remove the key for its default)"
    if kind in ("model_type", "model_attributes_type", "dict_type", "list_type"):
        return f"expected {_EXPECTED[kind]}, got {given!r}"
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind not in ("value_error", "assertion_error") and not isinstance(given, dict | list):
        # pydantic's own text may already say "got <what>" ("got a number with a fractional part")
        msg += f" ({given!r})" if ", got " in msg else f", got {given!r}"
    return msg


_SECRET_KEYS = frozenset(
    {"password", "url", "rpc_url", "rpc_urls", "webhook_url", "bot_token", "signing_secret", "heartbeat_url"}
)


def _format_error(err: ValidationError, source: str, origins: dict[tuple[str, ...], str]) -> str:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, KeyPathError):  # a model's validator naming one of its own keys
        loc = (*loc, *cause.keys)
    path = key_path(loc)
    where = source
    for length in range(len(loc), 0, -1):
        origin = origins.get(tuple(str(p) for p in loc[:length]))
        if origin:
            where = origin
            break
    secret_types = ("extra_forbidden", "missing", "value_error")
    secret = bool(loc) and (loc[-1] in _SECRET_KEYS or (isinstance(loc[-1], int) and loc[-2:-1] == ("rpc_urls",)))
    if secret and first["type"] not in secret_types and first.get("input") is not None:
        # Never echo a secret back, not even a malformed one; our own value errors never quote it.
        return f"{where}: {path}: {str(first['msg']).split(',')[0]} (value hidden: it is a secret)"
    return f"{where}: {path}: {_message(first)}" if path else f"{where}: {_message(first)}"


def read_config_file(path: str | os.PathLike[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The configuration file as a tree, references expanded; ``ConfigError`` for an unreadable
    file, text that is not UTF-8, bad YAML, a duplicate key, a bad reference, or no top-level mapping."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the configuration file: {exc.strerror}") from None
    text = decode_text(data, source)
    try:
        root = compose_yaml(text, source)
    except YamlSyntaxError as exc:
        lines = text.splitlines()
        if exc.line is not None and "${" in (lines[exc.line - 1] if exc.line <= len(lines) else ""):
            # References are expanded after parsing, so one inside [...] or {...} must be quoted.
            raise ConfigError(f'{exc} (inside [...] or {{...}} quote a reference: "${{VAR}}")') from None
        raise
    if root is None:
        return {}
    _expand(root, env, source)
    loaded = construct_yaml(root, source)
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    return loaded


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, overlay and validate; raise ``ConfigError`` with one line on any problem.

    Conditions of ``checks.items`` stay text here: ``exporter.probes.runner.validate_conditions``
    parses them (the CLI runs it right after this), as their language belongs to the probes.

    A missing file is an error only when it was named explicitly; with ``path=None`` the
    defaults and the environment alone make the configuration.
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    tree: dict[str, Any] = read_config_file(path, env) if path is not None else {}
    origins: dict[tuple[str, ...], str] = {}
    _env_overlay(tree, env, origins)
    tree["source"] = source
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source, origins)) from None
    return config

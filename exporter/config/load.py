"""Loading the configuration: the YAML file with ``${VAR}`` / ``${VAR:-default}`` expanded from the
environment, then the seed's environment variables of SPEC §3, then ``X_FILE`` for secrets (later
wins). Every problem becomes a one-line ``ConfigError`` that names where the bad value came from
(the file and key path, or the environment variable) and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from exporter.config.errors import ConfigError, KeyPathError
from exporter.config.models import Config

DEFAULT_CONFIG_PATH = "config.yaml"

# SPEC §3's variables and where each lands. Secrets may also come from ``<NAME>_FILE``.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "API_BASE": ("api", "base_url"),
    "JWT_MONITOR_EMAIL": ("api", "email"),
    "JWT_MONITOR_PASS": ("api", "password"),
    "POLYGON_RPC_URL": ("listener", "rpc_url"),
    "DATABASE_URL": ("store", "url"),
    "LISTENER_POLL_INTERVAL": ("listener", "poll_interval"),
    "MONITOR_CHECK_INTERVAL": ("checks", "interval"),
    "MAX_LISTENER_LAG_SEC": ("listener", "max_lag"),
    "SLO_LATENCY_MS": ("slo", "latency_ms"),
    "SLO_UPTIME_TARGET": ("slo", "uptime_target"),
    "ALERT_SLACK_WEBHOOK": ("alerting", "slack", "webhook_url"),
    "ALERT_TELEGRAM_BOT": ("alerting", "telegram", "bot_token"),
    "ALERT_TELEGRAM_CHAT": ("alerting", "telegram", "chat_id"),
    "ALERT_WEBHOOK_URL": ("alerting", "webhook", "url"),
    "WEB_CONFIG_FILE": ("server", "web_config_file"),
}
SECRET_ENV_VARS = (
    "JWT_MONITOR_PASS",
    "POLYGON_RPC_URL",
    "DATABASE_URL",
    "ALERT_SLACK_WEBHOOK",
    "ALERT_TELEGRAM_BOT",
    "ALERT_WEBHOOK_URL",
)

# ``$${`` is a literal ``${``; otherwise ``${NAME}`` or ``${NAME:-default}``; any other ``${`` is an error.
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_REFERENCE_FORMS = 'expected ${NAME} or ${NAME:-default} (write $${ for a literal "${")'


def _bad_reference(rest: str) -> str:
    """Why the ``${`` before ``rest`` (the rest of its line) is no variable reference."""
    inside, closed, _ = rest.partition("}")
    if not closed:
        return f"'${{' without its closing brace: {_REFERENCE_FORMS}"
    if not inside:
        return f"'${{}}' names no variable: {_REFERENCE_FORMS}"
    return f"'${{{inside}}}' is not a variable reference: {_REFERENCE_FORMS}"


def _expand(text: str, env: Mapping[str, str], source: str) -> str:
    """Expand variables line by line (comments stay as written, they document variables)."""
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue

        def repl(match: re.Match[str], lineno: int = lineno, line: str = line) -> str:
            name, default = match.group(1), match.group(2)
            if match.group(0) == "$${":
                return "${"
            if name is None:
                problem = _bad_reference(line[match.end() :].rstrip("\r\n"))
            elif name in env:
                return env[name]
            elif default is not None:
                return default
            else:
                problem = f"environment variable {name} is not set and has no default"
            raise ConfigError(f"{_where(source, text, lineno)}: {problem}")

        out.append(_VAR.sub(repl, line))
    return "".join(out)


# ------------------------------------------------------------------------------ YAML with key paths
def _key_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


def _children(node: yaml.Node, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], yaml.Node]]:
    """Every node under ``node`` with its key path (mapping keys by their text, list items by index),
    each once: an alias shares its anchor's node, and may even contain it (``a: &x [*x]``)."""
    seen = {id(node)}
    pending: list[tuple[tuple[str | int, ...], yaml.Node]] = [(path, node)]
    while pending:
        where, parent = pending.pop()
        if isinstance(parent, yaml.MappingNode):
            pairs = [((*where, str(k.value)) if isinstance(k, yaml.ScalarNode) else where, v) for k, v in parent.value]
        elif isinstance(parent, yaml.SequenceNode):
            pairs = [((*where, index), item) for index, item in enumerate(parent.value)]
        else:
            continue
        for child_path, child in pairs:
            if id(child) not in seen:
                seen.add(id(child))
                yield child_path, child
                pending.append((child_path, child))


def _where(source: str, text: str, lineno: int) -> str:
    """``file:line``, and the key path of the value on that line when the text parses as YAML."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None
    found: tuple[str | int, ...] = ()
    for path, node in _children(root, ()) if root is not None else ():
        if node.start_mark.line <= lineno - 1 <= max(node.start_mark.line, node.end_mark.line - 1):
            found = path if len(path) > len(found) else found
    return f"{source}:{lineno}: {_key_path(found)}" if found else f"{source}:{lineno}"


def _refuse_duplicate_keys(node: yaml.Node, source: str, path: tuple[str | int, ...] = ()) -> None:
    """A key given twice in one mapping (a whole section too) is an error: YAML would keep the last."""
    nodes = [(path, node), *_children(node, path)]
    for where, mapping in nodes:
        if not isinstance(mapping, yaml.MappingNode):
            continue
        first_line: dict[str, int] = {}
        for key, _value in mapping.value:
            if not isinstance(key, yaml.ScalarNode) or key.value == "<<":  # merge keys may repeat
                continue
            name, line = str(key.value), key.start_mark.line + 1
            if name in first_line:
                raise ConfigError(
                    f"{source}:{line}: {_key_path((*where, name))}: duplicate key (first at line {first_line[name]})"
                )
            first_line[name] = line


def _parse_yaml(text: str, source: str) -> object:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _refuse_duplicate_keys(root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _env_overlay(tree: dict[str, Any], env: Mapping[str, str], origins: dict[tuple[str, ...], str]) -> None:
    for name, path in ENV_VARS.items():
        file_var = f"{name}_FILE"
        if name in SECRET_ENV_VARS and env.get(file_var):
            file_path = env[file_var]
            try:
                value = Path(file_path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"environment variable {file_var}: cannot read {file_path}: {exc.strerror}") from None
            if not value:  # an empty secret would pass for one set (a login that can never succeed)
                raise ConfigError(f"environment variable {file_var}: {file_path} is empty")
            _set_path(tree, path, value)
            origins[path] = f"environment variable {file_var}"
        elif env.get(name, "") != "":
            _set_path(tree, path, env[name])
            origins[path] = f"environment variable {name}"


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = error.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(given, dict | list):
        msg += f", got {given!r}"
    return msg


_SECRET_KEYS = frozenset({"password", "url", "rpc_url", "webhook_url", "bot_token"})


def _format_error(err: ValidationError, source: str, origins: dict[tuple[str, ...], str]) -> str:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, KeyPathError):  # a model's validator naming one of its own keys
        loc = (*loc, *cause.keys)
    path = _key_path(loc)
    where = source
    for length in range(len(loc), 0, -1):
        origin = origins.get(tuple(str(p) for p in loc[:length]))
        if origin:
            where = origin
            break
    if loc and loc[-1] in _SECRET_KEYS and first["type"] not in ("extra_forbidden", "missing", "value_error"):
        # Never echo a secret back, not even a malformed one; our own value errors never quote it.
        return f"{where}: {path}: {str(first['msg']).split(',')[0]} (value hidden: it is a secret)"
    return f"{where}: {path}: {_message(first)}" if path else f"{where}: {_message(first)}"


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, overlay and validate; raise ``ConfigError`` with one line on any problem.

    Conditions of ``checks.items`` stay text here: ``exporter.probes.runner.validate_conditions``
    parses them (the CLI runs it right after this), as their language belongs to the probes.

    A missing file is an error only when it was named explicitly; with ``path=None`` the
    defaults and the environment alone make the configuration.
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the configuration file: {exc.strerror}") from None
        loaded = _parse_yaml(_expand(text, env, source), source)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of sections at the top level")
        tree = loaded
    origins: dict[tuple[str, ...], str] = {}
    _env_overlay(tree, env, origins)
    tree["source"] = source
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source, origins)) from None
    return config

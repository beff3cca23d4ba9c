"""Typed, frozen, validated configuration.

Loading order (later wins): the YAML file with ``${VAR}`` / ``${VAR:-default}`` expanded from the
environment, then the seed's environment variables of SPEC §3, then ``X_FILE`` for secrets.
Every problem becomes a one-line ``ConfigError`` that names where the bad value came from
(the file and key path, or the environment variable) and what was expected.

Section models live here so that the whole shape of the configuration is readable in one place;
``config.yaml`` at the repository root documents every key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.store import store_url_error

DEFAULT_CONFIG_PATH = "config.yaml"


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming the culprit."""


# --------------------------------------------------------------------------------------- types
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """``"90s"``, ``"1m30s"``, ``"12m"``, ``"24h"``, ``"30d"``, ``"250ms"`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "5s", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                raise ValueError(f'expected a duration like "5s", got {value!r}') from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f'expected a duration like "5s", got {value!r}')
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _listen_address(value: str) -> str:
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected HOST:PORT like "0.0.0.0:9108", got {value!r}')
    return value


def _secret_url(value: SecretStr) -> SecretStr:
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL (value hidden: it is a secret)")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Interval = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
SecretHttpUrl = Annotated[SecretStr, AfterValidator(_secret_url)]
Severity = Literal["info", "warn", "crit"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# ------------------------------------------------------------------------------------ sections
class ServerSettings(_Section):
    listen: Annotated[str, AfterValidator(_listen_address)] = "0.0.0.0:9108"


class LogSettings(_Section):
    format: Literal["logfmt", "json"] = "logfmt"
    level: Literal["debug", "info", "warning", "error"] = "info"


class StoreSettings(_Section):
    url: SecretStr | None = None  # DATABASE_URL; None = the embedded SQLite file below
    sqlite_path: str = "blocktrust-exporter.db"
    pool_size: int = Field(default=4, ge=1, le=64)
    buffer_size: int = Field(default=10_000, ge=1)
    connect_timeout: Interval = 5.0

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        problem = store_url_error(value.get_secret_value()) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


class ApiSettings(_Section):
    base_url: HttpUrl | None = None  # API_BASE
    email: str | None = None  # JWT_MONITOR_EMAIL
    password: SecretStr | None = None  # JWT_MONITOR_PASS
    login_path: str = "/api/explorer/login"
    token_refresh_margin: Duration = 60.0


def _condition(text: str) -> str:
    from exporter.probes.conditions import parse  # the language is documented there

    parse(text)  # ConditionSyntaxError is a ValueError, reported with the key path
    return text


Condition = Annotated[str, AfterValidator(_condition)]

# The kinds exporter/probes/registry.py implements (a test keeps the two in step).
CHECK_KINDS = ("http", "synthetic.hash", "listener.lag", "listener.progress")


class CheckSpec(_Section):
    """One declared check (Gatus-style): what to call and which conditions make it healthy."""

    name: str = Field(min_length=1, max_length=100)
    kind: str = "http"
    method: Literal["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH"] = "GET"
    path: str | None = None  # appended to api.base_url
    url: HttpUrl | None = None  # an absolute URL instead of ``path``
    auth: bool = False  # send the JWT session's Bearer token
    json_body: dict[str, Any] | None = None
    expected_status: list[int] = Field(default_factory=lambda: [200])
    conditions: list[Condition] = Field(default_factory=list)
    timeout: Interval | None = None  # defaults to checks.timeout
    severity: Severity = "warn"
    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: int | None = Field(default=None, ge=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> CheckSpec:
        if self.kind not in CHECK_KINDS:
            raise ValueError(f"unknown kind {self.kind!r} (one of: {', '.join(CHECK_KINDS)})")
        if self.kind in ("http", "synthetic.hash") and (self.path is None) == (self.url is None):
            raise ValueError(f"a {self.kind} check needs exactly one of path or url")
        return self


class ChecksSettings(_Section):
    interval: Interval = 60.0  # MONITOR_CHECK_INTERVAL
    timeout: Interval = 10.0
    concurrency: int = Field(default=16, ge=1, le=1024)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    include_defaults: bool = True  # the nine checks of SPEC §1
    items: list[CheckSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ChecksSettings:
        seen: set[str] = set()
        for spec in self.items:
            if spec.name in seen:
                raise ValueError(f"duplicate check name {spec.name!r}")
            seen.add(spec.name)
        return self


class ListenerSettings(_Section):
    enabled: bool = True
    rpc_url: SecretHttpUrl | None = None  # POLYGON_RPC_URL (often carries an API key)
    contracts_config: str = "contracts_config.json"
    poll_interval: Interval = 15.0  # LISTENER_POLL_INTERVAL
    max_lag: Interval = 180.0  # MAX_LISTENER_LAG_SEC
    start_block: int | Literal["latest"] = Field(default="latest")
    chunk_size: int = Field(default=2_000, ge=1)
    max_chunk_size: int = Field(default=10_000, ge=1)
    follow: Literal["latest", "safe", "finalized"] = "latest"
    confirmations: int = Field(default=0, ge=0)
    max_reorg_depth: int = Field(default=64, ge=1)
    rpc_timeout: Interval = 10.0
    event_types: dict[str, str] = Field(
        default_factory=lambda: {
            "MintingEvent": "Minted",
            "CancelamentoEvent": "Canceled",
            "CancelamentoSimples": "CanceledSimple",
            "ProofRegistered": "ProofStored",
            "ProofRevoked": "ProofRevoked",
            "ProofStoredDual": "ProofStoredDual",
            "FailsafeEvent": "FailSafeTriggered",
        }
    )

    @model_validator(mode="after")
    def _chunks(self) -> ListenerSettings:
        if self.chunk_size > self.max_chunk_size:
            raise ValueError("chunk_size must not exceed max_chunk_size")
        if isinstance(self.start_block, int) and self.start_block < 0:
            raise ValueError("start_block must be a block number >= 0 or 'latest'")
        return self


class SloSettings(_Section):
    uptime_target: float = Field(default=99.5, gt=0, lt=100)  # SLO_UPTIME_TARGET, percent
    latency_ms: int = Field(default=800, gt=0)  # SLO_LATENCY_MS
    window: Interval = 86_400.0
    report_interval: Interval = 720.0
    retention: Interval = 30 * 86_400.0


class SlackSettings(_Section):
    webhook_url: SecretHttpUrl | None = None  # ALERT_SLACK_WEBHOOK
    send_resolved: bool = True


class TelegramSettings(_Section):
    bot_token: SecretStr | None = None  # ALERT_TELEGRAM_BOT
    chat_id: str | None = None  # ALERT_TELEGRAM_CHAT
    base_url: HttpUrl = "https://api.telegram.org"
    send_resolved: bool = True

    @model_validator(mode="after")
    def _token_and_chat(self) -> TelegramSettings:
        if (self.bot_token is None) != (self.chat_id is None):
            raise ValueError("telegram needs both bot_token and chat_id (or neither)")
        return self


class WebhookSettings(_Section):
    url: SecretHttpUrl | None = None  # ALERT_WEBHOOK_URL
    send_resolved: bool = True


def parse_instant(value: str) -> datetime:
    """An ISO 8601 instant; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'expected an ISO 8601 time like "2026-03-01T02:00:00Z", got {value!r}') from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_clock_time(value: str) -> time:
    """``HH:MM`` (24 h); ``24:00`` is accepted as the end of the day and returned as ``time.max``."""
    match = re.fullmatch(r"([01]?\d|2[0-4]):([0-5]\d)", value)
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValueError(f'expected a time of day like "02:30", got {value!r}')
    return time.max if match.group(1) == "24" else time(int(match.group(1)), int(match.group(2)))


def _yaml_instant(value: object) -> object:
    # Unquoted YAML turns 2026-03-01T02:00:00Z into a datetime; accept it as the text it was.
    return value.isoformat() if isinstance(value, datetime) else value


def _yaml_clock_time(value: object) -> object:
    # Unquoted YAML 1.1 reads 22:00 as the base-60 integer 1320; turn it back into "22:00".
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


class MaintenanceWindow(_Section):
    """Either a fixed ``start``/``end`` (ISO 8601) or a weekly ``days`` + ``from``/``to`` (HH:MM, UTC).

    A weekly window whose ``to`` is not after ``from`` runs past midnight into the next day.
    ``checks`` are check names or shell-style patterns (``api.*``); empty means every check.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    checks: list[str] = Field(default_factory=list)  # empty = all checks
    start: Annotated[str | None, BeforeValidator(_yaml_instant)] = None
    end: Annotated[str | None, BeforeValidator(_yaml_instant)] = None
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=list)
    from_: Annotated[str | None, BeforeValidator(_yaml_clock_time)] = Field(default=None, alias="from")
    to: Annotated[str | None, BeforeValidator(_yaml_clock_time)] = None

    @model_validator(mode="after")
    def _one_schedule(self) -> MaintenanceWindow:
        fixed = self.start is not None or self.end is not None
        weekly = bool(self.days) or self.from_ is not None or self.to is not None
        if fixed == weekly:
            raise ValueError("a maintenance window needs either start and end, or days with from and to")
        if fixed:
            if self.start is None or self.end is None:
                raise ValueError("a fixed maintenance window needs both start and end")
            if parse_instant(self.start) >= parse_instant(self.end):
                raise ValueError("end must be after start")
        else:
            if not self.days or self.from_ is None or self.to is None:
                raise ValueError("a weekly maintenance window needs days, from and to")
            if parse_clock_time(self.from_) == parse_clock_time(self.to):
                raise ValueError("from and to must differ")
        return self


class AlertingSettings(_Section):
    failure_threshold: int = Field(default=2, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    reminder_interval: Interval = 3600.0
    dashboard_url: HttpUrl | None = None
    # Where your team serves docs/runbooks.md; alert rules link to <runbook_url>#<alert name>.
    runbook_url: str = "docs/runbooks.md"
    timeout: Interval = 10.0
    max_tries: int = Field(default=5, ge=1, le=20)
    backoff: Interval = 1.0  # first wait between tries; doubles each retry, capped at backoff_max
    backoff_max: Interval = 60.0
    retry_after_max: Interval = 300.0  # a channel asking to wait longer (Retry-After) is given up on
    queue_size: int = Field(default=1000, ge=1)
    slack: SlackSettings = SlackSettings()
    telegram: TelegramSettings = TelegramSettings()
    webhook: WebhookSettings = WebhookSettings()
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)


class Config(_Section):
    """The whole configuration; ``source`` is the file it was read from (for messages)."""

    source: str = "<defaults>"
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    store: StoreSettings = StoreSettings()
    api: ApiSettings = ApiSettings()
    checks: ChecksSettings = ChecksSettings()
    listener: ListenerSettings = ListenerSettings()
    slo: SloSettings = SloSettings()
    alerting: AlertingSettings = AlertingSettings()

    def secrets(self) -> list[str]:
        """Every secret value set, for log redaction."""
        values = [
            self.store.url,
            self.api.password,
            self.listener.rpc_url,
            self.alerting.slack.webhook_url,
            self.alerting.telegram.bot_token,
            self.alerting.webhook.url,
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        # A password in a URL's userinfo (https://user:pass@host), API_BASE's or a check's own, is a
        # secret too. (Other parts of a check's URL are not: a query value may well be an address.)
        urls = [self.api.base_url, *(check.url for check in self.checks.items)]
        passwords = {p for p in (urlsplit(url).password for url in urls if url) if p}
        return [*found, *sorted(passwords | {unquote(p) for p in passwords})]


# ------------------------------------------------------------------------- environment overlay
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
}
SECRET_ENV_VARS = (
    "JWT_MONITOR_PASS",
    "POLYGON_RPC_URL",
    "DATABASE_URL",
    "ALERT_SLACK_WEBHOOK",
    "ALERT_TELEGRAM_BOT",
    "ALERT_WEBHOOK_URL",
)

# ``$${`` is a literal ``${``; otherwise ``${NAME}`` or ``${NAME:-default}``.
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(text: str, env: Mapping[str, str], source: str) -> str:
    """Expand variables line by line (comments stay as written, they document variables)."""
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue

        def repl(match: re.Match[str], lineno: int = lineno) -> str:
            name, default = match.group(1), match.group(2)
            if name is None:
                return "${"
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}:{lineno}: environment variable {name} is not set and has no default")

        out.append(_VAR.sub(repl, line))
    return "".join(out)


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
                raise ConfigError(
                    f"environment variable {file_var}: cannot read {file_path}: {exc.strerror}"
                ) from None
            _set_path(tree, path, value)
            origins[path] = f"environment variable {file_var}"
        elif env.get(name, "") != "":
            _set_path(tree, path, env[name])
            origins[path] = f"environment variable {name}"


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


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
    path = _loc(loc)
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
        expanded = _expand(text, env, source)
        try:
            loaded = yaml.safe_load(expanded)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
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

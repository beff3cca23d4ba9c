"""The sections of the configuration, and ``Config``, the whole of it: typed, frozen, validated.

Kept in one module so that the whole shape of the configuration is readable in one place;
``config.yaml`` at the repository root documents every key. Loading (files, environment,
error messages) is ``load.py``; value types are ``types.py``; checks are ``checks.py``.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from exporter.config.checks import (
    LISTENER_QUARANTINE_INCIDENT,
    LISTENER_REORG_INCIDENT,
    SLO_INCIDENT_PREFIX,
    CheckSpec,
    default_checks,
)
from exporter.config.database_url import store_url_error
from exporter.config.errors import KeyPathError
from exporter.config.types import (
    Duration,
    HttpUrl,
    Interval,
    ListenAddress,
    Secret,
    SecretHttpUrl,
    SecretHttpUrls,
    Section,
    UrlPath,
    format_seconds,
    parse_clock_time,
    parse_instant,
    shown_url,
    within,
    yaml_clock_time,
    yaml_id,
    yaml_instant,
)


class ServerSettings(Section):
    listen: ListenAddress = "0.0.0.0:9108"
    # WEB_CONFIG_FILE / --web.config.file: TLS and basic auth (the exporter-toolkit's format), read by
    # exporter.web; None serves plain HTTP to anyone who can reach ``listen``.
    web_config_file: str | None = None


class LogSettings(Section):
    format: Literal["logfmt", "json"] = "logfmt"
    level: Literal["debug", "info", "warning", "error"] = "info"


class StoreSettings(Section):
    url: Secret | None = None  # DATABASE_URL; None = the embedded SQLite file below
    sqlite_path: str = Field(default="blocktrust-exporter.db", min_length=1)
    pool_size: int = Field(default=4, ge=1, le=64)
    buffer_size: int = Field(default=10_000, ge=1)
    # Deadlines of store calls (exporter.store.StoreTimeouts; README "Storage"): a store that
    # stops answering counts as down after these, it never hangs the exporter. Each has a range (the
    # server's settings are int32 milliseconds: beyond 24.8 days every connection would be refused).
    connect_timeout: Annotated[Interval, within(2, 600)] = 5.0
    call_timeout: Annotated[Interval, within(0.1, 3600)] = 15.0
    statement_timeout: Annotated[Interval, within(0.1, 3600)] = 10.0
    lock_timeout: Annotated[Interval, within(0.1, 3600)] = 5.0
    pool_timeout: Annotated[Interval, within(0.1, 600)] = 5.0
    idle_in_transaction_timeout: Annotated[Interval, within(1, 86_400)] = 60.0
    tcp_user_timeout: Annotated[Interval, within(1, 3600)] = 30.0
    migration_timeout: Annotated[Interval, within(1, 86_400)] = 600.0

    @field_validator("connect_timeout")
    @classmethod
    def _libpq_connect_timeout(cls, seconds: float) -> float:
        # libpq's connect_timeout is whole seconds (and treats 1 as 2): "2.5s" would silently become 2 s.
        if seconds != int(seconds):
            raise ValueError(
                f"expected whole seconds, at least 2s (libpq's connect_timeout), got {format_seconds(seconds)}"
            )
        return seconds

    @model_validator(mode="after")
    def _deadlines(self) -> StoreSettings:
        # The server's own cancel (a clear "statement timeout" error) should come before the client gives up.
        if self.statement_timeout > self.call_timeout:
            raise KeyPathError(
                ("statement_timeout",),
                f"{format_seconds(self.statement_timeout)} is longer than store.call_timeout "
                f"({format_seconds(self.call_timeout)})",
            )
        return self

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        problem = store_url_error(value.get_secret_value()) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


class ApiSettings(Section):
    base_url: HttpUrl | None = None  # API_BASE
    email: str | None = None  # JWT_MONITOR_EMAIL
    password: Secret | None = None  # JWT_MONITOR_PASS
    login_path: UrlPath = "/api/explorer/login"
    token_refresh_margin: Annotated[Duration, within(0, 86_400)] = 60.0
    # When a login answer has no usable expires_in.
    default_token_lifetime: Annotated[Interval, within(10, 30 * 86_400)] = 900.0

    @field_validator("base_url")
    @classmethod
    def _a_base(cls, value: str | None) -> str | None:
        # Paths are appended to it as text: "https://h/?v=1" + "/api/health" would never reach the API.
        if value is not None and (urlsplit(value).query or urlsplit(value).fragment or value.endswith("?")):
            raise ValueError(f"expected a base URL without a query or fragment, got {shown_url(value)!r}")
        return value


class ChecksSettings(Section):
    interval: Annotated[Interval, within(1, 86_400)] = 60.0  # MONITOR_CHECK_INTERVAL
    timeout: Annotated[Interval, within(0.1, 600)] = 10.0
    concurrency: int = Field(default=16, ge=1, le=1024)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    include_defaults: bool = True  # the nine checks of SPEC §1
    items: list[CheckSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names_and_deadlines_within_a_round(self) -> ChecksSettings:
        # A round never runs past its interval: a check whose deadline is longer could only ever be
        # cut short and recorded as a round timeout, never as what really happened.
        uses_default_timeout = self.include_defaults or any(spec.timeout is None for spec in self.items)
        if uses_default_timeout and self.interval < self.timeout:
            raise KeyPathError(
                ("interval",),
                f"{format_seconds(self.interval)} is shorter than checks.timeout ({format_seconds(self.timeout)})",
            )
        seen: set[str] = set()
        for index, spec in enumerate(self.items):
            if spec.name in seen:
                raise KeyPathError(("items", index, "name"), f"duplicate check name {spec.name!r}")
            seen.add(spec.name)
            if spec.timeout is not None and spec.timeout > self.interval:
                raise KeyPathError(
                    ("items", index, "timeout"),
                    f"{format_seconds(spec.timeout)} is longer than checks.interval ({format_seconds(self.interval)})",
                )
        return self


EVENT_TYPE_MAX_LENGTH = 50  # events.type is VARCHAR(50) (SPEC §2)


class AuditSettings(Section):
    """``listener.audit``: the periodic re-read of final blocks behind the checkpoint (README "Completeness")."""

    enabled: bool = True
    interval: Annotated[Interval, within(10, 7 * 86_400)] = 600.0
    # At most this many blocks per audit; also how far back the first audit of a database reaches.
    window: int = Field(default=1_000, ge=1, le=1_000_000)


class ListenerSettings(Section):
    enabled: bool = True
    # POLYGON_RPC_URL (often carries an API key): one URL, or several comma-separated (an endpoint pool)
    rpc_url: SecretHttpUrls | None = None
    rpc_urls: list[SecretHttpUrl] = Field(default_factory=list)  # the pool as a YAML list (not with rpc_url)
    expected_chain_id: int | None = Field(default=None, ge=1)  # checked by eth_chainId; None: endpoints agree
    max_retry_after: Annotated[Interval, within(1, 86_400)] = 300.0  # a provider's Retry-After, honoured up to this
    head_stall_timeout: Annotated[Interval, within(1, 86_400)] = 60.0  # head unchanged this long: stalled
    contracts_config: str = Field(default="contracts_config.json", min_length=1)
    poll_interval: Annotated[Interval, within(1, 3600)] = 15.0  # LISTENER_POLL_INTERVAL
    max_lag: Annotated[Interval, within(1, 7 * 86_400)] = 180.0  # MAX_LISTENER_LAG_SEC
    start_block: int | Literal["latest"] = Field(default="latest")
    chunk_size: int = Field(default=2_000, ge=1)
    max_chunk_size: int = Field(default=10_000, ge=1)
    # eth_getLogs ranges fetched at once, per endpoint of the pool; committed in block order.
    fetch_window: int = Field(default=4, ge=1, le=32)
    follow: Literal["latest", "safe", "finalized"] = "latest"
    confirmations: int = Field(default=0, ge=0)
    # None: by chain id, or the node's finalized distance if larger (exporter.listener.finality).
    max_reorg_depth: int | None = Field(default=None, ge=1, le=100_000)
    # Re-read by hash the blocks near the head whose logsBloom matches but that eth_getLogs left empty.
    bloom_check: bool = True
    audit: AuditSettings = Field(default_factory=AuditSettings)
    rpc_timeout: Annotated[Interval, within(0.1, 600)] = 10.0
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

    @property
    def rpc_endpoints(self) -> tuple[str, ...]:
        """Every endpoint URL of the pool, in order (secret values: never log them)."""
        if self.rpc_url is not None:
            return tuple(part.strip() for part in self.rpc_url.get_secret_value().split(","))
        return tuple(url.get_secret_value() for url in self.rpc_urls)

    @model_validator(mode="after")
    def _consistent(self) -> ListenerSettings:
        if self.rpc_url is not None and self.rpc_urls:
            raise KeyPathError(
                ("rpc_urls",), "set either listener.rpc_url (POLYGON_RPC_URL) or listener.rpc_urls, not both"
            )
        if len(set(self.rpc_endpoints)) != len(self.rpc_endpoints):
            key = "rpc_url" if self.rpc_url is not None else "rpc_urls"
            raise KeyPathError((key,), "the same endpoint URL is listed twice (values hidden: secrets)")
        if self.chunk_size > self.max_chunk_size:
            raise KeyPathError(
                ("chunk_size",), f"{self.chunk_size} is above listener.max_chunk_size ({self.max_chunk_size})"
            )
        if isinstance(self.start_block, int) and self.start_block < 0:
            raise KeyPathError(("start_block",), f"expected a block number >= 0 or 'latest', got {self.start_block}")
        # A heartbeat is written once per poll: a limit not above the poll interval fails listener.lag
        # between two healthy polls.
        if self.max_lag <= self.poll_interval:
            raise KeyPathError(
                ("max_lag",),
                f"{format_seconds(self.max_lag)} must be longer than listener.poll_interval "
                f"({format_seconds(self.poll_interval)})",
            )
        for event, stored in self.event_types.items():
            if not event or not stored or len(stored) > EVENT_TYPE_MAX_LENGTH:
                raise KeyPathError(
                    ("event_types", event),
                    f"expected an event name and a type of 1 to {EVENT_TYPE_MAX_LENGTH} characters "
                    f"(events.type), got {stored!r}",
                )
        return self


class SloSettings(Section):
    uptime_target: float = Field(default=99.5, gt=0, lt=100)  # SLO_UPTIME_TARGET, percent
    latency_ms: int = Field(default=800, gt=0)  # SLO_LATENCY_MS
    window: Annotated[Interval, within(3600, 365 * 86_400)] = 86_400.0
    report_interval: Annotated[Interval, within(1, 86_400)] = 720.0
    retention: Annotated[Interval, within(3600, 3650 * 86_400)] = 30 * 86_400.0
    # Runs a check needs in the window before its SLO incident opens or resolves; None: the fewest runs
    # in which one failure stays within uptime_target (200 at 99.5 %). See ``required_runs``.
    min_runs: int | None = Field(default=None, ge=1)

    @property
    def required_runs(self) -> int:
        """``min_runs``, or by default ``ceil(100 / (100 - uptime_target))``: below that many runs a
        single failure already misses the target, so the verdict would say more about the sample than
        about the service (the SRE workbook's point about low-traffic SLOs)."""
        if self.min_runs is not None:
            return self.min_runs
        return max(1, math.ceil(round(100.0 / (100.0 - self.uptime_target), 6)))

    @field_validator("uptime_target")
    @classmethod
    def _a_percentage(cls, value: float) -> float:
        # SLO_UPTIME_TARGET=0.995 means 0.995 %: an objective every outage meets. A ratio given for a
        # percentage is the likely mistake; below 50 % no objective makes sense either.
        if value < 1:
            percent = f"{value * 100:g}"
            raise ValueError(f"{value:g} reads as {value:g} %, not {percent} %: it is a percentage, write {percent}")
        if value < 50:
            raise ValueError(f"expected a percentage from 50 to 100 (like 99.5), got {value:g}")
        return value

    @model_validator(mode="after")
    def _keeps_a_window(self) -> SloSettings:
        if self.retention < self.window:
            raise KeyPathError(
                ("retention",),
                f"{format_seconds(self.retention)} is shorter than slo.window ({format_seconds(self.window)}): "
                "the report would miss results",
            )
        return self


class SlackSettings(Section):
    webhook_url: SecretHttpUrl | None = None  # ALERT_SLACK_WEBHOOK
    send_resolved: bool = True


class TelegramSettings(Section):
    bot_token: Secret | None = None  # ALERT_TELEGRAM_BOT
    chat_id: Annotated[str, BeforeValidator(yaml_id), Field(min_length=1)] | None = None  # ALERT_TELEGRAM_CHAT
    base_url: HttpUrl = "https://api.telegram.org"
    send_resolved: bool = True

    @model_validator(mode="after")
    def _token_and_chat(self) -> TelegramSettings:
        # Named by the one that is set, so that the error points where it came from (file or variable).
        if self.bot_token is not None and self.chat_id is None:
            raise KeyPathError(("bot_token",), "needs alerting.telegram.chat_id too (both or neither)")
        if self.chat_id is not None and self.bot_token is None:
            raise KeyPathError(("chat_id",), "needs alerting.telegram.bot_token too (both or neither)")
        return self


class WebhookSettings(Section):
    url: SecretHttpUrl | None = None  # ALERT_WEBHOOK_URL
    send_resolved: bool = True


class ConsoleSettings(Section):
    """Notices as log lines (the terminal, a PaaS's log viewer); ``make demo`` turns it on."""

    enabled: bool = False
    send_resolved: bool = True


class MaintenanceWindow(Section):
    """Either a fixed ``start``/``end`` (ISO 8601) or a weekly ``days`` + ``from``/``to`` (HH:MM, UTC).

    A weekly window whose ``to`` is not after ``from`` runs past midnight into the next day.
    ``checks`` are check names or shell-style patterns (``api.*``); empty means every check.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    checks: list[str] = Field(default_factory=list)  # empty = all checks
    start: Annotated[str | None, BeforeValidator(yaml_instant)] = None
    end: Annotated[str | None, BeforeValidator(yaml_instant)] = None
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=list)
    from_: Annotated[str | None, BeforeValidator(yaml_clock_time)] = Field(default=None, alias="from")
    to: Annotated[str | None, BeforeValidator(yaml_clock_time)] = None

    @model_validator(mode="after")
    def _one_schedule(self) -> MaintenanceWindow:
        fixed = self.start is not None or self.end is not None
        weekly = bool(self.days) or self.from_ is not None or self.to is not None
        if fixed == weekly:
            raise ValueError("a maintenance window needs either start and end, or days with from and to")
        if fixed:
            if self.start is None or self.end is None:
                missing = "start" if self.start is None else "end"
                raise KeyPathError((missing,), "required: a fixed maintenance window needs both start and end")
            if parse_instant(self.start) >= parse_instant(self.end):
                raise KeyPathError(("end",), f"{self.end} is not after start ({self.start})")
        else:
            for key, value in (("days", self.days), ("from", self.from_), ("to", self.to)):
                if not value:
                    raise KeyPathError((key,), "required: a weekly maintenance window needs days, from and to")
            if parse_clock_time(self.from_ or "") == parse_clock_time(self.to or ""):
                raise KeyPathError(("to",), f"{self.to} is the same time as from")
        return self


class AlertingSettings(Section):
    failure_threshold: int = Field(default=2, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    reminder_interval: Annotated[Interval, within(60, 30 * 86_400)] = 3600.0
    dashboard_url: HttpUrl | None = None
    # Where your team serves docs/runbooks.md; alert rules link to <runbook_url>#<alert name>.
    runbook_url: str = "docs/runbooks.md"
    timeout: Annotated[Interval, within(0.1, 600)] = 10.0
    max_tries: int = Field(default=5, ge=1, le=20)
    # The first wait between tries; doubles each retry, capped at backoff_max.
    backoff: Annotated[Interval, within(0.1, 3600)] = 1.0
    backoff_max: Annotated[Interval, within(0.1, 86_400)] = 60.0
    # A channel asking to wait longer (Retry-After) is given up on.
    retry_after_max: Annotated[Interval, within(1, 86_400)] = 300.0
    queue_size: int = Field(default=1000, ge=1)
    # A notice that could not be delivered waits in the store's outbox and is retried (across restarts)
    # until it is this old; then it is given up on, with an error log and a metric.
    outbox_give_up_after: Annotated[Interval, within(60, 30 * 86_400)] = 86400.0
    slack: SlackSettings = SlackSettings()
    telegram: TelegramSettings = TelegramSettings()
    webhook: WebhookSettings = WebhookSettings()
    console: ConsoleSettings = ConsoleSettings()
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)

    @field_validator("runbook_url")
    @classmethod
    def _a_link(cls, value: str) -> str:
        # It ends up in every alert's annotations: a space or control character would break the link.
        if not value or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"expected a URL or path without spaces or control characters, got {value!r}")
        return value

    @model_validator(mode="after")
    def _backoff_within_its_cap(self) -> AlertingSettings:
        if self.backoff > self.backoff_max:
            raise KeyPathError(
                ("backoff",),
                f"{format_seconds(self.backoff)} is longer than alerting.backoff_max "
                f"({format_seconds(self.backoff_max)})",
            )
        return self


class DashboardLink(Section):
    title: str = Field(min_length=1, max_length=100)
    url: HttpUrl


class StatusPageSettings(Section):
    """The status page at ``/`` and its JSON at ``/api/v1/status``."""

    refresh: Annotated[Interval, within(0.1, 86_400)] = 30.0  # the page reloads itself this often
    dashboards: list[DashboardLink] = Field(default_factory=list)  # links shown on the page


class Config(Section):
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
    status_page: StatusPageSettings = StatusPageSettings()

    @model_validator(mode="after")
    def _maintenance_names_a_check(self) -> Config:
        # A pattern that matches nothing (a typo: "api.helth") would hold back no notice, silently.
        names = {spec.name for spec in self.checks.items}
        if self.checks.include_defaults:
            names |= {spec.name for spec in default_checks()}
        listener_incidents = {LISTENER_REORG_INCIDENT, LISTENER_QUARANTINE_INCIDENT}
        names |= listener_incidents | {SLO_INCIDENT_PREFIX + name for name in names}
        for index, window in enumerate(self.alerting.maintenance):
            for position, pattern in enumerate(window.checks):
                if not any(fnmatchcase(name, pattern) for name in names):
                    raise KeyPathError(
                        ("alerting", "maintenance", index, "checks", position), f"{pattern!r} matches no check"
                    )
        return self

    def secrets(self) -> list[str]:
        """Every secret value set, for log redaction."""
        values = [
            self.store.url,
            self.api.password,
            self.listener.rpc_url,
            *self.listener.rpc_urls,
            self.alerting.slack.webhook_url,
            self.alerting.telegram.bot_token,
            self.alerting.webhook.url,
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        found = list(dict.fromkeys([*found, *self.listener.rpc_endpoints]))  # each URL of a POLYGON_RPC_URL list
        # A password in a URL's userinfo (https://user:pass@host), API_BASE's or a check's own, is a
        # secret too. (Other parts of a check's URL are not: a query value may well be an address.)
        urls = [self.api.base_url, *(check.url for check in self.checks.items)]
        passwords = {p for p in (urlsplit(url).password for url in urls if url) if p}
        return [*found, *sorted(passwords | {unquote(p) for p in passwords})]

"""Checks as configuration: ``CheckSpec`` (one declared check, Gatus-style), the kinds there are,
the nine default checks of SPEC §1 and the names SPEC fixes.

The defaults are declared exactly like user checks, so ``config.yaml`` can override any of them by
name (a user item named ``api.health`` replaces the default) and the shapes SPEC §1 promises are
spelled as conditions a reader can check against the table. Their condition text is parsed, and the
checks are run, by ``exporter.probes``; this module only describes them.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from exporter.config.errors import KeyPathError
from exporter.config.types import HttpStatus, HttpUrl, Interval, Section, Severity, UrlPath, within

# The kinds exporter/probes/kinds/ implements (a test keeps the two in step).
CHECK_KINDS = ("http", "synthetic.hash", "listener.lag", "listener.progress", "chain.head", "eth_call", "balance")
# The kinds that read the chain through the listener's RPC settings: off without listener.rpc_url.
CHAIN_KINDS = ("chain.head", "eth_call", "balance")
CHAIN_HEAD_CHECK = "chain.head"
DERIVED_LOGIN_CHECK = "api.login"  # alerting.dependencies.LOGIN: the login, derived, a valid depends_on
# The listener's heartbeat rows in monitor_metrics (SPEC §2): not a check, never alerted on.
HEARTBEAT_CHECK = "listener.tick"
# The incident a reorg deeper than listener.max_reorg_depth opens (owned by the ``listen`` process).
LISTENER_REORG_INCIDENT = "listener.reorg"
# The incident opened when the store refuses events for good and they are quarantined (``listen`` owns it).
LISTENER_QUARANTINE_INCIDENT = "listener.quarantine"
# The SLO report's incidents are ``slo.<check>``; it resolves every open ``slo.*`` it did not judge.
SLO_INCIDENT_PREFIX = "slo."

LISTENER_CHECKS = ("listener.lag", "listener.progress")

# What a check name may hold: it becomes a Prometheus label value, a regex alternative between
# backquotes in generated rule expressions, a YAML scalar, a Grafana URL parameter, an incident name
# and a log field, and none of those needs quoting for these characters.
CHECK_NAME_CHARSET = "ASCII letters, digits, '.', '_' and '-', starting with a letter or digit"
_CHECK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# Names the exporter writes itself (heartbeat rows, incidents of its own), with who owns them. A check
# of the same name would pass for them: its rows for the heartbeat, its incident for the SLO report's.
RESERVED_CHECK_NAMES = {
    HEARTBEAT_CHECK: "the listener's heartbeat rows",
    LISTENER_REORG_INCIDENT: "the listener's reorg incident",
    LISTENER_QUARANTINE_INCIDENT: "the listener's quarantine incident",
}
RESERVED_CHECK_PREFIXES = {
    "listener.": "the listener's own names (only listener.lag and listener.progress, of their own kind, "
    "may be redefined)",
    SLO_INCIDENT_PREFIX: "the SLO report's incidents",
}


def _body_placeholder(text: str) -> str:
    """A place in an eth_call check's decoded result, like ``[BODY]`` or ``[BODY].count`` (the
    probes parse it further)."""
    if not text.startswith("[BODY]"):
        raise ValueError(f"expected a [BODY] placeholder like [BODY] or [BODY].count, got {text!r}")
    return text


def check_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a check, or None. (``listener.lag`` and ``listener.progress`` are
    check names, whose kind ``CheckSpec`` holds to their own.)"""
    if not _CHECK_NAME.fullmatch(name):
        return f"{name!r} is not a valid check name: use {CHECK_NAME_CHARSET}"
    if name in LISTENER_CHECKS:
        return None
    owner = RESERVED_CHECK_NAMES.get(name)
    if owner is None:
        owner = next((who for prefix, who in RESERVED_CHECK_PREFIXES.items() if name.startswith(prefix)), None)
    return f"{name!r} is a reserved name: it belongs to {owner}" if owner else None


class CheckSpec(Section):
    """One declared check (Gatus-style): what to call and which conditions make it healthy."""

    name: str = Field(min_length=1, max_length=100)
    kind: str = "http"
    method: Literal["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH"] = "GET"
    path: UrlPath | None = None  # appended to api.base_url
    url: HttpUrl | None = None  # an absolute URL instead of ``path``
    auth: bool = False  # send the JWT session's Bearer token
    json_body: dict[str, Any] | None = None
    expected_status: list[HttpStatus] = Field(default_factory=lambda: [200], min_length=1)
    conditions: list[str] = Field(default_factory=list)  # exporter/probes/conditions.py
    timeout: Annotated[Interval, within(0.1, 600)] | None = None  # defaults to checks.timeout
    severity: Severity = "warn"
    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: int | None = Field(default=None, ge=1)
    # The checks (or ``api.login``) whose failure explains this one's: while one of them fails, this
    # check's incidents are recorded but not notified. None: the defaults (exporter/alerting/
    # dependencies.py); []: none.
    depends_on: list[str] | None = None
    enabled: bool = True
    # chain.head: the newest block's timestamp must be younger than this.
    max_age: Annotated[Interval, within(1, 86_400)] = 60.0
    # eth_call: a view function of a contract of listener.contracts_config; conditions then judge the
    # decoded result as [BODY], and each placeholder of non_decreasing must never go below its last value.
    contract: str | None = Field(default=None, min_length=1)
    function: str | None = Field(default=None, min_length=1)  # a name, or a signature "f(uint256)"
    args: list[Any] = Field(default_factory=list)
    non_decreasing: list[Annotated[str, AfterValidator(_body_placeholder)]] = Field(default_factory=list)
    # balance: the native balance of ``address``, at least ``min_balance`` (whole coins, e.g. 0.5), and
    # when ``min_runway`` is set, lasting at least that long at the spend of the last 24 hours.
    address: str | None = None
    min_balance: Decimal | None = Field(default=None, ge=0)
    min_runway: Annotated[Interval, within(60, 365 * 86_400)] | None = None
    symbol: str = Field(default="POL", min_length=1, max_length=12)

    @field_validator("address")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.fullmatch(value):
            raise ValueError(f"expected a 0x-prefixed 20-byte hex address, got {value!r}")
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        problem = check_name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @field_validator("depends_on")
    @classmethod
    def _dependency_names(cls, names: list[str] | None) -> list[str] | None:
        for name in names or ():
            if not isinstance(name, str) or not _CHECK_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a check name: use {CHECK_NAME_CHARSET}")
        return names

    @model_validator(mode="after")
    def _one_target(self) -> CheckSpec:
        if self.name in LISTENER_CHECKS and self.kind != self.name:
            raise KeyPathError(("kind",), f"{self.name} is the listener's own check: its kind must be {self.name}")
        if self.kind not in CHECK_KINDS:
            raise KeyPathError(("kind",), f"unknown kind {self.kind!r} (one of: {', '.join(CHECK_KINDS)})")
        if self.kind in ("http", "synthetic.hash") and (self.path is None) == (self.url is None):
            key = "path" if self.path is None else "url"
            raise KeyPathError((key,), f"a {self.kind} check needs exactly one of path or url")
        needs = {"eth_call": ("contract", "function"), "balance": ("address", "min_balance")}.get(self.kind, ())
        for key in needs:
            if getattr(self, key) is None:
                raise KeyPathError((key,), f"required by a {self.kind} check")
        return self


def default_checks() -> list[CheckSpec]:
    return [
        CheckSpec(name="api.health", path="/api/health", severity="crit", conditions=["has([BODY])"]),
        CheckSpec(
            name="api.events",
            path="/api/explorer/events?limit=10&offset=0",
            auth=True,
            conditions=[
                "[BODY].status == ok",
                "len([BODY].events) >= 0",
                "len([BODY].events) == 0 || has([BODY].events[0].type)",
                "has([BODY].total)",
                "has([BODY].limit)",
                "has([BODY].offset)",
            ],
        ),
        CheckSpec(
            name="api.contracts",
            path="/api/explorer/contracts",
            auth=True,
            conditions=["len([BODY].contracts) >= 1"],
        ),
        CheckSpec(
            name="api.stats",
            path="/api/explorer/stats",
            auth=True,
            conditions=["has([BODY].stats.total_events)", "has([BODY].stats.events_24h)"],
        ),
        CheckSpec(name=CHAIN_HEAD_CHECK, kind="chain.head", severity="crit"),
        CheckSpec(name="listener.lag", kind="listener.lag", severity="crit"),
        CheckSpec(name="listener.progress", kind="listener.progress", severity="warn"),
        CheckSpec(
            name="synthetic.hash",
            kind="synthetic.hash",
            method="POST",
            path="/api/signature/hash-file",
            auth=True,
        ),
        CheckSpec(
            name="synthetic.wallet_info",
            path="/api/wallet/info",
            auth=True,
            expected_status=[200, 404],  # 404: no wallet yet, still healthy
            conditions=["[STATUS] == 404 || has([BODY].address)"],
        ),
        CheckSpec(
            name="synthetic.nft_status",
            path="/api/nft/status",
            auth=True,
            expected_status=[200, 404],  # 404: no NFT yet, still healthy
            conditions=["[STATUS] == 404 || has([BODY].has_nft)", "[STATUS] == 404 || has([BODY].nft_id)"],
        ),
    ]

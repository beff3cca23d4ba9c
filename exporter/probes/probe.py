"""The one probe signature, blackbox_exporter style: ``probe(spec, ctx) -> Outcome``.

A probe performs one check and says whether it passed and why; it never raises for an
expected failure, never records anything and never measures its own timestamp: the round
runner (``runner.py``) does that for every kind alike. Not for defining checks
(``exporter.config.checks``) nor for choosing a probe by kind (``kinds/``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.clock import Clock
from exporter.config import CheckSpec
from exporter.probes import conditions
from exporter.probes.chain import ChainReader
from exporter.probes.httpclient import TRANSPORT_ERRORS, HttpClient
from exporter.probes.session import JwtSession
from exporter.store.base import CheckResult

ERROR_CLASSES: frozenset[str] = TRANSPORT_ERRORS | {
    # the answer arrived and is judged
    "http_status",  # a status not in expected_status (a 3xx too: redirects are not followed)
    "unauthorized",  # 401 after the one fresh login, or with the token this round's login gave
    "malformed_json",  # the body is not UTF-8 JSON
    "wrong_shape",  # a path a condition or kind reads is missing or of the wrong type
    "condition_failed",
    "wrong_hash",
    # no answer of its own
    "login_failed",  # details.status_code and bytes are then the login answer's
    "config",
    "store_error",
    "no_heartbeat",
    "listener_lag",
    "stalled",
    "round_timeout",
    # chain kinds (chain.head, eth_call, balance)
    "rpc_error",  # the RPC call failed (refused, timed out, an error answer); the reason says which
    "stale_head",  # the newest block is older than max_age: the provider (or the chain) stalled
    "went_back",  # a non_decreasing value is below the last one seen
    "low_balance",
    "short_runway",
    "internal_error",  # a bug in a probe (logged with its traceback), never a server's answer
}
"""Every ``details.error`` a check result can carry (None on success)."""


class HeartbeatSource(Protocol):
    """The part of the Store the listener checks read."""

    def latest_result(self, check_name: str) -> CheckResult | None: ...


@dataclass(frozen=True)
class Outcome:
    """One probe's verdict. ``seconds`` is the measured latency when the probe knows it better
    than the runner (the exchange that decided an HTTP verdict, without the login it needed);
    None lets the runner record the time from the check's own start, waits included.
    ``details`` follows SPEC §2: status_code, error (one of ``ERROR_CLASSES``, None on
    success), reason, bytes."""

    ok: bool
    reason: str
    error: str | None = None
    status_code: int | None = None
    bytes_read: int = 0
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "error": self.error,
            "reason": self.reason,
            "bytes": self.bytes_read,
            **self.extra,
        }


@dataclass
class ProbeContext:
    """What probes may use; one per round runner, shared by all checks (thread-safe parts only)."""

    client: HttpClient
    session: JwtSession | None  # None when no API is configured
    clock: Clock
    heartbeats: HeartbeatSource | None  # the Store, for listener.* checks
    base_url: str | None
    default_timeout: float
    max_body_bytes: int
    max_listener_lag: float
    chain: ChainReader | None = None  # the listener's RPC, for the chain kinds; None without an RPC URL
    # Per-check memory across rounds (e.g. listener.progress's previous block); keyed by check name.
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    _parsed: dict[str, tuple[conditions.Condition, ...]] = field(default_factory=dict)

    def conditions(self, spec: CheckSpec) -> tuple[conditions.Condition, ...]:
        """The spec's conditions, parsed once (they were validated at config load)."""
        parsed = self._parsed.get(spec.name)
        if parsed is None:
            parsed = tuple(conditions.parse(text) for text in spec.conditions)
            self._parsed[spec.name] = parsed
        return parsed

    def timeout(self, spec: CheckSpec) -> float:
        return spec.timeout if spec.timeout is not None else self.default_timeout

    def url(self, spec: CheckSpec) -> str:
        if spec.url is not None:
            return spec.url
        if self.base_url is None:
            raise ValueError("api.base_url is not set")
        return self.base_url + (spec.path or "")


ProbeFn = Callable[[CheckSpec, ProbeContext], Outcome]

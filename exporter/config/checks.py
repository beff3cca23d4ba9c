"""Checks as configuration: ``CheckSpec`` (one declared check, Gatus-style), the kinds there are,
the nine default checks of SPEC §1 and the names SPEC fixes.

The defaults are declared exactly like user checks, so ``config.yaml`` can override any of them by
name (a user item named ``api.health`` replaces the default) and the shapes SPEC §1 promises are
spelled as conditions a reader can check against the table. Their condition text is parsed, and the
checks are run, by ``exporter.probes``; this module only describes them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from exporter.config.types import HttpUrl, Interval, Section, Severity

# The kinds exporter/probes/kinds/ implements (a test keeps the two in step).
CHECK_KINDS = ("http", "synthetic.hash", "listener.lag", "listener.progress")
# The listener's heartbeat rows in monitor_metrics (SPEC §2): not a check, never alerted on.
HEARTBEAT_CHECK = "listener.tick"

LISTENER_CHECKS = ("listener.lag", "listener.progress")


class CheckSpec(Section):
    """One declared check (Gatus-style): what to call and which conditions make it healthy."""

    name: str = Field(min_length=1, max_length=100)
    kind: str = "http"
    method: Literal["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH"] = "GET"
    path: str | None = None  # appended to api.base_url
    url: HttpUrl | None = None  # an absolute URL instead of ``path``
    auth: bool = False  # send the JWT session's Bearer token
    json_body: dict[str, Any] | None = None
    expected_status: list[int] = Field(default_factory=lambda: [200])
    conditions: list[str] = Field(default_factory=list)  # exporter/probes/conditions.py
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

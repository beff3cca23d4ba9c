"""The nine checks of SPEC §1, as ordinary ``CheckSpec`` values.

They are declared exactly like user checks, so ``config.yaml`` can override any of them by
name (a user item named ``api.health`` replaces the default) and the shapes SPEC §1 promises
are spelled as conditions a reader can check against the table. Not for running them.
"""

from __future__ import annotations

from exporter.config import CheckSpec

API_CHECKS = ("api.health", "api.events", "api.contracts", "api.stats")
SYNTHETIC_CHECKS = ("synthetic.hash", "synthetic.wallet_info", "synthetic.nft_status")
LISTENER_CHECKS = ("listener.lag", "listener.progress")


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

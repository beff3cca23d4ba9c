"""Reading the listener's heartbeat for the ``listener.*`` kinds, with one place for the ways it
can be missing (no store, store down, no heartbeat yet). Not for judging it: each kind does that."""

from __future__ import annotations

from exporter.config import HEARTBEAT_CHECK
from exporter.probes.probe import Outcome, ProbeContext
from exporter.store.base import CheckResult, StoreError

__all__ = ["HEARTBEAT_CHECK", "newest_heartbeat"]


def newest_heartbeat(ctx: ProbeContext) -> CheckResult | Outcome:
    """The newest ``listener.tick`` row, or a failed Outcome saying why there is none."""
    if ctx.heartbeats is None:
        return Outcome(ok=False, error="config", reason="no store to read the listener heartbeat from")
    try:
        beat = ctx.heartbeats.latest_result(HEARTBEAT_CHECK)
    except StoreError as exc:
        return Outcome(ok=False, error="store_error", reason=f"cannot read the heartbeat: {exc}"[:300])
    if beat is None:
        return Outcome(ok=False, error="no_heartbeat", reason="the listener has not written a heartbeat yet")
    return beat

"""The ``listener.progress`` kind: is the listener catching up with the chain?

Fails when the newest heartbeat says the listener is behind the head and its processed block
did not advance since the previous round of this check (remembered in the probe context).
The first observation cannot show a stall and passes. Not for heartbeat age (``listener_lag.py``).
"""

from __future__ import annotations

from exporter.config import CheckSpec
from exporter.probes.kinds.heartbeat import newest_heartbeat
from exporter.probes.probe import Outcome, ProbeContext


def probe_progress(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    beat = newest_heartbeat(ctx)
    if isinstance(beat, Outcome):
        return beat
    processed = beat.details.get("processed_block")
    head = beat.details.get("head_block")
    if not isinstance(processed, int) or not isinstance(head, int):
        return Outcome(ok=False, error="wrong_shape", reason="heartbeat lacks processed_block / head_block")
    behind = beat.details.get("blocks_behind")
    behind = behind if isinstance(behind, int) else max(0, head - processed)
    memory = ctx.memory.setdefault(spec.name, {})
    previous = memory.get("processed_block")
    memory["processed_block"] = processed
    extra = {"processed_block": processed, "head_block": head, "blocks_behind": behind}
    if behind > 0 and isinstance(previous, int) and processed <= previous:
        return Outcome(
            ok=False,
            error="stalled",
            reason=f"processed block {processed} did not advance since the last round ({behind} behind)",
            extra=extra,
        )
    return Outcome(ok=True, reason=f"processed block {processed}, {behind} behind the head", extra=extra)

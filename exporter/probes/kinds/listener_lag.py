"""The ``listener.lag`` kind: is the chain listener's newest heartbeat recent enough?

Reads the newest ``listener.tick`` row through the Store. No heartbeat at all fails, and so
does one older than ``listener.max_lag`` (``MAX_LISTENER_LAG_SEC``), measured on the injected
Clock. Not for judging block progress (``listener_progress.py``).
"""

from __future__ import annotations

from exporter.config import CheckSpec
from exporter.probes.kinds.heartbeat import HEARTBEAT_CHECK, newest_heartbeat
from exporter.probes.probe import Outcome, ProbeContext


def probe_lag(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    beat = newest_heartbeat(ctx)
    if isinstance(beat, Outcome):
        return beat
    age = max(0.0, (ctx.clock.now() - beat.ts).total_seconds())
    extra = {"lag_seconds": round(age, 3)}
    if age > ctx.max_listener_lag:
        return Outcome(
            ok=False,
            error="listener_lag",
            reason=f"newest {HEARTBEAT_CHECK} is {age:.0f}s old (limit {ctx.max_listener_lag:g}s)",
            extra=extra,
        )
    return Outcome(ok=True, reason=f"newest {HEARTBEAT_CHECK} is {age:.0f}s old", extra=extra)

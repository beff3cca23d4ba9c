"""The ``chain.head`` kind: is the RPC provider's newest block fresh?

Reads the latest block through the listener's RPC client and fails when its timestamp is older than
the check's ``max_age`` (measured on the injected Clock), so a stalled provider (or chain) is told
apart from a stuck listener: ``chain.head`` fails only in the first. (A stalled chain that still
answers leaves ``listener.lag`` passing, as the idle listener keeps writing its heartbeat; with
``confirmations`` its ``listener.progress`` fails. A provider that does not answer fails both.)
Not for the listener's own progress (``listener_progress.py``).
"""

from __future__ import annotations

from exporter.config import CheckSpec
from exporter.probes.chain import ChainAnswerError, ChainCallError
from exporter.probes.probe import Outcome, ProbeContext


def probe_chain_head(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    if ctx.chain is None:
        return Outcome(ok=False, error="config", reason="no RPC URL configured (listener.rpc_url)")
    try:
        number, timestamp = ctx.chain.head()
    except (ChainCallError, ChainAnswerError) as exc:
        return Outcome(ok=False, error="rpc_error", reason=str(exc)[:300])
    age = max(0.0, ctx.clock.now().timestamp() - timestamp)
    extra = {"head_block": number, "head_age_seconds": round(age, 3)}
    if age > spec.max_age:
        return Outcome(
            ok=False,
            error="stale_head",
            reason=f"newest block {number} is {age:.0f}s old (limit {spec.max_age:g}s): the RPC head is not moving",
            extra=extra,
        )
    return Outcome(ok=True, reason=f"newest block {number} is {age:.0f}s old", extra=extra)

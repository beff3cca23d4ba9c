"""The ``balance`` kind: is a wallet's native balance above its threshold, and how long will it last?

Reads ``eth_getBalance`` of ``address`` through the listener's RPC client. Fails below
``min_balance`` (whole coins of ``symbol``; 1 coin = 10**18 wei), and, when ``min_runway`` is set,
when the runway is shorter. Runway = balance ÷ spend rate, the spend rate being the sum of the
balance's decreases (top-ups are not negative spend) over the last 24 hours divided by the time
those samples span. The history is this check's own balance samples, kept in the probe context's
memory (one per round, 24 hours' worth): after a restart the runway covers the time since then,
and the message says over how long the spend was measured. Every message gives the runway.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import Any

from exporter.config import CheckSpec
from exporter.probes.chain import ChainAnswerError, ChainCallError
from exporter.probes.probe import Outcome, ProbeContext

WEI_PER_COIN = Decimal(10) ** 18
SPEND_WINDOW_SECONDS = 86_400.0  # "spend over the last 24 h"


def probe_balance(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    if ctx.chain is None or spec.address is None or spec.min_balance is None:
        return Outcome(ok=False, error="config", reason="no RPC URL configured (listener.rpc_url)")
    try:
        wei = ctx.chain.balance(spec.address)
    except (ChainCallError, ChainAnswerError) as exc:
        return Outcome(ok=False, error="rpc_error", reason=str(exc)[:300])
    now = ctx.clock.now().timestamp()
    history: list[tuple[float, int]] = ctx.memory.setdefault(spec.name, {}).setdefault("history", [])
    history.append((now, wei))
    history[:] = [(ts, value) for ts, value in history if ts >= now - SPEND_WINDOW_SECONDS]
    runway, runway_text = runway_of(history)
    coins = Decimal(wei) / WEI_PER_COIN
    extra: dict[str, Any] = {"balance_wei": str(wei), "runway_seconds": None if runway is None else round(runway)}
    text = f"balance {_coins(coins)} {spec.symbol} (min {_coins(spec.min_balance)}); {runway_text}"
    if coins < spec.min_balance:
        return Outcome(ok=False, error="low_balance", reason=text, extra=extra)
    if spec.min_runway is not None and runway is not None and runway < spec.min_runway:
        return Outcome(ok=False, error="short_runway", reason=f"{text}, below {_span(spec.min_runway)}", extra=extra)
    return Outcome(ok=True, reason=text, extra=extra)


def runway_of(history: list[tuple[float, int]]) -> tuple[float | None, str]:
    """(seconds the last balance lasts at the spend rate of ``history``, or None when nothing was spent;
    the sentence for the message). ``history``: (Unix seconds, wei) samples, oldest first."""
    spent = sum(max(0, earlier - later) for (_, earlier), (_, later) in pairwise(history))
    span = history[-1][0] - history[0][0] if history else 0.0
    measured = f"spend over the last {_span(span)}" if span < SPEND_WINDOW_SECONDS - 1 else "spend over the last 24h"
    if spent == 0 or span <= 0:
        return None, f"runway unknown: nothing spent ({measured})" if span > 0 else "runway unknown: first sample"
    per_second = Decimal(spent) / Decimal(span)
    runway = float(Decimal(history[-1][1]) / per_second)
    per_day = per_second * 86_400 / WEI_PER_COIN
    return runway, f"runway {_span(runway)} at {_coins(per_day)}/day ({measured})"


def _coins(value: Decimal) -> str:
    return f"{float(value):.6g}" if value < 10**6 else f"{value:.0f}"


def _span(seconds: float) -> str:
    """A duration for people: "45s", "12.5 min", "3.2 h", "4.1 d"."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7_200:
        return f"{seconds / 60:.3g} min"
    if seconds < 172_800:
        return f"{seconds / 3_600:.3g} h"
    return f"{seconds / 86_400:.3g} d"

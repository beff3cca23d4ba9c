"""The ``eth_call`` kind: call a view function of a followed contract and judge the decoded result.

The call (contract address, ABI-encoded call data, output types) was resolved at start-up from
``listener.contracts_config`` (``chain.resolve_view_calls``). The decoded result is the ``[BODY]``
of the check's conditions: the only output itself (``[BODY] == false`` for a ``paused()`` flag),
or an object of the outputs by name (``[BODY].count``; unnamed outputs by position, ``[BODY].0``).
Each placeholder of ``non_decreasing`` (a counter that must never go back) fails the check while
its value is below the highest value seen since this process started (kept in the probe context's
memory, so a counter that went back keeps failing until it is past its old value again).
"""

from __future__ import annotations

import json
from typing import Any

from exporter.config import CheckSpec
from exporter.probes import conditions
from exporter.probes.chain import ChainAnswerError, ChainCallError
from exporter.probes.probe import Outcome, ProbeContext

_SHOWN_RESULT_CHARS = 200  # of the decoded result, in details.result


def probe_eth_call(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    view = ctx.chain.views.get(spec.name) if ctx.chain is not None else None
    if ctx.chain is None or view is None:
        return Outcome(ok=False, error="config", reason="no RPC URL configured (listener.rpc_url)")
    started = ctx.client.timer()
    try:
        raw = ctx.chain.call("eth_call", [{"to": view.address, "data": view.data}, "latest"])
        result = view.decode(raw)
    except ChainCallError as exc:  # a revert too ("execution reverted")
        return Outcome(ok=False, error="rpc_error", reason=str(exc)[:300])
    except ChainAnswerError as exc:
        return Outcome(ok=False, error="wrong_shape", reason=str(exc)[:300])
    seconds = ctx.client.timer() - started
    shown = json.dumps(result)
    extra: dict[str, Any] = {"result": shown if len(shown) <= _SHOWN_RESULT_CHARS else shown[:197] + "..."}
    answer = conditions.Answer(200, seconds * 1000.0, shown.encode())
    call = f"{view.contract}.{view.signature}"
    for condition in ctx.conditions(spec):
        try:
            conditions.check(condition, answer)
        except conditions.ConditionError as failure:
            return Outcome(ok=False, error=failure.error, reason=f"{call}: {failure.reason}"[:300], extra=extra)
    went_back = _went_back(spec, ctx, answer)
    if went_back is not None:
        return Outcome(ok=False, error=went_back[0], reason=f"{call}: {went_back[1]}"[:300], extra=extra)
    return Outcome(ok=True, reason=f"{call} = {extra['result']}", extra=extra)


def _went_back(spec: CheckSpec, ctx: ProbeContext, answer: conditions.Answer) -> tuple[str, str] | None:
    """(error, reason) for the first ``non_decreasing`` value below its highest value seen, else None."""
    highest: dict[str, int | float] = ctx.memory.setdefault(spec.name, {}).setdefault("highest", {})
    problem: tuple[str, str] | None = None
    for text in spec.non_decreasing:
        try:
            value = conditions.value_of(conditions.parse_placeholder(text), answer)
        except conditions.ConditionError as failure:
            problem = problem or (failure.error, failure.reason)
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            problem = problem or ("wrong_shape", f"{text} is {json.dumps(value)[:60]}, not a number")
            continue
        previous = highest.get(text)
        if previous is not None and value < previous:
            problem = problem or ("went_back", f"{text} went back to {value} (it was {previous})")
            continue
        highest[text] = value
    return problem

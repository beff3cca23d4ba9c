"""The ``http`` kind: call a URL (optionally with the JWT session) and judge the answer.

A check passes when the status is one of ``expected_status`` and every condition holds
(``conditions.py``). With ``auth: true`` the session's Bearer token is sent; a 401 causes one
fresh login and one retry (unless the token is from this round's login: see ``session.py``).
The check's ``timeout`` is one hard budget for all of it (login, request, re-login, retry).

Latency: a verdict given by an answer (success, a status, a condition, a body or framing
fault) or by the connection of the check's own request measures that exchange, never the
login, so the SLO latency is the endpoint's. A verdict given by the login (failed, or given up
waiting for another check's login) or by the time running out has no exchange of its own: it
leaves ``Outcome.seconds`` None, and the runner records the time from the check's own start,
waiting included. ``exchange()`` is shared with the other HTTP-based kinds (``synthetic_hash``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from exporter.config import CheckSpec
from exporter.probes import conditions
from exporter.probes.httpclient import HttpError, HttpRequest, HttpResponse
from exporter.probes.probe import Outcome, ProbeContext
from exporter.probes.session import LoginError


def probe_http(spec: CheckSpec, ctx: ProbeContext) -> Outcome:
    body = json.dumps(spec.json_body).encode() if spec.json_body is not None else None
    outcome, _ = exchange(spec, ctx, body)
    return outcome


def exchange(spec: CheckSpec, ctx: ProbeContext, body: bytes | None) -> tuple[Outcome, HttpResponse | None]:
    """Perform the check's request and apply its status and conditions; the response is
    returned too (when one arrived) so that a kind can judge more of it."""
    try:
        url = ctx.url(spec)
    except ValueError as exc:
        return Outcome(ok=False, error="config", reason=str(exc)), None
    budget = _Budget(ctx.client.timer, ctx.timeout(spec))
    token: str | None = None
    try:
        if spec.auth:
            if ctx.session is None:
                return Outcome(ok=False, error="login_failed", reason="no API session configured"), None
            try:
                token = ctx.session.token(budget.left())
            except LoginError as failure:
                return _login_failed(failure, ""), None
        response = _fetch(spec, ctx, url, body, token, timeout=budget.left())
        if response.status == 401 and token is not None and ctx.session is not None:
            # SPEC §1: a 401 means the token expired; log in once more and retry once.
            try:
                fresh = ctx.session.renew(token, budget.left())
            except LoginError as failure:
                return _login_failed(failure, "HTTP 401, then "), None
            if fresh is None:
                reason = "HTTP 401 with the token this round's login just gave (not logging in twice in a round)"
                return _verdict_of(response, "unauthorized", reason), response
            response = _fetch(spec, ctx, url, body, fresh, timeout=budget.left())
            if response.status == 401:
                return _verdict_of(response, "unauthorized", "HTTP 401 even after a fresh login"), response
    except HttpError as failure:
        return Outcome(
            ok=False,
            error=failure.error,
            reason=failure.reason,
            status_code=failure.status,
            bytes_read=failure.bytes_read,
            seconds=None if failure.error == "timeout" else failure.seconds,
        ), None
    return judge(spec, ctx, response), response


def judge(spec: CheckSpec, ctx: ProbeContext, response: HttpResponse) -> Outcome:
    """Expected status first, then the conditions in order; the first failure is the reason."""
    if response.status not in spec.expected_status:
        expected = ", ".join(str(code) for code in spec.expected_status)
        moved = "; redirects are not followed" if 300 <= response.status < 400 else ""
        return _verdict_of(response, "http_status", f"HTTP {response.status} (expected {expected}{moved})")
    answer = conditions.Answer(response.status, response.seconds * 1000.0, response.body)
    for condition in ctx.conditions(spec):
        try:
            conditions.check(condition, answer)
        except conditions.ConditionError as failure:
            return _verdict_of(response, failure.error, failure.reason)
    return _verdict_of(response, None, f"HTTP {response.status}")


def _verdict_of(response: HttpResponse, error: str | None, reason: str) -> Outcome:
    return Outcome(
        ok=error is None,
        error=error,
        reason=reason[:300],
        status_code=response.status,
        bytes_read=len(response.body),
        seconds=response.seconds,
    )


def _fetch(
    spec: CheckSpec, ctx: ProbeContext, url: str, body: bytes | None, token: str | None, *, timeout: float
) -> HttpResponse:
    headers: dict[str, str] = {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = HttpRequest(spec.method, url, headers, body)
    return ctx.client.fetch(request, timeout=timeout, max_body_bytes=ctx.max_body_bytes)


class _Budget:
    """What is left of the check's timeout; ``HttpError`` (timeout) once it is spent."""

    def __init__(self, timer: Callable[[], float], timeout: float) -> None:
        self._timer = timer
        self._timeout = timeout
        self._end = timer() + timeout

    def left(self) -> float:
        remaining = self._end - self._timer()
        if remaining <= 0:
            raise HttpError(
                "timeout",
                f"no complete answer within {self._timeout:.3g}s (login and retry included)",
                seconds=self._timeout,
            )
        return remaining


def _login_failed(failure: LoginError, prefix: str) -> Outcome:
    """The login's status and byte count, and no latency of its own (the runner measures the check)."""
    return Outcome(
        ok=False,
        error="login_failed",
        reason=f"{prefix}{failure.reason}"[:300],
        status_code=failure.status,
        bytes_read=failure.bytes_read,
    )

"""The monitoring account's JWT session: one login per token lifetime, at most one per round.

``token()`` returns a valid token, logging in only when there is none or it is within
``refresh_margin`` of ``expires_in`` (measured on the injected ``Clock``). ``renew(stale)``
is called after a 401: it logs in again unless another check already did. Both are
thread-safe, so concurrent checks cause one login, not one each.

A round (``start_round()`` to the next call) makes at most one login attempt, whatever happens:
a failed login is remembered and the other checks of the round fail with the same reason
instead of hammering the login endpoint; a 401 answered to the token this very round obtained
does not cause a second login (``renew`` returns None: the token is not the problem). Before
the first ``start_round()`` there is no such limit.

A login answer is judged strictly, and every failure names what was wrong (``login: "token"
is empty``, ``login: the answer is an array, expected an object with "token"``). A usable
token with an unusable ``expires_in`` (missing, null, not a number, not positive, over a
year) is kept for ``default_lifetime`` seconds, and the reason is logged once, not every round.
Credentials and tokens are never put into errors, logs or reasons on purpose, and a server may
still echo them: every token obtained is given to the process's ``Redactor`` (the current and
the previous one are kept there), which masks it wherever results, logs and notices go. Not for the checks themselves
(``kinds/http.py``) nor for HTTP details (``httpclient.py``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr

from exporter.clock import Clock
from exporter.probes import jsonbody
from exporter.probes.httpclient import HttpClient, HttpError, HttpRequest, HttpResponse
from exporter.redact import Redactor

log = logging.getLogger(__name__)

_MAX_LIFETIME = 366 * 24 * 3600.0  # a longer expires_in is a bug on the server, not a token policy
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # what a Bearer token can be sent as (RFC 6750 b64token and more)


class LoginError(Exception):
    """No token could be obtained; ``reason`` is safe to show (no credentials). ``status`` and
    ``bytes_read`` are the login answer's (None / 0 when none came)."""

    def __init__(self, reason: str, *, status: int | None = None, bytes_read: int = 0) -> None:
        super().__init__(reason)
        self.error = "login_failed"
        self.reason = reason
        self.status = status
        self.bytes_read = bytes_read


class JwtSession:
    def __init__(
        self,
        client: HttpClient,
        clock: Clock,
        *,
        login_url: str,
        email: str | None,
        password: SecretStr | None,
        refresh_margin: float,
        timeout: float,
        max_body_bytes: int,
        default_lifetime: float = 900.0,
        redactor: Redactor | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._login_url = login_url
        self._email = email
        self._password = password
        self._margin = refresh_margin
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        self._default_lifetime = default_lifetime
        # Each token obtained is a secret of the process from then on: masked in every output. The
        # one it replaced stays masked too (a check may still be answering with it), the older go.
        self._redactor = redactor
        self._masked: list[str] = []
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0  # Clock.monotonic() after which the token is renewed
        self._failure: LoginError | None = None
        self._rounds_started = False
        self._tried_this_round = False
        self._lifetime_warning: str | None = None  # the last reason logged, so it is logged once
        self.logins = 0  # successful logins, for tests and the log
        self.attempts = 0  # login exchanges tried, successful or not

    def start_round(self) -> None:
        """A new round: it may make one login attempt (the last round's failure is forgotten)."""
        with self._lock:
            self._rounds_started = True
            self._tried_this_round = False
            self._failure = None

    def token(self, timeout: float | None = None) -> str:
        """A valid token; a login, if needed, waits at most ``timeout`` (the caller's time left)."""
        with self._locked(timeout):
            if self._token is not None and (self._tried_this_round or self._clock.monotonic() < self._refresh_at):
                return self._token  # a token due for renewal serves the rest of the round that got it
            return self._login(timeout)

    def renew(self, stale: str, timeout: float | None = None) -> str | None:
        """After a 401 with ``stale``: log in again, unless someone already replaced it. None when
        ``stale`` came from this round's login: a second login would not help, and costs one."""
        with self._locked(timeout):
            if self._token is not None and self._token != stale:
                return self._token
            if self._tried_this_round and self._failure is None:
                return None
            self._token = None
            return self._login(timeout)

    @contextmanager
    def _locked(self, timeout: float | None) -> Iterator[None]:
        # Another check may be logging in; waiting for it counts against this check's time too.
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise LoginError(f"login: no answer within {timeout:.3g}s (another check was logging in)")
        try:
            yield
        finally:
            self._lock.release()

    def _login(self, timeout: float | None) -> str:
        if self._failure is not None:
            raise self._failure
        if self._rounds_started:
            self._tried_this_round = True
        self.attempts += 1
        try:
            self._token, lifetime = self._exchange(self._timeout if timeout is None else min(timeout, self._timeout))
        except LoginError as failure:
            self._token = None
            self._failure = failure
            log.warning("monitoring login failed: %s", failure.reason)
            raise
        self.logins += 1
        self._mask(self._token)
        # Renew `margin` before expiry, but never sooner than half-way through a short lifetime.
        margin = min(self._margin, lifetime / 2)
        self._refresh_at = self._clock.monotonic() + lifetime - margin
        log.info("monitoring login succeeded; token valid for %gs", lifetime)
        return self._token

    def _exchange(self, timeout: float) -> tuple[str, float]:
        if not self._email or self._password is None:
            raise LoginError("no monitoring credentials configured (api.email / api.password)")
        payload = {"email": self._email, "password": self._password.get_secret_value()}
        request = HttpRequest(
            "POST",
            self._login_url,
            {"Content-Type": "application/json"},
            json.dumps(payload).encode(),
        )
        try:
            response = self._client.fetch(request, timeout=timeout, max_body_bytes=self._max_body_bytes)
        except HttpError as failure:
            raise LoginError(f"login: {failure.reason}", status=failure.status, bytes_read=failure.bytes_read) from None
        if response.status != 200:
            raise self._refused(response, f"login answered HTTP {response.status}")
        try:
            answer = jsonbody.parse(response.body)
        except jsonbody.JsonBodyError as exc:
            kind = response.headers.get("content-type", "no content-type")
            raise self._refused(response, f"login: the answer is {exc.reason} ({kind})") from None
        if not isinstance(answer, dict):
            raise self._refused(
                response, f'login: the answer is {jsonbody.type_name(answer)}, expected an object with "token"'
            )
        problem = _token_problem(answer)
        if problem is not None:
            raise self._refused(response, f"login: {problem}")
        return answer["token"], self._lifetime(answer)

    def _mask(self, token: str) -> None:
        if self._redactor is None or token in self._masked:
            return
        self._redactor.remember(token)
        self._masked.append(token)
        while len(self._masked) > 2:
            self._redactor.forget(self._masked.pop(0))

    @staticmethod
    def _refused(response: HttpResponse, reason: str) -> LoginError:
        return LoginError(reason[:300], status=response.status, bytes_read=len(response.body))

    def _lifetime(self, answer: dict[str, Any]) -> float:
        problem = _lifetime_problem(answer)
        if problem is None:
            return float(answer["expires_in"])
        if problem != self._lifetime_warning:  # once per distinct reason, not every round
            self._lifetime_warning = problem
            log.warning(
                "login: %s; the token is kept for api.default_token_lifetime (%gs)", problem, self._default_lifetime
            )
        return self._default_lifetime


def _token_problem(answer: dict[str, Any]) -> str | None:
    """Why the answer's token cannot be used (never quoting it), or None."""
    if "token" not in answer:
        keys = ", ".join(sorted(json.dumps(key) for key in answer)[:8]) or "none"
        return f'the answer has no "token" (keys: {keys})'[:200]
    token = answer["token"]
    if not isinstance(token, str):
        return f'"token" is {jsonbody.type_name(token)}, expected a string'
    if not token:
        return '"token" is empty'
    if not _HEADER_SAFE.fullmatch(token):
        return '"token" has characters that cannot be sent in an Authorization header'
    return None


def _lifetime_problem(answer: dict[str, Any]) -> str | None:
    """Why ``expires_in`` is not a usable number of seconds, or None."""
    if "expires_in" not in answer:
        return '"expires_in" is missing'
    value = answer["expires_in"]
    if value is None:
        return '"expires_in" is null'
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f'"expires_in" is {jsonbody.type_name(value)} ({_show(value)}), expected a number of seconds'
    if isinstance(value, float) and math.isnan(value):
        return '"expires_in" is NaN, expected a positive number of seconds'
    if value <= 0:
        return f'"expires_in" is {_show(value)}, expected a positive number of seconds'
    if value > _MAX_LIFETIME:
        return f'"expires_in" is {_show(value)}, more than a year'
    return None


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:21] + "..."

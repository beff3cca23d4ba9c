"""The monitoring account's JWT session: one login per token lifetime, shared by all checks.

``token()`` returns a valid token, logging in only when there is none or it is within
``refresh_margin`` of ``expires_in`` (measured on the injected ``Clock``). ``renew(stale)``
is called after a 401: it logs in again unless another check already did. Both are
thread-safe, so concurrent checks cause one login, not one each.

A failed login is remembered until ``start_round()``: the other checks of the same round fail
with the same reason instead of hammering the login endpoint with bad credentials.
Credentials and tokens never appear in errors, logs or reasons. Not for the checks themselves
(``http.py``) nor for HTTP details (``httpclient.py``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import SecretStr

from exporter.clock import Clock
from exporter.probes.httpclient import HttpClient, HttpError, HttpRequest

log = logging.getLogger(__name__)


class LoginError(Exception):
    """No token could be obtained; ``reason`` is safe to show (no credentials)."""

    def __init__(self, reason: str, *, status: int | None = None, seconds: float = 0.0) -> None:
        super().__init__(reason)
        self.error = "login_failed"
        self.reason = reason
        self.status = status
        self.seconds = seconds


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
    ) -> None:
        self._client = client
        self._clock = clock
        self._login_url = login_url
        self._email = email
        self._password = password
        self._margin = refresh_margin
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0  # Clock.monotonic() after which the token is renewed
        self._failure: LoginError | None = None
        self.logins = 0  # successful logins, for tests and the log

    def start_round(self) -> None:
        """Forget the last failed login so that the new round tries once more."""
        with self._lock:
            self._failure = None

    def token(self, timeout: float | None = None) -> str:
        """A valid token; a login, if needed, waits at most ``timeout`` (the caller's time left)."""
        with self._locked(timeout):
            if self._token is not None and self._clock.monotonic() < self._refresh_at:
                return self._token
            return self._login(timeout)

    def renew(self, stale: str, timeout: float | None = None) -> str:
        """After a 401 with ``stale``: log in again, unless someone already replaced it."""
        with self._locked(timeout):
            if self._token is not None and self._token != stale:
                return self._token
            self._token = None
            return self._login(timeout)

    @contextmanager
    def _locked(self, timeout: float | None) -> Iterator[None]:
        # Another check may be logging in; waiting for it counts against this check's time too.
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise LoginError(f"login: no answer within {timeout:.3g}s (another check was logging in)")
        try:
            yield
        finally:
            self._lock.release()

    def _login(self, timeout: float | None) -> str:
        if self._failure is not None:
            raise self._failure
        try:
            self._token, lifetime = self._exchange(self._timeout if timeout is None else min(timeout, self._timeout))
        except LoginError as failure:
            self._token = None
            self._failure = failure
            log.warning("monitoring login failed: %s", failure.reason)
            raise
        self.logins += 1
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
            raise LoginError(f"login: {failure.reason}", status=failure.status, seconds=failure.seconds) from None
        if response.status != 200:
            raise LoginError(f"login answered HTTP {response.status}", status=response.status, seconds=response.seconds)
        try:
            answer = json.loads(response.body)
            token = answer["token"]
            lifetime = float(answer.get("expires_in", float("inf")))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise LoginError("login answer is not JSON with a token", status=200, seconds=response.seconds) from None
        if not isinstance(token, str) or not token or lifetime <= 0:
            raise LoginError("login answer has no usable token", status=200, seconds=response.seconds)
        return token, lifetime

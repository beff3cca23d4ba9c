"""HTTP basic authentication with bcrypt-hashed passwords, as a WSGI layer around a whole app.

Every request needs ``Authorization: Basic …`` naming a configured user and a password matching its
bcrypt hash; anything else gets ``401`` with ``WWW-Authenticate: Basic`` before the wrapped app runs.

bcrypt is slow on purpose (about 70 ms at cost 10), and Prometheus scrapes every 15 s, so, like the
exporter-toolkit, verdicts are cached. The cache never holds a password: its key is an HMAC of
(user, hash, password) under a random key made per process, and it keeps at most ``cache_size``
verdicts. An unknown user is checked against a decoy hash of the same cost, so the answer takes as
long as for a known one; users are compared in constant time. Only one bcrypt runs at a time, so a
burst of wrong passwords costs one core, not all of them.

Costs from ``MIN_BCRYPT_COST`` (bcrypt's own minimum) to ``MAX_BCRYPT_COST`` are accepted: each step
doubles the time of a check, and cost 31 would take days of CPU for one request. Building a
``BasicAuth`` verifies no hash (the decoy is made without running bcrypt at its cost), so
``check-config`` costs nothing whatever the cost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import bcrypt

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

REALM = "blocktrust-exporter"
DEFAULT_CACHE_SIZE = 256
MIN_BCRYPT_COST = 4  # bcrypt's minimum
MAX_BCRYPT_COST = 14  # about 1 s per check on one core (cost 10: about 70 ms); each step doubles it


def bcrypt_cost_problem(hashed: str) -> str | None:
    """Why the cost of ``hashed`` (a bcrypt hash, format already checked) is refused, or None."""
    cost = int(hashed.split("$")[2])
    if cost < MIN_BCRYPT_COST:
        return f"bcrypt cost {cost} is below bcrypt's minimum of {MIN_BCRYPT_COST} (value hidden)"
    if cost > MAX_BCRYPT_COST:
        seconds = 0.07 * 2 ** (cost - 10)
        took = f"{seconds / 86_400:.0f} days" if seconds >= 86_400 else f"{seconds:.0f} s"
        return (
            f"bcrypt cost {cost} is above the maximum of {MAX_BCRYPT_COST}: each check would take about "
            f"{took} of CPU; hash it with a cost from {MIN_BCRYPT_COST} to {MAX_BCRYPT_COST}, "
            "10 being usual (value hidden)"
        )
    return None


def parse_basic(header: str) -> tuple[bytes, bytes] | None:
    """``(user, password)`` from an ``Authorization`` header value, or None when it is not valid Basic.

    RFC 7617: the scheme is case-insensitive; the credentials are ``base64(user ":" password)``.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class BasicAuth:
    """The credential check; ``wrap(app)`` is the WSGI layer. Thread-safe.

    ``users`` maps user names to bcrypt hashes (``$2a$``/``$2b$``/``$2y$``, validated by the loader).
    """

    def __init__(self, users: Mapping[str, str], *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if not users:
            raise ValueError("basic auth needs at least one user")
        for hashed in users.values():
            problem = bcrypt_cost_problem(hashed)
            if problem:
                raise ValueError(problem)
        self._users = [(name.encode(), hashed.encode()) for name, hashed in users.items()]
        # Same cost as the first user's hash, so an unknown user takes as long to refuse as a known one.
        # Made of a fresh salt of that cost and the digest of a cheap cost-4 hash: a well-formed hash
        # that no password matches, without running bcrypt at the (maybe high) cost here.
        cost = int(self._users[0][1].split(b"$")[2])
        self._decoy = bcrypt.gensalt(cost) + bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(4))[29:]
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self.bcrypt_runs = 0  # how many hashes were computed (the cache at work, for tests)

    def check(self, header: str | None) -> bool:
        """True when ``header`` (the ``Authorization`` value) names a user with the right password."""
        credentials = parse_basic(header) if header else None
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._decoy
        known = False
        for name, candidate in self._users:  # every name compared, in constant time
            if hmac.compare_digest(name, user):
                hashed, known = candidate, True
        key = hmac.new(self._key, b"\0".join((user, hashed, password)), hashlib.sha256).digest()
        with self._cache_lock:
            verdict = self._cache.get(key)
            if verdict is not None:
                self._cache.move_to_end(key)
        if verdict is None:
            verdict = self._bcrypt(password, hashed)
            with self._cache_lock:
                self._cache[key] = verdict
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return known and verdict

    def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        with self._bcrypt_lock:
            self.bcrypt_runs += 1
            try:
                return bcrypt.checkpw(password, hashed)
            except ValueError:  # a password over bcrypt's 72 bytes: refused, like Go's bcrypt does
                return False

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """``app`` behind the check: a request without valid credentials never reaches it."""

        def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if self.check(environ.get("HTTP_AUTHORIZATION")):
                return app(environ, start_response)
            start_response(
                "401 Unauthorized",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
                ],
            )
            return [b"401 Unauthorized\n"]

        return guarded

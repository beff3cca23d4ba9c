"""The forms ``DATABASE_URL`` accepts (SPEC §2), for validating the configuration and for choosing the
store implementation. Never echoes a URL: it may hold a password."""

from __future__ import annotations

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgres+psycopg2://")
SQLITE_SCHEME = "sqlite:///"


def store_url_error(url: str) -> str | None:
    """Why ``url`` is not an accepted ``DATABASE_URL``, or None. Never echoes the URL (it may hold a password)."""
    if url.startswith(POSTGRES_SCHEMES):
        return _postgres_authority_error(url.split("://", 1)[1])
    if url.startswith(SQLITE_SCHEME) and len(url) > len(SQLITE_SCHEME):
        return None
    scheme = url.split("://", 1)[0] if "://" in url else "(none)"
    return (
        f"unsupported database URL scheme {scheme!r}: expected postgresql://, postgres://, "
        "postgresql+psycopg2:// or sqlite:///path"
    )


_ENCODE_HINT = "a user or password holding '/' or '@' must be percent-encoded (%2F, %40)"


def _postgres_authority_error(rest: str) -> str | None:
    """What libpq would trip over in the part after ``scheme://``, read as libpq reads it: the user
    information ends at the first ``@`` before any ``/``, the hosts (``host[:port]``, comma-separated) end
    at ``/`` or ``?``. A raw ``/`` in a password cuts the URL there, and libpq then reports a fragment of
    the password as a host or a port name at the first connection; this says so at load, naming no part
    of the URL."""
    slash, at = rest.find("/"), rest.find("@")
    if at != -1 and (slash == -1 or at < slash):
        rest = rest[at + 1 :]  # the user information, as libpq finds it
    end = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    hosts, path = rest[:end], rest[end:].split("?", 1)[0]
    if "@" in hosts or "@" in path:
        return f"postgresql URL: an '@' after the user information: {_ENCODE_HINT}"
    for host in hosts.split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        if ":" not in port:
            continue
        digits = port.rpartition(":")[2]
        if digits and not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= 65535):
            return f"postgresql URL: the port is not a number from 1 to 65535 (or {_ENCODE_HINT})"
    return None

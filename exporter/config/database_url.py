"""The forms ``DATABASE_URL`` accepts (SPEC §2), for validating the configuration and for choosing the
store implementation. Never echoes a URL: it may hold a password."""

from __future__ import annotations

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://", "postgres+psycopg2://")
SQLITE_SCHEME = "sqlite:///"


def store_url_error(url: str) -> str | None:
    """Why ``url`` is not an accepted ``DATABASE_URL``, or None. Never echoes the URL (it may hold a password)."""
    if url.startswith(POSTGRES_SCHEMES):
        return None
    if url.startswith(SQLITE_SCHEME) and len(url) > len(SQLITE_SCHEME):
        return None
    scheme = url.split("://", 1)[0] if "://" in url else "(none)"
    return (
        f"unsupported database URL scheme {scheme!r}: expected postgresql://, postgres://, "
        "postgresql+psycopg2:// or sqlite:///path"
    )

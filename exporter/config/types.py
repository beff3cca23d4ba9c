"""The value types of the configuration: durations, URLs, times of day, severities, and the
strict base model every section derives from. Pure parsing: no I/O, no feature knowledge."""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import UTC, datetime, time
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

# Ten years: beyond any interval or window that makes sense, and within what timedelta and the
# scheduler can hold (a "1e20" interval would otherwise crash the scheduler at start).
MAX_DURATION_SECONDS = 3650 * 86_400.0
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """``"90s"``, ``"1m30s"``, ``"12m"``, ``"24h"``, ``"30d"``, ``"250ms"`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "5s", got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        # ASCII digits only, as for every number of the configuration: float() would read "٦٠" (and
        # "６０") as 60, where an integer key refuses it.
        if not text.isascii():
            raise ValueError(f'expected a duration like "5s" (ASCII digits), got {value!r}')
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                raise ValueError(f'expected a duration like "5s", got {value!r}') from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f'expected a duration like "5s", got {value!r}')
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_SECONDS:  # "nan", "inf", "1e20" parse as floats
        raise ValueError(f"expected a duration of at most {MAX_DURATION_SECONDS // 86_400:.0f}d, got {value!r}")
    return seconds


def format_seconds(seconds: float) -> str:
    """A duration for messages, as it would be written: ``"2m"``, ``"1m30s"``, ``"12h"``, ``"0.5s"``."""
    if seconds <= 0 or seconds != int(seconds):
        return f"{seconds:g}s"
    out, rest = "", int(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        out += f"{count}{unit}" if count else ""
    return out


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


def _shown_duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if 0 < seconds < 1 else format_seconds(seconds)


def within(low: float, high: float) -> AfterValidator:
    """A duration's sane range for its meaning, and what the system it is passed to accepts
    (PostgreSQL's timeouts are int32 milliseconds: at most 24.8 days, or every connection fails):
    ``Annotated[Interval, within(1, 86_400)]``. Refuses with the range in the message."""

    def check(seconds: float) -> float:
        if not low <= seconds <= high:
            raise ValueError(
                f"expected a duration from {_shown_duration(low)} to {_shown_duration(high)}, "
                f"got {_shown_duration(seconds)}"
            )
        return seconds

    return AfterValidator(check)


def _not_blank(value: SecretStr) -> SecretStr:
    # " " would pass for a secret that is set (and the log redactor would mask every space).
    if not value.get_secret_value().strip():
        raise ValueError("must not be empty or only whitespace (value hidden: it is a secret)")
    return value


def shown_url(value: str) -> str:
    """``value`` for an error message: a password in its userinfo (``https://u:p@h``) becomes ``***``."""
    netloc = re.split(r"[/?#]", value.partition("://")[2], maxsplit=1)[0]
    userinfo, at, _host = netloc.rpartition("@")
    if at and ":" in userinfo:
        return value.replace(userinfo + "@", userinfo.split(":", 1)[0] + ":***@", 1)
    return value


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {shown_url(value)!r}")
    return value.rstrip("/")


def url_path(value: str) -> str:
    # Appended to api.base_url as text: without its leading "/", "health" would make
    # "https://api.example.orghealth", another host (which the Bearer token would be sent to).
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise ValueError(f'expected a path starting with "/" like "/api/health", got {value!r}')
    return value


def listen_address(value: str) -> str:
    """``HOST:PORT``: an IPv4 address or host name, or an IPv6 address in brackets (``[::]:9108``)."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f'expected HOST:PORT like "0.0.0.0:9108", got {value!r}')
    if host.startswith("[") or host.endswith("]") or ":" in host:
        try:
            ok = host.startswith("[") and host.endswith("]") and ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f'expected an IPv6 address in brackets like "[::]:9108", got {value!r}')
    return value


def _secret_url(value: SecretStr) -> SecretStr:
    _not_blank(value)
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL (value hidden: it is a secret)")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Interval = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
HttpUrl = Annotated[str, AfterValidator(http_url)]
UrlPath = Annotated[str, AfterValidator(url_path)]
HttpStatus = Annotated[int, Field(ge=100, le=599)]
SecretHttpUrl = Annotated[SecretStr, AfterValidator(_secret_url)]
Secret = Annotated[SecretStr, AfterValidator(_not_blank)]  # a password, a token: never blank
Severity = Literal["info", "warn", "crit"]

ListenAddress = Annotated[str, AfterValidator(listen_address)]


class Section(BaseModel):
    """A configuration section: unknown keys are errors, values are frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def parse_instant(value: str) -> datetime:
    """An ISO 8601 instant; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'expected an ISO 8601 time like "2026-03-01T02:00:00Z", got {value!r}') from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_clock_time(value: str) -> time:
    """``HH:MM`` (24 h); ``24:00`` is accepted as the end of the day and returned as ``time.max``."""
    match = re.fullmatch(r"([01]?[0-9]|2[0-4]):([0-5][0-9])", value)
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValueError(f'expected a time of day like "02:30", got {value!r}')
    return time.max if match.group(1) == "24" else time(int(match.group(1)), int(match.group(2)))


def yaml_instant(value: object) -> object:
    # Unquoted YAML turns 2026-03-01T02:00:00Z into a datetime; accept it as the text it was.
    return value.isoformat() if isinstance(value, datetime) else value


def yaml_id(value: object) -> object:
    # A Telegram chat id is a number (-100200300): unquoted in YAML it is read as an int.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def yaml_clock_time(value: object) -> object:
    # Unquoted YAML 1.1 reads 22:00 as the base-60 integer 1320; turn it back into "22:00".
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value // 60:02d}:{value % 60:02d}"
    return value

"""The value types of the configuration: durations, URLs, times of day, severities, and the
strict base model every section derives from. Pure parsing: no I/O, no feature knowledge."""

from __future__ import annotations

import ipaddress
import math
import re
import types
import typing
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic.functional_validators import PlainValidator, WrapValidator

from exporter.config.errors import KeyPathError

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


def url_problem(value: str) -> str | None:
    """Why ``value`` is not an http(s) URL a client can call (without quoting it), or None: the
    scheme, a host, a port in 1-65535, a host name of DNS labels of 1-63 characters (253 in all)
    that IDNA can encode, or an IP address."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        # urlsplit drops tabs and newlines without a word, and requests percent-encodes the rest: a
        # trailing newline from a Secret or a variable would be sent as "%0A" (another path, a 404).
        return "it holds a space or control character (a newline at its end?): remove it, or percent-encode it"
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # "Invalid IPv6 URL"
        return f"not a valid URL ({exc})"
    try:
        port = parts.port
    except ValueError:  # "Port out of range 0-65535", "Port could not be cast to integer value"
        return "the port is not a number from 1 to 65535"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    if port == 0:
        return "the port is not a number from 1 to 65535"
    host = parts.hostname
    if host.startswith("[") or ":" in host:
        return None  # urlsplit has checked the brackets; the address itself is checked by the client
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if any(c.isspace() or ord(c) < 32 or c in "\\%" for c in host):
        return "the host name has a space, control character, backslash or %"
    try:
        encoded = host.encode("idna")
    except UnicodeError:  # "label empty or too long", or characters IDNA refuses
        return "the host name has an empty label, one over 63 characters, or characters DNS cannot carry"
    labels = encoded.rstrip(b".").split(b".")
    if len(encoded) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        return "the host name has an empty label or one over 63 characters (253 in all)"
    return None


def http_url(value: str) -> str:
    problem = url_problem(value)
    if problem == "not an http(s) URL":
        raise ValueError(f"expected an http(s) URL, got {shown_url(value)!r}")
    if problem is not None:
        raise ValueError(f"expected an http(s) URL, got {shown_url(value)!r}: {problem}")
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
    problem = url_problem(value.get_secret_value())
    if problem == "not an http(s) URL":
        raise ValueError("expected an http(s) URL (value hidden: it is a secret)")
    if problem is not None:  # the problem never quotes the value (an IDNA error names no characters)
        raise ValueError(f"expected an http(s) URL (value hidden: it is a secret): {problem}")
    return value


def _secret_urls(value: SecretStr) -> SecretStr:
    """One http(s) URL or several, comma-separated (POLYGON_RPC_URL of an endpoint pool)."""
    _not_blank(value)
    parts = [part.strip() for part in value.get_secret_value().split(",")]
    for position, part in enumerate(parts):
        where = f"URL {position + 1} of {len(parts)}: " if len(parts) > 1 else ""
        if not part:
            raise ValueError(f"{where}empty (a stray comma?)")
        if "\n" in part:  # one URL a line: a natural POLYGON_RPC_URL_FILE, but not this format
            raise ValueError(f"{where}several URLs are separated by commas, not by newlines (values hidden: secrets)")
        problem = url_problem(part)
        if problem is not None:
            detail = "" if problem == "not an http(s) URL" else f": {problem}"
            raise ValueError(f"{where}expected an http(s) URL (value hidden: it is a secret){detail}")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Interval = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
HttpUrl = Annotated[str, AfterValidator(http_url)]
UrlPath = Annotated[str, AfterValidator(url_path)]
HttpStatus = Annotated[int, Field(ge=100, le=599)]
SecretHttpUrl = Annotated[SecretStr, AfterValidator(_secret_url)]
SecretHttpUrls = Annotated[SecretStr, AfterValidator(_secret_urls)]  # one URL or several, comma-separated
Secret = Annotated[SecretStr, AfterValidator(_not_blank)]  # a password, a token: never blank
Severity = Literal["info", "warn", "crit"]

ListenAddress = Annotated[str, AfterValidator(listen_address)]


class EnvText(str):
    """Text from the environment (a variable, an ``X_FILE``, a ``${VAR}`` in the file): converted to
    its key's type (``"30"`` for an integer, ``"true"`` for a boolean), as a shell can only give text.

    A value the YAML file gives itself is not converted: YAML has its own numbers and booleans, so
    ``concurrency: "16"`` or ``enabled: "yes"`` (quoted: text) is a mistake to point at, not to guess.
    """

    __slots__ = ()


_KINDS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number"}


def _scalar_kinds(annotation: object) -> tuple[set[type], set[object]] | None:
    """The numeric/boolean types and Literal values a key of this annotation takes, or None when it
    takes anything else too (text, a duration, a model...), which its own validation then judges."""
    kinds: set[type] = set()
    literals: set[object] = set()
    members = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    for member in members:
        if member is type(None):
            continue
        if member in _KINDS:
            kinds.add(member)
        elif typing.get_origin(member) is Literal:
            literals.update(typing.get_args(member))
        else:
            return None
    return (kinds, literals) if kinds else None


def _yaml_type_problem(value: object, kinds: set[type], literals: set[object]) -> str | None:
    if isinstance(value, EnvText) or value is None or (isinstance(value, str) and value in literals):
        return None
    if isinstance(value, bool):
        fits = bool in kinds
    elif isinstance(value, int | float):
        fits = bool(kinds - {bool})
    else:  # text, a list, a mapping, a date...
        fits = False
    if fits:
        return None
    expected = " or ".join(
        [*(_KINDS[k] for k in (bool, int, float) if k in kinds), *map(repr, sorted(map(str, literals)))]
    )
    if isinstance(value, str) and _reads_as(value, kinds):
        return f"expected {expected}, got the text {value!r} (quoted in YAML: write it without quotes)"
    return f"expected {expected}, got {value!r}"


def _reads_as(text: str, kinds: set[type]) -> bool:
    """Whether ``text`` would be one of ``kinds`` unquoted (so the quotes are the mistake)."""
    if bool in kinds and text.lower() in ("true", "false", "yes", "no", "on", "off"):
        return True
    if int in kinds and re.fullmatch(r"[-+]?\d+", text.strip()):
        return True
    if float in kinds:
        try:
            float(text)
        except ValueError:
            return False
        return True
    return False


def _checks_type(field: FieldInfo) -> bool:
    return not any(isinstance(m, BeforeValidator | PlainValidator | WrapValidator) for m in field.metadata)


class Section(BaseModel):
    """A configuration section: unknown keys are errors, values are frozen once loaded.

    Integers, numbers and booleans given by the YAML file must be YAML's own (see ``EnvText``);
    pydantic's lax conversion is kept for text from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @model_validator(mode="before")
    @classmethod
    def _yaml_types(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            key = field.alias or name
            if key not in data or not _checks_type(field):
                continue
            value, annotation = data[key], field.annotation
            items: list[tuple[tuple[str | int, ...], object]] = [((key,), value)]
            if typing.get_origin(annotation) is list and isinstance(value, list):
                annotation = typing.get_args(annotation)[0]
                items = [((key, index), item) for index, item in enumerate(value)]
            if typing.get_origin(annotation) is Annotated:
                annotation = typing.get_args(annotation)[0]
            scalar = _scalar_kinds(annotation)
            if scalar is None:
                continue
            for keys, item in items:
                problem = _yaml_type_problem(item, *scalar)
                if problem:
                    raise KeyPathError(keys, problem)
            if isinstance(value, EnvText) and value != value.strip():
                # " 30" and "30\n" already read as numbers (pydantic strips them); "true\n" from a
                # Secret or a file did not read as a boolean.
                data = {**data, key: EnvText(value.strip())}
        return data


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

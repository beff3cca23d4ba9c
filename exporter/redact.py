"""Masking secrets in text: a ``Redactor`` and a ``logging.Filter`` that applies it to every record.

Libraries put secrets into their messages (a ``requests`` error names the Telegram URL, which holds the
bot token; urllib3 logs the Slack webhook path), so masking the exact values our code handles is not
enough: the filter rewrites the final message, its arguments, the exception text and any extra string
attributes. Not for deciding what is secret: ``Config.secrets()`` says that.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
# Derived fragments shorter than this (a "/" path, a 3-letter query value) would mask ordinary words all
# over the logs. The secret itself and a URL's password are masked whatever their length (a short
# password is still the password; the seed's was "123"), but a shorter one only where it is not
# part of a longer word or number (see ``_alternative``).
MIN_FRAGMENT = 6
# What may stand right before a short secret: no letter or digit, unless it ends a percent-escape
# ("%3A123") or a backslash escape ("\n123"), whose last character is a letter or digit.
_START = r"(?:(?<![0-9A-Za-z])|(?<=%[0-9A-Fa-f]{2})|(?<=\\[nrtbf]))"
_END = r"(?![0-9A-Za-z])"
# A text cut short (a probe's reason, a quoted value) may end in the first characters of a secret:
# that many of them, or more, right before "…", "..." or the end of the text are masked too.
MIN_CUT_PREFIX = 4
_CUT_MARKS = re.compile(r"…|\.\.\.|\Z")
# Secrets learnt while running (the monitoring JWT): at most this many are kept, the oldest forgotten.
MAX_RUNTIME_SECRETS = 16
# Nothing shorter than this (without surrounding whitespace) is ever masked, and nothing without a
# letter or digit: a secret of " " would turn every space of the output into "***", one of "-" every
# dash. The configuration refuses blank secrets; this guard keeps any other caller from wrecking logs.
MIN_SECRET = 2


def maskable(fragment: str) -> bool:
    """Whether ``fragment`` may be masked at all: ``MIN_SECRET`` characters or more once stripped of
    surrounding whitespace, at least one of them a letter or digit."""
    core = fragment.strip()
    return len(core) >= MIN_SECRET and any(c.isalnum() for c in core)


def no_redaction(text: str) -> str:
    """The redactor to use when there are no secrets to mask (the default of every ``redact=``)."""
    return text


# A path segment of a secret URL that reads like a word or words ("services", "webhooks", "Incoming",
# "sendMessage", "v3") is the URL's form, not its key: masking it alone would mask that word in every
# log line. Keys do not read so (Slack's are 24 mixed-case characters, RPC keys hex, webhook keys
# UUIDs), and one that might is masked anyway from _LONGEST_WORD characters on.
_WORD = r"(?:[A-Z]?[a-z]+)+"
_WORD_SEGMENT = re.compile(rf"{_WORD}(?:[-_]{_WORD})*|v\d+")
_LONGEST_WORD = 20


def _secret_segments(path: str) -> set[str]:
    """The segments of a secret http(s) URL's path that may be a key, in their raw and decoded forms."""
    found: set[str] = set()
    for segment in path.split("/"):
        for form in (segment, unquote(segment)):
            if not (_WORD_SEGMENT.fullmatch(form) and len(form) < _LONGEST_WORD):
                found.add(form)
    return found


def secret_fragments(secret: str) -> set[str]:
    """The secret and the parts of it that travel alone: a URL's userinfo, each path segment that may
    be a key (webhook and RPC URLs), query values, a bot token's secret half, and their
    percent-encoded forms. Fragments shorter than ``MIN_FRAGMENT`` are left to the whole secret."""
    urls = [piece.strip() for piece in secret.split(",")]
    if len(urls) > 1 and all("://" in url for url in urls):  # a pool of RPC URLs, comma-separated
        return {secret}.union(*(secret_fragments(url) for url in urls))
    whole = {secret}
    derived = {quote(secret, safe=""), quote(secret, safe="/:@"), unquote(secret)}
    derived |= encoded_forms(secret)
    parts = urlsplit(secret)
    if parts.scheme and parts.netloc:
        if parts.password:
            whole.update({parts.password, unquote(parts.password)})
            whole |= encoded_forms(unquote(parts.password))
            if parts.scheme in ("http", "https"):  # sent as Authorization: Basic base64(user:password)
                whole |= basic_credentials(parts.username or "", parts.password)
        # A DB URL's path is a DB name and its user a role, not credentials; webhook and RPC keys
        # live in an http(s) URL's path, query or user ("https://<key>@rpc.example").
        if parts.scheme in ("http", "https"):
            if parts.username:
                derived.update({parts.username, unquote(parts.username)})
            if parts.path not in ("", "/"):
                derived.add(parts.path)
                derived |= _secret_segments(parts.path)
            if parts.query:
                derived.add(parts.query)
                derived.update(value for _, _, value in (p.partition("=") for p in parts.query.split("&")))
                derived.update(unquote(value) for _, _, value in (p.partition("=") for p in parts.query.split("&")))
    elif ":" in secret:
        # A Telegram bot token is "<bot id>:<secret>"; the secret half alone is still a credential.
        derived.add(secret.split(":", 1)[1])
    else:
        whole |= encoded_forms(secret)  # a password: JSON-escaped in a login body, quoted back by a parser
    return {f for f in whole if f} | {f for f in derived if len(f) >= MIN_FRAGMENT}


def encoded_forms(text: str) -> set[str]:
    """How ``text`` reads once escaped by the usual carriers: JSON strings (``\\"``, ``\\u00e9``),
    Python's repr of text and of bytes (an h11 error quotes the line it refused as
    ``bytearray(b'...')``) and percent-encoding (a form or a query)."""
    forms = {text, quote(text, safe=""), quote(text, safe="/:@")}
    forms |= {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    forms |= {repr(text)[1:-1], repr(text.encode())[2:-1]}
    forms.add(repr(json.dumps(text)[1:-1].encode())[2:-1])  # a JSON request body quoted back as bytes
    return forms


def basic_credentials(user: str, password: str) -> set[str]:
    """``user:password`` as an HTTP client sends it in ``Authorization: Basic`` (base64), for a URL's
    userinfo taken raw and percent-decoded (``requests`` decodes it)."""
    pairs = {f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"}
    return {base64.b64encode(pair.encode()).decode() for pair in pairs}


def _alternative(fragment: str) -> str:
    """The pattern of one fragment. A short one (the seed's password was "123") is masked where it
    stands alone, not inside a longer word or number: "block 1234" stays readable, and "block ***4"
    would even tell the reader what the secret is."""
    escaped = re.escape(fragment)
    if len(fragment) >= MIN_FRAGMENT:
        return escaped
    # Only an alphanumeric edge can continue a word; a secret like "-x1" or "ab:" ends one itself.
    before = _START if fragment[0].isascii() and fragment[0].isalnum() else ""
    after = _END if fragment[-1].isascii() and fragment[-1].isalnum() else ""
    return before + escaped + after


class Redactor:
    """Replaces every occurrence of any secret (or a fragment or encoding of one) with ``***``.

    ``secrets`` are the configured ones; ``remember(value)`` adds one learnt while running (the
    monitoring JWT) and ``forget(value)`` drops it again; at most ``MAX_RUNTIME_SECRETS`` are kept
    (the oldest goes first). Thread-safe: one instance serves the log handler and every other
    output of the process. A text that ends (or is cut with "…" / "...") in the first
    ``MIN_CUT_PREFIX`` or more characters of a secret has that part masked too. A secret (or
    fragment) that is not ``maskable`` (blank, one character, punctuation only) is never registered.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._configured = [secret for secret in secrets if maskable(secret)]
        self._runtime: deque[str] = deque()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._starts: tuple[dict[str, tuple[str, ...]], int] = ({}, 0)
        self._compile()

    def remember(self, secret: str) -> None:
        """Mask ``secret`` (and its encodings) from now on (unless it is not ``maskable``)."""
        if not maskable(secret):
            return
        with self._lock:
            if secret in self._runtime:
                return
            self._runtime.append(secret)
            while len(self._runtime) > MAX_RUNTIME_SECRETS:
                self._runtime.popleft()
            self._compile()

    def forget(self, secret: str) -> None:
        """Stop masking a secret given to ``remember`` (a token that was replaced)."""
        with self._lock:
            if secret in self._runtime:
                self._runtime.remove(secret)
                self._compile()

    def _compile(self) -> None:
        fragments: set[str] = set()
        for secret in self._configured:
            fragments |= {fragment for fragment in secret_fragments(secret) if maskable(fragment)}
        for secret in self._runtime:
            fragments |= {form for form in encoded_forms(secret) if maskable(form)}
        # Longest first, so a whole URL is masked before its path would leave the host visible.
        ordered = sorted(fragments, key=len, reverse=True)
        # Swapped whole (one assignment each), so a reader never sees half of a change.
        starts: dict[str, list[str]] = {}
        for fragment in ordered:
            # A whole URL cut short shows its scheme and host, not yet its key: the key's own
            # fragments (userinfo, path segments, query values) catch it, and "https" ending a
            # line stays readable.
            if len(fragment) > MIN_CUT_PREFIX and "://" not in fragment and "%3A%2F%2F" not in fragment:
                starts.setdefault(fragment[:MIN_CUT_PREFIX], []).append(fragment)
        self._starts = ({key: tuple(value) for key, value in starts.items()}, max(map(len, ordered), default=0))
        self._pattern = re.compile("|".join(map(_alternative, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        pattern, (starts, longest) = self._pattern, self._starts
        if pattern is None or not text:
            return text
        return _mask_cut_prefixes(pattern.sub(MASK, text), starts, longest)

    def __bool__(self) -> bool:
        return self._pattern is not None


def _mask_cut_prefixes(text: str, starts: dict[str, tuple[str, ...]], longest: int) -> str:
    """Mask the start of a secret left where a text was cut: before "…", "..." or at its end.
    ``starts`` maps the first ``MIN_CUT_PREFIX`` characters of each fragment to the fragments."""
    cuts = [match.start() for match in _CUT_MARKS.finditer(text)]
    for end in reversed(cuts):  # from the end, so earlier positions stay valid
        for start in range(max(0, end - longest), end - MIN_CUT_PREFIX + 1):
            candidates = starts.get(text[start : start + MIN_CUT_PREFIX])
            cut = text[start:end]
            if candidates and any(len(f) > len(cut) and f.startswith(cut) for f in candidates):
                text = text[:start] + MASK + text[end:]
                break
    return text


# Attributes every LogRecord has; anything else was passed through ``extra=`` and may hold a secret.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, exception and extra string attributes.

    Attach it to *handlers* (``handler.addFilter``): a filter on a logger only sees records logged
    on that very logger, not those propagating up from child loggers.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._redact:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record; show it raw instead
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self._redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            # The formatter prints exc_text when exc_info is gone, so the raw traceback is never rendered.
            record.exc_info, record.exc_text = None, self._redact(text)
        elif record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self._redact(value))
        return True

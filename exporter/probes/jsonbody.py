"""A server's body as JSON, with one classified reason for every way it can fail to be JSON.

``parse(body)`` returns the parsed value or raises ``JsonBodyError`` whose ``reason`` ends a
sentence like "the body is ...": ``not UTF-8 (byte 0xff at offset 3)``, ``not valid JSON
(Expecting value: line 1 column 1)``, ``JSON nested deeper than 512 levels``. Nothing a
server sends raises anything else. JSON is UTF-8 (RFC 8259 §8.1); a leading byte-order mark is
tolerated. Not for judging the value (the kinds and ``conditions.py`` do that).

Why the depth is measured before parsing: ``json`` recurses on the C stack for each level and
relies on Python's recursion limit to stop, but a library of the process raises that limit
(py_ecc, imported by web3, sets 100000), so ``[[[[...`` a megabyte deep would crash the whole
exporter with a segmentation fault instead of raising ``RecursionError``.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 512  # far beyond any API answer; far below what a thread's C stack survives
_REASON_CHARS = 160
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)  # linear: no nested quantifier
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class JsonBodyError(ValueError):
    """The body is not JSON; ``reason`` says why, without quoting the body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse(body: bytes) -> Any:
    """The JSON value of ``body``; ``JsonBodyError`` when it is not one."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})") from None
    if not text.strip():
        raise JsonBodyError("empty, expected JSON")
    if _deeper_than(body, MAX_DEPTH):
        raise JsonBodyError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer longer than sys.get_int_max_str_digits()
        raise JsonBodyError(f"not valid JSON ({exc})"[:_REASON_CHARS]) from None
    except RecursionError:  # only when the recursion limit is below MAX_DEPTH and the call's own depth
        raise JsonBodyError("JSON nested deeper than Python can parse here") from None


def _deeper_than(body: bytes, limit: int) -> bool:
    """Do the brackets outside strings nest deeper than ``limit``? C-speed filters first, then
    one pass over the brackets only, stopping as soon as the limit is crossed."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


def type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, with its article: "an array", "a string"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"

"""A server's body as JSON, with one classified reason for every way it can fail to be JSON.

``parse(body)`` returns the parsed value or raises ``JsonBodyError`` whose ``reason`` ends a
sentence like "the body is ...": ``not UTF-8 (byte 0xff at offset 3)``, ``not valid JSON
(Expecting value at line 1 column 1)``, ``JSON nested deeper than Python can parse``. Nothing a
server sends raises anything else (not even ``RecursionError`` for ``[[[[...``). JSON is UTF-8
(RFC 8259 §8.1); a leading byte-order mark is tolerated. Not for judging the value (the kinds
and ``conditions.py`` do that).
"""

from __future__ import annotations

import json
from typing import Any

_REASON_CHARS = 160


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
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer longer than sys.get_int_max_str_digits()
        raise JsonBodyError(f"not valid JSON ({exc})"[:_REASON_CHARS]) from None
    except RecursionError:
        raise JsonBodyError("JSON nested deeper than Python can parse") from None


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

"""Parsing a server's body as JSON: every failure is a JsonBodyError with a reason, even when a
library of the process has raised Python's recursion limit (py_ecc, through web3, sets 100000)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from exporter.probes import jsonbody


@pytest.fixture
def raised_recursion_limit() -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what importing web3 does to the exporter process
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 1_000_000, "JSON nested deeper than 512 levels"),
        (b'{"a":' * 600 + b"1" + b"}" * 600, "JSON nested deeper than 512 levels"),
        (b"\xff{}", "not UTF-8 (byte 0xff at offset 0)"),
        (b"", "empty, expected JSON"),
        (b"{'a': 1}", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2)"),
        (b"1" * 5000, "not valid JSON (Exceeds the limit (4300 digits) for integer string conversion"),
    ],
    ids=["deep-arrays", "deep-objects", "not-utf8", "empty", "single-quotes", "huge-integer"],
)
def test_bodies_that_are_not_json_say_why(raised_recursion_limit: None, body: bytes, reason: str) -> None:
    with pytest.raises(jsonbody.JsonBodyError) as failure:
        jsonbody.parse(body)
    assert failure.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"brackets in a string": "[[[[' + b"[" * 2000 + b'"}', {"brackets in a string": "[[[[" + "[" * 2000}),
        (b'\xef\xbb\xbf{"bom": true}', {"bom": True}),
        (b"123456789012345678901234567890", 123456789012345678901234567890),
    ],
    ids=["brackets-in-strings", "byte-order-mark", "big-integer-exact"],
)
def test_json_bodies_parse(raised_recursion_limit: None, body: bytes, value: object) -> None:
    assert jsonbody.parse(body) == value


def test_json_exactly_at_the_depth_limit_parses(raised_recursion_limit: None) -> None:
    parsed = jsonbody.parse(b"[" * jsonbody.MAX_DEPTH + b"]" * jsonbody.MAX_DEPTH)
    levels = 1
    while parsed:
        [parsed] = parsed
        levels += 1
    assert levels == jsonbody.MAX_DEPTH

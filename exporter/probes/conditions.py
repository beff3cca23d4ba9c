"""The condition language of HTTP checks: parse at config load, evaluate against one answer.

Gatus-like, deliberately small. A check is healthy when *every* condition of its list holds.

Placeholders
    ``[STATUS]``         the HTTP status code (number)
    ``[RESPONSE_TIME]``  the exchange's duration in milliseconds (number)
    ``[BODY]``           the answer parsed as JSON; ``[BODY].a.b[0].c`` walks objects and lists
Functions (of a placeholder)
    ``len(X)``           length of a string, list or object
    ``has(X)``           true when the path exists (``has([BODY])``: the body is valid JSON)
Comparisons
    ``A == B``, ``!=``, ``<``, ``<=``, ``>``, ``>=``. The right-hand side is a placeholder, a
    number, ``true`` / ``false`` / ``null``, a quoted string, or a bare word taken as a string
    (``[BODY].status == ok``). Ordering needs numbers on both sides.
Alternatives
    ``A || B`` holds when any alternative holds, tried left to right, so
    ``[STATUS] == 404 || has([BODY].address)`` never looks at the body of a 404.

Examples: ``[STATUS] == 200``, ``[RESPONSE_TIME] < 500``, ``[BODY].status == ok``,
``len([BODY].events) >= 0``, ``has([BODY].stats.total_events)``.

A failed condition is classified for ``details.error``: ``malformed_json`` (the body is not
JSON), ``wrong_shape`` (a path is missing or has the wrong type) or ``condition_failed`` (the
values disagree). Not for the HTTP exchange itself (``httpclient.py``) nor for deciding which
status codes are expected (``CheckSpec.expected_status``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from exporter.probes import jsonbody

Placeholder = Literal["STATUS", "RESPONSE_TIME", "BODY"]
Operator = Literal["==", "!=", "<", "<=", ">", ">="]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<placeholder>\[(?:STATUS|RESPONSE_TIME|BODY)\](?:\.[A-Za-z0-9_\-$@]+|\[\d+\])*)
      | (?P<func>(?:len|has)\()
      | (?P<close>\))
      | (?P<or>\|\|)
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<string>"(?:[^"\\]|\\.)*"|'[^']*')
      | (?P<word>[^\s()|<>=!"']+)
    )""",
    re.VERBOSE,
)
_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-$@]+)|\[(\d+)\]")
_MISSING = object()


class ConditionSyntaxError(ValueError):
    """A condition that cannot be parsed; the message says where and why."""


class ConditionError(Exception):
    """Why a condition did not hold: ``error`` is the class, ``reason`` a short sentence."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Ref:
    """A placeholder with an optional path and function: ``len([BODY].events)``."""

    placeholder: Placeholder
    path: tuple[str | int, ...] = ()
    func: Literal["len", "has"] | None = None
    text: str = ""


@dataclass(frozen=True)
class Constant:
    value: Any
    text: str


Operand = Ref | Constant


@dataclass(frozen=True)
class Alternative:
    left: Operand
    op: Operator | None = None
    right: Operand | None = None


@dataclass(frozen=True)
class Condition:
    text: str
    alternatives: tuple[Alternative, ...]


@dataclass
class Answer:
    """What a condition is evaluated against; the body is parsed once, on first use."""

    status: int
    response_ms: float
    body: bytes
    _parsed: Any = field(default=_MISSING, repr=False)

    def json(self) -> Any:
        if self._parsed is _MISSING:
            try:
                self._parsed = jsonbody.parse(self.body)
            except jsonbody.JsonBodyError as exc:
                raise ConditionError("malformed_json", f"the body is {exc.reason}") from None
        return self._parsed


# ------------------------------------------------------------------------------------- parsing
def parse(text: str) -> Condition:
    """Parse one condition; raise ``ConditionSyntaxError`` naming the problem."""
    tokens = _tokenize(text)
    alternatives: list[Alternative] = []
    current: list[tuple[str, str]] = []
    for token in [*tokens, ("or", "||")]:
        if token[0] != "or":
            current.append(token)
            continue
        alternatives.append(_alternative(current, text))
        current = []
    return Condition(text=text, alternatives=tuple(alternatives))


def parse_placeholder(text: str) -> Ref:
    """One placeholder alone, like ``[BODY].count`` (``non_decreasing`` of an eth_call check);
    ``ConditionSyntaxError`` for anything else."""
    tokens = _tokenize(text)
    if len(tokens) != 1 or tokens[0][0] != "placeholder":
        raise ConditionSyntaxError(f"expected one placeholder like [BODY].count, got {text!r}")
    return _ref(tokens[0][1], text)


def value_of(ref: Ref, answer: Answer) -> Any:
    """The value ``ref`` points at in ``answer``; ``ConditionError`` (wrong_shape) when missing."""
    return _value(ref, answer)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN.match(stripped, pos)
        if match is None or match.end() == pos:
            raise ConditionSyntaxError(f"unexpected {stripped[pos:].strip()[:20]!r} in condition {text!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    if not tokens:
        raise ConditionSyntaxError("empty condition")
    return tokens


def _alternative(tokens: list[tuple[str, str]], text: str) -> Alternative:
    if not tokens:
        raise ConditionSyntaxError(f"empty alternative around '||' in condition {text!r}")
    left, rest = _operand(tokens, text)
    if not rest:
        if not (isinstance(left, Ref) and left.func == "has"):
            raise ConditionSyntaxError(f"condition {text!r} needs a comparison (like '[STATUS] == 200') or has(...)")
        return Alternative(left=left)
    if not isinstance(left, Ref):
        raise ConditionSyntaxError(f"condition {text!r} must start with a placeholder like [STATUS]")
    if left.func == "has":
        raise ConditionSyntaxError(f"has(...) takes no comparison in condition {text!r}")
    kind, op = rest[0]
    if kind != "op":
        raise ConditionSyntaxError(f"expected an operator (==, !=, <, <=, >, >=) in condition {text!r}")
    right, trailing = _operand(rest[1:], text)
    if trailing:
        raise ConditionSyntaxError(f"unexpected {trailing[0][1]!r} in condition {text!r}")
    if isinstance(right, Ref) and right.func == "has":
        raise ConditionSyntaxError(f"has(...) cannot be compared in condition {text!r}")
    return Alternative(left=left, op=op, right=right)  # type: ignore[arg-type]


def _operand(tokens: list[tuple[str, str]], text: str) -> tuple[Operand, list[tuple[str, str]]]:
    if not tokens:
        raise ConditionSyntaxError(f"missing value in condition {text!r}")
    kind, value = tokens[0]
    if kind == "func":
        if len(tokens) < 3 or tokens[1][0] != "placeholder" or tokens[2][0] != "close":
            raise ConditionSyntaxError(f"{value}...) takes one placeholder, like len([BODY].events), in {text!r}")
        ref = _ref(tokens[1][1], text)
        func = value[:-1]
        return Ref(ref.placeholder, ref.path, func, f"{func}({ref.text})"), tokens[3:]  # type: ignore[arg-type]
    if kind == "placeholder":
        return _ref(value, text), tokens[1:]
    if kind == "string":
        return Constant(_unquote(value), value), tokens[1:]
    if kind == "word" and value.startswith("["):
        raise ConditionSyntaxError(
            f"unknown placeholder {value.split(']')[0]}] (use [STATUS], [RESPONSE_TIME] or [BODY]) in {text!r}"
        )
    if kind == "word":
        return Constant(_bare(value), value), tokens[1:]
    raise ConditionSyntaxError(f"unexpected {value!r} in condition {text!r}")


def _ref(token: str, text: str) -> Ref:
    name, _, path_text = token[1:].partition("]")
    path: list[str | int] = []
    for match in _PATH_PART.finditer(path_text):
        path.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
    if path and name != "BODY":
        raise ConditionSyntaxError(f"only [BODY] has a path, in condition {text!r}")
    return Ref(name, tuple(path), None, token)  # type: ignore[arg-type]


def _unquote(token: str) -> str:
    if token.startswith('"'):
        return str(json.loads(token))
    return token[1:-1]


def _bare(word: str) -> Any:
    if word in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[word]
    try:
        number = float(word)
    except ValueError:
        return word
    return number if math.isfinite(number) else word


# ---------------------------------------------------------------------------------- evaluation
def check(condition: Condition, answer: Answer) -> None:
    """Return when the condition holds; else raise ``ConditionError`` with the reason of the last
    alternative (in ``[STATUS] == 404 || has([BODY].x)`` the last one is the informative one)."""
    last: ConditionError | None = None
    for alternative in condition.alternatives:
        try:
            _check_alternative(alternative, answer)
            return
        except ConditionError as failure:
            last = failure
        except RecursionError:  # comparing or showing a value nested near Python's limit
            last = ConditionError("wrong_shape", "a value nested too deeply to compare")
    assert last is not None
    raise ConditionError(last.error, f"{condition.text}: {last.reason}")


def _check_alternative(alt: Alternative, answer: Answer) -> None:
    if alt.op is None or alt.right is None:
        assert isinstance(alt.left, Ref)
        _resolve(alt.left, answer)  # has(): raises wrong_shape when missing
        return
    left = _value(alt.left, answer)
    right = _value(alt.right, answer)
    if isinstance(left, str) and isinstance(alt.right, Constant) and _is_number(right):
        right = alt.right.text  # `[BODY].code == 007` compares the text as written
    if alt.op in ("==", "!="):
        equal = _equal(left, right)
        if equal != (alt.op == "=="):
            raise ConditionError("condition_failed", f"{_show(alt.left)} is {_short(left)}")
        return
    if not (_is_number(left) and _is_number(right)):
        raise ConditionError("wrong_shape", f"{_show(alt.left)} is {_short(left)}, not a number")
    holds = {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[alt.op]
    if not holds:
        raise ConditionError("condition_failed", f"{_show(alt.left)} is {_short(left)}")


def _value(operand: Operand, answer: Answer) -> Any:
    if isinstance(operand, Constant):
        return operand.value
    value = _resolve(operand, answer)
    if operand.func == "len":
        if not isinstance(value, str | list | dict):
            raise ConditionError("wrong_shape", f"{operand.text}: not a string, list or object")
        return len(value)
    return value


def _resolve(ref: Ref, answer: Answer) -> Any:
    if ref.placeholder == "STATUS":
        return answer.status
    if ref.placeholder == "RESPONSE_TIME":
        return answer.response_ms
    node = answer.json()
    walked = "[BODY]"
    for part in ref.path:
        walked += f"[{part}]" if isinstance(part, int) else f".{part}"
        in_list = isinstance(part, int) and isinstance(node, list) and part < len(node)
        in_object = isinstance(part, str) and isinstance(node, dict) and part in node
        if in_list or in_object:
            node = node[part]
        else:
            raise ConditionError("wrong_shape", f"{walked} is missing")
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool) or left is None or right is None:
        return left is right
    return str(left) == str(right) if isinstance(left, str) or isinstance(right, str) else left == right


def _show(operand: Operand) -> str:
    return operand.text


def _short(value: Any) -> str:
    whole = isinstance(value, float) and math.isfinite(value) and value == int(value)
    text = str(int(value)) if whole else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."

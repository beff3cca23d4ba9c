"""The condition language: what holds, what fails and how it is classified, what does not parse."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.config import CheckSpec, ChecksSettings, Config, ConfigError
from exporter.probes import conditions
from exporter.probes.runner import validate_conditions

BODY = {
    "status": "ok",
    "events": [{"id": 1, "type": "Minted"}],
    "total": 25,
    "stats": {"total_events": 25, "events_24h": 0},
    "flag": True,
    "nothing": None,
    "code": "007",
}


def _answer(body: Any = BODY, status: int = 200, ms: float = 120.0) -> conditions.Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return conditions.Answer(status=status, response_ms=ms, body=raw)


@pytest.mark.parametrize(
    "text",
    [
        "[STATUS] == 200",
        "[STATUS] < 300",
        "[RESPONSE_TIME] < 500",
        "[BODY].status == ok",
        '[BODY].status == "ok"',
        "[BODY].status != error",
        "[BODY].total >= 25",
        "[BODY].total == 25.0",
        "len([BODY].events) == 1",
        "len([BODY].events) >= 0",
        "len([BODY].status) == 2",
        "has([BODY])",
        "has([BODY].stats.events_24h)",
        "has([BODY].events[0].type)",
        "has([BODY].nothing)",
        "[BODY].events[0].type == Minted",
        "[BODY].flag == true",
        "[BODY].nothing == null",
        "[BODY].code == 007",
        "[BODY].stats.total_events == [BODY].total",
        "[STATUS] == 404 || has([BODY].status)",
        "has([BODY].missing) || [STATUS] == 200",
    ],
)
def test_condition_holds(text: str) -> None:
    conditions.check(conditions.parse(text), _answer())


@pytest.mark.parametrize(
    ("text", "answer", "error"),
    [
        ("[STATUS] == 200", _answer(status=503), "condition_failed"),
        ("[RESPONSE_TIME] < 100", _answer(ms=250.0), "condition_failed"),
        ("[BODY].status == ok", _answer({"status": "degraded"}), "condition_failed"),
        ("[BODY].status == ok", _answer({"other": 1}), "wrong_shape"),
        ("[BODY].status == ok", _answer(b'{"status": "o'), "malformed_json"),
        ("has([BODY])", _answer(b"<html>"), "malformed_json"),
        ("len([BODY].events) >= 0", _answer({"events": 3}), "wrong_shape"),
        ("[BODY].total > 1", _answer({"total": "many"}), "wrong_shape"),
        ("has([BODY].events[3])", _answer(), "wrong_shape"),
        ("[BODY].flag == 1", _answer(), "condition_failed"),
        ("[STATUS] == 404 || has([BODY].address)", _answer({"x": 1}), "wrong_shape"),
    ],
)
def test_condition_fails_with_a_class(text: str, answer: conditions.Answer, error: str) -> None:
    with pytest.raises(conditions.ConditionError) as failure:
        conditions.check(conditions.parse(text), answer)
    assert failure.value.error == error
    assert failure.value.reason.startswith(text)


def test_the_body_is_not_read_when_an_earlier_alternative_holds() -> None:
    conditions.check(conditions.parse("[STATUS] == 404 || has([BODY].address)"), _answer(b"not json", 404))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty condition"),
        ("[STATUS] = 200", "unexpected"),
        ("[STATUS]", "needs a comparison"),
        ("200 == [STATUS]", "must start with a placeholder"),
        ("[HEADERS] == x", "unknown placeholder [HEADERS]"),
        ("[STATUS].code == 1", "only [BODY] has a path"),
        ("len(5) > 1", "takes one placeholder"),
        ("has([BODY].a) == true", "takes no comparison"),
        ("[STATUS] == 200 ||", "empty alternative"),
        ("[STATUS] == 200 300", "unexpected '300'"),
        ("[BODY].a ==", "missing value"),
    ],
)
def test_bad_conditions_do_not_parse(text: str, message: str) -> None:
    with pytest.raises(conditions.ConditionSyntaxError, match=message.replace("[", r"\[").replace("(", r"\(")):
        conditions.parse(text)


def test_a_bad_condition_is_a_config_error_naming_its_index() -> None:
    spec = CheckSpec(name="x", path="/x", conditions=["[STATUS] == 200", "[STATUS] = 200"])
    config = Config(checks=ChecksSettings(items=[spec]))
    with pytest.raises(ConfigError, match=r"checks\.items\[0\]\.conditions\[1\]: unexpected"):
        validate_conditions(config)

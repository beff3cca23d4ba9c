"""Issue 13 kind 7 at the probes' edge: a server that echoes a secret (the monitoring password,
the session's JWT) gets it back masked in every check result, whatever shape the echo takes:
a JSON key, a header line quoted back by the HTTP parser, a body value cut short in a reason.
The results are masked where they leave the probes (``CheckRound``), once for every sink."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from exporter.redact import MASK
from exporter.store.base import CheckResult
from tests.probes.test_hostile_answers import (
    GOOD_LOGIN,
    GOOD_TARGET,
    JSON,
    PASSWORD,
    Rig,
    login_answer,
)
from tests.support.raw_http_server import Step, answer

LONG_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtb25pdG9yIiwiZXhwIjoxfQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
LONG_LOGIN = login_answer(json.dumps({"token": LONG_TOKEN, "expires_in": 3600}).encode())
SENT_BODY = json.dumps({"email": "monitor@example.org", "password": PASSWORD}).encode()


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


def _results(rigs: list[Rig], login: Sequence[Step], target: Sequence[Step]) -> list[CheckResult]:
    rig = Rig(login, target)
    rigs.append(rig)
    return rig.round().run_once()


def _text(results: Sequence[CheckResult]) -> str:
    return json.dumps([result.details for result in results])


@pytest.mark.parametrize(
    "login",
    [
        login_answer(json.dumps({PASSWORD: 1}).encode()),  # the password as a key: "(keys: ...)"
        login_answer(json.dumps({"a" * 150 + PASSWORD: 1}).encode()),  # ... cut short in the reason
        [b"HTTP/1.1 200 OK\r\n" + SENT_BODY + b"\r\n\r\n"],  # the request body as a header line
        [b"HTTP/1.1 400 " + SENT_BODY + b"\r\nContent-Length: 0\r\n\r\n"],  # ... as the reason phrase
    ],
    ids=["json-key", "json-key-cut", "header-line", "reason-phrase"],
)
def test_a_login_answer_echoing_the_password_is_masked(rigs: list[Rig], login: list[Step]) -> None:
    results = _results(rigs, login, GOOD_TARGET)
    assert {result.details["error"] for result in results} <= {"login_failed", "bad_response"}
    text = _text(results)
    assert PASSWORD[:MASK_PREFIX] not in text, text
    assert MASK in text or "login answered HTTP 400" in text, text


MASK_PREFIX = 4  # no four characters of the password on end


@pytest.mark.parametrize(
    ("login", "token", "body"),
    [
        (GOOD_LOGIN, "tok-abc.DEF_123", '{"status": "Bearer tok-abc.DEF_123"}'),
        (LONG_LOGIN, LONG_TOKEN, json.dumps({"status": f"Bearer {LONG_TOKEN}"})),  # cut to 60 characters
    ],
    ids=["short-token", "long-token-cut"],
)
def test_an_answer_echoing_the_sessions_token_is_masked(
    rigs: list[Rig], login: list[Step], token: str, body: str
) -> None:
    results = _results(rigs, login, [answer("200 OK", body.encode(), JSON)])
    text = _text(results)
    assert all(not result.ok for result in results)
    assert token[:8] not in text, text
    assert MASK in text


def test_the_token_is_masked_while_current_and_one_renewal_after(rigs: list[Rig]) -> None:
    """A replaced token may still be in flight; the one before it is forgotten (bounded)."""
    rig = Rig(GOOD_LOGIN, GOOD_TARGET)
    rigs.append(rig)
    checks = rig.round()
    checks.run_once()
    session = checks.session
    assert session is not None
    redact = checks._redactor  # the one every result goes through
    first = "tok-abc.DEF_123"
    tokens = [first, "second-token-2", "third-token-3"]
    for fresh in tokens[1:]:
        rig.server.routes["/api/explorer/login"] = login_answer(
            json.dumps({"token": fresh, "expires_in": 3600}).encode()
        )
        session.start_round()
        assert session.renew(session.token()) == fresh
    assert redact(" ".join(tokens)) == f"{first} {MASK} {MASK}"

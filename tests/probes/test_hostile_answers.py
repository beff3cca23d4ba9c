"""Issue #13, kind 2: answers a probe must survive, played byte for byte by a raw socket server.

Every round here runs three logged-in checks against one endpoint. Whatever the endpoint or the
login answers, each check gets a classified ``details.error`` (one of ``ERROR_CLASSES``, never
``internal_error``) with a reason naming what was wrong, the status code and the byte count;
nothing is logged with a traceback; and a round makes one login attempt at most.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.metrics import Metrics
from exporter.probes.probe import ERROR_CLASSES
from exporter.probes.runner import CheckRound
from exporter.store.base import CheckResult
from tests.support.raw_http_server import RESET, RawHttpServer, Step, answer

LOGIN = "/api/explorer/login"
TARGET = "/target"
CHECKS = ["hostile.a", "hostile.b", "hostile.c"]
PASSWORD = "hostile-Pa55word"
JSON = "Content-Type: application/json"
OK_BODY = b'{"status":"ok"}'
GOOD_TARGET: list[Step] = [answer("200 OK", OK_BODY, JSON)]
TOKEN = "tok-abc.DEF_123"


def login_answer(body: bytes, status: str = "200 OK", content_type: str = JSON) -> list[Step]:
    return [answer(status, body, content_type)]


def drip(byte: bytes, times: int) -> list[Step]:
    """``byte`` every 50 ms, ``times`` times: no single read waits long, only a total deadline stops it."""
    steps: list[Step] = []
    for _ in range(times):
        steps += [byte, 0.05]
    return steps


GOOD_LOGIN = login_answer(b'{"token": "%s", "expires_in": 3600}' % TOKEN.encode())
HEAD_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Rig:
    """A raw server, a FakeClock and rounds of the three checks against it, recording results."""

    def __init__(self, login: Sequence[Step], target: Sequence[Step], *, timeout: str = "1s") -> None:
        self.server = RawHttpServer({LOGIN: login, TARGET: target})
        self.clock = FakeClock()
        self.results: list[CheckResult] = []
        self.timeout = timeout
        self.rounds: list[CheckRound] = []

    def round(self, timer: Any = None) -> CheckRound:
        items = [{"name": name, "path": TARGET, "auth": True, "conditions": ["[BODY].status == ok"]} for name in CHECKS]
        config = Config.model_validate(
            {
                "api": {"base_url": self.server.url, "email": "monitor@example.org", "password": PASSWORD},
                "checks": {
                    "timeout": self.timeout,
                    "interval": "30s",
                    "concurrency": len(CHECKS),
                    "include_defaults": False,
                    "items": items,
                },
            }
        )
        metrics = Metrics(
            CollectorRegistry(), slo_latency_seconds=0.8, version="test", now=lambda: self.clock.now().timestamp()
        )
        extra = {} if timer is None else {"timer": timer}
        made = CheckRound(config, metrics=metrics, record=self.results.extend, clock=self.clock, **extra)
        self.rounds.append(made)
        return made

    def close(self) -> None:
        for made in self.rounds:
            made.close()
        self.server.close()


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


def _rig(rigs: list[Rig], login: Sequence[Step], target: Sequence[Step], **kwargs: Any) -> Rig:
    rig = Rig(login, target, **kwargs)
    rigs.append(rig)
    return rig


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [record.getMessage() for record in caplog.records if record.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
    assert PASSWORD not in caplog.text


def _assert_classified(results: Sequence[CheckResult]) -> None:
    assert sorted(result.check_name for result in results) == CHECKS
    for result in results:
        error = result.details["error"]
        assert (error is None) == result.ok
        assert error is None or (error in ERROR_CLASSES and error != "internal_error"), result.details
        assert set(result.details) >= {"status_code", "error", "reason", "bytes"}
        assert result.details["reason"]
        assert TOKEN not in result.details["reason"]


# ------------------------------------------------------------------------------ the endpoint's answers
GZIPPED = gzip.compress(OK_BODY)
BIG_HEADER = b"X-Big: " + b"a" * 70_000 + b"\r\n"

# id -> (script of the endpoint, error, a part of the reason, status_code, bytes); the login is good.
ENDPOINT_ANSWERS: dict[str, tuple[list[Step], str | None, str, int | None, int]] = {
    "100-continue": ([CONTINUE, *GOOD_TARGET], None, "HTTP 200", 200, len(OK_BODY)),
    "103-early-hints": ([HINTS, *GOOD_TARGET], None, "HTTP 200", 200, len(OK_BODY)),
    "interim-split-and-paused": (
        [CONTINUE[:10], 0.02, CONTINUE[10:] + HINTS[:20], 0.02, HINTS[20:], 0.02, *GOOD_TARGET],
        None,
        "HTTP 200",
        200,
        len(OK_BODY),
    ),
    "endless-interim": ([HINTS * 40, *GOOD_TARGET], "bad_response", "more than 16 interim", None, 0),
    "101-unasked": (
        [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"],
        "bad_response",
        "HTTP 101 Switching Protocols, but no protocol switch was asked for",
        None,
        0,
    ),
    "http-1.0-close-delimited": ([b"HTTP/1.0 200 OK\r\n\r\n" + OK_BODY], None, "HTTP 200", 200, len(OK_BODY)),
    "truncated-body": (
        [HEAD_200 + b"Content-Length: 100\r\n\r\n" + OK_BODY],
        "bad_response",
        "connection closed in the middle of the body",
        200,
        len(OK_BODY),
    ),
    "bad-chunk-size": (
        [HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"],
        "bad_response",
        "broken body framing",
        200,
        5,
    ),
    "chunk-cut-by-close": (
        [HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n20\r\n" + b"x" * 7],
        "bad_response",
        "connection closed in the middle of the body",
        200,
        7,
    ),
    "bad-content-length": (
        [HEAD_200 + b"Content-Length: ten\r\n\r\n"],
        "bad_response",
        "malformed response head",
        None,
        0,
    ),
    "conflicting-lengths": (
        [HEAD_200 + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"],
        "bad_response",
        "malformed response head",
        None,
        0,
    ),
    # Probes ask for Accept-Encoding: identity; a server that compresses anyway is named, not misread.
    "gzip-despite-identity": (
        [answer("200 OK", GZIPPED, JSON, "Content-Encoding: gzip")],
        "bad_response",
        "the body is gzip-encoded (Content-Encoding) although only identity was accepted",
        200,
        len(GZIPPED),
    ),
    "brotli-despite-identity": (
        [answer("200 OK", b"\x1b\x0e\x00", JSON, "Content-Encoding: br")],
        "bad_response",
        "the body is br-encoded",
        200,
        3,
    ),
    "identity-named": ([answer("200 OK", OK_BODY, JSON, "Content-Encoding: identity")], None, "HTTP 200", 200, 15),
    "invalid-json": ([answer("200 OK", b'{"status": ok}', JSON)], "malformed_json", "not valid JSON", 200, 14),
    "empty-body": ([answer("200 OK", b"", JSON)], "malformed_json", "the body is empty", 200, 0),
    "invalid-utf8": (
        [answer("200 OK", b'{"status":"\xff"}', JSON)],
        "malformed_json",
        "not UTF-8 (byte 0xff at offset 11)",
        200,
        14,
    ),
    "nested-too-deep": (
        [answer("200 OK", b"[" * 200_000, JSON)],
        "malformed_json",
        "JSON nested deeper than 512 levels",
        200,
        200_000,
    ),
    "infinity": (
        [answer("200 OK", b'{"status": Infinity}', JSON)],
        "condition_failed",
        "[BODY].status is Infinity",
        200,
        20,
    ),
    "reset-mid-body": (
        [HEAD_200 + b"Content-Length: 100\r\n\r\n" + OK_BODY, 0.3, RESET],
        "connection_reset",
        "connection reset by the server (body)",
        200,
        len(OK_BODY),
    ),
    "reset-before-answering": ([RESET], "connection_reset", "connection reset", None, 0),
    "oversized-headers": (
        [HEAD_200 + BIG_HEADER + b"\r\n"],
        "bad_response",
        "response headers larger than 65536 bytes",
        None,
        0,
    ),
    "redirect-to-itself": (
        [answer("302 Found", b"", f"Location: {TARGET}")],
        "http_status",
        "HTTP 302 (expected 200; redirects are not followed)",
        302,
        0,
    ),
    "bad-status-line": ([b"HTTP/1.1 2OO OK\r\n\r\n"], "bad_response", "illegal status line", None, 0),
    "not-http": ([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], "bad_response", "malformed response head", None, 0),
    "http-2-status-line": (
        [b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"],
        "bad_response",
        "not an HTTP/1.x",
        None,
        0,
    ),
    "closes-without-answering": ([], "bad_response", "the server closed the connection without answering", None, 0),
    "closes-mid-headers": (
        [b"HTTP/1.1 200 OK\r\nContent-Ty"],
        "bad_response",
        "connection closed before the end of the response headers",
        None,
        0,
    ),
    "slow-drip": (
        [HEAD_200 + b"Content-Length: 1000\r\n\r\n", *drip(b"x", 200)],
        "timeout",
        "no complete answer within",
        200,
        -1,  # some bytes, how many depends on the machine
    ),
    "body-too-large": (
        [HEAD_200 + b"Content-Length: 2000000\r\n\r\n"],
        "body_too_large",
        "declared body of 2000000 bytes exceeds the 1048576 byte limit",
        200,
        0,
    ),
    "undeclared-body-too-large": (
        [b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1_100_000],
        "body_too_large",
        "body exceeds the 1048576 byte limit",
        200,
        -1,
    ),
    "unauthorized-fresh-token": (
        [answer("401 Unauthorized", b"{}", JSON)],
        "unauthorized",
        "this round's login",
        401,
        2,
    ),
}


@pytest.mark.parametrize(
    ("script", "error", "reason", "status", "size"), ENDPOINT_ANSWERS.values(), ids=ENDPOINT_ANSWERS
)
def test_every_endpoint_answer_is_classified_with_one_login(
    rigs: list[Rig],
    caplog: pytest.LogCaptureFixture,
    script: list[Step],
    error: str | None,
    reason: str,
    status: int | None,
    size: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = _rig(rigs, GOOD_LOGIN, script)
    results = rig.round().run_once()
    _assert_classified(results)
    for result in results:
        assert result.details["error"] == error, result.details
        assert reason in result.details["reason"], result.details
        assert result.details["status_code"] == status
        if size >= 0:
            assert result.details["bytes"] == size
        else:
            assert result.details["bytes"] > 0
        assert result.latency_ms >= 0
    assert rig.server.hits[LOGIN] == 1
    assert rig.server.hits[TARGET] == len(CHECKS)  # no retry: a fresh token answered 401 is not renewed
    _assert_no_traceback(caplog)


def test_probes_ask_for_the_body_without_content_coding(rigs: list[Rig]) -> None:
    """RFC 9110 §12.5.3: no Accept-Encoding means any coding is acceptable, so it is sent explicitly."""
    rig = _rig(rigs, GOOD_LOGIN, GOOD_TARGET)
    assert all(result.ok for result in rig.round().run_once())
    assert rig.server.requests
    for request in rig.server.requests:
        assert b"\r\naccept-encoding: identity\r\n" in request.lower()


def test_several_401s_with_an_old_token_cost_one_login(rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    rig = _rig(rigs, GOOD_LOGIN, GOOD_TARGET)
    checks = rig.round()
    assert all(result.ok for result in checks.run_once())
    rig.server.routes[TARGET] = [answer("401 Unauthorized", b"{}", JSON)]
    results = checks.run_once()  # every check gets 401 with the first round's token
    _assert_classified(results)
    assert {result.details["error"] for result in results} == {"unauthorized"}
    assert rig.server.hits[LOGIN] == 2  # one per round
    _assert_no_traceback(caplog)


# ------------------------------------------------------------------------------- the login's answers
def _login(body: str) -> list[Step]:
    return login_answer(body.encode())


# id -> (login script, the reason logged once); the token is usable, the lifetime is not.
UNUSABLE_LIFETIMES: dict[str, tuple[list[Step], str]] = {
    "null": (_login(f'{{"token": "{TOKEN}", "expires_in": null}}'), '"expires_in" is null'),
    "missing": (_login(f'{{"token": "{TOKEN}"}}'), '"expires_in" is missing'),
    "zero": (_login(f'{{"token": "{TOKEN}", "expires_in": 0}}'), '"expires_in" is 0, expected a positive number'),
    "negative": (_login(f'{{"token": "{TOKEN}", "expires_in": -5}}'), '"expires_in" is -5, expected a positive number'),
    "string": (
        _login(f'{{"token": "{TOKEN}", "expires_in": "3600"}}'),
        '"expires_in" is a string ("3600"), expected a number of seconds',
    ),
    "boolean": (_login(f'{{"token": "{TOKEN}", "expires_in": true}}'), '"expires_in" is a boolean (true)'),
    "nan": (_login(f'{{"token": "{TOKEN}", "expires_in": NaN}}'), '"expires_in" is NaN'),
    "absurd-float": (
        _login(f'{{"token": "{TOKEN}", "expires_in": 1e300}}'),
        '"expires_in" is 1e+300, more than a year',
    ),
    "absurd-integer": (
        _login(f'{{"token": "{TOKEN}", "expires_in": {10**400}}}'),
        '"expires_in" is 100000000000000000000..., more than a year',
    ),
    "infinity": (_login(f'{{"token": "{TOKEN}", "expires_in": 1e999}}'), '"expires_in" is Infinity, more than a year'),
}


@pytest.mark.parametrize(("login", "why"), UNUSABLE_LIFETIMES.values(), ids=UNUSABLE_LIFETIMES)
def test_a_login_without_a_usable_lifetime_uses_the_default_and_says_why_once(
    rigs: list[Rig], caplog: pytest.LogCaptureFixture, login: list[Step], why: str
) -> None:
    caplog.set_level(logging.INFO)
    rig = _rig(rigs, login, GOOD_TARGET)
    checks = rig.round()
    for _ in range(3):  # 15 min of the default lifetime, minus the 60 s margin, cover these rounds
        results = checks.run_once()
        assert all(result.ok for result in results), [result.details for result in results]
        rig.clock.advance(60)
    assert rig.server.hits[LOGIN] == 1
    rig.clock.advance(900)  # past the default lifetime: one new login, and no new warning
    assert all(result.ok for result in checks.run_once())
    assert rig.server.hits[LOGIN] == 2
    warnings = [record.getMessage() for record in caplog.records if "default_token_lifetime" in record.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"login: {why}")
    assert warnings[0].endswith("; the token is kept for api.default_token_lifetime (900s)")
    _assert_no_traceback(caplog)


def test_a_usable_float_lifetime_is_taken_as_is(rigs: list[Rig], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    rig = _rig(rigs, _login(f'{{"token": "{TOKEN}", "expires_in": 120.5}}'), GOOD_TARGET)
    checks = rig.round()
    assert all(result.ok for result in checks.run_once())
    rig.clock.advance(60)  # the 120.5 s token is renewed 60 s before it ends: at 60.5 s
    assert all(result.ok for result in checks.run_once())
    assert rig.server.hits[LOGIN] == 1
    rig.clock.advance(1)
    assert all(result.ok for result in checks.run_once())
    assert rig.server.hits[LOGIN] == 2
    assert "default_token_lifetime" not in caplog.text
    assert "token valid for 120.5s" in caplog.text


HUGE = b'{"token": "' + b"t" * 2_000_000 + b'"}'

# id -> (login script, a part of the reason, the login's status_code, the login's bytes)
FAILED_LOGINS: dict[str, tuple[list[Step], str, int | None, int]] = {
    "token-missing": (_login('{"expires_in": 3600}'), 'login: the answer has no "token" (keys: "expires_in")', 200, 20),
    "token-empty": (_login('{"token": "", "expires_in": 3600}'), 'login: "token" is empty', 200, 33),
    "token-number": (
        _login('{"token": 42, "expires_in": 3600}'),
        'login: "token" is a number, expected a string',
        200,
        33,
    ),
    "token-null": (_login('{"token": null}'), 'login: "token" is null, expected a string', 200, 15),
    "token-with-newline": (
        _login('{"token": "abc\\r\\nX-Evil: 1"}'),
        'login: "token" has characters that cannot be sent in an Authorization header',
        200,
        29,
    ),
    "not-json": (
        login_answer(b"<html><body>Welcome</body></html>", content_type="Content-Type: text/html"),
        "login: the answer is not valid JSON (Expecting value: line 1 column 1) (text/html)",
        200,
        33,
    ),
    "json-array": (
        _login(f'[{{"token": "{TOKEN}"}}]'),
        'login: the answer is an array, expected an object with "token"',
        200,
        30,
    ),
    "json-string": (_login('"ok"'), "login: the answer is a string, expected an object", 200, 4),
    "invalid-utf8": (
        login_answer(b'{"token": "\xfe"}'),
        "login: the answer is not UTF-8 (byte 0xfe at offset 11)",
        200,
        14,
    ),
    "nested-too-deep": (login_answer(b"[" * 100_000), "JSON nested deeper than 512 levels", 200, 100_000),
    "huge-body": (login_answer(HUGE), "login: declared body of 2000013 bytes exceeds the 1048576 byte limit", 200, 0),
    "http-500": (login_answer(b'{"error": "boom"}', "500 Internal Server Error"), "login answered HTTP 500", 500, 17),
    "http-401": (login_answer(b"{}", "401 Unauthorized"), "login answered HTTP 401", 401, 2),
    "truncated": (
        [HEAD_200 + b"Content-Length: 50\r\n\r\n" + b'{"token": "x'],
        "login: connection closed in the middle of the body",
        200,
        12,
    ),
    "reset-mid-body": (
        [HEAD_200 + b"Content-Length: 50\r\n\r\n" + b'{"token": "x', 0.3, RESET],
        "login: connection reset by the server (body)",
        200,
        12,
    ),
    "closes-without-answering": ([], "login: the server closed the connection without answering", None, 0),
    "bad-status-line": ([b"HTTP/1.1 OK 200\r\n\r\n"], "login: malformed response head: illegal status line", None, 0),
    "slow-drip": (
        [HEAD_200 + b"Content-Length: 500\r\n\r\n", *drip(b" ", 100)],
        "answer within",  # the check that logged in: "no complete answer within"; the others may give up waiting
        200,
        -1,
    ),
}


@pytest.mark.parametrize(("login", "reason", "status", "size"), FAILED_LOGINS.values(), ids=FAILED_LOGINS)
def test_a_failed_login_names_what_was_wrong_once_per_round(
    rigs: list[Rig], caplog: pytest.LogCaptureFixture, login: list[Step], reason: str, status: int | None, size: int
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = _rig(rigs, login, GOOD_TARGET)
    checks = rig.round()
    for round_number in (1, 2):
        results = checks.run_once()
        _assert_classified(results)
        for result in results:
            assert result.details["error"] == "login_failed", result.details
            assert reason in result.details["reason"], result.details
            if "another check was logging in" in result.details["reason"]:
                # a check whose own time ran out while another one's slow login was in flight
                assert (result.details["status_code"], result.details["bytes"]) == (None, 0)
                continue
            assert result.details["status_code"] == status
            if size >= 0:
                assert result.details["bytes"] == size
            else:
                assert result.details["bytes"] > 0
        assert rig.server.hits[LOGIN] == round_number  # one attempt per round, not one per check
    assert rig.server.hits[TARGET] == 0
    _assert_no_traceback(caplog)


@pytest.mark.parametrize(
    "login",
    [
        [HINTS, *GOOD_LOGIN],
        [CONTINUE, HINTS, *GOOD_LOGIN],
        login_answer(b'{"token": "%s", "expires_in": 3600}' % TOKEN.encode(), content_type="Content-Type: text/plain"),
    ],
    ids=["103-before-200", "100-and-103-before-200", "json-as-text-plain"],
)
def test_logins_that_are_fine_despite_their_form(
    rigs: list[Rig], caplog: pytest.LogCaptureFixture, login: list[Step]
) -> None:
    rig = _rig(rigs, login, GOOD_TARGET)
    results = rig.round().run_once()
    assert all(result.ok for result in results), [result.details for result in results]
    assert rig.server.hits[LOGIN] == 1
    assert any(f"Bearer {TOKEN}".encode() in request for request in rig.server.requests)
    _assert_no_traceback(caplog)


# ------------------------------------------------------------------------- latency of a shared login
class SteppedTimer:
    """An injected monotonic timer that moves only when the test says; records who read it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.readers: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.readers.add(threading.current_thread().name)
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def test_checks_that_waited_for_the_shared_login_record_their_real_latency(rigs: list[Rig]) -> None:
    """One check logs in (the login answers only after a while); the others wait for it and give
    up when their own time is over. Every check's latency is the time from its own start to its
    verdict on the injected timer, waiting included: 0.7 s here, never 0."""
    rig = _rig(rigs, [0.05] * 200, GOOD_TARGET, timeout="1500ms")  # a login that says nothing for 10 s
    timer = SteppedTimer()
    checks = rig.round(timer=timer)
    done: list[list[CheckResult]] = []
    runner = threading.Thread(target=lambda: done.append(checks.run_once()))
    runner.start()
    pause = threading.Event()

    def login_in_flight_and_all_started() -> bool:
        started = [name for name in timer.readers if name.startswith("check")]
        return rig.server.hits[LOGIN] == 1 and len(started) == len(CHECKS)

    for _ in range(2000):  # a bound on a hang only: this takes milliseconds
        if login_in_flight_and_all_started():
            break
        pause.wait(0.01)
    assert login_in_flight_and_all_started()
    timer.advance(0.7)  # 0.7 s pass on the injected timer while the login is outstanding
    runner.join(timeout=20)
    [results] = done
    for result in results:
        assert result.details["error"] == "login_failed", result.details
        assert result.latency_ms == 700, (result.check_name, result.details)
    assert rig.server.hits[LOGIN] == 1

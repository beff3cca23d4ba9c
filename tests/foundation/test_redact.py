"""Secrets are masked wherever text about them can go: plain strings, log messages, their
arguments, exception text (library errors quote URLs) and extra attributes."""

from __future__ import annotations

import logging

import pytest
import requests

from exporter.config import Config
from exporter.redact import MASK, MAX_RUNTIME_SECRETS, RedactingFilter, Redactor
from tests.support.http_receiver import refused_url

SLACK = "https://hooks.slack.test/services/T000/B000/XXXXSECRETXXXX"
TOKEN = "123456:AAbbCCddEEff-secret"
DB = "postgresql://monitor:pa55w0rd-secret@db.internal:5432/blocktrust"
RPC = "https://polygon.example/v3/0123456789abcdef?apikey=K3y-secret-value"


@pytest.fixture
def redact() -> Redactor:
    return Redactor([SLACK, TOKEN, DB, RPC])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"POST {SLACK} failed", f"POST {MASK} failed"),
        ("url: /bot123456:AAbbCCddEEff-secret/sendMessage", f"url: /bot{MASK}/sendMessage"),
        ("token half AAbbCCddEEff-secret leaked", f"token half {MASK} leaked"),
        ('"POST /services/T000/B000/XXXXSECRETXXXX HTTP/1.1" 200', f'"POST {MASK} HTTP/1.1" 200'),
        ("password=pa55w0rd-secret", f"password={MASK}"),
        ("quoted https%3A%2F%2Fhooks.slack.test%2Fservices%2FT000%2FB000%2FXXXXSECRETXXXX", f"quoted {MASK}"),
        ("query apikey=K3y-secret-value", f"query {MASK}"),
        ("value alone K3y-secret-value", f"value alone {MASK}"),
        ("connecting to db.internal:5432/blocktrust", "connecting to db.internal:5432/blocktrust"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_masks_secrets_and_the_fragments_that_travel_alone(redact: Redactor, text: str, expected: str) -> None:
    assert redact(text) == expected


def test_built_from_every_secret_setting_of_the_config() -> None:
    config = Config.model_validate(
        {
            "store": {"url": DB},
            "api": {"password": "hunter2-secret"},
            "listener": {"rpc_url": RPC},
            "alerting": {
                "slack": {"webhook_url": SLACK},
                "telegram": {"bot_token": TOKEN, "chat_id": "1"},
                "webhook": {"url": "https://hooks.test/abcdef123"},
            },
        }
    )
    redact = Redactor(config.secrets())
    text = " ".join([DB, "hunter2-secret", RPC, SLACK, TOKEN, "https://hooks.test/abcdef123"])
    assert set(redact(text).split()) == {MASK}


def test_a_password_in_a_check_url_is_a_secret() -> None:
    config = Config.model_validate(
        {
            "checks": {
                "items": [
                    {"name": "partner", "url": "https://probe:s3cr%2Ft@partner.test/health?address=0xabc"},
                ]
            }
        }
    )
    assert set(config.secrets()) == {"s3cr%2Ft", "s3cr/t"}
    assert Redactor(config.secrets())("GET https://probe:s3cr%2Ft@partner.test/health?address=0xabc") == (
        f"GET https://probe:{MASK}@partner.test/health?address=0xabc"
    )


def test_an_empty_redactor_changes_nothing() -> None:
    assert Redactor([])("abc") == "abc"


def _capture(redact: Redactor) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record) + " " + str(getattr(record, "target", "")))

    handler = ListHandler()
    handler.addFilter(RedactingFilter(redact))
    parent = logging.getLogger("redact-test")
    parent.handlers = [handler]
    parent.propagate = False
    parent.setLevel(logging.DEBUG)
    return logging.getLogger("redact-test.child.library"), lines


def test_log_filter_masks_message_args_extra_and_exception_text(redact: Redactor) -> None:
    logger, lines = _capture(redact)
    logger.warning("posting to %s", SLACK, extra={"target": TOKEN})
    try:
        requests.post(refused_url(f"/bot{TOKEN}/sendMessage"), timeout=2)
    except requests.RequestException:
        logger.exception("telegram failed")
    assert len(lines) == 2
    assert "bot" in lines[1] and "Traceback" in lines[1]  # the exception text is still there, masked
    for line in lines:
        for secret in ("XXXXSECRETXXXX", "AAbbCCddEEff-secret"):
            assert secret not in line


def test_a_filter_on_the_root_handler_covers_records_from_child_loggers(redact: Redactor) -> None:
    root = logging.getLogger()
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler(logging.INFO)
    handler.addFilter(RedactingFilter(redact))
    root.addHandler(handler)
    try:
        logging.getLogger("urllib3.connectionpool").warning("retrying %s", DB)
    finally:
        root.removeHandler(handler)
    assert lines == [f"retrying {MASK}"]


def test_short_secrets_and_short_url_passwords_are_masked_whatever_their_length() -> None:
    redact = Redactor(["123", "abcde", "postgresql://u:pw@h/db"])
    text = "api password 123, token abcde, db password pw in postgresql://u:pw@h/db"
    masked = redact(text)
    for secret in ("123", "abcde", "pw"):
        assert secret not in masked
    assert masked == f"api password {MASK}, token {MASK}, db password {MASK} in {MASK}"


def test_a_short_secret_inside_a_longer_word_or_number_is_left_alone() -> None:
    redact = Redactor(["123"])
    text = "block 1234 at 0x123abc; password 123; postgresql://u:123@h/db; 123"
    assert redact(text) == f"block 1234 at 0x123abc; password {MASK}; postgresql://u:{MASK}@h/db; {MASK}"


@pytest.mark.parametrize(
    "text",
    [
        "dsn=postgresql%3A%2F%2Fu%3A123%40h%2Fdb",  # percent-encoded: "%3A" ends in a letter
        "password%3D123%26x",
        "line\\n123",  # a JSON or repr escape before it
        "a\\t123",
    ],
)
def test_a_short_secret_after_an_escape_is_masked(text: str) -> None:
    masked = Redactor(["123"])(text)
    assert "123" not in masked and MASK in masked


def test_a_short_secret_with_a_punctuation_edge_is_masked_next_to_letters() -> None:
    assert Redactor(["-x1", "ab:"])("id-x1 ab:cd x1 abc") == f"id{MASK} {MASK}cd x1 abc"


@pytest.mark.parametrize(
    ("secret", "text"),
    [
        ("https://hooks.test/a?k=v1", "GET /a with k=v1"),  # a short path and a short query value
        ("12345:ab", "chat ab"),  # a bot token's short secret half
    ],
)
def test_short_derived_fragments_are_not_masked_alone(secret: str, text: str) -> None:
    redact = Redactor([secret])
    assert redact(text) == text
    assert redact(f"posting to {secret}") == f"posting to {MASK}"


SLACK_KEYED = "https://hooks.slack.test/services/T0001ABCD/B0002EFGH/abcDEF123ghiJKL456mnoPQR"
RPC_KEYED = "https://polygon-mainnet.rpc.test/v3/0123456789abcdef0123456789abcdef"
HOOK_UUID = "https://hooks.test/api/v1/webhooks/Incoming/sendMessage/6f1c2a9e-0b7d-4c1e-9a55-3d2f8e7b1c40"
RPC_USER = "https://Key5ecretUser@rpc.test/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # What a far end says when it echoes one segment of the path back, alone.
        ("HTTP 404: no_service abcDEF123ghiJKL456mnoPQR", f"HTTP 404: no_service {MASK}"),
        ("invalid team T0001ABCD, channel B0002EFGH", f"invalid team {MASK}, channel {MASK}"),
        (
            '{"error": "project id 0123456789abcdef0123456789abcdef not found"}',
            f'{{"error": "project id {MASK} not found"}}',
        ),
        ("unknown hook 6f1c2a9e-0b7d-4c1e-9a55-3d2f8e7b1c40", f"unknown hook {MASK}"),
        ("user Key5ecretUser is not allowed", f"user {MASK} is not allowed"),
        ("tail B0002EFGH/abcDEF123ghiJKL456mnoPQR", f"tail {MASK}/{MASK}"),
        # The words of those URLs' form stay readable.
        *((word, word) for word in ("services", "api", "v1", "v3", "webhooks", "hooks", "Incoming", "sendMessage")),
        (
            "GET https://api.example.org/api/v1/services/health 200",
            "GET https://api.example.org/api/v1/services/health 200",
        ),
    ],
)
def test_each_key_bearing_path_segment_is_masked_alone(text: str, expected: str) -> None:
    assert Redactor([SLACK_KEYED, RPC_KEYED, HOOK_UUID, RPC_USER])(text) == expected


def test_a_pool_of_rpc_urls_masks_each_key() -> None:
    pool = "https://a.rpc.test/v2/FirstKey123456,https://b.rpc.test/?apikey=SecondKey7890"
    redact = Redactor([pool])
    assert redact("a said FirstKey123456; b said SecondKey7890") == f"a said {MASK}; b said {MASK}"


def test_a_database_url_path_and_user_stay_readable() -> None:
    redact = Redactor(["postgresql://monitor:pa55w0rd-secret@db.internal:5432/blocktrust"])
    assert (
        redact("role monitor on blocktrust, password pa55w0rd-secret") == f"role monitor on blocktrust, password {MASK}"
    )


def test_common_encodings_of_a_secret_are_masked() -> None:
    """Issue 13 kind 7: Basic auth's base64 of a URL's user:password, JSON escapes, bytes repr."""
    redact = Redactor(["https://user:p%40ss@hooks.test/hook", 'pa"ss\\wörd-1'])
    assert redact("Authorization: Basic dXNlcjpwQHNz") == f"Authorization: Basic {MASK}"  # user:p@ss
    assert redact('{"password": "pa\\"ss\\\\w\\u00f6rd-1"}') == f'{{"password": "{MASK}"}}'
    assert redact("bytearray(b'pa\"ss\\\\w\\xc3\\xb6rd-1')") == f"bytearray(b'{MASK}')"
    assert redact("pa%22ss%5Cw%C3%B6rd-1") == MASK


def test_a_secret_cut_short_is_masked_where_the_text_was_cut() -> None:
    redact = Redactor(["hostile-Pa55word"])
    assert redact('keys: "hostile-Pa…') == f'keys: "{MASK}…'
    assert redact('value "hostile-Pa55w...') == f'value "{MASK}...'
    assert redact('keys: "aaaa", "hostile-P') == f'keys: "aaaa", "{MASK}'
    assert redact("hos... post... hostel") == "hos... post... hostel"  # under four characters, no start, not cut


def test_secrets_learnt_while_running_are_masked_until_forgotten_and_bounded() -> None:
    redact = Redactor([])
    assert not redact
    redact.remember("eyJ.token-one")
    assert redact("Bearer eyJ.token-one") == f"Bearer {MASK}"
    redact.forget("eyJ.token-one")
    assert redact("Bearer eyJ.token-one") == "Bearer eyJ.token-one"
    for n in range(MAX_RUNTIME_SECRETS + 5):
        redact.remember(f"runtime-secret-{n:03d}")
    assert redact("runtime-secret-000") == "runtime-secret-000"  # the oldest went
    assert redact(f"runtime-secret-{MAX_RUNTIME_SECRETS + 4:03d}") == MASK


def test_the_log_filter_masks_what_its_redactor_learns_later() -> None:
    redact = Redactor(["configured-secret"])
    record = logging.LogRecord("t", logging.INFO, "p", 1, "echo %s", ("Bearer learnt-token",), None)
    redact.remember("learnt-token")
    RedactingFilter(redact).filter(record)
    assert record.getMessage() == f"echo Bearer {MASK}"


@pytest.mark.parametrize("secret", [" ", "   ", "\t", "\n", "x", " x ", "-", "...", "***", ":", "/"])
def test_a_blank_one_character_or_punctuation_only_secret_is_never_registered(secret: str) -> None:
    """Such a secret would mask every space, letter or dash of the output; it is not registered."""
    text = "round 12: 9/9 ok - slowest x api.events 14 ms ... *** : /"
    redact = Redactor([secret])
    assert not redact
    assert redact(text) == text


def test_a_blank_or_one_character_url_password_is_not_registered_but_the_url_is() -> None:
    redact = Redactor(["postgresql://u:x@h/db", "https://a: @rpc.example/key0123456789"])
    text = "x marks the spot; postgresql://u:x@h/db and https://a: @rpc.example/key0123456789"
    assert redact(text) == f"x marks the spot; {MASK} and {MASK}"

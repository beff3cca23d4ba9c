"""A bad web configuration file is one line naming the file and the key, and exit 2, both at
``check-config`` and at start-up (``run``), whether named by ``--web.config.file``, by
``WEB_CONFIG_FILE`` or by ``server.web_config_file`` (issue 17, acceptance 3).

In an expectation, ``{path}`` is the web configuration file, ``{dir}`` its folder, and ``…`` any text
(an OpenSSL or YAML reason, which their versions word differently).
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter.cli import main
from exporter.web import load_web_config
from tests.support.certs import Pki, make_pki
from tests.support.exporter_process import run_command

HASH = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze"
PLAIN_PASSWORD = "hunter2-plain-password"
HIDDEN = 'expected a bcrypt hash like "$2y$10$" and 53 characters (value hidden)'

# (id, file text or None for a missing file, expected line)
CASES: list[tuple[str, str | None, str]] = [
    ("missing_file", None, "{path}: cannot read the web configuration file: No such file or directory"),
    ("bad_yaml", "basic_auth_users: [alice\n", "{path}:2: invalid YAML: …"),
    ("top_level_list", "- alice\n", "{path}: expected a mapping, got list"),
    # A repeated key is refused as in the main configuration: YAML would keep the last, and an empty
    # basic_auth_users at the end would have turned authentication off without a word.
    (
        "repeated_users_turning_auth_off",
        f"basic_auth_users:\n  alice: {HASH}\nbasic_auth_users:\n",
        "{path}:3: basic_auth_users: duplicate key (first at line 1)",
    ),
    (
        "repeated_tls_section",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "tls_server_config:\n  min_version: TLS13\n",
        "{path}:4: tls_server_config: duplicate key (first at line 1)",
    ),
    (
        "repeated_user",
        f"basic_auth_users:\n  alice: {HASH}\n  alice: {HASH}\n",
        "{path}:3: basic_auth_users.alice: duplicate key (first at line 2)",
    ),
    ("not_utf8", "\udce9", "{path}: not UTF-8 text: the first byte that is not UTF-8 is at offset 0; save it as UTF-8"),
    ("unknown_top_key", "tls_config:\n  cert_file: x\n", "{path}: tls_config: unknown key"),
    (
        "unsupported_top_key",
        "rate_limit:\n  interval: 1s\n",
        "{path}: rate_limit: not supported by blocktrust-exporter",
    ),
    (
        "unsupported_http_headers",
        "http_server_config:\n  http2: false\n",
        "{path}: http_server_config: not supported …",
    ),
    ("users_not_a_mapping", "basic_auth_users: [alice]\n", "{path}: basic_auth_users: expected a mapping, got list"),
    ("bad_hash", "basic_auth_users:\n  alice: $2y$10$short\n", "{path}: basic_auth_users.alice: " + HIDDEN),
    ("plain_password", f"basic_auth_users:\n  alice: {PLAIN_PASSWORD}\n", "{path}: basic_auth_users.alice: " + HIDDEN),
    ("hash_not_a_string", "basic_auth_users:\n  alice: 12345\n", "{path}: basic_auth_users.alice: " + HIDDEN),
    (
        "bcrypt_cost_31",  # the decoy hash of this cost kept check-config at 100 % CPU for ever
        f"basic_auth_users:\n  alice: $2y$31${HASH[7:]}\n",
        "{path}: basic_auth_users.alice: bcrypt cost 31 is above the maximum of 14: each check would take about "
        "2 days of CPU; hash it with a cost from 4 to 14, 10 being usual (value hidden)",
    ),
    (
        "bcrypt_cost_15",
        f"basic_auth_users:\n  bob: {HASH}\n  alice: $2b$15${HASH[7:]}\n",
        "{path}: basic_auth_users.alice: bcrypt cost 15 is above the maximum of 14: each check would take about "
        "2 s of CPU; hash it with a cost from 4 to 14, 10 being usual (value hidden)",
    ),
    (
        "bcrypt_cost_3",
        f"basic_auth_users:\n  alice: $2a$03${HASH[7:]}\n",
        "{path}: basic_auth_users.alice: bcrypt cost 3 is below bcrypt's minimum of 4 (value hidden)",
    ),
    (
        "user_with_colon",
        f"basic_auth_users:\n  'a:b': {HASH}\n",
        "{path}: basic_auth_users.a:b: a user name cannot contain ':' …",
    ),
    ("tls_not_a_mapping", "tls_server_config: yes\n", "{path}: tls_server_config: expected a mapping, got bool"),
    (
        "unknown_tls_key",
        "tls_server_config:\n  cert_fil: server.crt\n",
        "{path}: tls_server_config.cert_fil: unknown key",
    ),
    (
        "inline_cert",
        "tls_server_config:\n  cert: '-----BEGIN CERTIFICATE-----'\n",
        "{path}: tls_server_config.cert: not supported by blocktrust-exporter",
    ),
    (
        "no_key_file",
        "tls_server_config:\n  cert_file: server.crt\n",
        "{path}: tls_server_config.key_file: required: TLS needs both cert_file and key_file",
    ),
    (
        "cert_file_missing",
        "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n",
        "{path}: tls_server_config.cert_file: cannot read {dir}/nowhere.crt: No such file or directory",
    ),
    (
        "cert_not_pem",
        "tls_server_config:\n  cert_file: garbage.crt\n  key_file: server.key\n",
        "{path}: tls_server_config.cert_file: cannot load the certificate and key "
        "({dir}/garbage.crt, {dir}/server.key): …",
    ),
    (
        "key_of_another_cert",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n",
        "{path}: tls_server_config.cert_file: cannot load the certificate and key "
        "({dir}/server.crt, {dir}/client.key): …",
    ),
    (
        "client_auth_type_unknown",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Always\n",
        "{path}: tls_server_config.client_auth_type: expected one of NoClientCert, VerifyClientCertIfGiven, "
        "RequireAndVerifyClientCert, got 'Always'",
    ),
    (
        "client_auth_type_unverified",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAnyClientCert\n",
        "{path}: tls_server_config.client_auth_type: RequireAnyClientCert is not supported …",
    ),
    (
        "client_ca_required",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
        "{path}: tls_server_config.client_ca_file: required by client_auth_type RequireAndVerifyClientCert",
    ),
    (
        "client_ca_not_pem",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: garbage.crt\n",
        "{path}: tls_server_config.client_ca_file: cannot load the CA certificates ({dir}/garbage.crt): …",
    ),
    (
        "min_version_unknown",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
        "{path}: tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got 'TLS14'",
    ),
    (
        "min_above_max",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n"
        "  max_version: TLS12\n",
        "{path}: tls_server_config.min_version: must not be above max_version",
    ),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    (pki.ca.parent / "garbage.crt").write_text("this is not a certificate\n")
    return pki


def _case(pki: Pki, case_id: str) -> tuple[str, str]:
    """The web configuration file of the case (beside the certificates) and the line it must give."""
    _id, text, expected = next(case for case in CASES if case[0] == case_id)
    path = pki.ca.parent / f"{case_id}.yml"
    if text is not None:  # "\udce9" stands for the byte 0xe9 (not UTF-8)
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return str(path), expected.replace("{path}", str(path)).replace("{dir}", str(pki.ca.parent))


def _matches(expected: str, line: str) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in expected.split("…")), line) is not None


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("WEB_CONFIG_FILE", "DATABASE_URL", "MONITOR_CHECK_INTERVAL", "POLYGON_RPC_URL", "API_BASE"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers  # `run` set up logging for the process
    root.setLevel(level)


def test_there_is_a_case_for_every_kind_of_mistake() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("case_id", [case[0] for case in CASES])
def test_a_bad_web_config_is_one_line_and_exit_2(
    case_id: str, command: str, pki: Pki, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path, expected = _case(pki, case_id)
    assert main([command, "--config", os.devnull, "--web.config.file", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and _matches(f"blocktrust-exporter: {expected}", lines[0]), err
    assert PLAIN_PASSWORD not in err


def test_the_environment_variable_names_the_file(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path, expected = _case(pki, "bad_hash")
    monkeypatch.setenv("WEB_CONFIG_FILE", path)
    assert main(["check-config", "--config", os.devnull]) == 2
    assert capsys.readouterr().err.splitlines() == [f"blocktrust-exporter: {expected}"]


def test_the_config_key_names_the_file(
    pki: Pki, tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path, expected = _case(pki, "unknown_top_key")
    config = tmp_path / "config.yaml"
    config.write_text(f"server:\n  web_config_file: {path}\n")
    assert main(["check-config", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"blocktrust-exporter: {expected}"]


def test_a_good_web_config_passes_check_config(
    pki: Pki, tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  alice: {HASH}\n"
    )
    assert main(["check-config", "--config", os.devnull, "--web.config.file", str(path)]) == 0
    assert f"web_config_file: {path}" in capsys.readouterr().out


@pytest.mark.slow
def test_start_up_with_a_bad_web_config_exits_2_before_serving(pki: Pki) -> None:
    """The process as an operator starts it: no traceback, no banner, one line, exit 2."""
    path, expected = _case(pki, "plain_password")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MONITOR_CHECK_INTERVAL")}
    env["WEB_CONFIG_FILE"] = path
    proc = run_command(["run", "--config", os.devnull, "--listen", "127.0.0.1:1"], env=env, cwd=pki.ca.parent)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"blocktrust-exporter: {expected}"]
    assert PLAIN_PASSWORD not in proc.stderr + proc.stdout


def test_loading_a_web_config_runs_no_bcrypt_at_the_hashes_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check-config and start-up check the format of a hash only; the decoy for unknown users is made
    without running bcrypt at the (maybe high) cost of the configured hashes."""
    costs: list[bytes] = []
    real_hashpw, real_checkpw = bcrypt.hashpw, bcrypt.checkpw

    def hashpw(password: bytes, salt: bytes) -> bytes:
        costs.append(salt[4:6])
        return real_hashpw(password, salt)

    def checkpw(password: bytes, hashed: bytes) -> bool:
        costs.append(hashed[4:6])
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "hashpw", hashpw)
    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: $2y$14${HASH[7:]}\n")
    security = load_web_config(str(path))
    assert security.auth is not None
    assert all(cost == b"04" for cost in costs), costs
    # The decoy still costs what a known user's check does: cost 14, like alice's hash.
    assert not security.auth.check("Basic " + base64.b64encode(b"mallory:guess").decode())
    assert costs[-1] == b"14"


def test_the_documented_example_loads(pki: Pki) -> None:
    """docs/web-config.example.yml, beside certificates of the names it uses, is a working configuration."""
    example = Path(__file__).resolve().parents[2] / "docs" / "web-config.example.yml"
    copy = pki.ca.parent / "example.yml"
    copy.write_text(example.read_text())
    security = load_web_config(str(copy))
    assert security.scheme == "https" and security.auth is not None
    assert security.auth.check("Basic " + base64.b64encode(b"prometheus:example-password-change-me").decode())

"""Access control for everything the HTTP server serves (issue 17, item 2 and acceptance 3).

The server is built the way ``serve`` builds it (``runtime.http_server``), so every route the runtime
wires, the status page and its JSON API included, is enumerated from ``server.routes``: none can be
left outside the basic-auth layer. A route registered by the test and an unknown path are covered too.
TLS is checked with a CA and certificates made here (``tests/support/certs.py``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

from exporter.config import Config
from exporter.runtime import Runtime, build_runtime, http_server
from exporter.server import HttpServer, StartResponse
from exporter.web import BasicAuth, load_web_config
from exporter.web.auth import parse_basic
from tests.support.certs import Pki, make_pki
from tests.support.exporter_process import free_port

USER, PASSWORD = "alice", "wonderland-is-far"
TEST_ROUTE = "/test-only-route"
UNKNOWN = "/no-such-page"


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()  # cost 4: fast tests


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with no parts (the routes do not depend on them), its scheduler running so /readyz is 200."""
    config = Config.model_validate(
        {"server": {"listen": f"127.0.0.1:{free_port()}"}, "store": {"sqlite_path": str(tmp_path / "store.db")}}
    )
    rt = build_runtime(config, frozenset())
    rt.scheduler.start()
    yield rt
    rt.scheduler.stop(2.0)
    rt.store.close()


def _web_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "web-config.yml"
    path.write_text(text)
    return str(path)


class _Counting:
    """A route that counts the requests reaching it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"reached\n"]


def _serve(rt: Runtime, web_config: str | None) -> tuple[HttpServer, _Counting]:
    server = http_server(rt, load_web_config(web_config))
    route = _Counting()
    server.add_route(TEST_ROUTE, route)
    server.start()
    return server, route


def test_every_route_answers_401_without_credentials_and_200_with_them(tmp_path: Path, runtime: Runtime) -> None:
    web_config = _web_config(tmp_path, f"basic_auth_users:\n  {USER}: {_hash(PASSWORD)}\n")
    server, route = _serve(runtime, web_config)
    base = f"http://127.0.0.1:{server.port}"
    try:
        paths = sorted(server.routes)
        assert {"/", "/metrics", "/healthz", "/readyz", TEST_ROUTE} <= set(paths)
        wrong = [None, (USER, "not-the-password"), ("mallory", PASSWORD), (USER, ""), (USER.upper(), PASSWORD)]
        for path in [*paths, UNKNOWN]:
            for auth in wrong:
                answer = requests.get(base + path, auth=auth, timeout=10)
                assert answer.status_code == 401, (path, auth)
                assert answer.headers["WWW-Authenticate"].startswith('Basic realm="blocktrust-exporter"'), path
                assert PASSWORD not in answer.text
        assert route.calls == 0, "a request without valid credentials reached the route"
        for path in paths:
            answer = requests.get(base + path, auth=(USER, PASSWORD), timeout=10)
            assert answer.status_code == 200, (path, answer.text)
        assert requests.get(base + UNKNOWN, auth=(USER, PASSWORD), timeout=10).status_code == 404
        assert route.calls == 1
        assert (
            "blocktrust_exporter_build_info" in requests.get(base + "/metrics", auth=(USER, PASSWORD), timeout=10).text
        )
    finally:
        server.stop()


def test_without_a_web_config_every_route_is_open(runtime: Runtime) -> None:
    server, route = _serve(runtime, None)
    try:
        for path in sorted(server.routes):
            assert requests.get(f"http://127.0.0.1:{server.port}{path}", timeout=10).status_code == 200, path
        assert route.calls == 1
    finally:
        server.stop()


def test_tls_verifies_with_the_ca_and_basic_auth_still_applies(tmp_path: Path, runtime: Runtime, pki: Pki) -> None:
    web_config = _web_config(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  {USER}: {_hash(PASSWORD)}\n",
    )
    server, _route = _serve(runtime, web_config)
    try:
        url = f"https://127.0.0.1:{server.port}/metrics"
        answer = requests.get(url, verify=str(pki.ca), auth=(USER, PASSWORD), timeout=10)
        assert answer.status_code == 200
        assert "blocktrust_exporter_build_info" in answer.text
        assert requests.get(url, verify=str(pki.ca), timeout=10).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=str(pki.other_ca), auth=(USER, PASSWORD), timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP gets no answer
            requests.get(f"http://127.0.0.1:{server.port}/metrics", auth=(USER, PASSWORD), timeout=10)
        # The server still serves after the failed handshakes.
        assert requests.get(url, verify=str(pki.ca), auth=(USER, PASSWORD), timeout=10).status_code == 200
    finally:
        server.stop()


def test_client_certificates_are_required_when_configured(tmp_path: Path, runtime: Runtime, pki: Pki) -> None:
    web_config = _web_config(
        tmp_path,
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n  min_version: TLS13\n",
    )
    server, _route = _serve(runtime, web_config)
    try:
        url = f"https://127.0.0.1:{server.port}/healthz"
        answer = requests.get(url, verify=str(pki.ca), cert=(str(pki.client_cert), str(pki.client_key)), timeout=10)
        assert answer.status_code == 200
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url, verify=str(pki.ca), timeout=10).raise_for_status()
    finally:
        server.stop()


def test_relative_certificate_paths_are_read_beside_the_web_config(tmp_path: Path, pki: Pki) -> None:
    web_config = pki.ca.parent / "web-config.yml"
    web_config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    security = load_web_config(str(web_config))
    assert security.tls is not None and security.scheme == "https" and security.auth is None


def test_the_server_listens_on_ipv6(tmp_path: Path) -> None:
    config = Config.model_validate(
        {"server": {"listen": f"[::1]:{free_port()}"}, "store": {"sqlite_path": str(tmp_path / "store.db")}}
    )
    rt = build_runtime(config, frozenset())
    server = http_server(rt, load_web_config(None))
    server.start()
    try:
        assert requests.get(f"http://[::1]:{server.port}/healthz", timeout=10).text == "ok\n"
    finally:
        server.stop()
        rt.store.close()


# ------------------------------------------------------------------------------ the credential check
def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bcrypt_verdicts_are_cached_without_keeping_the_password() -> None:
    auth = BasicAuth({USER: _hash(PASSWORD)})
    runs_at_start = auth.bcrypt_runs
    for _ in range(5):
        assert auth.check(_basic(USER, PASSWORD))
    assert auth.bcrypt_runs == runs_at_start + 1
    for _ in range(3):
        assert not auth.check(_basic(USER, "wrong-password"))
    assert auth.bcrypt_runs == runs_at_start + 2
    cached = b"".join(auth._cache)
    assert PASSWORD.encode() not in cached and b"wrong-password" not in cached


def test_the_cache_is_bounded() -> None:
    auth = BasicAuth({USER: _hash(PASSWORD)}, cache_size=3)
    for attempt in range(10):
        auth.check(_basic(USER, f"guess-{attempt}"))
    assert len(auth._cache) == 3


def test_an_unknown_user_costs_a_bcrypt_like_a_known_one() -> None:
    auth = BasicAuth({USER: _hash(PASSWORD)})
    before = auth.bcrypt_runs
    assert not auth.check(_basic("mallory", PASSWORD))
    assert auth.bcrypt_runs == before + 1


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Digest " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    ],
)
def test_malformed_authorization_headers_are_refused_without_hashing(header: str) -> None:
    auth = BasicAuth({USER: _hash(PASSWORD)})
    before = auth.bcrypt_runs
    assert not auth.check(header)
    assert auth.bcrypt_runs == before


def test_basic_credentials_parse_per_rfc_7617() -> None:
    assert parse_basic("basic " + base64.b64encode(b"u:p:with:colons").decode()) == (b"u", b"p:with:colons")
    assert parse_basic(_basic(USER, "")) == (USER.encode(), b"")


def test_a_password_beyond_bcrypts_72_bytes_is_refused_not_crashing() -> None:
    auth = BasicAuth({USER: _hash(PASSWORD)})
    assert not auth.check(_basic(USER, "x" * 100))


def test_every_route_answers_get_and_head_alike_and_405_otherwise(runtime: Runtime) -> None:
    """Issue: HEAD /metrics was 405 while HEAD elsewhere was 200, and POST / was 200."""
    server, route = _serve(runtime, None)
    base = f"http://127.0.0.1:{server.port}"
    try:
        paths = sorted(server.routes)
        assert {"/", "/api/v1/status", "/metrics", "/healthz", "/readyz", TEST_ROUTE} <= set(paths)
        for path in paths:
            get = requests.get(base + path, timeout=10)
            head = requests.head(base + path, timeout=10)
            assert (head.status_code, head.content) == (get.status_code, b""), path
            assert head.headers["Content-Type"] == get.headers["Content-Type"], path
            assert int(head.headers["Content-Length"]) > 0, path  # GET's length (the body changes: not compared)
            if path in ("/healthz", "/readyz", TEST_ROUTE):  # bodies that do not change between requests
                assert head.headers["Content-Length"] == str(len(get.content)), path
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                answer = requests.request(method, base + path, timeout=10)
                assert answer.status_code == 405, (method, path)
                assert answer.headers["Allow"] == "GET, HEAD", (method, path)
        assert route.calls == 2, "GET and HEAD reached the route; no other method did"
        assert requests.post(base + UNKNOWN, timeout=10).status_code == 404
    finally:
        server.stop()


def test_the_auth_layer_answers_before_the_method_check(tmp_path: Path, runtime: Runtime) -> None:
    server, route = _serve(runtime, _web_config(tmp_path, f"basic_auth_users:\n  {USER}: {_hash(PASSWORD)}\n"))
    base = f"http://127.0.0.1:{server.port}"
    try:
        for path in ("/", "/metrics", TEST_ROUTE):
            assert requests.post(base + path, timeout=10).status_code == 401
            assert requests.head(base + path, timeout=10).status_code == 401
            assert requests.post(base + path, auth=(USER, PASSWORD), timeout=10).status_code == 405
            assert requests.head(base + path, auth=(USER, PASSWORD), timeout=10).status_code == 200
        assert route.calls == 1
    finally:
        server.stop()

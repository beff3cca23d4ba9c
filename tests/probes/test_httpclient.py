"""The probe HTTP client against a scripted raw TCP server: framing, limits and the total deadline."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Sequence

import pytest

from exporter.probes.httpclient import HttpClient, HttpError, HttpRequest

Step = tuple[bytes, float]  # send these bytes, then wait this long


class ScriptedServer:
    """Answers every connection with the same script of writes and pauses, then closes."""

    def __init__(self, script: Sequence[Step], tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/x?y=1"

    def _serve(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            self.requests.append(data)
            try:
                for chunk, pause in self.script:
                    conn.sendall(chunk)
                    if pause and self._stop.wait(pause):
                        return
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    made = HttpClient()
    yield made
    made.close()


def _serve(script: Sequence[Step]) -> ScriptedServer:
    return ScriptedServer(script)


def _fetch(client: HttpClient, server: ScriptedServer, *, timeout: float = 0.3, limit: int = 1000):  # type: ignore[no-untyped-def]
    try:
        return client.fetch(HttpRequest("GET", server.url), timeout=timeout, max_body_bytes=limit)
    finally:
        server.close()


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    ("script", "body"),
    [
        ([(OK_HEAD + b"Content-Length: 4\r\n\r\nbody", 0)], b"body"),
        ([(OK_HEAD + b"Content-Length: 4\r\n\r\nbo", 0.02), (b"dy", 0)], b"body"),
        (
            [(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\nbo\r\n", 0.02), (b"2;x=1\r\ndy\r\n0\r\n\r\n", 0)],
            b"body",
        ),
        ([(OK_HEAD + b"\r\nclose-delimited", 0)], b"close-delimited"),
        # the length framing wins over a server that keeps the connection open afterwards
        ([(OK_HEAD + b"Content-Length: 2\r\n\r\nok", 5)], b"ok"),
        # RFC 9110 §15.2: interim answers before the final one are skipped
        (
            [
                (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", 0.02),
                (OK_HEAD + b"Content-Length: 4\r\n\r\nbody", 0),
            ],
            b"body",
        ),
    ],
    ids=["content-length", "split", "chunked", "close-delimited", "kept-open", "interim-1xx"],
)
def test_bodies_are_framed(client: HttpClient, script: list[Step], body: bytes) -> None:
    response = _fetch(client, _serve(script), timeout=2)
    assert response.status == 200
    assert response.body == body
    assert response.headers["content-type"] == "application/json"


def test_request_carries_host_method_headers_and_body(client: HttpClient) -> None:
    server = _serve([(OK_HEAD + b"Content-Length: 0\r\n\r\n", 0)])
    request = HttpRequest("POST", server.url, {"Authorization": "Bearer t"}, b'{"a":1}')
    client.fetch(request, timeout=2, max_body_bytes=10)
    server.close()
    raw = server.requests[0]
    assert raw.startswith(b"POST /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Authorization: Bearer t\r\n" in raw
    assert b"Content-Length: 7\r\n" in raw
    assert b"Connection: close\r\n" in raw


@pytest.mark.parametrize(
    ("script", "error", "status"),
    [
        # one byte every 50 ms: no single read waits 0.3 s, only a total deadline stops it
        ([(OK_HEAD + b"Content-Length: 100\r\n\r\n", 0), *[(b"x", 0.05)] * 100], "timeout", 200),
        ([(b"HTTP/1.1 200 OK\r\n", 0.05), *[(b"X-Slow: y\r\n", 0.05)] * 100], "timeout", None),
        ([(b"", 5)], "timeout", None),
        ([(OK_HEAD + b"Content-Length: 5000\r\n\r\n", 0)], "body_too_large", 200),
        ([(OK_HEAD + b"\r\n" + b"x" * 5000, 0)], "body_too_large", 200),
        (
            [(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", 0), *[(b"100\r\n" + b"x" * 256 + b"\r\n", 0)] * 10],
            "body_too_large",
            200,
        ),
        ([(OK_HEAD + b"Content-Length: 10\r\n\r\nabc", 0)], "bad_response", 200),
        ([(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 0)], "bad_response", 200),
        ([(b"SSH-2.0-OpenSSH\r\n\r\n", 0)], "bad_response", None),
        ([(b"", 0)], "bad_response", None),
        ([(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 0)], "bad_response", None),
        ([(OK_HEAD + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", 0)], "bad_response", None),
    ],
    ids=[
        "trickling-body",
        "trickling-headers",
        "silent",
        "declared-too-large",
        "too-large",
        "chunked-too-large",
        "truncated",
        "bad-chunk",
        "not-http",
        "closed-at-once",
        "unasked-101",
        "oversized-headers",
    ],
)
def test_failures_are_classified(client: HttpClient, script: list[Step], error: str, status: int | None) -> None:
    with pytest.raises(HttpError) as failure:
        _fetch(client, _serve(script))
    assert failure.value.error == error, failure.value.reason
    assert failure.value.status == status


def test_connection_refused(client: HttpClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HttpError) as failure:
        client.fetch(HttpRequest("GET", f"http://127.0.0.1:{port}/"), timeout=1, max_body_bytes=10)
    assert failure.value.error == "connection_refused"


def test_names_are_resolved(client: HttpClient) -> None:
    server = _serve([(OK_HEAD + b"Content-Length: 2\r\n\r\nok", 0)])
    url = server.url.replace("127.0.0.1", "localhost")
    try:
        assert client.fetch(HttpRequest("GET", url), timeout=2, max_body_bytes=10).body == b"ok"
    finally:
        server.close()


def test_latency_is_measured_with_the_injected_timer() -> None:
    ticks = iter(range(0, 1000, 1))
    client = HttpClient(timer=lambda: float(next(ticks)))
    server = _serve([(OK_HEAD + b"Content-Length: 2\r\n\r\nok", 0)])
    try:
        response = client.fetch(HttpRequest("GET", server.url), timeout=10_000, max_body_bytes=10)
    finally:
        server.close()
        client.close()
    assert response.seconds > 0 and response.seconds == int(response.seconds)


def test_a_body_at_the_limit_is_accepted(client: HttpClient) -> None:
    response = _fetch(client, _serve([(OK_HEAD + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000, 0)]))
    assert len(response.body) == 1000


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _tls_server(cert: str, key: str, script: Sequence[Step]) -> tuple[ScriptedServer, str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ScriptedServer(script, tls=context)
    return server, server.url.replace("http://", "https://")


def test_https_with_a_trusted_certificate(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    server, url = _tls_server(cert, key, [(OK_HEAD + b"Content-Length: 2\r\n\r\nok", 0)])
    client = HttpClient(tls_context=ssl.create_default_context(cafile=cert))
    try:
        assert client.fetch(HttpRequest("GET", url), timeout=5, max_body_bytes=10).body == b"ok"
    finally:
        server.close()
        client.close()


def test_https_with_an_untrusted_certificate_is_a_tls_error(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    server, url = _tls_server(cert, key, [(OK_HEAD + b"Content-Length: 2\r\n\r\nok", 0)])
    client = HttpClient()
    try:
        with pytest.raises(HttpError) as failure:
            client.fetch(HttpRequest("GET", url), timeout=5, max_body_bytes=10)
    finally:
        server.close()
        client.close()
    assert failure.value.error == "tls_error"
    assert "CERTIFICATE_VERIFY_FAILED" in failure.value.reason


def test_a_server_that_never_completes_the_handshake_times_out(client: HttpClient) -> None:
    server = _serve([(b"", 5)])  # accepts TCP, reads nothing, says nothing
    url = server.url.replace("http://", "https://")
    with pytest.raises(HttpError) as failure:
        _fetch_url(client, server, url)
    assert failure.value.error == "timeout"
    assert "(tls)" in failure.value.reason


def _fetch_url(client: HttpClient, server: ScriptedServer, url: str) -> object:
    try:
        return client.fetch(HttpRequest("GET", url), timeout=0.3, max_body_bytes=10)
    finally:
        server.close()


LONG_LABEL = "a" * 64


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:99999/", "the URL cannot be parsed"),
        ("http://h:70000/", "the URL cannot be parsed"),
        ("http://h:port/", "the URL cannot be parsed"),
        ("http://[::1/", "the URL cannot be parsed"),
        ("http://127.0.0.1:0/", "the URL's port is 0"),
        (f"http://{LONG_LABEL}.example/", "host name cannot be looked up"),
        ("http://api..example/", "host name cannot be looked up"),
        ("ftp://example.org/", "not an http(s) URL"),
    ],
)
def test_a_url_that_cannot_be_called_is_a_bad_request_not_a_crash(client: HttpClient, url: str, reason: str) -> None:
    """Issue 13 kind 2: whatever URL a check ends up with (base_url + path included), the client
    classifies it; it never raises anything but ``HttpError``."""
    with pytest.raises(HttpError) as raised:
        client.fetch(HttpRequest("GET", url), timeout=2, max_body_bytes=100)
    assert raised.value.error == "bad_request"
    assert reason in raised.value.reason

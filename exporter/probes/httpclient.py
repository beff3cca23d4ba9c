"""A minimal HTTP/1.1 client with a hard total deadline and a body limit, for probes.

Why not ``requests``: its timeout bounds each socket read, not the exchange, so a server that
trickles one byte per second keeps a check alive forever, and it reads bodies of any size.
Here every blocking step (name resolution, connect, TLS handshake, send, each receive) waits
at most the time left until one deadline, and the body is cut at ``max_body_bytes``. One
connection per exchange (``Connection: close``), as blackbox_exporter does, so every probe
measures a full connect. Redirects are not followed: a check states the status it expects.

The bytes on the wire are h11's business (a sans-I/O HTTP/1.1 parser): framing by
Content-Length, chunked coding or close, interim ``1xx`` answers skipped as RFC 9110 §15.2
says (a ``101`` we never asked for is a protocol error), header size limits, and a precise
word for every malformed answer. This module only owns the socket, the deadline and the limits.

Every failure is an ``HttpError`` of one of ``TRANSPORT_ERRORS``, with the status code (when
a final status line arrived) and the body bytes read so far; nothing a server sends raises
anything else. I/O deadlines and latencies use the real monotonic clock (``timer``), because
sockets live in real time; the injected ``Clock`` of the rest of the exporter is for
timestamps and lifetimes. Not for general-purpose HTTP (no proxies, cookies, compression or
keep-alive).
"""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

import h11

USER_AGENT = "blocktrust-exporter"
_MAX_HEADER_BYTES = 64 * 1024  # one header block (each interim answer's, then the final one's)
_MAX_INTERIM_ANSWERS = 16  # 1xx answers before the final one; more is a server in a loop
_RECV_SIZE = 64 * 1024
_REASON_CHARS = 200

TRANSPORT_ERRORS = frozenset(
    {
        "bad_request",  # the URL or a header value cannot be sent (our side: a config or token problem)
        "dns_error",
        "connection_refused",
        "connection_reset",
        "connection_error",
        "tls_error",
        "timeout",
        "body_too_large",
        "bad_response",  # not HTTP/1.x, or broken framing, headers or status line
    }
)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    seconds: float  # from the start of name resolution to the last body byte


class HttpError(Exception):
    """The exchange did not complete. ``error`` is one of ``TRANSPORT_ERRORS`` (for
    ``details.error``), ``reason`` a short sentence without secrets naming what was wrong,
    ``status`` the final status code if one arrived, ``bytes_read`` the body bytes read."""

    def __init__(
        self, error: str, reason: str, *, seconds: float, status: int | None = None, bytes_read: int = 0
    ) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.seconds = seconds
        self.status = status
        self.bytes_read = bytes_read


class _Deadline:
    def __init__(self, timer: Callable[[], float], timeout: float) -> None:
        self.timer = timer
        self.start = timer()
        self.end = self.start + timeout
        self.timeout = timeout
        self.phase = "connect"

    def left(self) -> float:
        remaining = self.end - self.timer()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    def elapsed(self) -> float:
        return self.timer() - self.start


class HttpClient:
    """Performs one exchange per call; thread-safe. ``close()`` stops the resolver threads."""

    def __init__(
        self,
        *,
        timer: Callable[[], float] = time.perf_counter,
        tls_context: ssl.SSLContext | None = None,
        resolver_threads: int = 4,
    ) -> None:
        self._timer = timer
        self._tls = tls_context or ssl.create_default_context()
        # getaddrinfo cannot be interrupted; running it aside lets the deadline win anyway.
        self._resolver = ThreadPoolExecutor(max_workers=resolver_threads, thread_name_prefix="probe-dns")

    @property
    def timer(self) -> Callable[[], float]:
        """The monotonic clock deadlines are measured on (callers share it for their budgets)."""
        return self._timer

    def close(self) -> None:
        self._resolver.shutdown(wait=False, cancel_futures=True)

    def fetch(self, request: HttpRequest, *, timeout: float, max_body_bytes: int) -> HttpResponse:
        """Perform the exchange or raise ``HttpError``; never takes longer than ``timeout``."""
        deadline = _Deadline(self._timer, timeout)
        sock: socket.socket | None = None
        received = _Received()
        try:
            parts, host, port = _target(request.url)
            sock = self._connect(host, port, deadline)
            if parts.scheme == "https":
                deadline.phase = "tls"
                sock = self._handshake(sock, host, deadline)
            deadline.phase = "send"
            connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEADER_BYTES)
            wire = _encode(connection, request, parts)
            sock.settimeout(deadline.left())
            sock.sendall(wire)
            deadline.phase = "headers"
            reader = _Reader(sock, connection, deadline, received)
            head = reader.final_response()
            deadline.phase = "body"
            body = reader.body(head, limit=max_body_bytes)
            _check_coding(head)
            return HttpResponse(status=head.status_code, headers=_headers(head), body=body, seconds=deadline.elapsed())
        except HttpError as failure:
            failure.seconds = failure.seconds or deadline.elapsed()
            failure.status = failure.status or received.status
            failure.bytes_read = failure.bytes_read or received.body_bytes
            raise
        except (TimeoutError, FutureTimeout):
            raise self._fail(
                "timeout", f"no complete answer within {timeout:.3g}s ({deadline.phase})", deadline, received
            ) from None
        except ConnectionRefusedError:
            raise self._fail("connection_refused", "connection refused", deadline, received) from None
        except (ConnectionResetError, BrokenPipeError):
            raise self._fail(
                "connection_reset", f"connection reset by the server ({deadline.phase})", deadline, received
            ) from None
        except ssl.SSLError as exc:
            raise self._fail("tls_error", f"TLS: {exc.reason or 'handshake failed'}", deadline, received) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise self._fail("connection_error", f"{reason} ({deadline.phase})", deadline, received) from None
        finally:
            if sock is not None:
                sock.close()

    @staticmethod
    def _fail(error: str, reason: str, deadline: _Deadline, received: _Received) -> HttpError:
        return HttpError(
            error, reason, seconds=deadline.elapsed(), status=received.status, bytes_read=received.body_bytes
        )

    def _connect(self, host: str, port: int, deadline: _Deadline) -> socket.socket:
        deadline.phase = "resolve"
        try:
            ipaddress.ip_address(host)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except ValueError:
            future = self._resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            try:
                infos = future.result(timeout=deadline.left())
            except socket.gaierror:
                raise HttpError("dns_error", f"cannot resolve {host}", seconds=deadline.elapsed()) from None
            except (UnicodeError, ValueError):  # IDNA: "label empty or too long"; an embedded NUL
                raise HttpError(
                    "bad_request", "the URL's host name cannot be looked up (bad label)", seconds=deadline.elapsed()
                ) from None
        deadline.phase = "connect"
        last: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(deadline.left())
                sock.connect(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:
                sock.close()
                if isinstance(exc, TimeoutError):
                    raise
                last = exc
        raise last or OSError("no address")

    def _handshake(self, raw: socket.socket, host: str, deadline: _Deadline) -> socket.socket:
        tls = self._tls.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
        # Non-blocking steps so that the deadline bounds the whole handshake, not each read.
        tls.setblocking(False)
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                ready = select.select([tls], [], [], deadline.left())[0]
            except ssl.SSLWantWriteError:
                ready = select.select([], [tls], [], deadline.left())[1]
            if not ready:
                raise TimeoutError


@dataclass
class _Received:
    status: int | None = None
    body_bytes: int = 0
    any_bytes: bool = False  # did the server send anything at all
    closed: bool = False  # has the server closed its side


def _encode(connection: h11.Connection, request: HttpRequest, parts: SplitResult) -> bytes:
    host, port = parts.hostname or "", parts.port
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if port is None else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port is None else f"[{host}]:{port}"
    names = {name.lower() for name in request.headers}
    headers = [("Host", host_header)]
    # RFC 9110 §12.5.3: without Accept-Encoding any coding is acceptable, and a gzip answer would be
    # judged as bytes; the probe asks for the body as it is (and refuses any other, see _check_coding).
    defaults = {"user-agent": USER_AGENT, "accept": "application/json, */*", "accept-encoding": "identity"}
    headers += [(name, value) for name, value in defaults.items() if name not in names]
    headers += list(request.headers.items())
    body = request.body or b""
    if request.body is not None or request.method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    headers.append(("Connection", "close"))
    try:
        wire = connection.send(h11.Request(method=request.method, target=target, headers=headers))
        if body:
            wire += connection.send(h11.Data(data=body))
        wire += connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        # A header value with a newline or a non-Latin-1 character (e.g. a token from a bad login answer).
        raise HttpError("bad_request", f"the request cannot be sent: {exc}"[:_REASON_CHARS], seconds=0.0) from None
    except UnicodeEncodeError:
        raise HttpError("bad_request", "the request cannot be sent: a header is not Latin-1", seconds=0.0) from None
    return wire or b""


def _target(url: str) -> tuple[SplitResult, str, int]:
    """The URL's parts, host and port; ``HttpError`` (bad_request) for any URL that cannot be called
    (the configuration refuses them at load; a check's URL is also built from base_url and a path)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of 0-65535 or not a number, broken IPv6 brackets
        raise HttpError("bad_request", "the URL cannot be parsed (port or IPv6 address)", seconds=0.0) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError("bad_request", "not an http(s) URL", seconds=0.0)
    if port == 0:
        raise HttpError("bad_request", "the URL's port is 0", seconds=0.0)
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise HttpError("bad_request", "the URL's host name cannot be looked up (bad label)", seconds=0.0) from None
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _check_coding(head: h11.Response) -> None:
    """The body must be as sent: a Content-Encoding other than identity (asked for, RFC 9110
    §12.5.3) would be judged as compressed bytes, so it is a classified fault naming the coding."""
    codings = [
        coding.strip().lower()
        for name, value in head.headers
        if name == b"content-encoding"
        for coding in value.decode("latin-1").split(",")
    ]
    unusable = [coding for coding in codings if coding not in ("", "identity")]
    if unusable:
        raise HttpError(
            "bad_response",
            f"the body is {', '.join(unusable)}-encoded (Content-Encoding) although only identity was accepted"[
                :_REASON_CHARS
            ],
            seconds=0.0,
            status=head.status_code,
        )


def _headers(response: h11.Response) -> dict[str, str]:
    """Lower-case names; a repeated header keeps its last value."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers}


class _Reader:
    """Feeds h11 from the socket within the deadline; every protocol fault becomes ``bad_response``."""

    def __init__(
        self, sock: socket.socket, connection: h11.Connection, deadline: _Deadline, received: _Received
    ) -> None:
        self._sock = sock
        self._connection = connection
        self._deadline = deadline
        self._received = received

    def final_response(self) -> h11.Response:
        """The final answer's status line and headers, after skipping interim 1xx answers."""
        for _ in range(_MAX_INTERIM_ANSWERS + 1):
            event = self._next()
            if isinstance(event, h11.Response | h11.InformationalResponse) and _head_size(event) > _MAX_HEADER_BYTES:
                # h11 bounds an incomplete head only; one that arrived whole is measured here.
                raise self._bad(f"response headers larger than {_MAX_HEADER_BYTES} bytes")
            if isinstance(event, h11.Response):
                if event.http_version not in (b"1.0", b"1.1"):
                    raise self._bad(f"not an HTTP/1.x response (HTTP/{event.http_version.decode('latin-1')})")
                self._received.status = event.status_code
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise self._bad(f"unexpected {type(event).__name__} before the response")
            # RFC 9110 §15.2: a client must accept (and here ignores) interim answers before the final one.
        raise self._bad(f"more than {_MAX_INTERIM_ANSWERS} interim 1xx answers")

    def body(self, head: h11.Response, *, limit: int) -> bytes:
        length = _content_length(head)
        if length is not None and length > limit:
            raise HttpError(
                "body_too_large", f"declared body of {length} bytes exceeds the {limit} byte limit", seconds=0.0
            )
        parts: list[bytes] = []
        while True:
            event = self._next()
            if isinstance(event, h11.Data):
                parts.append(event.data)
                self._received.body_bytes += len(event.data)
                if self._received.body_bytes > limit:
                    raise HttpError("body_too_large", f"body exceeds the {limit} byte limit", seconds=0.0)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise self._bad(f"unexpected {type(event).__name__} in the body")

    def _next(self) -> h11.Event:
        while True:
            try:
                event = self._connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._bad(self._explain(exc)) from None
            if event is h11.NEED_DATA:
                chunk = _recv(self._sock, self._deadline)
                self._received.any_bytes = self._received.any_bytes or bool(chunk)
                self._received.closed = not chunk
                self._connection.receive_data(chunk)  # b"" tells h11 the server closed
                continue
            if event is h11.PAUSED:  # cannot happen before EndOfMessage; kept total for mypy
                raise self._bad("the answer continued after its end")
            assert isinstance(event, h11.Event)
            return event

    def _explain(self, exc: h11.RemoteProtocolError) -> str:
        text = str(exc)
        too_long = "Receive buffer too long" in text
        if self._received.status is None:
            if self._received.closed and not self._received.any_bytes:
                return "the server closed the connection without answering"
            if self._received.closed:
                return "connection closed before the end of the response headers"
            if too_long:
                return f"response headers larger than {_MAX_HEADER_BYTES} bytes"
            if "_SWITCH_UPGRADE" in text:
                return "HTTP 101 Switching Protocols, but no protocol switch was asked for"
            return f"malformed response head: {text}"[:_REASON_CHARS]
        if too_long:
            return f"a chunk header or the trailers exceed {_MAX_HEADER_BYTES} bytes"
        if self._received.closed:
            return f"connection closed in the middle of the body: {text}"[:_REASON_CHARS]
        return f"broken body framing: {text}"[:_REASON_CHARS]

    @staticmethod
    def _bad(reason: str) -> HttpError:
        return HttpError("bad_response", reason, seconds=0.0)


def _head_size(head: h11.Response | h11.InformationalResponse) -> int:
    """The size of the status line and headers as received (give or take optional spaces)."""
    return 15 + len(head.reason) + sum(len(name) + len(value) + 4 for name, value in head.headers)


def _content_length(head: h11.Response) -> int | None:
    """The declared length; None when chunked (Transfer-Encoding overrides it) or absent."""
    if any(name == b"transfer-encoding" for name, _ in head.headers):
        return None
    for name, value in head.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is one non-negative integer
    return None


def _recv(sock: socket.socket, deadline: _Deadline) -> bytes:
    sock.settimeout(deadline.left())
    return sock.recv(_RECV_SIZE)

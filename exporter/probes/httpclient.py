"""A minimal HTTP/1.1 client with a hard total deadline and a body limit, for probes.

Why not ``requests``: its timeout bounds each socket read, not the exchange, so a server that
trickles one byte per second keeps a check alive forever, and it reads bodies of any size.
Here every blocking step (name resolution, connect, TLS handshake, send, each receive) waits
at most the time left until one deadline, and the body is cut at ``max_body_bytes``. One
connection per exchange (``Connection: close``), as blackbox_exporter does, so every probe
measures a full connect. Redirects are not followed: a check states the status it expects.

I/O deadlines and latencies use the real monotonic clock (``timer``), because sockets live in
real time; the injected ``Clock`` of the rest of the exporter is for timestamps and lifetimes.
Not for general-purpose HTTP (no proxies, cookies, compression or keep-alive).
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
from urllib.parse import urlsplit

USER_AGENT = "blocktrust-exporter"
_MAX_HEADER_BYTES = 64 * 1024
_RECV_SIZE = 64 * 1024


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
    """The exchange did not complete. ``error`` is a short class for ``details.error``
    (timeout, connection_refused, connection_reset, connection_error, tls_error,
    body_too_large, bad_response), ``reason`` a short sentence without secrets."""

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
            parts = urlsplit(request.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpError("bad_request", "not an http(s) URL", seconds=0.0)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            sock = self._connect(parts.hostname, port, deadline)
            if parts.scheme == "https":
                deadline.phase = "tls"
                sock = self._handshake(sock, parts.hostname, deadline)
            deadline.phase = "send"
            sock.settimeout(deadline.left())
            sock.sendall(_encode(request, parts.hostname, parts.port, parts.path, parts.query))
            deadline.phase = "headers"
            head = _read_head(sock, deadline, received)
            deadline.phase = "body"
            body = _read_body(sock, head, deadline, received, method=request.method, limit=max_body_bytes)
            status, headers = head.status, head.headers
            return HttpResponse(status=status, headers=headers, body=body, seconds=deadline.elapsed())
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


def _encode(request: HttpRequest, host: str, port: int | None, path: str, query: str) -> bytes:
    target = (path or "/") + (f"?{query}" if query else "")
    host_header = host if port is None else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port is None else f"[{host}]:{port}"
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {host_header}"]
    names = {name.lower() for name in request.headers}
    defaults = {"user-agent": USER_AGENT, "accept": "application/json, */*"}
    lines += [f"{name}: {value}" for name, value in defaults.items() if name not in names]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    body = request.body or b""
    if request.body is not None or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _recv(sock: socket.socket, deadline: _Deadline) -> bytes:
    sock.settimeout(deadline.left())
    return sock.recv(_RECV_SIZE)


@dataclass(frozen=True)
class _Head:
    status: int
    headers: dict[str, str]  # lower-case names
    early: bytes  # body bytes received together with the headers


def _read_head(sock: socket.socket, deadline: _Deadline, received: _Received) -> _Head:
    """Read up to the end of the header block; also returns the body bytes already received."""
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > _MAX_HEADER_BYTES:
            raise HttpError("bad_response", "response headers too large", seconds=0.0)
        chunk = _recv(sock, deadline)
        if not chunk:
            raise HttpError("bad_response", "connection closed before the response headers", seconds=0.0)
        buffer += chunk
    head, early = buffer[:end].decode("latin-1"), buffer[end + 4 :]
    status_line, *header_lines = head.split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError("bad_response", "not an HTTP/1.x response", seconds=0.0)
    received.status = int(code)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return _Head(received.status, headers, early)


def _read_body(
    sock: socket.socket, head: _Head, deadline: _Deadline, received: _Received, *, method: str, limit: int
) -> bytes:
    raw, status, headers = head.early, head.status, head.headers
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length_text = headers.get("content-length")
    length = int(length_text) if length_text and length_text.isdigit() and not chunked else None
    if length is not None and length > limit:
        received.body_bytes = len(raw)
        raise HttpError(
            "body_too_large", f"declared body of {length} bytes exceeds the {limit} byte limit", seconds=0.0
        )
    while True:
        if chunked:
            body, complete = _dechunk(raw)
        else:
            body, complete = raw, length is not None and len(raw) >= length
        received.body_bytes = len(body)
        if len(body) > limit or len(raw) > 2 * limit + _MAX_HEADER_BYTES:
            raise HttpError("body_too_large", f"body exceeds the {limit} byte limit", seconds=0.0)
        if complete:
            return body if length is None else body[:length]
        chunk = _recv(sock, deadline)
        if not chunk:
            if length is None and not chunked:
                return body  # close-delimited body
            raise HttpError("bad_response", "connection closed in the middle of the body", seconds=0.0)
        raw += chunk


def _dechunk(raw: bytes) -> tuple[bytes, bool]:
    """Decode chunked transfer coding from the start; returns (body so far, complete)."""
    out = bytearray()
    pos = 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out), False
        size_text = raw[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError("bad_response", "invalid chunked encoding", seconds=0.0) from None
        if size == 0:
            return bytes(out), True  # trailers, if any, are ignored
        start = eol + 2
        end = start + size
        out += raw[start : min(end, len(raw))]
        if len(raw) < end + 2:
            return bytes(out), False
        pos = end + 2

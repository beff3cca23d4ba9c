"""The exporter's HTTP endpoints: ``/metrics`` (the injected registry), ``/healthz`` (the process
answers and its scheduler is live: no job stalled), ``/readyz`` (that, the store answers and the
scheduler runs), and the pages ``runtime`` hands in as ``extra_routes`` (the status page at ``/`` and
``/api/v1/status``), which take precedence. Each of the two probes is a ``() -> (ok, reason)``
callable: 200 or 503 with the reason as text.

A tiny WSGI app on a threading ``wsgiref`` server in a daemon thread, like client_python's own
``start_http_server`` but with the two probe endpoints Kubernetes and Docker health checks need.
Listens on IPv4 or IPv6 (``[::]:9108``). Access control is a layer around the whole app (``guard``,
built by ``exporter.web``), so no route, present or future, is left out; TLS wraps each connection
in the thread that serves it, so a slow handshake holds up no other client.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter.metrics import Exposition

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, str]]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Middleware = Callable[[WsgiApp], WsgiApp]
TLS_HANDSHAKE_SECONDS = 10.0

_INDEX = b"""<html><head><title>blocktrust-exporter</title></head><body>
<h1>blocktrust-exporter</h1><p><a href="/metrics">Metrics</a> | <a href="/healthz">Health</a> |
<a href="/readyz">Readiness</a></p></body></html>
"""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(TLS_HANDSHAKE_SECONDS)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # a plain-HTTP client, a refused client certificate...
            log.debug("http: TLS handshake failed client=%s error=%s", client_address[0], exc)
            return
        try:
            conn.settimeout(None)
            super().finish_request(conn, client_address)
        finally:
            conn.close()


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Scrapes every 15 s would flood the log; errors still go through ``log_message``."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)


def _always_healthy() -> tuple[bool, str]:
    return True, "ok"


def default_routes(
    registry: CollectorRegistry, ready: Readiness, health: Readiness = _always_healthy
) -> dict[str, WsgiApp]:
    """Path -> WSGI app of every endpoint the exporter itself serves."""
    metrics_app = make_wsgi_app(Exposition(registry))

    def metrics(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    def probe(check: Readiness) -> WsgiApp:
        def app(_environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            ok, reason = check()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [(reason + "\n").encode()]

        return app

    def index(_environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [_INDEX]

    return {"/metrics": metrics, "/healthz": probe(health), "/readyz": probe(ready), "/": index}


ALLOWED_METHODS = ("GET", "HEAD")


def dispatch(routes: Mapping[str, WsgiApp]) -> WsgiApp:
    """One app serving ``routes`` by exact path; anything else is 404. Every route answers GET and HEAD
    alike (HEAD: GET's status and headers, no body, whatever the route does with the method); any other
    method is 405 with ``Allow: GET, HEAD``, before the route runs."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = routes.get(environ.get("PATH_INFO", "/") or "/")
        if route is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method == "GET":
            return route(environ, start_response)
        if method == "HEAD":
            return _head(route, environ, start_response)
        start_response(
            "405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", ", ".join(ALLOWED_METHODS))]
        )
        return [f"method {method} not allowed; use GET or HEAD\n".encode()]

    return app


def _head(route: WsgiApp, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """``route``'s GET answer without its body (RFC 9110 §9.3.2), with the length GET would have."""
    answer: list[tuple[str, list[tuple[str, str]]]] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        answer[:] = [(status, list(headers))]
        return lambda _data: None

    body = route({**environ, "REQUEST_METHOD": "GET"}, capture)
    try:
        length = sum(len(chunk) for chunk in body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = answer[0]
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(length)))
    start_response(status, headers)
    return []


def make_app(registry: CollectorRegistry, ready: Readiness, health: Readiness = _always_healthy) -> WsgiApp:
    return dispatch(default_routes(registry, ready, health))


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ``[::]:9108`` -> ("::", 9108); an empty host is every IPv4 interface."""
    host, _, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"  # noqa: S104 - an exporter listens on all interfaces by default
    return host, int(port)


class HttpServer:
    """Serves ``routes`` (the defaults, plus ``extra_routes``) behind ``guard`` (access control around
    the whole app, every path included, unknown ones too), over TLS when ``tls`` is given."""

    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        ready: Readiness,
        health: Readiness = _always_healthy,
        *,
        extra_routes: Mapping[str, WsgiApp] | None = None,
        guard: Middleware | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        host, port = split_listen(listen)
        self.routes: dict[str, WsgiApp] = {**default_routes(registry, ready, health), **(extra_routes or {})}
        app = dispatch(self.routes)
        if guard is not None:
            app = guard(app)
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = make_server(host, port, app, server_class, _QuietHandler)
        if tls is not None:
            self._server.tls = tls
            self._server.base_environ["HTTPS"] = "on"  # wsgi.url_scheme = https
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def add_route(self, path: str, app: WsgiApp) -> None:
        """Serve ``app`` at ``path`` too (before ``start``); it sits behind the guard like every route."""
        self.routes[path] = app

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

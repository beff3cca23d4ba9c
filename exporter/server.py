"""The exporter's HTTP endpoints: ``/metrics`` (the injected registry), ``/healthz`` (the process
answers) and ``/readyz`` (the store answers and the scheduler runs).

A tiny WSGI app on a threading ``wsgiref`` server in a daemon thread, like client_python's own
``start_http_server`` but with the two probe endpoints Kubernetes and Docker health checks need.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter.metrics import Exposition

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, str]]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_INDEX = b"""<html><head><title>blocktrust-exporter</title></head><body>
<h1>blocktrust-exporter</h1><p><a href="/metrics">Metrics</a> | <a href="/healthz">Health</a> |
<a href="/readyz">Readiness</a></p></body></html>
"""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Scrapes every 15 s would flood the log; errors still go through ``log_message``."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)


def make_app(registry: CollectorRegistry, ready: Readiness) -> WsgiApp:
    metrics_app = make_wsgi_app(Exposition(registry))

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ok, reason = ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [(reason + "\n").encode()]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html")])
            return [_INDEX]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class HttpServer:
    def __init__(self, listen: str, registry: CollectorRegistry, ready: Readiness) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an exporter listens on all interfaces by default
        self._server = make_server(host, int(port), make_app(registry, ready), _ThreadingServer, _QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

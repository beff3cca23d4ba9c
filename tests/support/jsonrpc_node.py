"""A loopback JSON-RPC HTTP server in front of a real node (anvil), the base of the test proxies that
change some answers and forward the rest.

``JsonRpcNode(upstream)`` listens on 127.0.0.1 (``url``) from construction until ``close()`` (or the
end of a ``with`` block). Each POST body is answered by ``_respond`` (bytes in, bytes out, HTTP 200,
``application/json``); by default it decodes the body and answers a batch element by element through
``_answer``, which a subclass overrides for one call (the default forwards it unchanged).
``_forward`` posts one call to the upstream through one ``requests.Session`` guarded by ``_lock``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import requests


class JsonRpcNode:
    def __init__(self, upstream: str, *, path: str = "") -> None:
        self.upstream = upstream
        self._session = requests.Session()
        self._lock = threading.Lock()
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = node._respond(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def _respond(self, body: bytes) -> bytes:
        """The answer body to one POST body: a call or a batch (answered element by element)."""
        request = json.loads(body)
        answer: Any = [self._answer(r) for r in request] if isinstance(request, list) else self._answer(request)
        return json.dumps(answer).encode()

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one JSON-RPC call; this base forwards it unchanged."""
        return self._forward(request)

    def _forward(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:  # one requests.Session, several handler threads
            answer: dict[str, Any] = self._session.post(self.upstream, json=request, timeout=10).json()
        return answer

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

"""A real loopback JSON-RPC proxy in front of anvil that plays a node lagging ``lag`` blocks behind:
the backend of a load-balanced provider that has not seen the newest blocks yet.

``eth_blockNumber`` answers ``head - lag``; ``eth_getBlockByNumber`` answers null above that (and
"latest" means that block); everything else is forwarded unchanged. ``lag = 0`` passes all through.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class LaggingNode:
    def __init__(self, upstream: str) -> None:
        self.lag = 0
        self._upstream = upstream
        self._session = requests.Session()
        self._lock = threading.Lock()
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer: Any = [node._answer(r) for r in request] if isinstance(request, list) else node._answer(request)
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def _forward(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:  # one requests.Session, several handler threads
            answer: dict[str, Any] = self._session.post(self._upstream, json=request, timeout=10).json()
        return answer

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.lag == 0:
            return self._forward(request)
        head = int(self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []})["result"], 16)
        shown = head - self.lag
        method, params = request["method"], request.get("params", [])
        if method == "eth_blockNumber":
            return {"jsonrpc": "2.0", "id": request["id"], "result": hex(shown)}
        if method == "eth_getBlockByNumber":
            tag = params[0]
            number = shown if tag in ("latest", "safe", "finalized", "pending") else int(tag, 16)
            if number > shown:
                return {"jsonrpc": "2.0", "id": request["id"], "result": None}
            request = {**request, "params": [hex(number), *params[1:]]}
        return self._forward(request)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()

    def __enter__(self) -> LaggingNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A real loopback HTTP server that answers JSON-RPC POSTs from a script, for rpc.py's unit tests."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None  # None: a JSON-RPC answer built from result/error
    result: Any = None
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0  # seconds between the body's bytes (sent one at a time)
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes


class ScriptedNode:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Any] = []
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))  # a call or a batch
                node.requests.append(request)
                reply = node.replies.popleft() if node.replies else Reply(result=None)
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body
                if body is None:
                    answer: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
                    if reply.error is not None:
                        answer["error"] = reply.error
                    else:
                        answer["result"] = reply.result
                    body = json.dumps(answer).encode()
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    if reply.send_length:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not reply.trickle:
                        self.wfile.write(body)
                    for index in range(len(body) if reply.trickle else 0):
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                        time.sleep(reply.trickle)
                except OSError:
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v3/secret-key"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

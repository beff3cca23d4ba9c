"""A JSON-RPC HTTP proxy on 127.0.0.1 that holds each request for a chosen time before forwarding it
to a real node, and records when every ``eth_getLogs`` started and ended, for tests of the listener's
window of concurrent ranges.

``delay(call)`` gives the seconds to hold one JSON-RPC call (a batch: the longest of its calls), so a
test can make earlier ranges slower than later ones and the answers arrive out of order. ``logs``
lists the answered ``eth_getLogs`` as ``(fromBlock, toBlock, started, ended)`` (monotonic seconds,
in the order they ended); ``max_logs_in_flight`` is the most that were held at once. Not a fault
injector: ``rpc_fault_proxy`` is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

Delay = Callable[[dict[str, Any]], float]


def _no_delay(_call: dict[str, Any]) -> float:
    return 0.0


class LatencyProxy:
    def __init__(self, upstream: str, delay: Delay = _no_delay) -> None:
        self.upstream = upstream
        self.delay = delay
        self.logs: list[tuple[int, int, float, float]] = []
        self.max_logs_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._session = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = proxy._answer(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def _answer(self, body: bytes) -> bytes:
        request = json.loads(body)
        calls = request if isinstance(request, list) else [request]
        logs = [c for c in calls if c.get("method") == "eth_getLogs" and "fromBlock" in c["params"][0]]
        started = time.monotonic()
        with self._lock:
            self._in_flight += len(logs)
            self.max_logs_in_flight = max(self.max_logs_in_flight, self._in_flight)
        try:
            time.sleep(max((self.delay(c) for c in calls), default=0.0))
            answer = self._session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}).content
        finally:
            with self._lock:
                self._in_flight -= len(logs)
                ended = time.monotonic()
                for call in logs:
                    params = call["params"][0]
                    self.logs.append((int(params["fromBlock"], 16), int(params["toBlock"], 16), started, ended))
        return answer

    def answered_out_of_order(self) -> bool:
        """True if some getLogs range ended before one of an earlier range that had already started."""
        for index, (start, _end, began, _ended) in enumerate(self.logs):
            for other_start, _, other_began, _ in self.logs[index + 1 :]:
                if other_start < start and other_began <= began:
                    return True
        return False

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

"""A real loopback JSON-RPC proxy in front of anvil that plays a load-balanced provider whose
``eth_getLogs`` backend lags behind the one that serves headers.

* headers, the head and every other call come from the up-to-date node (forwarded unchanged);
* ``eth_getLogs`` over a block range answers as a node ``logs_lag`` blocks behind would: the logs of
  the newest ``logs_lag`` blocks are left out (``[]`` for a range made only of them);
* ``eth_getLogs`` by ``blockHash`` (EIP-234) for one of those blocks answers the error a node that
  lacks the block gives (``-32000 unknown block``, like geth and anvil), unless ``lag_hash_queries``
  is False (then the hash query reaches an up-to-date backend);
* ``drop_log(tx_hash, log_index)``: the next range answer holding that log leaves it out, once.

``getlogs_calls`` counts the ``eth_getLogs`` requests; ``dropped`` lists the logs left out by
``drop_log``. Batches are answered element by element.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class LoadBalancedNode:
    def __init__(self, upstream: str, *, logs_lag: int = 0, lag_hash_queries: bool = True) -> None:
        self.logs_lag = logs_lag
        self.lag_hash_queries = lag_hash_queries
        self.getlogs_calls = 0
        self.dropped: list[dict[str, Any]] = []
        self._drop: tuple[str, int] | None = None
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

    def drop_log(self, tx_hash: str, log_index: int) -> None:
        """Leave this log out of the next range answer that holds it (once)."""
        self._drop = (tx_hash, log_index)

    def _call(self, method: str, params: list[Any]) -> Any:
        return self._forward({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}).get("result")

    def _forward(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:  # one requests.Session, several handler threads
            answer: dict[str, Any] = self._session.post(self._upstream, json=request, timeout=10).json()
        return answer

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("method") != "eth_getLogs":
            return self._forward(request)
        with self._lock:
            self.getlogs_calls += 1
        newest_served = int(self._call("eth_blockNumber", []), 16) - self.logs_lag
        query = request["params"][0]
        if "blockHash" in query:
            block = self._call("eth_getBlockByHash", [query["blockHash"], False])
            if self.lag_hash_queries and (block is None or int(block["number"], 16) > newest_served):
                return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32000, "message": "unknown block"}}
            return self._forward(request)
        answer = self._forward(request)
        logs = answer.get("result")
        if not isinstance(logs, list):
            return answer
        served = [entry for entry in logs if int(entry["blockNumber"], 16) <= newest_served]
        if self._drop is not None:
            kept = [e for e in served if (e["transactionHash"], int(e["logIndex"], 16)) != self._drop]
            if len(kept) < len(served):
                self.dropped += [e for e in served if e not in kept]
                self._drop = None
                served = kept
        return {**answer, "result": served}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()

    def __enter__(self) -> LoadBalancedNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

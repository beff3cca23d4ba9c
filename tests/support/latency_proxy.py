"""A JSON-RPC HTTP proxy on 127.0.0.1 that holds each request for a chosen time before forwarding it
to a real node, and records when every ``eth_getLogs`` started and ended, for tests of the listener's
window of concurrent ranges.

``delay(call)`` gives the seconds to hold one JSON-RPC call (a batch: the longest of its calls), so a
test can make earlier ranges slower than later ones and the answers arrive out of order. ``logs``
lists the answered ``eth_getLogs`` as ``(fromBlock, toBlock, started, ended)`` (monotonic seconds,
in the order they ended); ``max_logs_in_flight`` is the most that were held at once. With
``max_range``, an ``eth_getLogs`` over more blocks is refused at once, as Infura words it (-32005,
"query returned more than 10000 results. Try with this block range [first, first + max_range - 1]"),
and counted in ``refused``. Not a fault injector: ``rpc_fault_proxy`` is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.support.jsonrpc_node import JsonRpcNode

Delay = Callable[[dict[str, Any]], float]


def _no_delay(_call: dict[str, Any]) -> float:
    return 0.0


class LatencyProxy(JsonRpcNode):
    def __init__(self, upstream: str, delay: Delay = _no_delay, *, max_range: int | None = None) -> None:
        self.delay = delay
        self.max_range = max_range
        self.refused = 0
        self.logs: list[tuple[int, int, float, float]] = []
        self.max_logs_in_flight = 0
        self._in_flight = 0
        super().__init__(upstream, path="/")

    def _respond(self, body: bytes) -> bytes:
        """Holds the whole body (a call or a batch) ``delay`` seconds, then forwards it as it came."""
        request = json.loads(body)
        refusal = self._refusal(request)
        if refusal is not None:
            return json.dumps(refusal).encode()
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

    def _refusal(self, request: Any) -> dict[str, Any] | None:
        if self.max_range is None or not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return None
        params = request["params"][0]
        if "fromBlock" not in params:
            return None
        first, last = int(params["fromBlock"], 16), int(params["toBlock"], 16)
        if last - first + 1 <= self.max_range:
            return None
        with self._lock:
            self.refused += 1
        suggested = f"[{hex(first)}, {hex(first + self.max_range - 1)}]"
        message = f"query returned more than 10000 results. Try with this block range {suggested}."
        return {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32005, "message": message}}

    def answered_out_of_order(self) -> bool:
        """True if some getLogs range ended before one of an earlier range that had already started."""
        for index, (start, _end, began, _ended) in enumerate(self.logs):
            for other_start, _, other_began, _ in self.logs[index + 1 :]:
                if other_start < start and other_began <= began:
                    return True
        return False

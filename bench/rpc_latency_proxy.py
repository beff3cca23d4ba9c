"""A remote-provider-shaped JSON-RPC proxy on loopback, for the benchmarks (not a test fixture).

In front of a local node (anvil) it makes every HTTP request cost what a remote provider's round trip
costs, and refuses what providers refuse:

* ``latency``: seconds added to every HTTP request (a batch is one request), before it is forwarded;
  requests are served concurrently (one thread each), so N requests in flight cost one latency;
* ``max_range``: an ``eth_getLogs`` over more blocks than this is refused without asking the node,
  Infura-style: code -32005, ``query returned more than 10000 results. Try with this block range
  [0x…, 0x…].`` suggesting the widest range the cap allows from the same first block;
* ``max_results``: an answer with more logs than this is replaced by the same -32005 refusal
  (``query returned more than N results``) suggesting the widest range from the same first block
  whose logs fit (at least one block; a single block is always served, as providers do).

It counts HTTP requests, calls by method (each call of a batch), refused ``eth_getLogs`` calls and the
largest number of requests in flight at once (``stats()``). Upstream connections are kept alive, one
per proxy thread. Answers that are not refused pass through as bytes, unparsed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import requests

RANGE_CAP_RESULTS = 10_000  # the figure Infura's range refusal names


@dataclass(frozen=True)
class ProxyStats:
    """What went through: ``http_requests``; ``calls`` by method (a batch's calls one by one);
    ``refused`` eth_getLogs calls (``refused_range`` over the block cap, ``refused_results`` over the
    result cap); ``max_in_flight`` HTTP requests at once; ``other_requests``: HTTP requests carrying
    no eth_getLogs call."""

    http_requests: int
    other_requests: int
    calls: dict[str, int]
    refused_range: int
    refused_results: int
    max_in_flight: int

    @property
    def get_logs(self) -> int:
        return self.calls.get("eth_getLogs", 0)

    @property
    def refused(self) -> int:
        return self.refused_range + self.refused_results

    @property
    def other_calls(self) -> int:
        return sum(self.calls.values()) - self.get_logs


class LatencyProxy:
    """``LatencyProxy(upstream, latency=0.06, max_range=2000, max_results=None)``; clients use ``url``.
    ``reset()`` zeroes the counters between runs; ``close()`` stops it."""

    def __init__(
        self,
        upstream_url: str,
        *,
        latency: float = 0.0,
        max_range: int | None = None,
        max_results: int | None = None,
    ) -> None:
        self.upstream_url = upstream_url
        self.latency = latency
        self.max_range = max_range
        self.max_results = max_results
        self._lock = threading.Lock()
        self._local = threading.local()
        self.reset()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.request_queue_size = 64
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        with self._lock:
            self._http_requests = 0
            self._other_requests = 0
            self._calls: Counter[str] = Counter()
            self._refused_range = 0
            self._refused_results = 0
            self._in_flight = 0
            self._max_in_flight = 0

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                self._http_requests,
                self._other_requests,
                dict(self._calls),
                self._refused_range,
                self._refused_results,
                self._max_in_flight,
            )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ serving
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def handle(self, body: bytes) -> bytes:
        """The answer to one HTTP request's ``body`` (after the latency)."""
        with self._lock:
            self._http_requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            return self._answer(body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, body: bytes) -> bytes:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._forward(body)
        batch = isinstance(parsed, list)
        calls: list[dict[str, Any]] = [c for c in (parsed if batch else [parsed]) if isinstance(c, dict)]
        logs_calls = [c for c in calls if c.get("method") == "eth_getLogs"]
        with self._lock:
            self._calls.update(str(call.get("method")) for call in calls)
            self._other_requests += not logs_calls
        if not logs_calls or (self.max_range is None and self.max_results is None):
            return self._forward(body)
        if not batch:
            refusal = self._range_refusal(logs_calls[0])
            if refusal is not None:
                return orjson.dumps(refusal)
            answer = self._forward(body)
            if self.max_results is None or answer.count(b'"logIndex"') <= self.max_results:
                return answer  # the common path: no parse
            refusal = self._results_refusal(logs_calls[0], orjson.loads(answer))
            return answer if refusal is None else orjson.dumps(refusal)
        # A batch: forwarded whole, then each refused eth_getLogs answer replaced.
        answers = orjson.loads(self._forward(body))
        if not isinstance(answers, list):
            return orjson.dumps(answers)
        by_id = {orjson.dumps(call.get("id")): call for call in logs_calls}
        for index, answer in enumerate(answers):
            call = by_id.get(orjson.dumps(answer.get("id")))
            if call is not None:
                refusal = self._range_refusal(call) or self._results_refusal(call, answer)
                if refusal is not None:
                    answers[index] = refusal
        return orjson.dumps(answers)

    def _forward(self, body: bytes) -> bytes:
        response = self._session().post(
            self.upstream_url, data=body, headers={"Content-Type": "application/json"}, timeout=600
        )
        return response.content

    # ------------------------------------------------------------------------------------ refusals
    def _range_refusal(self, call: dict[str, Any]) -> dict[str, Any] | None:
        first, last = _range(call)
        if self.max_range is None or first is None or last is None or last - first + 1 <= self.max_range:
            return None
        with self._lock:
            self._refused_range += 1
        return _too_many(call, RANGE_CAP_RESULTS, first, first + self.max_range - 1)

    def _results_refusal(self, call: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any] | None:
        logs = answer.get("result")
        first, last = _range(call)
        if self.max_results is None or not isinstance(logs, list) or len(logs) <= self.max_results:
            return None
        if first is not None and first == last:
            return None  # one block is always served
        blocks = sorted(int(log["blockNumber"], 16) for log in logs)
        start = first if first is not None else blocks[0]
        end = max(start, blocks[self.max_results] - 1)
        with self._lock:
            self._refused_results += 1
        return _too_many(call, self.max_results, start, end)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real provider
            # TCP_NODELAY, as providers' front ends set it: else the body, written after the headers,
            # waits for the client's delayed ACK of them, and every answer on a kept-alive connection
            # but the first arrives about 40 ms late (measured: 108 ms instead of 68).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = proxy.handle(body)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client went away (a stopped indexer)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the benchmark reads the counters."""

        return Handler


def _range(call: dict[str, Any]) -> tuple[int | None, int | None]:
    params = call.get("params") or [{}]
    query = params[0] if isinstance(params[0], dict) else {}
    return _block(query.get("fromBlock")), _block(query.get("toBlock"))


def _block(value: Any) -> int | None:
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    return value if isinstance(value, int) else None  # a tag: not capped (the benchmarks use numbers)


def _too_many(call: dict[str, Any], limit: int, start: int, end: int) -> dict[str, Any]:
    message = f"query returned more than {limit} results. Try with this block range [{hex(start)}, {hex(end)}]."
    return {"jsonrpc": "2.0", "id": call.get("id"), "error": {"code": -32005, "message": message}}


def allowed_ranges(first: int, last: int, log_blocks: list[int], max_range: int | None, max_results: int | None) -> int:
    """How many ``eth_getLogs`` calls, at the fewest, cover ``first..last`` under both caps: each range
    as wide as the caps allow (``log_blocks``: the block number of every log, sorted)."""
    count, start, index = 0, first, 0  # index: the first log at or after ``start``
    while start <= last:
        end = last if max_range is None else min(last, start + max_range - 1)
        if max_results is not None:
            while index < len(log_blocks) and log_blocks[index] < start:
                index += 1
            cut = index + max_results  # the first log that would not fit
            if cut < len(log_blocks) and log_blocks[cut] <= end:
                end = max(start, log_blocks[cut] - 1)
        count += 1
        start = end + 1
    return count

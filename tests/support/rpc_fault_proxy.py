"""A JSON-RPC fault-injecting HTTP proxy on 127.0.0.1, in front of a real node (anvil), for tests.

It forwards every request upstream and, on a programmable schedule, answers instead with the faults
public RPC providers produce:

* ``RATE_LIMIT``: HTTP 429 with a ``Retry-After`` header;
* ``SERVER_ERROR``: HTTP 500/502/503/504 with a non-JSON body;
* ``TIMEOUT``: hold the request longer than the client's timeout, then drop the connection;
* ``LOGS_TOO_MANY_WITH_RANGE`` / ``LOGS_TOO_MANY``: ``eth_getLogs`` refused with code -32005
  "query returned more than 10000 results", with and without a suggested block range;
* ``RANGE_TOO_LARGE``: ``eth_getLogs`` refused with code -32614 "block range too large";
* ``TRUNCATED_JSON``: the upstream answer cut in half, framed as a complete HTTP 200 response;
* ``DISCONNECT``: headers promise the whole answer, the connection closes after half of it.

Three ways to schedule, checked in this order for every HTTP request:
1. ``script(*faults, methods=...)``: the next matching requests get these faults, in order;
2. provider limits (``max_logs_range``, ``max_logs_results``): ``eth_getLogs`` calls beyond them
   are refused like a real provider would, the -32005 answer suggesting a range that fits;
3. ``set_rates({fault: probability})``: random faults drawn from ``random.Random(seed)``, so a
   single-threaded client sees the same faults on every run.
The ``eth_getLogs`` faults only ever hit ``eth_getLogs`` calls. ``injected`` counts what was
injected, ``forwarded`` what went through. Not a TCP-level cut: see ``tcp_proxy`` for that.
"""

from __future__ import annotations

import contextlib
import enum
import json
import random
import socket
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class Fault(enum.Enum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    LOGS_TOO_MANY_WITH_RANGE = "logs_too_many_with_range"
    LOGS_TOO_MANY = "logs_too_many"
    RANGE_TOO_LARGE = "range_too_large"
    TRUNCATED_JSON = "truncated_json"
    DISCONNECT = "disconnect"


LOGS_FAULTS = frozenset({Fault.LOGS_TOO_MANY_WITH_RANGE, Fault.LOGS_TOO_MANY, Fault.RANGE_TOO_LARGE})
_BLOCK_TAGS = frozenset({"latest", "safe", "finalized", "pending"})
_HTML = {"Content-Type": "text/html"}


@dataclass(frozen=True)
class _Scripted:
    fault: Fault
    methods: frozenset[str] | None  # None: any request


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    cut_at: int | None = None  # DISCONNECT: close after this many body bytes


class RpcFaultProxy:
    """``RpcFaultProxy(upstream_url, seed=...)``; point the client at ``proxy.url``."""

    def __init__(
        self,
        upstream_url: str,
        *,
        seed: int = 0,
        hang_seconds: float = 30.0,
        retry_after_seconds: int = 1,
    ) -> None:
        self.upstream_url = upstream_url
        self.hang_seconds = hang_seconds
        self.retry_after_seconds = retry_after_seconds
        self.max_logs_range: int | None = None
        self.max_logs_results: int | None = None
        self.injected: Counter[Fault] = Counter()
        self.forwarded: Counter[str] = Counter()  # method -> calls that reached upstream
        self.requests = 0
        self._random = random.Random(seed)
        self._rates: dict[Fault, float] = {}
        self._rate_methods: frozenset[str] | None = None
        self._script: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval keeps close() (which waits for the serve loop) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="rpc-fault-proxy", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- schedule ---------------------------------------------------------------------------------

    def script(self, *faults: Fault, methods: Iterable[str] | None = None) -> None:
        """The next requests calling one of ``methods`` (any request if None) get ``faults`` in order."""
        wanted = frozenset(methods) if methods is not None else None
        with self._lock:
            self._script.extend(_Scripted(fault, wanted) for fault in faults)

    def set_rates(self, rates: dict[Fault, float], *, methods: Iterable[str] | None = None) -> None:
        """Inject each fault with its probability per request (total at most 1); {} stops."""
        if sum(rates.values()) > 1:
            raise ValueError("fault probabilities add up to more than 1")
        with self._lock:
            self._rates = dict(rates)
            self._rate_methods = frozenset(methods) if methods is not None else None

    @property
    def pending_script(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def total_injected(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def close(self) -> None:
        self._closing.set()  # releases requests held by TIMEOUT
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def __enter__(self) -> RpcFaultProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- decisions --------------------------------------------------------------------------------

    def _choose(self, methods: list[str]) -> Fault | None:
        """The scripted or random fault for a request calling ``methods`` (under the lock)."""
        has_logs = "eth_getLogs" in methods
        if self._script:
            head = self._script[0]
            applies = head.fault not in LOGS_FAULTS or has_logs
            if applies and (head.methods is None or head.methods.intersection(methods)):
                return self._script.popleft().fault
        if not self._rates or (self._rate_methods is not None and not self._rate_methods.intersection(methods)):
            return None
        # One draw per request whatever the method, so the sequence depends only on the seed and
        # the number of requests.
        draw = self._random.random()
        for fault, probability in self._rates.items():
            if draw < probability:
                return fault if fault not in LOGS_FAULTS or has_logs else None
            draw -= probability
        return None

    def _handle(self, body: bytes) -> tuple[_Reply | None, Fault | None]:
        """The reply to send (None: drop the connection) and the fault injected, if any."""
        try:
            parsed = json.loads(body)
        except ValueError:
            return self._forward(body, [], batch=False, logs_fault=None), None
        batch = isinstance(parsed, list)
        calls: list[dict[str, Any]] = [c for c in (parsed if batch else [parsed]) if isinstance(c, dict)]
        methods = [str(call.get("method")) for call in calls]
        with self._lock:
            self.requests += 1
            fault = self._choose(methods)
            if fault is not None:
                self.injected[fault] += 1
        if fault is Fault.RATE_LIMIT:
            headers = {"Retry-After": str(self.retry_after_seconds), "Content-Type": "application/json"}
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": 429, "message": "Too Many Requests"}}
            return _Reply(429, json.dumps(error).encode(), headers), fault
        if fault is Fault.SERVER_ERROR:
            with self._lock:
                status = self._random.choice((500, 502, 503, 504))
            return _Reply(status, b"<html><body>upstream unavailable</body></html>", _HTML), fault
        if fault is Fault.TIMEOUT:
            self._closing.wait(self.hang_seconds)
            return None, fault
        if fault in LOGS_FAULTS and not batch:
            return _json_reply(self._refusal(calls[0], fault)), fault
        # A batch with a refused eth_getLogs goes upstream whole; only the eth_getLogs answers change.
        logs_fault = fault if fault in LOGS_FAULTS else None
        reply = self._forward(body, calls, batch=batch, logs_fault=logs_fault)
        if fault is Fault.TRUNCATED_JSON:
            return _Reply(reply.status, reply.body[: len(reply.body) // 2], reply.headers), fault
        if fault is Fault.DISCONNECT:
            return _Reply(reply.status, reply.body, reply.headers, cut_at=len(reply.body) // 2), fault
        return reply, fault

    def _forward(self, body: bytes, calls: list[dict[str, Any]], *, batch: bool, logs_fault: Fault | None) -> _Reply:
        upstream = requests.post(
            self.upstream_url, data=body, headers={"Content-Type": "application/json"}, timeout=120
        )
        with self._lock:
            self.forwarded.update(str(call.get("method")) for call in calls)
        logs_calls = [call for call in calls if call.get("method") == "eth_getLogs"]
        if upstream.status_code != 200 or not logs_calls or (logs_fault is None and not self._limits_set()):
            # The common path: pass the bytes through without parsing them.
            return _Reply(upstream.status_code, upstream.content, {"Content-Type": "application/json"})
        answers = upstream.json()
        answer_list: list[dict[str, Any]] = answers if isinstance(answers, list) else [answers]
        by_id = {json.dumps(answer.get("id")): answer for answer in answer_list}
        for call in logs_calls:
            answer = by_id.get(json.dumps(call.get("id")))
            if answer is None:
                continue
            refusal = self._refusal(call, logs_fault) if logs_fault else self._limit_refusal(call, answer)
            if refusal:
                answer.pop("result", None)
                answer["error"] = refusal["error"]
                if logs_fault is None:
                    with self._lock:
                        self.injected[_limit_fault(refusal["error"])] += 1
        return _json_reply(answer_list if batch else answer_list[0])

    # --- eth_getLogs refusals ---------------------------------------------------------------------

    def _limits_set(self) -> bool:
        return self.max_logs_range is not None or self.max_logs_results is not None

    def _limit_refusal(self, call: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        """{} if the forwarded ``answer`` is within the provider limits, else the refusal that replaces it."""
        first, last = self._range(call)
        limit = self.max_logs_range
        if limit is not None and first is not None and last is not None and last - first + 1 > limit:
            return {"error": {"code": -32614, "message": "block range too large"}}
        logs = answer.get("result")
        # One block is always served, however many logs it has: a refusal there could never be
        # satisfied, by a real provider's client or by ours.
        if first is not None and first == last:
            return {}
        if self.max_logs_results is None or not isinstance(logs, list) or len(logs) <= self.max_logs_results:
            return {}
        # The largest range from ``first`` whose logs fit: up to the block before the first log
        # past the limit (at least one block, as providers do).
        blocks = sorted(int(log["blockNumber"], 16) for log in logs)
        start = first if first is not None else blocks[0]
        end = max(start, blocks[self.max_logs_results] - 1)
        return {"error": _too_many(self.max_logs_results, (start, end))}

    def _refusal(self, call: dict[str, Any], fault: Fault) -> dict[str, Any]:
        if fault is Fault.RANGE_TOO_LARGE:
            error: dict[str, Any] = {"code": -32614, "message": "block range too large"}
        elif fault is Fault.LOGS_TOO_MANY:
            error = _too_many(10_000, None)
        else:
            first, last = self._range(call)
            start = first or 0
            end = start + max(0, ((last if last is not None else start) - start) // 2)
            error = _too_many(10_000, (start, end))
        return {"jsonrpc": "2.0", "id": call.get("id"), "error": error}

    def _range(self, call: dict[str, Any]) -> tuple[int | None, int | None]:
        params = call.get("params") or [{}]
        query = params[0] if isinstance(params[0], dict) else {}
        if "blockHash" in query:
            return None, None
        return self._block(query.get("fromBlock", "latest")), self._block(query.get("toBlock", "latest"))

    def _block(self, value: Any) -> int | None:
        if isinstance(value, str) and value in _BLOCK_TAGS:
            head = requests.post(
                self.upstream_url,
                json={"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []},
                timeout=30,
            ).json()
            return int(head["result"], 16)
        if value == "earliest":
            return 0
        if isinstance(value, str) and value.startswith("0x"):
            return int(value, 16)
        return value if isinstance(value, int) else None

    # --- HTTP -------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real provider
            disable_nagle_algorithm = True  # TCP_NODELAY: no 40 ms delayed-ACK stall per kept-alive answer

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply, _ = proxy._handle(body)
                if reply is None:
                    self._drop()
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.cut_at is None:
                    self.wfile.write(reply.body)
                    return
                self.wfile.write(reply.body[: reply.cut_at])
                self.wfile.flush()
                self._drop()

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read the counters, not a log."""

        return Handler


def _too_many(limit: int, suggested: tuple[int, int] | None) -> dict[str, Any]:
    message = f"query returned more than {limit} results."
    if suggested is not None:
        message += f" Try with this block range [{hex(suggested[0])}, {hex(suggested[1])}]."
    return {"code": -32005, "message": message}


def _limit_fault(error: dict[str, Any]) -> Fault:
    if error["code"] == -32614:
        return Fault.RANGE_TOO_LARGE
    return Fault.LOGS_TOO_MANY_WITH_RANGE if "Try with" in error["message"] else Fault.LOGS_TOO_MANY


def _json_reply(payload: Any) -> _Reply:
    return _Reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

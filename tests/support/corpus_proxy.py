"""A JSON-RPC proxy on 127.0.0.1 that replays real provider answers (tests/data/rpc_refusals.yaml)
in front of a real node (anvil), and can play a provider's other moods, for the endpoint pool tests.

* ``replay(entries)``: each corpus entry answers, in turn, the next request calling its method (a
  method the listener never calls is played on the next ``eth_blockNumber``; a batch entry waits
  for the next batch request); its HTTP status, ``Retry-After``, JSON-RPC error or raw body are sent
  as the corpus gives them, the error carrying the request's id. Once a batch refusal was replayed,
  every later batch is refused the same way (a provider that refuses batches does so for good).
* ``rate_limit_all``: every request answered 429 with ``Retry-After``;
* ``freeze_head()``: the head stays where it is now: ``eth_blockNumber`` and ``latest`` answer it,
  a block above it is ``null`` and ``eth_getLogs`` is cut at it (a stalled node);
* ``chain_id``: the ``eth_chainId`` answer (another network's URL).

``replayed`` lists the names of the entries sent, ``forwarded`` counts what reached the node.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

LISTENER_METHODS = frozenset({"eth_getLogs", "eth_getBlockByNumber", "eth_blockNumber", "eth_chainId"})


class CorpusProxy:
    """``CorpusProxy(upstream_url)``; point the client at ``proxy.url``; ``close()`` when done."""

    def __init__(self, upstream_url: str, *, retry_after_seconds: int = 1) -> None:
        self.upstream_url = upstream_url
        self.retry_after_seconds = retry_after_seconds
        self.rate_limit_all = False
        self.chain_id: int | None = None
        self.frozen_head: int | None = None
        self.replayed: list[str] = []
        self.forwarded: Counter[str] = Counter()
        self.requests = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._refuse_batches: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v3/secret-key"

    def replay(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending.extend(entries)

    @property
    def pending(self) -> list[str]:
        with self._lock:
            return [entry["name"] for entry in self._pending]

    def freeze_head(self) -> int:
        """Stall this node's head where the upstream's is now; returns it."""
        head = int(self._upstream({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []})["result"], 16)
        self.frozen_head = head
        return head

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
        self._session.close()

    def __enter__(self) -> CorpusProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ decisions
    def _answer(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parsed = json.loads(body)
        batch = isinstance(parsed, list)
        calls: list[dict[str, Any]] = parsed if batch else [parsed]
        methods = [str(call.get("method")) for call in calls]
        with self._lock:
            self.requests += 1
            if self.rate_limit_all:
                return 429, {"Retry-After": str(self.retry_after_seconds)}, b"Too Many Requests"
            entry = self._next_entry(methods, batch)
            if entry is None and batch and self._refuse_batches is not None:
                entry = self._refuse_batches
        if entry is not None:
            return _played(entry, calls[0].get("id"))
        answers = [self._call(call) for call in calls]
        return 200, {}, json.dumps(answers if batch else answers[0]).encode()

    def _next_entry(self, methods: list[str], batch: bool) -> dict[str, Any] | None:
        if not self._pending:
            return None
        entry = self._pending[0]
        wanted = entry.get("method", "eth_getLogs")
        wanted = wanted if wanted in LISTENER_METHODS else "eth_blockNumber"
        if wanted not in methods or bool(entry.get("batch")) != batch:
            return None
        self._pending.popleft()
        self.replayed.append(entry["name"])
        if entry.get("batch"):
            self._refuse_batches = entry
        return entry

    def _call(self, call: dict[str, Any]) -> dict[str, Any]:
        method, params = call.get("method"), call.get("params") or []
        if method == "eth_chainId" and self.chain_id is not None:
            return {"jsonrpc": "2.0", "id": call.get("id"), "result": hex(self.chain_id)}
        frozen = self.frozen_head
        if frozen is not None:
            if method == "eth_blockNumber":
                return {"jsonrpc": "2.0", "id": call.get("id"), "result": hex(frozen)}
            if method == "eth_getBlockByNumber":
                tag = params[0]
                number = frozen if tag in ("latest", "safe", "finalized", "pending") else int(tag, 16)
                if number > frozen:
                    return {"jsonrpc": "2.0", "id": call.get("id"), "result": None}
                call = {**call, "params": [hex(number), *params[1:]]}
            if method == "eth_getLogs":
                query = dict(params[0])
                if int(query["toBlock"], 16) > frozen:  # a stalled node knows nothing past its head
                    query["toBlock"] = hex(frozen)
                if int(query["fromBlock"], 16) > frozen:
                    return {"jsonrpc": "2.0", "id": call.get("id"), "result": []}
                call = {**call, "params": [query]}
        return self._upstream(call)

    def _upstream(self, call: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.forwarded[str(call.get("method"))] += 1
        answer: dict[str, Any] = self._session.post(self.upstream_url, json=call, timeout=30).json()
        return answer

    # ------------------------------------------------------------------------ HTTP
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # TCP_NODELAY: no 40 ms delayed-ACK stall per kept-alive answer

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, payload = proxy._answer(body)
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler


def _played(entry: dict[str, Any], request_id: Any) -> tuple[int, dict[str, str], bytes]:
    """The HTTP answer a corpus entry describes, for a request with ``request_id``."""
    headers = {"Retry-After": str(entry["retry_after"])} if "retry_after" in entry else {}
    if "error" in entry:
        answer_id = None if entry.get("batch") else request_id
        body = json.dumps({"jsonrpc": "2.0", "id": answer_id, "error": entry["error"]}).encode()
        headers["Content-Type"] = "application/json"
    else:
        body = str(entry.get("body", "")).encode()
        headers["Content-Type"] = "text/html"
    return int(entry.get("status", 200)), headers, body

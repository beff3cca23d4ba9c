"""A real HTTP server that behaves like the Blocktrust API of SPEC §1, with injectable faults.

Used by the probe tests, the benchmark and ``make demo``. It serves every endpoint of SPEC §1,
issues tokens that expire after ``token_lifetime`` seconds of the injected ``Clock``, counts
logins, and lets tests (``set_fault``) or anyone on loopback (``/_simulator/...``) switch
faults per path at runtime (see ``faults.py``). Credentials are given at construction; there
are no defaults. Not a model of Blocktrust's data: the answers only have the right shapes.

Admin endpoints (no auth; bind to loopback):
    GET    /_simulator/state                  logins, requests per path, active faults
    POST   /_simulator/faults                 {"path": "/api/health", "fault": "latency:2s,503"}
    DELETE /_simulator/faults[?path=PATH]     clear one or all faults
    POST   /_simulator/expire-tokens          invalidate every issued token (next call: 401)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exporter.clock import Clock
from exporter.demo.simulator.faults import Fault, FaultTable, parse_fault

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_simulator/"
LOGIN_PATH = "/api/explorer/login"
_CONTRACTS = {
    "IdentityNFT": {"address": "0x5FbDB2315678afecb367f032d93F642f64180aa3"},
    "ProofRegistry": {"address": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"},
    "FailSafe": {"address": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"},
}

Answer = tuple[int, Any]
Route = Callable[["BlocktrustSimulator", dict[str, list[str]], bytes], Answer]


class BlocktrustSimulator:
    """Start with ``start()`` (or as a context manager); ``url`` is its base URL."""

    def __init__(
        self,
        *,
        email: str,
        password: str,
        clock: Clock,
        token_lifetime: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
        has_wallet: bool = True,
        has_nft: bool = True,
        trickle_interval: float = 0.05,
        oversized_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        if not email or not password:
            raise ValueError("the simulator needs the monitoring account's email and password")
        self._email = email
        self._password = password
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.has_wallet = has_wallet
        self.has_nft = has_nft
        self.trickle_interval = trickle_interval
        self.oversized_bytes = oversized_bytes
        self.faults = FaultTable()
        self._address = (host, port)
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expiry on clock.monotonic()
        self.logins = 0
        self.failed_logins = 0
        self.requests: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        start = clock.now()
        self.events = [
            {
                "id": n,
                "type": ("Minted", "ProofStored", "ProofStoredDual")[n % 3],
                "data": {"blockNumber": 100 + n, "args": {"tokenId": str(n)}},
                "timestamp": (start - timedelta(minutes=5 * n)).isoformat(),
            }
            for n in range(1, 26)
        ]

    # ------------------------------------------------------------------------ lifecycle
    def start(self) -> BlocktrustSimulator:
        self._server = _Server(self._address, _Handler)
        self._server.sim = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> BlocktrustSimulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --------------------------------------------------------------------------- control
    def set_fault(self, path: str, fault: Fault | str) -> None:
        self.faults.set(path, parse_fault(fault) if isinstance(fault, str) else fault)

    def clear_faults(self, path: str | None = None) -> None:
        self.faults.clear(path)

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def state(self) -> dict[str, Any]:
        with self._lock:
            requests = dict(self.requests)
        return {
            "logins": self.logins,
            "failed_logins": self.failed_logins,
            "requests": requests,
            "faults": {path: fault.text() for path, fault in self.faults.snapshot().items()},
        }

    # ------------------------------------------------------------------------- behaviour
    def login(self, body: bytes) -> Answer:
        try:
            payload = json.loads(body)
            email, password = payload["email"], payload["password"]
        except (ValueError, TypeError, KeyError):
            return 400, {"error": "expected JSON {email, password}"}
        with self._lock:
            if not (
                secrets.compare_digest(str(email), self._email)
                and secrets.compare_digest(str(password), self._password)
            ):
                self.failed_logins += 1
                return 401, {"error": "invalid credentials"}
            token = secrets.token_urlsafe(24)
            self._tokens[token] = self.clock.monotonic() + self.token_lifetime
            self.logins += 1
        return 200, {"token": token, "expires_in": int(self.token_lifetime)}

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self._tokens.get(header[len("Bearer ") :])
        return expiry is not None and self.clock.monotonic() < expiry

    def count(self, path: str) -> None:
        with self._lock:
            self.requests[path] += 1


# ------------------------------------------------------------------------------- routes
def _health(_sim: BlocktrustSimulator, _query: dict[str, list[str]], _body: bytes) -> Answer:
    return 200, {"status": "ok"}


def _events(sim: BlocktrustSimulator, query: dict[str, list[str]], _body: bytes) -> Answer:
    try:
        limit = int(query.get("limit", ["50"])[0])
        offset = int(query.get("offset", ["0"])[0])
    except ValueError:
        return 400, {"error": "limit and offset must be integers"}
    page = sim.events[offset : offset + max(0, limit)]
    return 200, {"status": "ok", "events": page, "total": len(sim.events), "limit": limit, "offset": offset}


def _contracts(_sim: BlocktrustSimulator, _query: dict[str, list[str]], _body: bytes) -> Answer:
    return 200, {"contracts": _CONTRACTS}


def _stats(sim: BlocktrustSimulator, _query: dict[str, list[str]], _body: bytes) -> Answer:
    return 200, {"stats": {"total_events": len(sim.events), "events_24h": len(sim.events)}}


def _hash_file(_sim: BlocktrustSimulator, _query: dict[str, list[str]], body: bytes) -> Answer:
    try:
        content = json.loads(body)["file_content"]
    except (ValueError, TypeError, KeyError):
        return 400, {"error": "expected JSON {file_content}"}
    if not isinstance(content, str):
        return 400, {"error": "file_content must be text"}
    return 200, {"file_hash": hashlib.sha256(content.encode()).hexdigest()}


def _wallet(sim: BlocktrustSimulator, _query: dict[str, list[str]], _body: bytes) -> Answer:
    if not sim.has_wallet:
        return 404, {"error": "no wallet"}
    return 200, {"address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "balance": "0"}


def _nft(sim: BlocktrustSimulator, _query: dict[str, list[str]], _body: bytes) -> Answer:
    if not sim.has_nft:
        return 404, {"error": "no NFT"}
    return 200, {"has_nft": True, "nft_id": 1}


# (method, path) -> (needs a Bearer token, handler)
ROUTES: dict[tuple[str, str], tuple[bool, Route]] = {
    ("GET", "/api/health"): (False, _health),
    ("GET", "/api/explorer/events"): (True, _events),
    ("GET", "/api/explorer/contracts"): (True, _contracts),
    ("GET", "/api/explorer/stats"): (True, _stats),
    ("POST", "/api/signature/hash-file"): (True, _hash_file),
    ("GET", "/api/wallet/info"): (True, _wallet),
    ("GET", "/api/nft/status"): (True, _nft),
}


# ------------------------------------------------------------------------------ server
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs under concurrent probes (then a 1 s retransmit).
    request_queue_size = 1024
    sim: BlocktrustSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Faults break connections on purpose; a traceback per broken pipe is noise.
        log.debug("simulator: connection from %s ended abruptly", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10  # idle keep-alive connections do not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        sim = self.server.sim
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if parts.path.startswith(ADMIN_PREFIX):
            self._send_json(*_admin(sim, method, parts.path, parse_qs(parts.query), body))
            return
        sim.count(parts.path)
        fault = sim.faults.take(parts.path)
        if fault is not None and fault.latency > 0:
            sim.stopping.wait(fault.latency)
        if fault is not None and fault.reset:
            self._reset()
            return
        if fault is not None and fault.status is not None:
            self._send_json(fault.status, {"error": "injected fault"})
            return
        status, payload = self._answer(sim, method, parts.path, parse_qs(parts.query), body)
        if fault is None or fault.body is None or status >= 400:
            self._send_json(status, payload)
            return
        self._send_faulty_body(fault, payload)

    def _answer(
        self, sim: BlocktrustSimulator, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> Answer:
        if (method, path) == ("POST", LOGIN_PATH):
            return sim.login(body)
        route = ROUTES.get((method, path))
        if route is None:
            return 404, {"error": "not found"}
        needs_token, handler = route
        if needs_token and not sim.authorized(self.headers.get("Authorization")):
            return 401, {"error": "token missing, invalid or expired"}
        return handler(sim, query, body)

    # ---------------------------------------------------------------------- sending
    def _send_json(self, status: int, payload: Any) -> None:
        self._send_bytes(status, json.dumps(payload).encode())

    def _send_bytes(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_faulty_body(self, fault: Fault, payload: Any) -> None:
        sim = self.server.sim
        if fault.body == "malformed":
            self._send_bytes(200, json.dumps(payload).encode()[:-3] + b"<!--")
        elif fault.body == "wrong_shape":
            self._send_json(200, {"unexpected": "shape"})
        elif fault.body == "wrong_hash":
            if isinstance(payload, dict) and "file_hash" in payload:
                payload = {"file_hash": hashlib.sha256(b"something else").hexdigest()}
            self._send_json(200, payload)
        elif fault.body == "oversized":
            filler = "x" * sim.oversized_bytes
            self._send_json(200, {"padding": filler, **(payload if isinstance(payload, dict) else {})})
        elif fault.body == "trickle":
            self._trickle(json.dumps(payload).encode())
        elif fault.body == "endless":
            self._endless()

    def _trickle(self, data: bytes) -> None:
        """The whole body announced, then one byte per ``trickle_interval``."""
        sim = self.server.sim
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.flush()
        for index in range(len(data)):
            if sim.stopping.wait(sim.trickle_interval):
                break
            self.wfile.write(data[index : index + 1])
            self.wfile.flush()
        self.close_connection = True

    def _endless(self) -> None:
        """A chunked body that never ends (until the client hangs up)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b'{"events": [' + b"0," * 8000
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        while not self.server.sim.stopping.is_set():
            self.wfile.write(frame)
        self.close_connection = True

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def finish(self) -> None:
        # The connection may have been reset on purpose or dropped by the client.
        with contextlib.suppress(OSError, ValueError):
            super().finish()


def _admin(sim: BlocktrustSimulator, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Answer:
    action = path[len(ADMIN_PREFIX) :]
    if (method, action) == ("GET", "state"):
        return 200, sim.state()
    if (method, action) == ("POST", "faults"):
        try:
            payload = json.loads(body)
            sim.set_fault(str(payload["path"]), parse_fault(str(payload["fault"])))
        except (ValueError, TypeError, KeyError) as exc:
            return 400, {"error": f"expected JSON {{path, fault}}: {exc}"}
        return 200, sim.state()
    if (method, action) == ("DELETE", "faults"):
        sim.clear_faults(query["path"][0] if "path" in query else None)
        return 200, sim.state()
    if (method, action) == ("POST", "expire-tokens"):
        sim.expire_tokens()
        return 200, sim.state()
    return 404, {"error": "unknown admin action"}

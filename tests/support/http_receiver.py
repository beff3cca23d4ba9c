"""A recording HTTP receiver on 127.0.0.1 that stands in for a webhook-style peer (Slack, Telegram,
a generic JSON webhook) in tests.

It records every request (method, path, headers, body) and answers from a script of ``Reply``
values, one per request, then the default reply: e.g. ``HttpReceiver(Reply(500), Reply(500))``
fails twice and then accepts. ``wait_for(n)`` blocks (real time, bounded) until ``n`` requests
arrived, for tests whose client runs on another thread. Not a fault injector at the TCP level:
see ``tcp_proxy``; for a peer that is down for good use ``refused_url()``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = "ok"  # str, bytes, or anything JSON-serialisable (sent as application/json)
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class HttpReceiver:
    """Start on construction, ``close()`` (or use as a context manager) to stop."""

    def __init__(self, *script: Reply, default: Reply | None = None) -> None:
        self._script: deque[Reply] = deque(script)
        self._default = default or Reply()
        self._records: list[Recorded] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="http-receiver", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Recorded]:
        with self._changed:
            return list(self._records)

    def script(self, *replies: Reply) -> None:
        """Queue more replies (used before the default)."""
        with self._changed:
            self._script.extend(replies)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """All requests once at least ``count`` arrived; AssertionError after ``timeout`` real seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._records) >= count, timeout):
                raise AssertionError(f"expected {count} request(s), got {len(self._records)}")
            return list(self._records)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> HttpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_reply(self) -> Reply:
        with self._changed:
            return self._script.popleft() if self._script else self._default

    def _record(self, record: Recorded) -> None:
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # TCP_NODELAY: no 40 ms delayed-ACK stall per kept-alive answer

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = receiver._next_reply()
                # Recorded before answering: once a client has its answer, the request is on record.
                receiver._record(Recorded(self.command, self.path, dict(self.headers.items()), body, reply.status))
                payload, content_type = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = do_PUT = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


def refused_url(path: str = "/") -> str:
    """A loopback URL where nothing listens: connections are refused at once (a peer down for good)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"

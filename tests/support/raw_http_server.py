"""A raw-socket HTTP server on 127.0.0.1 that answers with exactly the bytes a test scripts, for the
answers no well-behaved server library would send (interim 1xx, broken framing, bad status lines,
resets mid-body, slow drips).

Each request path (without its query) has a script: a sequence of steps played in order on the
connection after the whole request (headers and Content-Length body) was read, then the connection
is closed. A step is ``bytes`` (sent), a ``float`` (a pause in seconds, cut short by ``close()``)
or ``RESET`` (close with an RST instead of a FIN). Unknown paths answer 404. ``hits[path]`` counts
the requests per path and ``requests`` keeps them raw. Not for recording webhook peers
(``http_receiver``) nor for TCP-level faults between two real peers (``tcp_proxy``).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Final

RESET: Final = "reset"
Step = bytes | float | str
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def answer(status: str, body: bytes = b"", *headers: str) -> bytes:
    """A well-formed answer: ``answer("200 OK", b'{"a":1}', "Content-Type: application/json")``."""
    head = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class RawHttpServer:
    """See the module docstring. Use as a context manager, or call ``close()``."""

    def __init__(self, routes: dict[str, Sequence[Step]] | None = None) -> None:
        self.routes: dict[str, Sequence[Step]] = dict(routes or {})
        self.hits: Counter[str] = Counter()
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._serve, name="raw-http", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> RawHttpServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        reset = False
        try:
            path = self._read_request(conn)
            if path is None:
                return
            for step in self.routes.get(path, [NOT_FOUND]):
                if isinstance(step, bytes):
                    conn.sendall(step)
                elif isinstance(step, float):
                    if self._stop.wait(step):
                        return
                elif step == RESET:
                    reset = True
                    return
        except OSError:
            return  # the client gave up (e.g. after a declared body too large): nothing to play
        finally:
            if reset:  # SO_LINGER with a zero timeout: close() sends an RST
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def _read_request(self, conn: socket.socket) -> str | None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
        path = target.split("?", 1)[0]
        with self._lock:
            self.hits[path] += 1
            self.requests.append(head + b"\r\n\r\n" + body)
        return path

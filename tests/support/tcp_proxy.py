"""A TCP proxy a test controls, to cut a client off its server (PostgreSQL, an RPC node) and
restore it, on loopback only.

``cut()`` closes every open connection and refuses new ones (accepted then closed at once: the
client sees a reset, as when a server or a network path dies). ``stall()`` is the nastier fault: a
peer that hangs instead of failing. Connections stay open and new ones are accepted, but nothing
is forwarded any more, neither bytes nor a closed end (the kernel still acknowledges every packet,
so keepalives and TCP timeouts on the client never fire); what was held back is delivered at
``restore()``, as when a frozen server or network path comes back. ``restore()`` ends either
fault. Not a fault injector for application protocols: see ``rpc_fault_proxy`` for JSON-RPC.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._flowing = threading.Event()  # cleared by stall()
        self._flowing.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._open.clear()
        self._drop_all()

    def stall(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._open.set()
        self._flowing.set()

    def close(self) -> None:
        self._closing.set()
        self._drop_all()
        self._thread.join(timeout=2)
        self._listener.close()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # SO_LINGER 0 sends a reset, like a dead server, instead of a polite FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(OSError):
                # close() alone does not wake a pipe thread blocked in recv() on this socket, and the
                # kernel keeps the connection open until that recv returns: an idle peer (e.g. a
                # PostgreSQL session holding an advisory lock) would never see the cut.
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open.is_set():
                with contextlib.suppress(OSError):
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not self._hold_while_stalled(src):
                    return
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _hold_while_stalled(self, src: socket.socket) -> bool:
        """Wait while stalled; False when the connection was dropped meanwhile (cut, close)."""
        while not self._flowing.wait(0.05):
            with self._lock:
                dropped = src not in self._sockets
            if dropped or self._closing.is_set():
                return False
        return True

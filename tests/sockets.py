"""Network faults a test can hold in its hand: a server that accepts and never answers, and a TCP
proxy it can cut and restore. Threads in the test process; each is closed by the test."""

from __future__ import annotations

import contextlib
import socket
import threading


def _listener() -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    return server


def _drop(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class HungServer:
    """Accepts every connection and never sends a byte: a Redis wedged, or behind a dead NAT."""

    def __init__(self) -> None:
        self.server = _listener()
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="hung-server").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            self.held.append(conn)

    def close(self) -> None:
        _drop(self.server)
        for conn in self.held:
            _drop(conn)


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target. ``cut()`` drops every connection and closes each
    new one at once (what a client sees when the server is down); ``restore()`` forwards again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.server = _listener()
        self.port = self.server.getsockname()[1]
        self.is_cut = False
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="proxy").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                if self.is_cut:
                    _drop(client)
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _drop(client)
                    continue
                upstream.settimeout(None)
                self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _drop(source)
        _drop(sink)

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            for sock in self.open:
                _drop(sock)
            self.open.clear()

    def restore(self) -> None:
        with self.lock:
            self.is_cut = False

    def close(self) -> None:
        self.cut()
        _drop(self.server)

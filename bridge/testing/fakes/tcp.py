"""The loopback TCP server the socket-level fakes share: a thread per connection, started and stopped
as a context manager, every open connection closed on exit.

The MLLP peer and the faulty HTTP front read and write raw bytes (they must misbehave in ways an HTTP
or MLLP library would not let them), so they build on this rather than on ``socketserver``: their
``_serve(conn)`` owns one connection; ``_drop(conn)`` says how the fake hangs up when it stops.
"""

from __future__ import annotations

import socket
import struct
import threading
from abc import ABC, abstractmethod
from typing import Any, Self


class LoopbackTcpServer(ABC):
    """Subclasses set ``scheme`` (for :attr:`url`) and implement :meth:`_serve`."""

    scheme = "tcp"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()

    def __enter__(self) -> Self:
        self._sock = socket.create_server((self.host, 0))
        threading.Thread(target=self._accept_loop, name=type(self).__name__, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        if self._sock:
            self._sock.close()
        with self.lock:
            still_open = list(self._open)
        for conn in still_open:
            self._drop(conn)

    @property
    def port(self) -> int:
        assert self._sock is not None, f"start the {type(self).__name__} first (use it as a context manager)"
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self.lock:
                self._open.add(conn)
                self._accepted(conn)
            threading.Thread(target=self._serve_then_forget, args=(conn,), daemon=True).start()

    def _serve_then_forget(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        finally:
            with self.lock:
                self._open.discard(conn)

    def _accepted(self, conn: socket.socket) -> None:
        """Called under :attr:`lock` for each new connection (e.g. to count them)."""

    @abstractmethod
    def _serve(self, conn: socket.socket) -> None:
        """Own one accepted connection until it ends (the base forgets it afterwards)."""

    def _drop(self, conn: socket.socket) -> None:
        """How the fake hangs up an open connection when it stops: an orderly close by default."""
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()


def reset_connection(conn: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed peer or a middlebox does: no FIN, no answer."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()

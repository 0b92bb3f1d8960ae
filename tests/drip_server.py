"""An HTTP server on loopback that drips its answer (status line, headers, body) one byte at a time.

Real sockets, no HTTP library on the server side: it reads the request head (and a body of its
Content-Length), then sends ``answer`` one byte every ``interval`` seconds. ``hung_up`` counts the
connections whose client went away before the answer was complete.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def ok_json(body: bytes = b"{}", status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


class DripServer:
    def __init__(self, answer: bytes, interval: float = 0.2):
        self.answer, self.interval = answer, interval
        self.requests = 0
        self.hung_up = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            body += chunk

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                self._read_request(conn)
                self.requests += 1
                for i in range(len(self.answer)):
                    if self._stop.is_set():
                        return
                    conn.sendall(self.answer[i:i + 1])
                    time.sleep(self.interval)
            except OSError:
                self.hung_up += 1

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.close()

    def __enter__(self) -> DripServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

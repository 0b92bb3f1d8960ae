"""Bounds shared by the engine's inbound HTTP endpoints (FHIR inbound, NCPDP callback).

A per-read socket timeout does not bound a request: a client that sends one byte every few seconds
never trips it and holds a thread for as long as it likes. :class:`RequestDeadline` gives each
request a whole-request deadline — request line, headers, body and our answer — and, when it passes,
shuts the connection down so the blocked read returns.

An endpoint that answers before reading the body (401, 404, 405, 411, 413, 415) must not leave
that body in the connection: on a kept-alive connection the next "request" would be parsed from
it, and the client would get two answers to one request. :func:`drain_or_close` reads a small
remaining body away, and otherwise marks the connection to be closed.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from typing import Any, BinaryIO

DEFAULT_REQUEST_SECONDS = 30.0
# An early answer reads at most this much of an unread body to keep the connection; more: close it.
DRAIN_LIMIT_BYTES = 64 * 1024


class RequestDeadline:
    """Shuts a connection down when one request on it outlasts ``seconds``.

    Started when the handler begins to wait for a request and cancelled when it has answered, so
    an idle kept-alive connection is bounded by the same figure. Shutting down (not closing) the
    socket wakes the serving thread's blocked ``recv`` with end-of-file, and the server's own
    close path then frees it.
    """

    def __init__(self, sock: socket.socket, seconds: float):
        self.fired = False
        self._sock = sock
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the client or the server: nothing left to bound

    def cancel(self) -> None:
        self._timer.cancel()


def handle_with_deadline(handler: Any, seconds: float, handle_one: Any) -> None:
    """Run ``handle_one()`` (one request of an http.server-style handler) under a deadline.

    When the deadline fired, the connection is over: the handler is told to close it.
    """
    deadline = RequestDeadline(handler.connection, seconds)
    try:
        handle_one()
    finally:
        deadline.cancel()
    if deadline.fired:
        handler.close_connection = True


def drain_or_close(stream: BinaryIO, content_length: int | None, chunked: bool = False) -> bool:
    """Read away an unread request body so the connection can serve the next request.

    Returns True when the body was drained (keep the connection), False when it must be closed:
    the body is chunked, over :data:`DRAIN_LIMIT_BYTES`, or ended early. A request with neither
    Content-Length nor chunked encoding has no body (RFC 9112 section 6.3).
    """
    if chunked:
        return False
    if not content_length:
        return True
    if content_length > DRAIN_LIMIT_BYTES:
        return False
    remaining = content_length
    while remaining > 0:
        chunk = stream.read(min(remaining, 16 * 1024))
        if not chunk:
            return False
        remaining -= len(chunk)
    return True


def quiet_handle_error(log: logging.Logger, where: str) -> Any:
    """A ``handle_error`` for a socketserver-based server: one log line naming the exception type.

    socketserver's own prints a full traceback to stderr, chained to whatever was being handled —
    a refused message's reason, with the patient data it quoted — unredacted, when a client merely
    resets its connection early.
    """

    def handle_error(request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("%s: a client's connection ended early (%s)", where, type(exc).__name__)
        else:
            log.error("%s: a request failed (%s)", where, type(exc).__name__)

    return handle_error

"""One HTTP request within one total time: connect, send, status line, headers and body.

requests' ``timeout=(connect, read)`` bounds each socket read, not the answer: a server that sends its
status line, its headers or its body one byte a second holds the caller for as long as it likes, and a
deliverer held that way outlives its lease. Every HTTP client of the engine (FHIR destinations and
vendor profiles, SMART token endpoints, the NCPDP switch, alert webhooks) therefore sends through
:func:`request_within` on a session from :func:`bounded_session`: at the deadline a timer shuts down
the socket of the connection the request is using — found through the session's own connection
class, so even a request still waiting for its status line is woken — and the caller gets
``requests.ReadTimeout`` (the answer was not read in time). The answer comes back fully read, as a
plain value.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_active = threading.local()  # the deadline of the request this thread is making, if any


class AnswerTooLarge(Exception):
    """The answer's body is over the caller's ``max_bytes`` (it was not read further)."""

    def __init__(self, limit: int):
        super().__init__(f"answer over {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class BoundedAnswer:
    """A fully read HTTP answer."""

    status: int
    headers: Mapping[str, str]  # case-insensitive, as requests gives them
    content: bytes
    url: str


class _Deadline:
    """Shuts down the sockets a request uses once its total time is up."""

    def __init__(self, seconds: float):
        self.fired = False
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def watch(self, connection: Any) -> None:
        """``connection`` (urllib3's, or a response's raw reader) carries this request."""
        with self._lock:
            self._connections.append(connection)
            fired = self.fired
        if fired:
            _shut(connection)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._connections.clear()


def _socket_of(carrier: Any) -> socket.socket | None:
    sock = getattr(carrier, "sock", None)
    if sock is None:  # a response: urllib3 may have handed its connection back; the reader still holds it
        raw = getattr(carrier, "raw", None)
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is None:
            reader = getattr(getattr(raw, "_fp", None), "fp", None)
            sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _shut(carrier: Any) -> None:
    sock = _socket_of(carrier)
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: TLS state is left alone
    except OSError:
        pass


class _Watched:
    """Mixin for urllib3 connections: each request registers its connection with the thread's deadline."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        deadline = getattr(_active, "deadline", None)
        if deadline is not None and deadline.fired:
            _shut(self)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_active, "deadline", None)
        if deadline is not None:
            deadline.watch(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


def bounded_session() -> requests.Session:
    """A ``requests.Session`` whose connections :func:`request_within` can cut at its deadline."""
    session = requests.Session()
    adapter = _DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def request_within(session: requests.Session, method: str, url: str, *, connect_seconds: float,
                   total_seconds: float, max_bytes: int, **kwargs: Any) -> BoundedAnswer:
    """``session.request`` with the whole exchange bounded by ``total_seconds`` (raises
    ``requests.ReadTimeout``, or ``ConnectTimeout`` after ``connect_seconds``) and the body by
    ``max_bytes`` (raises :class:`AnswerTooLarge`). On a session not made by :func:`bounded_session`
    only the body is bounded (the status line and headers are not)."""
    deadline = _Deadline(total_seconds)
    _active.deadline = deadline
    deadline.start()
    try:
        with session.request(method, url, stream=True, timeout=(connect_seconds, total_seconds), **kwargs) as raw:
            deadline.watch(raw)
            content = _read_at_most(raw, max_bytes)
            if deadline.fired:
                raise requests.ReadTimeout(f"no complete answer within {total_seconds:g} s")
            return BoundedAnswer(raw.status_code, raw.headers, content, raw.url)
    except requests.Timeout:
        raise  # a read or connect timeout of its own: its name says which
    except (requests.RequestException, OSError):
        if deadline.fired:
            raise requests.ReadTimeout(f"no complete answer within {total_seconds:g} s") from None
        raise
    finally:
        _active.deadline = None
        deadline.cancel()


def _read_at_most(raw: requests.Response, max_bytes: int) -> bytes:
    chunks, size = [], 0
    for chunk in raw.iter_content(65536):
        size += len(chunk)
        if size > max_bytes:
            raise AnswerTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)

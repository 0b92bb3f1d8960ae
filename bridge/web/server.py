"""Serving the admin app: cheroot's thread-pool WSGI server, optionally with TLS, on its own listener.

The admin listener is separate from every data-plane listener (MLLP, FHIR inbound), so it can be
bound to loopback or a management network while feeds listen elsewhere.

Why cheroot (docs/operations.md, "Running it as a service"): it is a production HTTP/1.1 server that
runs *inside* the ``bridge run`` process, in a thread beside the engine, so the dashboard keeps its
direct view of the engine (pause, listener state) — gunicorn forks its own worker processes and wants
to own the process. Cheroot bounds what a hospital network can throw at it: a fixed pool of threads,
a queue of waiting connections, header and body sizes, a socket timeout, and (ours) a deadline
for each whole request.

What reaches the logs is ours, not the server's: one access line per request (method, path without
its query string, status, milliseconds) and, for connections that are not HTTP at all (an MLLP sender
pointed at the wrong port), no echo of what they sent and no traceback.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from cheroot.server import HTTPConnection
from cheroot.ssl.builtin import BuiltinSSLAdapter
from werkzeug.exceptions import HTTPException

from bridge.core.redaction import exception_text, scrub
from bridge.errors import ConfigError

log = logging.getLogger(__name__)
access_log = logging.getLogger("bridge.web.access")

MAX_LOGGED_PATH = 200
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on the admin listener; ``web:`` keys of the same names (docs/operations.md)."""

    threads: int = 8
    """Requests served at once; more connections wait in the queue below."""
    max_queued_connections: int = 32
    """Accepted connections waiting for a thread; beyond this a new one waits at most ``timeout_seconds``."""
    max_request_bytes: int = 1_048_576
    """Largest request body (413 above it); headers are bounded separately at ``MAX_HEADER_BYTES``."""
    timeout_seconds: float = 10.0
    """A client silent for this long on an open connection is answered 408 and closed."""
    max_request_seconds: float = 60.0
    """The longest one request may take, from its first byte to its answer, however slowly the client
    trickles it (a slow-loris client resets ``timeout_seconds`` with every byte): its connection is closed."""


MAX_HEADER_BYTES = 64 * 1024


def tls_context(tls: Mapping[str, str] | None) -> ssl.SSLContext | None:
    """A server TLS context (TLS 1.2 or newer) from ``{cert_file, key_file}``, or None."""
    if not tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls["cert_file"], tls["key_file"])
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([("web.tls", f"cannot load certificate/key: {exc}")]) from None
    return context


def loggable_path(path: str) -> str:
    """A request path fit for a log line: no query string, printable, short, scrubbed of anything
    that looks like payload (a misdirected client can put anything in a request line)."""
    path = _UNPRINTABLE.sub("?", path.split("?", 1)[0])
    if len(path) > MAX_LOGGED_PATH:
        path = path[:MAX_LOGGED_PATH] + "..."
    return scrub(path)


NO_ROUTE = "(no such page)"


class AccessLog:
    """WSGI middleware: one line per request, ``"GET /path" 200 12ms`` — never the query string
    (searches carry patient ids) nor a body. A path that names none of the app's routes is logged as
    ``(no such page)``: a misdirected or probing client can put a patient's name in it (``GET /Doe``),
    and no scrubbing recognises a bare surname. A route that answered 404 is logged as its rule."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.url_map = getattr(app, "url_map", None)

    def logged_path(self, environ: dict[str, Any], status: str) -> str:
        path = environ.get("PATH_INFO", "")
        if self.url_map is None:
            return loggable_path(path)
        try:
            rule, _ = self.url_map.bind("localhost").match(path, method=environ.get("REQUEST_METHOD", "GET"),
                                                           return_rule=True)
        except HTTPException:  # NotFound, MethodNotAllowed, a redirect to the slash form
            return NO_ROUTE
        return loggable_path(rule.rule if status == "404" or "<path:" in rule.rule else path)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        status: list[str] = ["-"]

        def recording_start_response(code: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, *exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            access_log.info('"%s %s" %s %dms', _UNPRINTABLE.sub("?", environ.get("REQUEST_METHOD", "-"))[:16],
                            self.logged_path(environ, status[0]), status[0],
                            (time.monotonic() - started) * 1000)


class RequestDeadlines:
    """Requests in progress and when each must be done; a watchdog thread shuts the socket of any
    request past its deadline, which ends the blocking read or write its thread is in."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._active: dict[int, tuple[HTTPConnection, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="admin-web-deadlines", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def begin(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._active[id(conn)] = (conn, time.monotonic() + self.seconds)

    def end(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._active.pop(id(conn), None)

    def _watch(self) -> None:
        while not self._stop.wait(min(0.25, self.seconds / 4)):
            now = time.monotonic()
            with self._lock:
                overdue = [conn for conn, deadline in self._active.values() if now > deadline]
            for conn in overdue:
                self.end(conn)
                try:
                    conn.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed
                log.warning("admin web: a request took longer than %g s; its connection was closed", self.seconds)


def _connection_class(deadlines: RequestDeadlines) -> type[HTTPConnection]:
    class DeadlineConnection(HTTPConnection):
        """One request of a connection (cheroot calls ``communicate`` once per request) under a deadline."""

        def communicate(self) -> bool:
            deadlines.begin(self)
            try:
                return super().communicate()
            finally:
                deadlines.end(self)

    return DeadlineConnection


class _QuietServer(wsgi.Server):
    """cheroot's server with its error log routed to ours: the message scrubbed, and in place of a
    traceback (which may quote a request) only the exception's type."""

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        exc = sys.exc_info()[1]
        text = scrub(_UNPRINTABLE.sub("?", str(msg)))[:300]
        if traceback and exc is not None:  # cheroot passes repr(exc) as msg: it may quote the request
            text = f"request failed: {exception_text(exc)}"
        log.log(level, "admin web: %s", text)


class AdminServer:
    """The admin listener: bound at construction (a busy port is an error at start, not later in a
    thread); ``serve_forever()`` serves, ``shutdown()`` stops from any thread."""

    def __init__(self, app: Any, host: str, port: int, tls: Mapping[str, str] | None = None,
                 limits: ServerLimits = ServerLimits()) -> None:
        self.limits = limits
        server = _QuietServer((host, port), AccessLog(app), numthreads=limits.threads, max=limits.threads,
                              request_queue_size=limits.max_queued_connections, timeout=limits.timeout_seconds,
                              accepted_queue_size=limits.max_queued_connections,
                              accepted_queue_timeout=limits.timeout_seconds, server_name="telemed-bridge")
        server.max_request_header_size = MAX_HEADER_BYTES
        server.max_request_body_size = limits.max_request_bytes
        self._deadlines = RequestDeadlines(limits.max_request_seconds)
        server.ConnectionClass = _connection_class(self._deadlines)
        context = tls_context(tls)
        if context is not None:
            adapter = BuiltinSSLAdapter(tls["cert_file"], tls["key_file"])  # type: ignore[index]
            adapter.context = context
            server.ssl_adapter = adapter
        try:
            server.prepare()
        except OSError as exc:
            raise ConfigError([("web.listen", f"cannot listen on {host}:{port}: {exc.strerror or exc}")]) from None
        self._server = server

    @property
    def server_port(self) -> int:
        return int(self._server.bind_addr[1])

    def serve_forever(self) -> None:
        self._deadlines.start()
        self._server.serve()

    def shutdown(self) -> None:
        self._deadlines.stop()
        self._server.stop()


def make_admin_server(app: Any, host: str, port: int, tls: Mapping[str, str] | None = None,
                      limits: ServerLimits = ServerLimits()) -> AdminServer:
    """Bind the listener now (so a busy port is an error at start, not later in a thread)."""
    return AdminServer(app, host, port, tls, limits)


def start_admin_server(app: Any, host: str, port: int, tls: Mapping[str, str] | None = None,
                       limits: ServerLimits = ServerLimits()) -> tuple[AdminServer, threading.Thread]:
    """Serve in a daemon thread; stop with ``server.shutdown()``."""
    server = make_admin_server(app, host, port, tls, limits)
    thread = threading.Thread(target=server.serve_forever, name="admin-web", daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    log.info("admin web listening on %s://%s:%d", scheme, host, server.server_port)
    return server, thread

"""Serving the admin app: werkzeug's threaded server, optionally with TLS, on its own listener.

The admin listener is separate from every data-plane listener (MLLP, FHIR inbound), so it can be
bound to loopback or a management network while feeds listen elsewhere.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Mapping
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bridge.errors import ConfigError

log = logging.getLogger(__name__)


class QuietPathHandler(WSGIRequestHandler):
    """Access log lines without query strings: searches carry patient ids (``?patient_id=…``), and
    no PHI may reach the application's logs."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s" %s', self.command, path, getattr(code, "value", code))


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


def make_admin_server(app: Any, host: str, port: int, tls: Mapping[str, str] | None = None) -> BaseWSGIServer:
    """Bind the listener now (so a busy port is an error at start, not later in a thread)."""
    try:
        return make_server(host, port, app, threaded=True, ssl_context=tls_context(tls),
                           request_handler=QuietPathHandler)
    except OSError as exc:
        raise ConfigError([("web.listen", f"cannot listen on {host}:{port}: {exc.strerror or exc}")]) from None


def start_admin_server(app: Any, host: str, port: int,
                       tls: Mapping[str, str] | None = None) -> tuple[BaseWSGIServer, threading.Thread]:
    """Serve in a daemon thread; stop with ``server.shutdown()``."""
    server = make_admin_server(app, host, port, tls)
    thread = threading.Thread(target=server.serve_forever, name="admin-web", daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    log.info("admin web listening on %s://%s:%d", scheme, host, server.server_port)
    return server, thread

"""Real receivers for alert notices on loopback: an HTTP server (http.server in a thread) and an SMTP
server with STARTTLS and login (aiosmtpd), each keeping what it received."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.hl7v2.conftest_mllp import PKI, make_pki


class WebhookReceiver:
    """Answers each POST with the next status of ``statuses`` (then 200), keeping every JSON body."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.posts.append(json.loads(body))
                    receiver.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/bridge"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.tls: list[bool] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        self.tls.append(session.ssl is not None)
        return "250 OK"


class SmtpReceiver:
    """An SMTP server on 127.0.0.1 that requires STARTTLS before anything and a login (user/secret)."""

    def __init__(self, folder: Path, user: str = "bridge-alerts", password: str = "s3cret-for-tests"):
        self.pki: PKI = make_pki(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        self.mailbox = _Mailbox()
        self.user, self.password = user, password

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
                and auth_data.password.decode() == password
            if ok:
                self.mailbox.logins.append(user)
            return AuthResult(success=ok)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, authenticator=authenticate, auth_required=True,
                                     auth_require_tls=True)
        self.controller.start()

    @property
    def messages(self) -> list[Any]:
        return self.mailbox.messages

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def alert_receivers(tmp_path, monkeypatch):
    """A webhook receiver and an SMTP server (STARTTLS, login from the environment variables the alert
    configs of the tests name), closed after the test."""
    webhook, smtp = WebhookReceiver(), SmtpReceiver(tmp_path)
    monkeypatch.setenv("BRIDGE_SMTP_USER", smtp.user)
    monkeypatch.setenv("BRIDGE_SMTP_PASSWORD", smtp.password)
    yield webhook, smtp
    webhook.close()
    smtp.close()

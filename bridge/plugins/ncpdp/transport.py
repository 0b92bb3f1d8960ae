"""The pharmacy-network transport: POST to a switch, and the switch's callback endpoint.

Destination (``url: ncpdp+https://switch.example/script``): one HTTPS POST per outbox row, with
connect and total timeouts; the switch's synchronous answer is judged — Status 000/010 or Verify:
delivered; Error 9xx (900 = rejected): permanent, the switch's description kept; other Errors,
HTTP 5xx, 408, timeouts and connection failures: transient; 429: transient honouring Retry-After.

Source (``source: ncpdp+https://0.0.0.0:8443/script``): a threaded HTTP server. A request is
authenticated (mutual TLS on ncpdp+https with ``client_ca_file``, and/or HTTP basic credentials
read from environment variables), size-checked from Content-Length (413) before any body is read,
decoded and validated, then committed through ``ctx.submit``; only after the commit returns is the
switch answered with SCRIPT Status 000. Invalid input is kept as a failed message and answered
with SCRIPT Error 900 (HTTP 400); a failed commit with Error 600 (HTTP 503, Retry-After), so the
switch retries. A retry of a committed message (same MessageID) is answered Status 000 again and
is not queued twice (the intake dedupes on the format's ``ncpdp:{MessageID}`` key).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import os
import ssl
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

import requests

from bridge import (
    BridgeError,
    ConfigError,
    DecodeError,
    Delivery,
    DestinationContext,
    PermanentDeliveryError,
    SendResult,
    SourceContext,
    TransientDeliveryError,
)
from bridge.bounded_http import AnswerTooLarge, bounded_session, request_within

from bridge.request_bounds import drain_or_close, handle_with_deadline, quiet_handle_error

from .decode import decode
from .validate import find, transaction_of
from .xmlsafe import parse_script

log = logging.getLogger(__name__)

SCHEMES = ("ncpdp+https", "ncpdp+http")
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TOTAL_TIMEOUT = 30.0
MAX_ANSWER_BYTES = 1024 * 1024
TRANSIENT_ERROR_CODE = "600"
REJECTED_CODE = "900"


# --- shared -------------------------------------------------------------------------------------


def _split(url: str) -> tuple[str, Any]:
    scheme = url.split(":", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError([("url", f"expected an ncpdp+https:// or ncpdp+http:// URL, got {url!r}")])
    return scheme, urlsplit(url)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_tls_or_loopback(scheme: str, host: str, options: Mapping[str, Any], where: str) -> None:
    if scheme == "ncpdp+http" and not _is_loopback(host) and not options.get("allow_plain_http"):
        raise ConfigError([(where, f"ncpdp+http sends prescriptions in clear text; use ncpdp+https for {host!r} "
                                   "(or set allow_plain_http: true inside a trusted network)")])


def _file(options: Mapping[str, Any], key: str, config_dir: str) -> str | None:
    value = options.get(key)
    if not value:
        return None
    path = Path(str(value))
    if not path.is_absolute():
        path = Path(config_dir) / path
    if not path.is_file():
        raise ConfigError([(f"options.{key}", f"file not found: {path}")])
    return str(path)


def _secret(options: Mapping[str, Any], key: str) -> str | None:
    """The value of the environment variable named by ``options[key]`` (``password_env``…)."""
    name = options.get(key)
    if not name:
        return None
    value = os.environ.get(str(name))
    if value is None:
        raise ConfigError([(f"options.{key}", f"environment variable {name!r} is not set")])
    return value


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def script_answer(kind: str, code: str, description: str, *, relates_to: str | None,
                  to: tuple[str, str] | None, sender: tuple[str, str] | None) -> bytes:
    """A small SCRIPT Status or Error answer (built by hand: it must work for unreadable input too)."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<Message DatatypesVersion="20170715" TransportVersion="20170715" TransactionDomain="SCRIPT" '
             'TransactionVersion="20170715" StructuresVersion="20170715" ECLVersion="20170715">', "<Header>"]
    if to:
        parts.append(f'<To Qualifier="{escape(to[1], {chr(34): "&quot;"})}">{escape(to[0])}</To>')
    if sender:
        parts.append(f'<From Qualifier="{escape(sender[1], {chr(34): "&quot;"})}">{escape(sender[0])}</From>')
    parts.append(f"<MessageID>{uuid.uuid4().hex}</MessageID>")
    if relates_to:
        parts.append(f"<RelatesToMessageID>{escape(relates_to)}</RelatesToMessageID>")
    parts.append(f"<SentTime>{_now()}</SentTime></Header><Body><{kind}><Code>{code}</Code>")
    parts.append(f"<Description>{escape(description[:500])}</Description></{kind}></Body></Message>")
    return "".join(parts).encode("utf-8")


# --- destination --------------------------------------------------------------------------------


class SwitchDestination:
    """POSTs SCRIPT messages to a switch and judges its synchronous answer."""

    def __init__(self, ctx: DestinationContext):
        scheme, parts = _split(ctx.url)
        opts = ctx.options
        _require_tls_or_loopback(scheme, parts.hostname or "", opts, f"destinations.{ctx.name}.url")
        http_scheme = "https" if scheme == "ncpdp+https" else "http"
        self.url = urlunsplit((http_scheme, parts.netloc, parts.path or "/", parts.query, ""))
        self.name = ctx.name
        self.connect_timeout = float(opts.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        self.total_timeout = float(opts.get("timeout", DEFAULT_TOTAL_TIMEOUT))
        self.session = bounded_session()
        username = opts.get("username") or (os.environ.get(str(opts["username_env"])) if opts.get("username_env") else None)
        password = _secret(opts, "password_env")
        if username and password is not None:
            self.session.auth = (str(username), password)
        cert = _file(opts, "cert_file", ctx.config_dir)
        key = _file(opts, "key_file", ctx.config_dir)
        if cert:
            self.session.cert = (cert, key) if key else cert
        ca = _file(opts, "ca_file", ctx.config_dir)
        self.session.verify = ca if ca else True

    def send(self, delivery: Delivery) -> SendResult:
        ours = _message_id(delivery.payload)
        try:
            answer = request_within(
                self.session, "POST", self.url, data=delivery.payload, allow_redirects=False,
                headers={"Content-Type": "application/xml; charset=utf-8", "Accept": "application/xml"},
                connect_seconds=self.connect_timeout, total_seconds=self.total_timeout, max_bytes=MAX_ANSWER_BYTES)
        except AnswerTooLarge:
            raise TransientDeliveryError(f"switch answer is over {MAX_ANSWER_BYTES} bytes") from None
        except requests.Timeout:
            raise TransientDeliveryError(f"switch did not answer within {self.total_timeout:g} s") from None
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"could not reach the switch: {type(exc).__name__}") from None
        body = answer.content
        detail = judge(answer.status, body, answer.headers, ours)
        # The switch's Status/Verify is a SCRIPT message in its own right: hand it back so the engine
        # stores it and correlates it to the prescription (created → sent → accepted).
        return SendResult(detail, reply=body if body.lstrip().startswith(b"<") else None)

    def close(self) -> None:
        self.session.close()


def _message_id(payload: bytes) -> str | None:
    try:
        root, _ = parse_script(payload)
    except BridgeError:
        return None
    node = find(root, "Header/MessageID")
    return (node.text or "").strip() if node is not None else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def judge(status: int, body: bytes, headers: Mapping[str, str], ours: str | None) -> str:
    """Turn the switch's answer into a delivery outcome (a description, or a DeliveryError)."""
    if status == 429:
        raise TransientDeliveryError("switch is rate limiting (HTTP 429)", retry_after=retry_after(headers))
    if status in (401, 403):
        raise PermanentDeliveryError(f"switch refused our credentials (HTTP {status}); check the destination's "
                                     "username/password_env or client certificate")
    answer = _answer(body)
    if status >= 500 or status == 408:
        detail = f": {answer[2]}" if answer else ""
        raise TransientDeliveryError(f"switch answered HTTP {status}{detail}", retry_after=retry_after(headers))
    if answer is None:
        if 200 <= status < 300:
            raise TransientDeliveryError(f"switch answered HTTP {status} without a readable SCRIPT Status/Error/Verify")
        raise PermanentDeliveryError(f"switch answered HTTP {status} without a SCRIPT answer")
    kind, code, description, switch_id, relates_to = answer
    if ours and relates_to and relates_to != ours:
        raise TransientDeliveryError(f"switch answer relates to MessageID {relates_to}, not ours ({ours})")
    said = f"{kind} {code or '?'}" + (f" ({description})" if description else "")
    if kind == "Error":
        if (code or "").startswith("9"):
            raise PermanentDeliveryError(f"switch rejected the message: SCRIPT Error {code}",
                                         detail=description or None)
        raise TransientDeliveryError(f"switch could not take the message now: {said}")
    if kind == "Verify" or (kind == "Status" and code in ("000", "010")):
        return f"switch accepted: {said}, switch MessageID {switch_id or '?'}"
    raise TransientDeliveryError(f"switch answered {said}; not an acceptance")


def _answer(body: bytes) -> tuple[str, str | None, str, str | None, str | None] | None:
    """(kind, code, description, MessageID, RelatesToMessageID) of a Status/Error/Verify, else None."""
    if not body.strip():
        return None
    try:
        root, _ = parse_script(body, MAX_ANSWER_BYTES)
    except BridgeError:
        return None
    kind = transaction_of(root)
    if kind not in ("Status", "Error", "Verify"):
        return None
    prefix = "Body/Verify/VerifyStatus" if kind == "Verify" else f"Body/{kind}"

    def text(path: str) -> str | None:
        node = find(root, path)
        return (node.text or "").strip() or None if node is not None else None

    return (kind, text(f"{prefix}/Code"), text(f"{prefix}/Description") or "",
            text("Header/MessageID"), text("Header/RelatesToMessageID"))


# --- source -------------------------------------------------------------------------------------


class CallbackSource:
    """The endpoint a switch POSTs asynchronous SCRIPT messages to."""

    def __init__(self, ctx: SourceContext):
        scheme, parts = _split(ctx.url)
        opts = ctx.options
        self.ctx = ctx
        self.host = parts.hostname or "127.0.0.1"
        _require_tls_or_loopback(scheme, self.host, opts, f"channels.{ctx.channel}.source")
        self.path = parts.path or "/"
        default = 443 if scheme == "ncpdp+https" else 80
        self.requested_port = default if parts.port is None else parts.port  # :0 asks for any free port
        self.username = opts.get("username") or (os.environ.get(str(opts["username_env"])) if opts.get("username_env") else None)
        self.password = _secret(opts, "password_env")
        self.tls = self._tls_context(scheme, opts) if scheme == "ncpdp+https" else None
        self.mutual_tls = bool(self.tls is not None and opts.get("client_ca_file"))
        if not self.mutual_tls and not (self.username and self.password):
            raise ConfigError([(f"channels.{ctx.channel}.options", "the callback endpoint needs authentication: "
                                "username + password_env (HTTP basic), or client_ca_file (mutual TLS, ncpdp+https)")])
        self.request_timeout = float(opts.get("request_timeout", 30.0))
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.port: int | None = None

    def _tls_context(self, scheme: str, opts: Mapping[str, Any]) -> ssl.SSLContext:
        cert = _file(opts, "cert_file", self.ctx.config_dir)
        key = _file(opts, "key_file", self.ctx.config_dir)
        if not cert:
            raise ConfigError([(f"channels.{self.ctx.channel}.options.cert_file", "is required for ncpdp+https")])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        client_ca = _file(opts, "client_ca_file", self.ctx.config_dir)
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        return context

    def start(self) -> None:
        handler = type("Handler", (CallbackHandler,), {"source": self, "timeout": self.request_timeout})
        self.server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        self.server.daemon_threads = True
        self.server.handle_error = quiet_handle_error(log, f"ncpdp callback {self.ctx.channel}")  # type: ignore[method-assign]
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True,
                                                      do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name=f"ncpdp-callback-{self.ctx.channel}", daemon=True)
        self.thread.start()
        log.info("ncpdp callback endpoint for channel %s listening on port %s", self.ctx.channel, self.port)

    @property
    def listening(self) -> bool:
        """Whether its serving thread runs (health and the listener_down alert read it)."""
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def authorized(self, header: str | None) -> bool:
        if not (self.username and self.password):
            return True  # mutual TLS only: the handshake already authenticated the client
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), str(self.username).encode()) & hmac.compare_digest(
            password.encode(), self.password.encode())


class CallbackHandler(BaseHTTPRequestHandler):
    source: CallbackSource
    protocol_version = "HTTP/1.1"
    server_version = "TelemedBridge-NCPDP"

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.warning("ncpdp callback: TLS handshake failed (%s)", type(exc).__name__)
                raise
        super().setup()

    def handle_one_request(self) -> None:
        """One request under the whole-request deadline (``request_timeout``), not just a per-read one."""
        handle_with_deadline(self, self.timeout, super().handle_one_request)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("ncpdp callback: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._plain(405, "use POST with a SCRIPT message")

    def do_POST(self) -> None:  # noqa: N802
        src = self.source
        if self.path.split("?", 1)[0] != src.path:
            self._plain(404, "not found")
            return
        if not src.authorized(self.headers.get("Authorization")):
            self._plain(401, "authentication required", {"WWW-Authenticate": 'Basic realm="ncpdp"'})
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._plain(411, "Content-Length is required")
            return
        if int(length) > src.ctx.max_message_bytes:
            self._plain(413, f"message is over the limit of {src.ctx.max_message_bytes} bytes")
            return
        raw = self.rfile.read(int(length))
        if len(raw) < int(length):  # the client stopped sending, or the request deadline closed it
            self.close_connection = True
            return
        self._take(raw)

    def _take(self, raw: bytes) -> None:
        src = self.source
        origin = {"peer": self.client_address[0], "transport": "ncpdp"}
        parties = _parties(raw)
        try:
            decode(raw, src.ctx.options)
        except DecodeError as exc:
            reason = str(exc)
            try:
                src.ctx.submit(raw, origin, error=reason)
            except Exception as store_exc:
                log.error("ncpdp callback %s: could not keep refused input (%s)", src.ctx.channel, type(store_exc).__name__)
                self._script(503, "Error", TRANSIENT_ERROR_CODE, "temporary failure, retry later", parties)
                return
            log.info("ncpdp callback %s: refused invalid SCRIPT input", src.ctx.channel)
            self._script(400, "Error", REJECTED_CODE, reason, parties)
            return
        try:
            receipt = src.ctx.submit(raw, origin)
        except Exception as exc:  # StoreError or worse: never answer Status 000 for what was not committed
            log.error("ncpdp callback %s: store commit failed (%s)", src.ctx.channel, type(exc).__name__)
            self._script(503, "Error", TRANSIENT_ERROR_CODE, "temporary failure storing the message, retry later",
                         parties)
            return
        if not receipt.accepted:
            self._script(400, "Error", REJECTED_CODE, receipt.error or "refused", parties)
            return
        log.info("ncpdp callback %s: stored message %s%s", src.ctx.channel, receipt.message_id,
                 " (duplicate)" if receipt.duplicate else "")
        self._script(200, "Status", "000", "duplicate, already received" if receipt.duplicate else "received", parties)

    def _script(self, status: int, kind: str, code: str, description: str,
                parties: tuple[str | None, tuple[str, str] | None, tuple[str, str] | None]) -> None:
        relates_to, their_from, their_to = parties
        body = script_answer(kind, code, description, relates_to=relates_to, to=their_from, sender=their_to)
        extra = {"Retry-After": "5"} if status == 503 else {}
        self._send(status, body, "application/xml; charset=utf-8", extra)

    def _plain(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        """An early answer: the unread body is drained, or the connection closed, so it is never parsed as a request."""
        length = self.headers.get("Content-Length", "")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if status in (411, 413) or not drain_or_close(self.rfile, int(length) if length.isdigit() else None, chunked):
            self.close_connection = True
        self._send(status, text.encode("utf-8"), "text/plain; charset=utf-8", headers or {})

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _parties(raw: bytes) -> tuple[str | None, tuple[str, str] | None, tuple[str, str] | None]:
    """(MessageID, From, To) of an inbound message, for addressing our answer; Nones if unreadable."""
    try:
        root, _ = parse_script(raw)
    except (BridgeError, UnicodeError, ValueError):
        return None, None, None

    def party(path: str) -> tuple[str, str] | None:
        node = find(root, path)
        if node is None or not (node.text or "").strip():
            return None
        return (node.text or "").strip(), node.get("Qualifier") or ""

    node = find(root, "Header/MessageID")
    return ((node.text or "").strip() or None if node is not None else None), party("Header/From"), party("Header/To")

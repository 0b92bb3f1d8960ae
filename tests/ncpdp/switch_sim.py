"""A local pharmacy-network switch for tests: a real HTTP server on 127.0.0.1.

It validates what it receives with the plugin's own validator (strictly: routing required),
answers SCRIPT Status 000 (or Verify 010 when asked, Error 900 for invalid input, HTTP 500 or 429
on demand) and can POST callbacks (RxFill…) to an endpoint. Its answers are written here by hand,
not with the plugin's encoder, so the destination is judged against an independent peer.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

import requests

from bridge import DecodeError
from bridge.plugins.ncpdp.validate import find, validate
from bridge.plugins.ncpdp.xmlsafe import parse_script

SWITCH_ID = "SWITCH01"


def answer(kind: str, code: str, description: str, relates_to: str | None) -> tuple[bytes, str]:
    """(bytes, MessageID) of a Status, Error or Verify answer."""
    message_id = f"SW-{uuid.uuid4().hex[:12]}"
    relates = f"<RelatesToMessageID>{escape(relates_to)}</RelatesToMessageID>" if relates_to else ""
    if kind == "Verify":
        inner = f"<VerifyStatus><Code>{code}</Code><Description>{escape(description)}</Description></VerifyStatus>"
    else:
        inner = f"<Code>{code}</Code><Description>{escape(description)}</Description>"
    body = (f'<Message><Header><To Qualifier="D">TBCLINIC01</To><From Qualifier="Z">{SWITCH_ID}</From>'
            f"<MessageID>{message_id}</MessageID>{relates}<SentTime>2024-03-04T15:20:12Z</SentTime></Header>"
            f"<Body><{kind}>{inner}</{kind}></Body></Message>")
    return body.encode("utf-8"), message_id


class SwitchSim:
    """``mode``: ``status`` (default), ``verify``, ``reject`` (Error 900), ``fail500`` or ``ratelimit``."""

    def __init__(self) -> None:
        self.mode = "status"
        self.received: list[bytes] = []
        self.answers: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        handler = type("SimHandler", (_Handler,), {"sim": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"ncpdp+http://127.0.0.1:{self.port}/script"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def __enter__(self) -> SwitchSim:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def judge(self, raw: bytes) -> tuple[int, bytes, Mapping[str, str]]:
        with self._lock:
            self.received.append(raw)
        if self.mode == "fail500":
            return 500, b"<html>switch maintenance</html>", {}
        if self.mode == "ratelimit":
            return 429, b"", {"Retry-After": "7"}
        try:
            root, _ = parse_script(raw)
            problems = validate(root, routing_required=True)
        except DecodeError as exc:
            problems, root = [str(exc)], None
        node = find(root, "Header/MessageID") if root is not None else None
        relates_to = (node.text or "").strip() if node is not None else None
        if self.mode == "reject" and not problems:
            problems = ["pharmacy 9912345 is not on this network"]
        if problems:
            body, _ = answer("Error", "900", "; ".join(problems), relates_to)
            self.answers.append((200, "Error 900"))
            return 200, body, {}
        kind, code = ("Verify", "010") if self.mode == "verify" else ("Status", "000")
        body, _ = answer(kind, code, "accepted by simulator", relates_to)
        self.answers.append((200, f"{kind} {code}"))
        return 200, body, {}

    @staticmethod
    def post_callback(url: str, raw: bytes, auth: tuple[str, str] | None,
                      timeout: float = 10.0) -> requests.Response:
        """POST a SCRIPT message (e.g. an RxFill) to our callback endpoint, as a switch would."""
        return requests.post(url, data=raw, auth=auth, timeout=timeout,
                             headers={"Content-Type": "application/xml"})


class _Handler(BaseHTTPRequestHandler):
    sim: SwitchSim
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, body, headers = self.sim.judge(raw)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

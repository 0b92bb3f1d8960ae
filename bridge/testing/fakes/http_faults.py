"""A faulty front for any HTTP fake: a raw-socket proxy on loopback that breaks requests as scripted.

Status answers (500, 503, 429 with ``Retry-After``) are easy to script with
:meth:`~bridge.testing.fakes.http.FakeHttpServer.inject`; the faults of a real network and a real
server are not, because an HTTP library on the server side always completes its answer. This front
speaks HTTP/1.1 by hand, so it can misbehave at the byte level. Put it in front of a fake (a
:class:`~bridge.testing.fakes.fhir_server.FakeFhirServer`, a vendor fake) and point the client at
``front.url``. Each request gets one fault, from the queue (``faults``, then ``default``) or from
``fault_for(request, seen_before)`` when given (``seen_before`` counts earlier requests with the same
identity, the ``X-Request-Id`` header by default, so "fail the first try of each message" is
``lambda request, seen: "reset" if seen == 0 else "pass"``):

- ``"pass"``: forward to the upstream and relay its answer;
- ``"500"``, ``"503"``, ``"429"`` (any three-digit status): answer that status without forwarding,
  with ``Retry-After: retry_after`` when ``retry_after`` is set;
- ``"hang"``: read the request and never answer (until the client gives up or the front stops);
- ``"drip"``: forward, then send the answer, status line and headers included, one byte every
  ``drip_seconds`` (a client's total timeout must cover the status line and headers, not only the body);
- ``"reset"``: read the request and reset the connection (RST) without forwarding;
- ``"drop-answer"``: forward (the upstream commits the write), read its answer, then reset the
  connection: the client cannot tell this from ``"reset"``, and its retry must be harmless.

Every answer closes its connection (``Connection: close``), so one connection carries one request and
one fault. :attr:`FaultyHttpFront.requests` records each request with the fault it got.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from .http import SeenRequest
from .tcp import LoopbackTcpServer, reset_connection

NAMED_FAULTS = ("pass", "hang", "drip", "reset", "drop-answer")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "content-length"}
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class FrontRequest(SeenRequest):
    """A request the front received, and the fault it was given."""

    fault: str = "pass"


def checked_fault(fault: str) -> str:
    if fault in NAMED_FAULTS or (len(fault) == 3 and fault.isdigit()):
        return fault
    raise ValueError(f"unknown HTTP fault {fault!r} (known: {', '.join(NAMED_FAULTS)} or a status such as 503)")


def default_identity(request: SeenRequest) -> Hashable:
    """What makes two requests the same delivery: the engine's ``X-Request-Id``, else the body."""
    return request.headers.get("X-Request-Id") or request.body


def title_case(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


class FaultyHttpFront(LoopbackTcpServer):
    """``with FaultyHttpFront(upstream.url, faults=["reset"]) as front:`` — ``front.url`` is what the
    client is given (append the upstream's path, e.g. ``front.url + "/fhir"``)."""

    def __init__(self, upstream: str, *, faults: Iterable[str] = (), default: str = "pass",
                 fault_for: Callable[[SeenRequest, int], str] | None = None, retry_after: str | None = None,
                 drip_seconds: float = 0.05, identity: Callable[[SeenRequest], Hashable] = default_identity,
                 max_body_bytes: int = 16 * 1024 * 1024) -> None:
        super().__init__("127.0.0.1")
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: deque[str] = deque(checked_fault(f) for f in faults)
        self.default = checked_fault(default)
        self.fault_for, self.identity = fault_for, identity
        self.retry_after, self.drip_seconds, self.max_body_bytes = retry_after, drip_seconds, max_body_bytes
        self.requests: list[FrontRequest] = []

    # -- scripting and inspection --

    def script(self, *faults: str) -> None:
        """Queue faults for the next requests, in order."""
        with self.lock:
            self.faults.extend(checked_fault(f) for f in faults)

    def seen(self, fault: str | None = None) -> list[FrontRequest]:
        """The requests received (those given ``fault``, when named)."""
        with self.lock:
            return [r for r in self.requests if fault is None or r.fault == fault]

    # -- serving --

    scheme = "http"

    def _drop(self, conn: socket.socket) -> None:
        reset_connection(conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            request = self._read_request(conn)
            if request is not None:
                self._apply(conn, self._record(request))
        except OSError:
            pass  # the client went away: nothing to answer
        finally:
            conn.close()

    def _record(self, request: SeenRequest) -> FrontRequest:
        with self.lock:
            key = self.identity(request)
            seen_before = sum(1 for earlier in self.requests if self.identity(earlier) == key)
            if self.fault_for is not None:
                fault = checked_fault(self.fault_for(request, seen_before))
            else:
                fault = self.faults.popleft() if self.faults else self.default
            recorded = FrontRequest(request.method, request.path, request.headers, request.body, request.at, fault)
            self.requests.append(recorded)
        return recorded

    def _read_request(self, conn: socket.socket) -> SeenRequest | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk or len(data) > MAX_HEAD_BYTES:
                return None
            data += chunk
        arrived = time.monotonic()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = (lines[0].split(" ") + ["", ""])[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[title_case(name.strip())] = value.strip()
        length = int(headers.get("Content-Length", "0") or 0)
        if length > self.max_body_bytes:
            return None
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return SeenRequest(method, path, headers, body[:length], arrived)

    # -- faults --

    def _apply(self, conn: socket.socket, request: FrontRequest) -> None:
        fault = request.fault
        if fault == "reset":
            reset_connection(conn)
        elif fault == "hang":
            self._hang(conn)
        elif fault.isdigit():
            conn.sendall(self._canned(int(fault)))
        else:
            answer = self._forward(request)
            if fault == "drop-answer":
                reset_connection(conn)
            elif fault == "drip":
                self._drip(conn, answer)
            else:
                conn.sendall(answer)

    def _hang(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        while not self._stopping.is_set():
            try:
                if not conn.recv(65536):
                    return  # the client gave up
            except TimeoutError:
                continue

    def _drip(self, conn: socket.socket, answer: bytes) -> None:
        for index in range(len(answer)):
            if self._stopping.wait(self.drip_seconds):
                return
            conn.sendall(answer[index:index + 1])

    def _canned(self, status: int) -> bytes:
        body = json.dumps({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "transient", "diagnostics": f"scripted {status}"}]}).encode()
        headers = {"Content-Type": "application/fhir+json"}
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        return _answer_bytes(status, _reason(status), headers, body)

    def _forward(self, request: SeenRequest) -> bytes:
        """Send the request to the upstream and return its whole answer, re-framed with ``Connection: close``."""
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(request.method, request.path, body=request.body or None, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
            return _answer_bytes(answer.status, answer.reason, kept, body)
        finally:
            upstream.close()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Scripted"


def _answer_bytes(status: int, reason: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


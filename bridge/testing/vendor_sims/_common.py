"""What the vendor simulators share: a refusal with its citation, and losing an answer on purpose.

Each simulator refuses a request the way its vendor documents, and every refusal names the
documentation page it enforces (``Violation.source``), so a failing plugin test says which
documented rule the plugin broke. ``lose_answer`` processes a request and then resets the
connection instead of answering: the write happened, the client never heard — the case a plugin's
idempotency must survive.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from bridge.testing.fakes.http import FakeHttpServer


class Refusal(Exception):
    """A request the simulated vendor refuses: status, text and the documentation page behind it.

    ``code`` and ``severity`` are for vendors that answer with an OperationOutcome (Millennium answers
    a missing required field with a ``fatal`` one); ``headers`` go on the answer (``Retry-After``).
    How the refusal reads on the wire is each simulator's :meth:`VendorSimulator.refusal_response`.
    """

    def __init__(self, status: int, text: str, source: str, code: str = "invalid",
                 headers: dict[str, str] | None = None, severity: str = "error"):
        self.status, self.text, self.source, self.code = status, text, source, code
        self.headers, self.severity = headers or {}, severity
        super().__init__(text)


@dataclass
class Violation:
    """A refused request, kept for assertions: ``sim.violations`` should stay empty in a good run."""

    method: str
    path: str
    status: int
    text: str
    source: str


@dataclass
class LostAnswer:
    """Process the next request matching ``when``, then reset the connection without answering.

    ``done`` turns true once a request matched: the answer was lost (each one is lost once)."""

    when: Callable[[Request], bool]
    done: bool = field(default=False)


class VendorSimulator(FakeHttpServer, ABC):
    """Base of the vendor simulators: violations log, lost answers, refusals as the vendor shapes them."""

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[Violation] = []
        self.lost: list[LostAnswer] = []

    def lose_answer(self, method: str, path_contains: str) -> LostAnswer:
        """The next ``method`` request whose path contains ``path_contains`` is carried out, and its
        answer is lost (connection reset)."""
        lost = LostAnswer(lambda r: r.method == method and path_contains in r.path)
        with self.lock:
            self.lost.append(lost)
        return lost

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            lost = next((item for item in self.lost if not item.done and item.when(request)), None)
            if lost:
                lost.done = True
        result = super().wsgi(environ, start_response)
        if lost:
            reset(environ)
            return [b""]
        return result

    def refused(self, request: Request, refusal: Refusal) -> Response:
        """Log the refusal in ``violations`` and answer it the way this vendor does."""
        with self.lock:
            self.violations.append(Violation(request.method, request.full_path.rstrip("?"), refusal.status,
                                             refusal.text, refusal.source))
        return self.refusal_response(refusal)

    @abstractmethod
    def refusal_response(self, refusal: Refusal) -> Response:
        """The vendor's answer to a refusal (status, body, headers); each simulator shapes its own."""


def reset(environ: dict[str, Any]) -> None:
    """Close the client's connection with a TCP reset (SO_LINGER 0): no answer reaches it."""
    sock = environ.get("werkzeug.socket")
    if sock is None:  # pragma: no cover - werkzeug's dev server always provides it
        raise RuntimeError("the server does not expose its socket; cannot lose an answer")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RDWR)  # at once: close() waits for the server's own file objects on it
    sock.close()

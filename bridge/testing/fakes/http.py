"""A loopback HTTP server to build fakes on: werkzeug on 127.0.0.1, port 0, a context manager.

Fakes of HTTP peers (a FHIR server, a token endpoint, a vendor's REST API) differ only in how they
answer; starting, stopping, logging requests and scripting one-shot failures is the same for all of
them, so it lives here once. A subclass implements :meth:`FakeHttpServer.answer`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class QuietHandler(WSGIRequestHandler):
    """Keeps werkzeug's per-request lines (which would include paths with ids) out of test output."""

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


@dataclass
class Injection:
    """A one-shot scripted answer for the next request matching ``when``.

    ``status``/``body``/``headers`` make the answer; ``delay`` waits first (to trigger a client's
    timeout); ``passthrough`` answers normally after the delay; ``drip`` sends the body one byte every
    ``drip`` seconds (a slow-loris answer, for total-timeout tests).
    """

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    when: Callable[[Request], bool] = lambda request: True
    passthrough: bool = False
    drip: float = 0.0
    text: str | None = None


@dataclass(frozen=True)
class SeenRequest:
    """What the fake received, for assertions: method, path with query, headers, body bytes, and the
    monotonic time it arrived (for backoff and Retry-After assertions)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic, compare=False)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeHttpServer:
    """Base of the HTTP fakes. Use as ``with Fake() as fake:``; ``fake.url`` is ``http://127.0.0.1:PORT``."""

    content_type = "application/json"

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self.injections: list[Injection] = []
        self.lock = threading.RLock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def __enter__(self) -> Any:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting --

    def inject(self, **kwargs: Any) -> Injection:
        """Script the next matching request's answer (see :class:`Injection`)."""
        injection = Injection(**kwargs)
        with self.lock:
            self.injections.append(injection)
        return injection

    # -- WSGI --

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        with self.lock:
            self.requests.append(SeenRequest(request.method, request.full_path.rstrip("?"),
                                             dict(request.headers), body))
        response = self.scripted(request) or self.answer(request)
        return response(environ, start_response)

    def answer(self, request: Request) -> Response:
        """The fake's normal answer; subclasses implement it."""
        raise NotImplementedError

    def scripted_body(self, injection: Injection) -> Any:
        """The JSON body of a scripted answer that names none; subclasses shape their error bodies."""
        return {"error": injection.text or "scripted failure"}

    def scripted(self, request: Request) -> Response | None:
        with self.lock:
            found = next((i for i in self.injections if i.when(request)), None)
            if found:
                self.injections.remove(found)
        if not found:
            return None
        if found.delay:
            time.sleep(found.delay)
        if found.passthrough:
            return None
        body = found.body if found.body is not None else self.scripted_body(found)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if found.drip:
            return Response(_drip(data, found.drip), status=found.status, content_type=self.content_type,
                            headers={**found.headers, "Content-Length": str(len(data))})
        return Response(data, status=found.status, headers=found.headers, content_type=self.content_type)

    def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers or {}, content_type=self.content_type)


def _drip(data: bytes, every: float) -> Iterator[bytes]:
    for index in range(len(data)):
        time.sleep(every)
        yield data[index:index + 1]

"""A fake Acme EHR on loopback, built on the kit's fakes: its token endpoint and its visits API.

The visits API behaves as Acme's (fictional) documentation says: bearer token required, the body must
be an ``acme-json`` visit document, the visit number is unique per practice (a second POST answers
409), and errors come as ``{"error": {"code": …, "message": …}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from bridge.testing import FakeHttpServer, FakeTokenEndpoint

PRACTICE = "1234"
CLIENT_ID, CLIENT_SECRET = "telemed-bridge", "acme-test-secret"
VISITS_PATH = re.compile(r"^/api/v1/practices/(?P<practice>[^/]+)/visits$")


class FakeAcmeApi(FakeHttpServer):
    """Acme's visits endpoint. ``visits`` maps visit number → the document Acme stored."""

    def __init__(self, tokens: set[str]):
        super().__init__()
        self.tokens = tokens
        self.visits: dict[str, dict[str, Any]] = {}

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        return self.json(status, {"error": {"code": code, "message": message}}, headers)

    def scripted_body(self, injection: Any) -> Any:
        return {"error": {"code": "SCRIPTED", "message": injection.text or "scripted failure"}}

    def answer(self, request: Request) -> Response:
        match = VISITS_PATH.match(request.path)
        if not match or request.method != "POST":
            return self.error(404, "NOT_FOUND", "no such endpoint")
        if request.headers.get("Authorization", "")[7:] not in self.tokens:
            return self.error(401, "INVALID_TOKEN", "bearer token missing or expired")
        if match["practice"] != PRACTICE:
            return self.error(403, "PRACTICE_FORBIDDEN", "this client may not write to that practice")
        try:
            doc = json.loads(request.get_data())
            number = doc["visit"]["visit_number"]
        except (ValueError, KeyError, TypeError):
            return self.error(422, "INVALID_VISIT", "body is not an Acme visit/1 document")
        with self.lock:
            if number in self.visits:
                return self.error(409, "DUPLICATE_VISIT", "visit number already recorded")
            self.visits[number] = doc
        return self.json(201, {"visit_id": f"acme-{len(self.visits)}"})


class FakeAcme:
    """The token endpoint and the API together, sharing the set of valid tokens."""

    def __init__(self, tokens: FakeTokenEndpoint, api: FakeAcmeApi):
        self.tokens, self.api = tokens, api

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"base_url": self.api.url, "practice_id": PRACTICE, "client_id": CLIENT_ID,
                "client_secret_env": "ACME_CLIENT_SECRET", "token_url": self.tokens.token_url,
                "timeout": 0.5, "connect_timeout": 0.5, **extra}


@pytest.fixture
def acme(monkeypatch) -> Iterator[FakeAcme]:
    monkeypatch.setenv("ACME_CLIENT_SECRET", CLIENT_SECRET)
    with FakeTokenEndpoint(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, expires_in=600) as tokens:
        with FakeAcmeApi(tokens.issued) as api:
            yield FakeAcme(tokens, api)

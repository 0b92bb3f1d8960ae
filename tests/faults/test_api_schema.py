"""The admin API against its own OpenAPI document (issue 16, "bad input"): schemathesis generates valid
and invalid requests for every operation of bridge/web/openapi.yaml and sends them to a real admin
server (create_app behind the cheroot listener on loopback, a real SQLite store with messages, an
admin token). No answer may be a 5xx, and every answer must match the document: a status code it
lists, its content type, and its schema.

A bounded number of examples per operation keeps this under a minute; the document itself is the
contract clients are written against, so a mismatch is fixed in the server or in the document.
"""

from __future__ import annotations

import threading

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402  (hypothesis comes with schemathesis)
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.web import create_app  # noqa: E402
from bridge.web.auth import new_token, token_digest  # noqa: E402
from bridge.web.server import start_admin_server  # noqa: E402
from tests.web.conftest import build_site  # noqa: E402

from importlib.resources import files  # noqa: E402

OPENAPI = files("bridge.web") / "openapi.yaml"
EXAMPLES = 5  # per operation and mode: about 310 requests in all
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def admin_api(tmp_path):
    """A real admin server on a free loopback port; yields (base URL, admin token)."""
    site = build_site(tmp_path)
    token = new_token()
    site.store.create_token("schemathesis-admin", token_digest(token), "admin", actor="test")
    app = create_app(site.engine.config, site.engine.plugins, site.store, engine=site.engine)
    server, thread = start_admin_server(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v1", token
    finally:
        server.shutdown()
        thread.join(timeout=10)
        site.store.close()


def _exercise(operation, mode: GenerationMode, base_url: str, headers: dict[str, str],
              failures: list[str]) -> None:
    seen: set[str] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def one(case) -> None:
        try:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
        except (AssertionError, FailureGroup) as exc:
            text = str(exc).strip().splitlines()
            key = text[0] if text else type(exc).__name__
            if key not in seen and len(seen) < 3:
                seen.add(key)
                failures.append(f"{operation.label} ({mode.value}): " + "\n    ".join(text[:12]))

    one()


@pytest.mark.slow
def test_every_operation_answers_within_its_document_and_never_5xx(admin_api):
    base_url, token = admin_api
    schema = schemathesis.openapi.from_path(str(OPENAPI))
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _exercise(operation, mode, base_url, headers, failures)
    assert threading.active_count() < 200
    report = f"{len(failures)} finding(s):\n" + "\n".join(failures)
    assert not failures, report


def test_ids_past_64_bits_are_not_found_or_refused_never_a_server_error(tmp_path):
    """schemathesis finding: a message id past 2**63 - 1 in a path, a cursor or a bulk replay reached the
    SQLite driver, which raised OverflowError (500)."""
    site = build_site(tmp_path)
    api, huge = site.api("admin"), 2**70
    try:
        assert api.get(f"/api/v1/messages/{huge}").status_code == 404
        assert api.post(f"/api/v1/messages/{huge}/replay", json={"reason": "r"}).status_code == 404
        assert api.post(f"/api/v1/holds/{huge}/reject", json={"reason": "r"}).status_code == 404
        assert api.get(f"/api/v1/messages?before_id={huge}").status_code == 400
        assert api.post("/api/v1/replay", json={"ids": [huge], "reason": "r"}).status_code == 400
        assert api.get(f"/api/v1/messages/{2**63 - 1}").status_code == 404  # the largest id: looked up, none
        assert api.get(f"/api/v1/messages/{site.ids['enc1']}").status_code == 200
    finally:
        site.store.close()

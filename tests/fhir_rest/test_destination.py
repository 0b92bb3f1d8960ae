"""The fhir+http(s) destination against a real FHIR test server on loopback, mostly through a real Engine."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import responses

from bridge import ConfigError, Delivery, DestinationContext, PermanentDeliveryError, TransientDeliveryError
from bridge.plugins.fhir.rest import FhirRestDestination, dependency_order, retry_after_seconds

from .fhir_server import FhirTestServer, ResettingServer
from .helpers import MRN_SYSTEM, VISIT_SYSTEM, engine_to, only_row, visit


def delivery(payload: bytes, media_type: str = "application/fhir+json") -> Delivery:
    return Delivery(outbox_id=1, message_id=1, destination="ehr", payload=payload, media_type=media_type,
                    file_extension="json", attempt=1, idempotency_key="tb-1-1")


def destination(url: str, tmp_path, **options) -> FhirRestDestination:
    return FhirRestDestination(DestinationContext(url=url, name="ehr", options=options, config_dir=str(tmp_path)))


def bundle(*entries: dict) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}).encode()


def patient_entry(mrn: str = "MRN1", **resource) -> dict:
    return {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{mrn.encode().hex()[:12]:0>12}",
            "resource": {"resourceType": "Patient", "identifier": [{"system": MRN_SYSTEM, "value": mrn}], **resource},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN_SYSTEM}|{mrn}"}}


# --- idempotent writes ----------------------------------------------------------------------------


def test_transaction_delivered_twice_leaves_one_of_each_resource(tmp_path):
    with FhirTestServer() as server:
        engine = engine_to(tmp_path, "fhir+" + server.base)
        engine.submit("in", visit(1, status="in-progress"))
        engine.drain()
        engine.submit("in", visit(1, status="finished"))  # the same visit again, now finished
        engine.drain()
        assert [r.status for r in engine.store.outbox_rows()] == ["delivered", "delivered"]
        assert server.count() == {"Patient": 1, "Encounter": 1}
        (patient,), (encounter,) = server.all("Patient"), server.all("Encounter")
        assert encounter["status"] == "finished" and encounter["meta"]["versionId"] == "2"
        assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
        assert [m for m, _ in server.log] == ["POST", "POST"]  # one transaction each time
        delivered = [e.detail["detail"] for m in engine.store.search() for e in engine.store.events(m.id)
                     if e.kind == "delivered"]
        assert sorted(delivered) == ["transaction: HTTP 200, 2 entries (2× 200)",
                                     "transaction: HTTP 200, 2 entries (2× 201)"]


def test_search_before_create_writes_in_dependency_order_and_reuses_on_redelivery(tmp_path):
    with FhirTestServer() as server:
        engine = engine_to(tmp_path, "fhir+" + server.base, options={"mode": "search-before-create"})
        engine.submit("in", visit(1, status="in-progress"))
        engine.drain()
        assert only_row(engine).status == "delivered", only_row(engine).last_error
        first = [(m, p.split("?")[0]) for m, p in server.log]
        assert first == [("GET", "/fhir/Patient"), ("POST", "/fhir/Patient"),
                         ("GET", "/fhir/Encounter"), ("POST", "/fhir/Encounter")]
        (patient,), (encounter,) = server.all("Patient"), server.all("Encounter")
        # the server refuses unresolved urn:uuid references, so this proves the rewrite
        assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"

        server.log.clear()
        engine.store.replay(only_row(engine).message_id, reason="test", actor="test")
        engine.drain()
        assert server.count() == {"Patient": 1, "Encounter": 1}
        assert [(m, p.split("?")[0]) for m, p in server.log] == [
            ("GET", "/fhir/Patient"), ("GET", "/fhir/Encounter"), ("PUT", f"/fhir/Encounter/{encounter['id']}")]
        assert server.all("Encounter")[0]["meta"]["versionId"] == "2"


def test_search_before_create_updates_with_if_match_of_the_found_version(tmp_path):
    with FhirTestServer() as server:
        dest = destination("fhir+" + server.base, tmp_path, mode="search-before-create")
        payload = bundle(patient_entry(), {
            "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
            "resource": {"resourceType": "Encounter", "status": "planned", "class": {"code": "VR"},
                         "identifier": [{"system": VISIT_SYSTEM, "value": "V9"}],
                         "subject": {"reference": patient_entry()["fullUrl"]}},
            "request": {"method": "PUT", "url": f"Encounter?identifier={VISIT_SYSTEM}|V9"}})
        assert dest.send(delivery(payload)) == "search-before-create: 2 created"
        assert dest.send(delivery(payload)) == "search-before-create: 1 reused, 1 updated"
        dest.close()


def test_search_before_create_refuses_an_ambiguous_match(tmp_path):
    with FhirTestServer() as server:
        for _ in range(2):
            server.seed({"resourceType": "Patient", "identifier": [{"system": MRN_SYSTEM, "value": "MRN1"}]},
                        "2026-01-01T00:00:00+00:00")
        dest = destination("fhir+" + server.base, tmp_path, mode="search-before-create")
        with pytest.raises(PermanentDeliveryError, match="2 resources match one business identifier"):
            dest.send(delivery(bundle(patient_entry())))
        assert server.count() == {"Patient": 2}


def test_dependency_order_puts_referenced_entries_first_and_rejects_cycles():
    a = {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Encounter", "subject": {"reference": "urn:uuid:b"}}}
    b = {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Patient"}}
    assert dependency_order([a, b]) == [b, a]
    b_cyclic = {**b, "resource": {"resourceType": "Patient", "link": [{"other": {"reference": "urn:uuid:a"}}]}}
    with pytest.raises(PermanentDeliveryError, match="circular references"):
        dependency_order([a, b_cyclic])


def test_bridge_format_payload_is_posted_as_is_and_the_servers_refusal_is_kept(tmp_path):
    with FhirTestServer() as server:
        engine = engine_to(tmp_path, "fhir+" + server.base, fmt="bridge")
        engine.submit("in", visit(1))
        engine.drain()
        row = only_row(engine)
        assert row.status == "dead" and row.attempts == 1
        assert "HTTP 400" in row.last_error and "needs a transaction Bundle" in row.last_error


# --- judging answers ------------------------------------------------------------------------------


def test_400_with_operation_outcome_is_a_dead_letter_with_its_text(tmp_path):
    with FhirTestServer() as server:
        server.inject(status=400, text="Encounter.class: code VR is not in the tenant's value set")
        engine = engine_to(tmp_path, "fhir+" + server.base)
        engine.submit("in", visit(1))
        engine.drain()
        row = only_row(engine)
        assert row.status == "dead" and row.attempts == 1
        assert "HTTP 400" in row.last_error and "code VR is not in the tenant's value set" in row.last_error
        assert server.count() == {}


def test_a_resource_the_server_cannot_validate_is_refused_permanently(tmp_path):
    with FhirTestServer() as server:
        dest = destination("fhir+" + server.base, tmp_path)
        with pytest.raises(PermanentDeliveryError, match=r"HTTP 422 .*does not validate") as caught:
            dest.send(delivery(bundle(patient_entry(gender=12))))
        assert "resource.gender" in str(caught.value)
        assert server.count() == {}


@pytest.mark.parametrize("status", [404, 409, 412, 422])
def test_other_refusals_are_permanent(tmp_path, status):
    with FhirTestServer() as server:
        server.inject(status=status, text=f"refused with {status}")
        with pytest.raises(PermanentDeliveryError, match=f"HTTP {status} — error processing: refused with {status}"):
            destination("fhir+" + server.base, tmp_path).send(delivery(bundle(patient_entry())))


def test_a_failed_entry_in_a_transaction_response_is_judged_by_its_status(tmp_path):
    failed = {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": "201 Created"}},
        {"response": {"status": "422 Unprocessable Entity", "outcome": {
            "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "required",
                                                           "diagnostics": "Encounter.subject is required"}]}}}]}
    with FhirTestServer() as server:
        dest = destination("fhir+" + server.base, tmp_path)
        server.inject(status=200, body=failed)
        with pytest.raises(PermanentDeliveryError, match="entry 1: 422 Unprocessable Entity — error required: "
                                                          "Encounter.subject is required"):
            dest.send(delivery(bundle(patient_entry())))
        failed["entry"][1]["response"] = {"status": "503 Service Unavailable"}
        server.inject(status=200, body=failed)
        with pytest.raises(TransientDeliveryError, match="entry 1: 503"):
            dest.send(delivery(bundle(patient_entry())))
        server.inject(status=200, body={"not": "a bundle"})
        with pytest.raises(TransientDeliveryError, match="without a response Bundle"):
            dest.send(delivery(bundle(patient_entry())))


def test_429_honours_retry_after_through_the_engine(tmp_path):
    with FhirTestServer() as server:
        server.inject(status=429, headers={"Retry-After": "7"}, text="slow down")
        engine = engine_to(tmp_path, "fhir+" + server.base)
        engine.submit("in", visit(1))
        before = time.time()
        engine.drain()
        row = only_row(engine)
        assert row.status == "pending" and "HTTP 429" in row.last_error
        assert row.next_attempt_at >= before + 7 - 0.5


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("120") == 120.0
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds(soon) <= 31
    assert retry_after_seconds("soon-ish") is None and retry_after_seconds(None) is None


def test_5xx_is_retried_and_then_delivered(tmp_path):
    with FhirTestServer() as server:
        server.inject(status=503, text="maintenance")
        # a backoff longer than a drain takes on a loaded machine (with 0.01 s, one drain retried too)
        engine = engine_to(tmp_path, "fhir+" + server.base,
                           retry={"max_attempts": 3, "initial_seconds": 1.0, "jitter": 0})
        engine.submit("in", visit(1))
        engine.drain()
        assert only_row(engine).status == "pending" and "HTTP 503" in only_row(engine).last_error
        time.sleep(1.1)  # past the backoff
        engine.drain()
        assert only_row(engine).status == "delivered"
        assert server.count() == {"Patient": 1, "Encounter": 1}


def test_a_server_slower_than_the_total_timeout_is_a_transient_failure(tmp_path):
    with FhirTestServer() as server:
        server.inject(delay=2.0, passthrough=True)
        dest = destination("fhir+" + server.base, tmp_path, timeout=0.3, connect_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError, match=r"timed out \(connect 0.3 s, total 0.3 s\)"):
            dest.send(delivery(bundle(patient_entry())))
        assert time.monotonic() - started < 1.5


def test_a_body_dripping_in_past_the_total_timeout_is_a_transient_failure(tmp_path):
    with FhirTestServer() as server:
        server.inject(status=200, drip=0.05)  # each byte well within the read timeout, the whole not
        dest = destination("fhir+" + server.base, tmp_path, timeout=0.4, connect_timeout=0.4)
        started = time.monotonic()
        with pytest.raises(TransientDeliveryError, match="timed out"):
            dest.send(delivery(bundle(patient_entry())))
        assert time.monotonic() - started < 1.5  # cut at ~0.4 s; the whole body would take seconds


def test_a_connection_reset_is_a_transient_failure_and_retried(tmp_path):
    with ResettingServer() as peer:
        engine = engine_to(tmp_path, f"fhir+http://127.0.0.1:{peer.port}/fhir")
        engine.submit("in", visit(1))
        engine.drain()
        row = only_row(engine)
        assert row.status == "pending" and "connection failed" in row.last_error
        assert peer.accepted >= 1


def test_a_refused_connection_is_a_transient_failure(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(TransientDeliveryError, match="connection failed"):
            destination(f"fhir+http://127.0.0.1:{port}/fhir", tmp_path).send(delivery(bundle(patient_entry())))


# --- 401: one fresh token, one retry --------------------------------------------------------------

TOKEN_URL = "https://auth.example.test/oauth2/token"


def basic_auth_options(monkeypatch) -> dict:
    monkeypatch.setenv("TEST_FHIR_SECRET", "s3cret-value")
    return {"auth": {"type": "client-secret-basic", "client_id": "bridge-client", "client_secret_env": "TEST_FHIR_SECRET",
                     "token_url": TOKEN_URL, "scope": "system/*.write"}}


def test_401_gets_one_fresh_token_and_one_retry(tmp_path, monkeypatch):
    with FhirTestServer() as server, responses.RequestsMock() as mock:
        mock.add_passthru(server.base)
        issued = iter(["stale-token-1", "fresh-token-2"])
        mock.add_callback(responses.POST, TOKEN_URL, callback=lambda request: (
            200, {}, json.dumps({"access_token": next(issued), "token_type": "bearer", "expires_in": 3600})))
        server.tokens = {"fresh-token-2"}
        engine = engine_to(tmp_path, "fhir+" + server.base, options=basic_auth_options(monkeypatch))
        engine.submit("in", visit(1))
        engine.drain()
        assert only_row(engine).status == "delivered", only_row(engine).last_error
        assert server.seen_authorization == ["Bearer stale-token-1", "Bearer fresh-token-2"]
        token_calls = [c for c in mock.calls if c.request.url == TOKEN_URL]
        assert len(token_calls) == 2
        assert token_calls[0].request.headers["Authorization"] == "Basic " + base64.b64encode(
            b"bridge-client:s3cret-value").decode()


def test_401_after_the_fresh_token_is_permanent_and_not_retried_again(tmp_path, monkeypatch):
    with FhirTestServer() as server, responses.RequestsMock() as mock:
        mock.add_passthru(server.base)
        mock.add(responses.POST, TOKEN_URL, json={"access_token": "never-accepted", "expires_in": 3600})
        server.tokens = set()
        engine = engine_to(tmp_path, "fhir+" + server.base, options=basic_auth_options(monkeypatch))
        engine.submit("in", visit(1))
        engine.drain()
        row = only_row(engine)
        assert row.status == "dead" and "HTTP 401" in row.last_error and "fresh token" in row.last_error
        assert len(server.log) == 2
        assert "never-accepted" not in row.last_error


# --- configuration --------------------------------------------------------------------------------


def test_configuration_mistakes_name_the_key(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"destinations.ehr.options.mode: unknown mode 'batchy'"):
        destination("fhir+http://127.0.0.1:9/fhir", tmp_path, mode="batchy")
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"options.auth.client_secret_env: environment variable 'NO_SUCH_SECRET'"):
        destination("fhir+http://127.0.0.1:9/fhir", tmp_path, auth={
            "type": "client-secret-basic", "client_id": "c", "client_secret_env": "NO_SUCH_SECRET", "token_url": "x"})
    with pytest.raises(ConfigError, match=r"options.auth.type: unknown auth type 'magic'"):
        destination("fhir+http://127.0.0.1:9/fhir", tmp_path, auth={"type": "magic"})

"""The inbound FHIR endpoint (``fhir+http://…`` source): real sockets on loopback, a real engine and store."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge import ConfigError, SourceContext
from bridge.errors import StoreError
from bridge.plugins.fhir.codec import FORMAT
from bridge.plugins.fhir.rest import FhirInbound
from bridge.plugins.bridge_format import decode as decode_bridge
from bridge.testing import engine_from_dict

from .helpers import net_plugins, visit

VISIT_BUNDLE = FORMAT.encode(decode_bridge(visit(1)), {})


@pytest.fixture
def inbound(tmp_path, monkeypatch):
    """Start an engine's FHIR inbound source; yields (engine, source, url)."""
    started = []

    def start(max_bytes: int = 100_000, **options):
        if "token_env" not in options:
            options["allow_unauthenticated"] = True  # loopback only; the auth tests set token_env
        config = {"channels": {"telemed": {"source": "fhir+http://127.0.0.1:0/fhir/r4", "format": "fhir",
                                           "options": options, "max_message_bytes": max_bytes,
                                           "routes": [{"to": ["out"]}]}},
                  "destinations": {"out": {"url": "file://outbox", "format": "fhir"}}}
        engine = engine_from_dict(config, tmp_path, net_plugins())
        engine.open_sources()
        (source,) = engine.sources
        source.start()
        started.append(source)
        return engine, source, f"http://127.0.0.1:{source.port}/fhir/r4"

    yield start
    for source in started:
        source.stop()


def issue(response) -> dict:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def test_a_bundle_is_answered_202_after_the_commit_and_then_processed(inbound):
    engine, source, url = inbound()
    assert source.port > 0
    answer = requests.post(url, data=VISIT_BUNDLE, headers={"Content-Type": "application/fhir+json"}, timeout=5)
    assert answer.status_code == 202
    message_id = answer.json()["message_id"]
    assert answer.headers["Content-Location"] == f"urn:telemed-bridge:message:{message_id}"
    assert engine.store.get_raw(message_id) == VISIT_BUNDLE  # committed before the answer
    assert engine.store.get_message(message_id).origin["path"] == "/fhir/r4"
    engine.open_destinations()
    engine.drain()
    assert engine.store.get_message(message_id).status == "delivered"


def test_a_single_resource_is_accepted_at_the_base_and_at_its_type_url(inbound):
    engine, _, url = inbound()
    patient = json.dumps({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN7"}]})
    assert requests.post(url, data=patient, timeout=5).status_code == 202
    assert requests.post(url + "/Patient", data=patient, timeout=5).status_code == 202
    wrong = requests.post(url + "/Encounter", data=patient, timeout=5)
    assert wrong.status_code == 400 and "does not match the URL" in issue(wrong)["diagnostics"]


@pytest.mark.parametrize("body, status, expected", [
    (b'{"resourceType": "Patient", ', 400, "not valid UTF-8 JSON"),
    (b'[1, 2]', 400, "no resourceType"),
    (b'{"resourceType": "Foo"}', 422, "unknown resourceType 'Foo'"),
    (b'{"resourceType": "Patient", "gender": 12}', 422, "Patient.gender: expected a string"),
])
def test_bad_input_gets_an_operation_outcome_and_is_kept(inbound, body, status, expected):
    engine, _, url = inbound()
    answer = requests.post(url, data=body, headers={"Content-Type": "application/fhir+json"}, timeout=5)
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith("application/fhir+json")
    assert expected in issue(answer)["diagnostics"]
    (kept,) = engine.store.search(status="failed")
    assert engine.store.get_raw(kept.id) == body and expected in (kept.error or "")


def test_an_oversized_body_is_refused_before_it_is_read(inbound):
    engine, source, _ = inbound(max_bytes=1000)
    with socket.create_connection(("127.0.0.1", source.port), timeout=5) as sock:
        sock.sendall(b"POST /fhir/r4 HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                     b"Content-Length: 50000000\r\n\r\n")  # headers only: the 50 MB never follow
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):  # the server answers and closes without waiting for the body
            received += chunk
        head = received.decode("latin-1")
    assert head.startswith("HTTP/1.1 413") and time.monotonic() - started < 2
    assert "over the limit of 1000 bytes" in head
    assert engine.store.search() == []


def test_an_oversized_chunked_body_is_refused_too(inbound):
    engine, _, url = inbound(max_bytes=1000)
    chunks = (b"x" * 400 for _ in range(5))  # no Content-Length: requests sends it chunked
    answer = requests.post(url, data=chunks, timeout=5)
    assert answer.status_code == 413 and engine.store.search() == []


def test_a_bearer_token_is_required_when_configured(inbound, monkeypatch):
    monkeypatch.setenv("TEST_INBOUND_TOKEN", "platform-token-123")
    engine, _, url = inbound(token_env="TEST_INBOUND_TOKEN")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic cGxhdGZvcm0="}):
        answer = requests.post(url, data=VISIT_BUNDLE, headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert issue(answer)["code"] == "login"
    assert engine.store.search() == []
    answer = requests.post(url, data=VISIT_BUNDLE, headers={"Authorization": "Bearer platform-token-123"}, timeout=5)
    assert answer.status_code == 202


def test_a_missing_token_variable_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    ctx = SourceContext(url="fhir+http://127.0.0.1:0/fhir/r4", channel="telemed", options={"token_env": "NO_SUCH_TOKEN"},
                        submit=lambda *a, **k: None, config_dir=str(tmp_path), max_message_bytes=1000,
                        format_name="fhir")
    with pytest.raises(ConfigError, match="channels.telemed.options.token_env: environment variable 'NO_SUCH_TOKEN'"):
        FhirInbound(ctx)


def test_a_resend_with_the_same_idempotency_key_is_a_duplicate(inbound):
    engine, _, url = inbound()
    first = requests.post(url, data=VISIT_BUNDLE, headers={"Idempotency-Key": "visit-1"}, timeout=5).json()
    again = requests.post(url, data=VISIT_BUNDLE, headers={"Idempotency-Key": "visit-1"}, timeout=5).json()
    assert first["duplicate"] is False and again == {"message_id": first["message_id"], "duplicate": True}
    assert len(engine.store.search()) == 1


def test_a_store_failure_is_answered_503_never_202(tmp_path):
    def failing_submit(raw, origin=None, error=None):
        raise StoreError("disk full")

    ctx = SourceContext(url="fhir+http://127.0.0.1:0/fhir/r4", channel="telemed",
                        options={"allow_unauthenticated": True}, submit=failing_submit,
                        config_dir=str(tmp_path), max_message_bytes=100_000, format_name="fhir",
                        decode=lambda raw: FORMAT.decode(raw, {}))
    source = FhirInbound(ctx)
    source.start()
    try:
        answer = requests.post(f"http://127.0.0.1:{source.port}/fhir/r4", data=VISIT_BUNDLE, timeout=5)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert issue(answer)["code"] == "transient"
        bad = requests.post(f"http://127.0.0.1:{source.port}/fhir/r4", data=b"{", timeout=5)
        assert bad.status_code == 503  # the refusal could not be kept either: say so, not 400
    finally:
        source.stop()


def test_other_methods_and_paths_are_refused_clearly(inbound):
    _, _, url = inbound()
    assert requests.get(url, timeout=5).status_code == 405
    assert requests.post(url.replace("/fhir/r4", "/other"), data=VISIT_BUNDLE, timeout=5).status_code == 404
    metadata = requests.get(url + "/metadata", timeout=5)
    assert metadata.status_code == 200 and metadata.json()["resourceType"] == "CapabilityStatement"


def test_tls_with_cert_and_key_files(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    config = {"channels": {"telemed": {"source": "fhir+https://127.0.0.1:0/fhir/r4", "format": "fhir",
                                       "options": {"cert_file": "server.pem", "key_file": "server.key",
                                                   "allow_unauthenticated": True},
                                       "routes": [{"to": ["out"]}]}},
              "destinations": {"out": {"url": "file://outbox", "format": "fhir"}}}
    engine = engine_from_dict(config, tmp_path, net_plugins())
    engine.open_sources()
    (source,) = engine.sources
    source.start()
    try:
        url = f"https://127.0.0.1:{source.port}/fhir/r4"
        answer = requests.post(url, data=VISIT_BUNDLE, verify=str(tmp_path / "server.pem"), timeout=5)
        assert answer.status_code == 202
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(url, data=VISIT_BUNDLE, timeout=5)  # not trusted by default
    finally:
        source.stop()


def test_an_endpoint_without_a_token_must_be_loopback_and_say_so(tmp_path):
    from bridge import ConfigError

    def ctx(url, **options):
        return SourceContext(url=url, channel="telemed", options=options, submit=lambda *a, **k: None,
                             config_dir=str(tmp_path), max_message_bytes=1000, format_name="fhir")

    with pytest.raises(ConfigError, match="needs a bearer token"):
        FhirInbound(ctx("fhir+http://127.0.0.1:0/fhir/r4"))
    with pytest.raises(ConfigError, match="needs a bearer token"):
        FhirInbound(ctx("fhir+http://0.0.0.0:0/fhir/r4", allow_unauthenticated=True))
    assert FhirInbound(ctx("fhir+http://127.0.0.1:0/fhir/r4", allow_unauthenticated=True)).expected_token is None

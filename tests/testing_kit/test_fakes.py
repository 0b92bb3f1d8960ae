"""The kit's fakes behave like the peers they stand for, checked with independent clients
(raw sockets, requests, PyJWT) rather than with the product's own MLLP or OAuth code."""

from __future__ import annotations

import base64
import socket
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bridge.testing import FakeFhirServer, FakeMllpPeer, FakeTokenEndpoint
from bridge.testing.fakes.mllp_peer import build_ack, msh_fields

SB, EB = b"\x0b", b"\x1c\x0d"


def adt(control_id: str) -> bytes:
    return (f"MSH|^~\\&|APP|FAC|RECV|RFAC|20240102030405||ADT^A04^ADT_A01|{control_id}|P|2.5\r"
            "PID|1||P1^^^TB^MR\r").encode()


def exchange(conn: socket.socket, message: bytes) -> bytes:
    conn.sendall(SB + message + EB)
    answer = b""
    while EB not in answer:
        chunk = conn.recv(4096)
        if not chunk:
            return answer
        answer += chunk
    return answer


def msa(answer: bytes) -> list[str]:
    segment = next(s for s in answer.strip(SB + EB).split(b"\r") if s.startswith(b"MSA"))
    return segment.decode().split("|")


# --- MLLP peer -------------------------------------------------------------------------------------


def test_mllp_peer_answers_as_scripted_and_records_everything():
    with FakeMllpPeer(answers=["AE", "AR"], text="try later") as peer:
        with socket.create_connection(("127.0.0.1", peer.port), timeout=3) as conn:
            codes = [msa(exchange(conn, adt(f"C{n}")))[1:3] for n in range(3)]
        assert codes == [["AE", "C0"], ["AR", "C1"], ["AA", "C2"]]
        assert peer.received == [adt("C0"), adt("C1"), adt("C2")]
        assert peer.accepted() == [adt("C2")] and peer.effects() == 1


def test_mllp_peer_counts_a_resent_control_id_once():
    with FakeMllpPeer() as peer:
        with socket.create_connection(("127.0.0.1", peer.port), timeout=3) as conn:
            exchange(conn, adt("SAME"))
            exchange(conn, adt("SAME"))
        assert len(peer.received) == 2 and peer.effects() == 1


def test_mllp_peer_close_and_silent_behaviours():
    with FakeMllpPeer(answers=["close", "silent"]) as peer:
        with socket.create_connection(("127.0.0.1", peer.port), timeout=3) as conn:
            assert exchange(conn, adt("X1")) == b""  # closed without an answer
        with socket.create_connection(("127.0.0.1", peer.port), timeout=0.3) as conn:
            with pytest.raises(socket.timeout):
                exchange(conn, adt("X2"))
        assert peer.connections == 2


def test_mllp_peer_rejects_unknown_behaviours():
    with pytest.raises(ValueError, match="unknown MLLP peer behaviour 'OK'"):
        FakeMllpPeer(answers=["OK"])


def test_ack_swaps_sender_and_receiver():
    fields = msh_fields(build_ack(adt("C9"), "AA"))
    assert fields[3:7] == ["RECV", "RFAC", "APP", "FAC"] and fields[9] == "ACK^A04^ACK"


# --- token endpoint --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def assertion(endpoint: FakeTokenEndpoint, key, alg: str = "RS384", **claims) -> str:
    now = int(time.time())
    body = {"iss": endpoint.client_id, "sub": endpoint.client_id, "aud": endpoint.token_url,
            "jti": uuid.uuid4().hex, "iat": now, "exp": now + 240, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": "k1"})


def ask(endpoint: FakeTokenEndpoint, token: str) -> requests.Response:
    form = {"grant_type": "client_credentials", "scope": "system/*.read",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": token}
    return requests.post(endpoint.token_url, data=form, timeout=5)


def test_token_endpoint_issues_for_a_valid_rs384_assertion_and_refuses_a_replay(rsa_key):
    with FakeTokenEndpoint(client_id="backend", public_key=rsa_key.public_key(), kid="k1") as endpoint:
        token = assertion(endpoint, rsa_key)
        first = ask(endpoint, token)
        assert first.status_code == 200 and first.json()["access_token"] in endpoint.issued
        assert first.json()["scope"] == "system/*.read"
        replay = ask(endpoint, token)
        assert replay.status_code == 400 and "replayed" in replay.json()["error_description"]


def test_token_endpoint_verifies_es384_signatures():
    key = ec.generate_private_key(ec.SECP384R1())
    with FakeTokenEndpoint(client_id="backend", public_key=key.public_key()) as endpoint:
        assert ask(endpoint, assertion(endpoint, key, "ES384")).status_code == 200
        other = ec.generate_private_key(ec.SECP384R1())
        refused = ask(endpoint, assertion(endpoint, other, "ES384"))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
        assert "signature" in refused.json()["error_description"]


@pytest.mark.parametrize("claims, problem", [
    ({"aud": "https://elsewhere.example/token"}, "aud must be the token URL"),
    ({"exp": int(time.time()) - 10}, "expired"),
    ({"exp": int(time.time()) + 3600}, "more than five minutes"),
    ({"iss": "someone-else"}, "iss and sub"),
])
def test_token_endpoint_checks_claims(rsa_key, claims, problem):
    with FakeTokenEndpoint(client_id="backend", public_key=rsa_key) as endpoint:
        refused = ask(endpoint, assertion(endpoint, rsa_key, **claims))
        assert refused.status_code == 400 and problem in refused.json()["error_description"]
        assert not endpoint.issued


def test_token_endpoint_refuses_an_algorithm_it_does_not_allow(rsa_key):
    with FakeTokenEndpoint(client_id="backend", public_key=rsa_key, algorithms=("ES384",)) as endpoint:
        refused = ask(endpoint, assertion(endpoint, rsa_key, "RS384"))
        assert "not allowed" in refused.json()["error_description"]


def test_token_endpoint_client_secret_basic():
    with FakeTokenEndpoint(client_id="practice app", client_secret="s3cr:et") as endpoint:
        good = base64.b64encode(b"practice+app:s3cr%3Aet").decode()  # RFC 6749 2.3.1: form-urlencoded
        answer = requests.post(endpoint.token_url, data={"grant_type": "client_credentials"},
                               headers={"Authorization": f"Basic {good}"}, timeout=5)
        assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
        wrong = requests.post(endpoint.token_url, data={"grant_type": "client_credentials"},
                              auth=("practice app", "nope"), timeout=5)
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
        grant = requests.post(endpoint.token_url, data={"grant_type": "password"}, auth=("x", "y"), timeout=5)
        assert grant.json()["error"] == "unsupported_grant_type"


def test_tokens_shared_with_the_fhir_server_gate_its_requests():
    with FakeTokenEndpoint(client_id="c", client_secret="s") as endpoint, FakeFhirServer(validate=False) as fhir:
        fhir.tokens = endpoint.issued
        token = requests.post(endpoint.token_url, data={"grant_type": "client_credentials"}, auth=("c", "s"),
                              timeout=5).json()["access_token"]
        url = f"{fhir.base}/Patient/1"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 404
        endpoint.revoke_all()
        assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 401


# --- FHIR server and HTTP base ---------------------------------------------------------------------


def test_fhir_server_validates_with_the_r4b_models_and_can_skip_it():
    bad = {"resourceType": "Patient", "birthDate": "not a date"}
    with FakeFhirServer() as strict, FakeFhirServer(validate=False) as loose:
        headers = {"Content-Type": "application/fhir+json"}
        refused = requests.post(f"{strict.base}/Patient", json=bad, headers=headers, timeout=5)
        assert refused.status_code == 422 and refused.json()["resourceType"] == "OperationOutcome"
        assert requests.post(f"{loose.base}/Patient", json=bad, headers=headers, timeout=5).status_code == 201


def test_injections_are_one_shot_and_logged():
    with FakeFhirServer(validate=False) as fhir:
        fhir.inject(status=429, headers={"Retry-After": "7"}, text="slow down")
        first = requests.get(f"{fhir.base}/Patient/1", timeout=5)
        assert first.status_code == 429 and first.headers["Retry-After"] == "7"
        assert first.json()["issue"][0]["diagnostics"] == "slow down"
        assert requests.get(f"{fhir.base}/Patient/1", timeout=5).status_code == 404
        assert [r.method for r in fhir.requests] == ["GET", "GET"] and len(fhir.log) == 2

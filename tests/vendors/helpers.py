"""Shared helpers for the vendor plugin tests: HL7v2 messages, keys, token endpoints, engines, fixtures.

The HL7v2 messages are synthetic (no real person): a video visit (ADT^A04 then ADT^A03, with our
ZTH telehealth segment and a heart-rate OBX) and the prescription written during it (RDE^O11).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import bridge.plugins.athena
import bridge.plugins.epic
import bridge.plugins.oracle_health
from bridge.plugins.fhir.auth import ASSERTION_TYPE
from bridge.testing import engine_from_dict, plugin_manager

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vendors"
MRN = "E1234567"
VISIT = "V20260301"
NPI = "1234567893"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


# --- HL7v2 ------------------------------------------------------------------------------------------


def segment(name: str, fields: dict[int, str]) -> str:
    values = [""] * (max(fields) + 1)
    for index, value in fields.items():
        values[index] = value
    values[0] = name
    return "|".join(values)


def pv1(discharge: str | None = None) -> str:
    fields = {1: "1", 2: "O", 7: f"{NPI}^CARE^CASEY^^^^^^NPI^^^^NPI", 19: f"{VISIT}^^^HOSP^VN",
              44: "20260301100000-0500"}
    if discharge:
        fields[45] = discharge
    return segment("PV1", fields)


def adt(event: str, control_id: str) -> bytes:
    structure = "ADT_A03" if event == "A03" else "ADT_A01"
    lines = [
        f"MSH|^~\\&|TELEMED|VCLINIC|EHR|HOSP|20260301103100-0500||ADT^{event}^{structure}|{control_id}|P|2.5",
        f"EVN|{event}|20260301103100-0500",
        f"PID|1||{MRN}^^^HOSP^MR||PATIENT^TEST||19800215|F|||1 Main St^^Austin^TX^78701^US^H",
        pv1("20260301103000-0500" if event == "A03" else None),
        "PV2|||R05^Cough^I10",
        "ZTH|1|VIDEO|TX|US|Y|TX|Y|patient-reported",
        "OBX|1|NM|8867-4^Heart rate^LN||72|/min^per minute^UCUM|||||F|||20260301101000-0500",
    ]
    return ("\r".join(lines) + "\r").encode()


def rde(control_id: str = "TM0003") -> bytes:
    lines = [
        f"MSH|^~\\&|TELEMED|VCLINIC|EHR|HOSP|20260301102500-0500||RDE^O11^RDE_O11|{control_id}|P|2.5",
        f"PID|1||{MRN}^^^HOSP^MR||PATIENT^TEST||19800215|F",
        pv1(),
        f"ORC|NW|RX-77^TELEMED|||||||20260301102000-0500|||{NPI}^CARE^CASEY^^^^^^NPI^^^^NPI",
        "RXE|^^^20260301&20260310|308182^Amoxicillin 500 MG Oral Capsule^RXNORM|0||||"
        "Take 1 capsule by mouth three times daily for 10 days|||30|C48480^capsule^NCI|0",
        "TQ1|1",
        "RXR|PO",
    ]
    return ("\r".join(lines) + "\r").encode()


# --- keys and token endpoints -----------------------------------------------------------------------


def pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="session")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key():
    return ec.generate_private_key(ec.SECP384R1())


def write_key(folder: Path, key, name: str = "backend.pem") -> str:
    (folder / "keys").mkdir(exist_ok=True)
    (folder / "keys" / name).write_text(pem(key))
    return f"keys/{name}"


class JwtTokenEndpoint:
    """A token endpoint that verifies each SMART client assertion with PyJWT, as the vendor would."""

    def __init__(self, url: str, public_key, alg: str, client_id: str, kid: str, token: str = "vendor-token"):
        self.url, self.public_key, self.alg, self.client_id, self.kid = url, public_key, alg, client_id, kid
        self.token = token
        self.forms: list[dict[str, str]] = []
        self.claims: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []

    def __call__(self, request):
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        self.forms.append(form)
        assert form["grant_type"] == "client_credentials" and form["client_assertion_type"] == ASSERTION_TYPE
        self.headers.append(jwt.get_unverified_header(form["client_assertion"]))
        claims = jwt.decode(form["client_assertion"], self.public_key, algorithms=[self.alg], audience=self.url,
                            issuer=self.client_id, options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]})
        self.claims.append(claims)
        return 200, {}, json.dumps({"access_token": self.token, "token_type": "bearer", "expires_in": 3600,
                                    "scope": form.get("scope")})

    def assert_valid_assertion(self) -> None:
        (header,), (claims,) = self.headers, self.claims
        assert header == {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        assert claims["iss"] == claims["sub"] == self.client_id and claims["aud"] == self.url
        assert 0 < claims["exp"] - claims["iat"] <= 300 and len(claims["jti"]) >= 16


# --- engines and recorded calls ----------------------------------------------------------------------


def vendor_plugins():
    """Built-ins plus the three vendor plugins (a no-op once they are built in), policy gate off:
    these prescriptions carry no EPCS context, and these tests are about the vendors."""
    return plugin_manager(("epic", bridge.plugins.epic), ("oracle_health", bridge.plugins.oracle_health),
                          ("athena", bridge.plugins.athena), disabled=("telehealth_policy",))


def vendor_engine(tmp_path: Path, profile: str, options: dict[str, Any], max_attempts: int = 3):
    config = {
        "channels": {"telemed": {"source": "file://inbox", "format": "hl7v2", "routes": [{"to": ["ehr"]}]}},
        "destinations": {"ehr": {"profile": profile, "options": options,
                                 "retry": {"max_attempts": max_attempts, "initial_seconds": 0.01}}},
    }
    engine = engine_from_dict(config, tmp_path, vendor_plugins())
    engine.open_destinations()
    return engine


def deliver(engine, raw: bytes):
    """Submit one message over the channel, run it to the end; return its outbox row."""
    receipt = engine.submit("telemed", raw, {"file": "test.hl7"})
    engine.drain()
    (row,) = engine.store.outbox_rows(message_id=receipt.message_id)
    return row


def calls(mock: responses.RequestsMock, since: int = 0) -> list[tuple[str, str]]:
    """(method, path?query) of each recorded call, in order."""
    out = []
    for call in mock.calls[since:]:
        parts = urlsplit(call.request.url)
        out.append((call.request.method, parts.path + (f"?{parts.query}" if parts.query else "")))
    return out


def body_json(call) -> Any:
    body = call.request.body
    return json.loads(body.decode() if isinstance(body, bytes) else body)


def form_of(call) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else body
    parsed = parse_qs(text, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), "a form field was sent twice"
    return {k: v[0] for k, v in parsed.items()}

"""SMART Backend Services and client-secret basic: real signing, verified independently with PyJWT."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bridge import ConfigError, PermanentDeliveryError, TransientDeliveryError
from bridge.plugins.fhir.auth import (
    ASSERTION_TYPE,
    HttpSettings,
    TokenProvider,
    public_jwk,
    sign_jwt,
    token_provider_from_options,
)

from .fhir_server import FhirTestServer
from .helpers import engine_to, only_row, visit

BASE = "https://ehr.example.test/fhir/r4"
TOKEN_URL = "https://ehr.example.test/oauth2/token"


def pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP384R1())


class TokenEndpoint:
    """A token endpoint (faked with ``responses``) that verifies each client assertion like a real one."""

    def __init__(self, public_key, alg: str, client_id: str = "bridge-backend", kid: str = "key-2026"):
        self.public_key, self.alg, self.client_id, self.kid = public_key, alg, client_id, kid
        self.forms: list[dict[str, str]] = []
        self.claims: list[dict] = []
        self.issued = 0

    def __call__(self, request):
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        self.forms.append(form)
        header = jwt.get_unverified_header(form["client_assertion"])
        assert header["alg"] == self.alg and header["kid"] == self.kid
        claims = jwt.decode(form["client_assertion"], self.public_key, algorithms=[self.alg], audience=TOKEN_URL,
                            issuer=self.client_id, options={"require": ["exp", "jti", "sub", "iss", "aud"]})
        self.claims.append(claims)
        self.issued += 1
        return 200, {}, json.dumps({"access_token": f"access-{self.issued}", "token_type": "bearer",
                                    "expires_in": 300, "scope": form.get("scope")})


def smart_options(tmp_path, key, alg: str, **extra) -> dict:
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys" / "backend.pem").write_text(pem(key))
    return {"type": "smart-backend", "client_id": "bridge-backend", "kid": "key-2026", "alg": alg,
            "key_file": "keys/backend.pem", "scope": "system/Patient.write system/Encounter.write", **extra}


def provider(tmp_path, auth: dict, base: str = BASE) -> TokenProvider:
    return token_provider_from_options(auth, base=base, config_dir=str(tmp_path),
                                       http=HttpSettings(requests.Session(), 2, 5))


def test_smart_rs384_discovers_the_token_url_and_signs_a_valid_assertion(tmp_path, rsa_key):
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384")
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/.well-known/smart-configuration",
                 json={"token_endpoint": TOKEN_URL, "token_endpoint_auth_methods_supported": ["private_key_jwt"]})
        mock.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
        tokens = provider(tmp_path, smart_options(tmp_path, rsa_key, "RS384"))
        before = time.time()
        assert tokens.token() == "access-1"
        assert tokens.token() == "access-1"  # cached: no second request
        assert len(mock.calls) == 2  # discovery + one token request
        tokens.invalidate()
        assert tokens.token() == "access-2"
        assert len(mock.calls) == 3  # discovery is not repeated
    form, claims = endpoint.forms[0], endpoint.claims[0]
    assert form["grant_type"] == "client_credentials" and form["client_assertion_type"] == ASSERTION_TYPE
    assert form["scope"] == "system/Patient.write system/Encounter.write"
    assert claims["iss"] == claims["sub"] == "bridge-backend" and claims["aud"] == TOKEN_URL
    assert claims["exp"] <= before + 300 + 1 and claims["exp"] > before
    assert endpoint.claims[0]["jti"] != endpoint.claims[1]["jti"]


def test_smart_es384_with_a_configured_token_url_and_key_from_the_environment(tmp_path, ec_key, monkeypatch):
    endpoint = TokenEndpoint(ec_key.public_key(), "ES384")
    monkeypatch.setenv("TEST_BACKEND_KEY", pem(ec_key))
    auth = {"type": "smart-backend", "client_id": "bridge-backend", "kid": "key-2026", "alg": "ES384",
            "key_env": "TEST_BACKEND_KEY", "token_url": TOKEN_URL, "scope": ["system/*.read"]}
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
        assert provider(tmp_path, auth).token() == "access-1"
        assert [c.request.url for c in mock.calls] == [TOKEN_URL]  # no discovery
    assert endpoint.forms[0]["scope"] == "system/*.read"


def test_tokens_are_renewed_shortly_before_expiry_and_fetched_once_under_contention(tmp_path, rsa_key):
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384")
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
        tokens = provider(tmp_path, smart_options(tmp_path, rsa_key, "RS384", token_url=TOKEN_URL))
        now = [1000.0]
        tokens._clock = lambda: now[0]  # expires_in 300 → renewed 60 s early, at 1240
        barrier = threading.Barrier(8)
        seen = []

        def worker():
            barrier.wait()
            seen.append(tokens.token())

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == ["access-1"] * 8 and endpoint.issued == 1
        now[0] = 1239.0
        assert tokens.token() == "access-1"
        now[0] = 1241.0
        assert tokens.token() == "access-2"


def test_smart_assertion_against_a_real_fhir_server_through_the_engine(tmp_path, rsa_key):
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384")
    with FhirTestServer() as server, responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{server.base}/.well-known/smart-configuration", json={"token_endpoint": TOKEN_URL})
        mock.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
        mock.add_passthru(server.base)
        server.tokens = {"access-1"}
        engine = engine_to(tmp_path, "fhir+" + server.base,
                           options={"auth": smart_options(tmp_path, rsa_key, "RS384")})
        engine.submit("in", visit(1))
        engine.drain()
        assert only_row(engine).status == "delivered", only_row(engine).last_error
        assert server.seen_authorization == ["Bearer access-1"]
        assert server.count() == {"Patient": 1, "Encounter": 1}


def test_client_secret_basic_reads_the_secret_file_relative_to_the_config_folder(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "client").write_text("file-secret\n")
    auth = {"type": "client-secret-basic", "client_id": "oracle-client", "client_secret_file": "secrets/client",
            "token_url": TOKEN_URL, "scope": "system/Encounter.write"}
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, TOKEN_URL, json={"access_token": "basic-token", "expires_in": 600})
        assert provider(tmp_path, auth).token() == "basic-token"
        request = mock.calls[0].request
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"oracle-client:file-secret").decode()
    assert parse_qs(request.body) == {"grant_type": ["client_credentials"], "scope": ["system/Encounter.write"]}


def test_token_endpoint_refusals_and_outages_are_judged_and_never_leak_secrets(tmp_path, rsa_key, caplog):
    caplog.set_level(logging.DEBUG)
    auth = smart_options(tmp_path, rsa_key, "RS384", token_url=TOKEN_URL)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, TOKEN_URL, status=400,
                 json={"error": "invalid_client", "error_description": "unknown kid"})
        with pytest.raises(PermanentDeliveryError, match="HTTP 400 \\(invalid_client unknown kid\\)"):
            provider(tmp_path, auth).token()
        mock.replace(responses.POST, TOKEN_URL, status=503)
        with pytest.raises(TransientDeliveryError, match="answered HTTP 503"):
            provider(tmp_path, auth).token()
        mock.replace(responses.POST, TOKEN_URL, body=requests.ConnectionError("reset"))
        with pytest.raises(TransientDeliveryError, match="ConnectionError"):
            provider(tmp_path, auth).token()
        mock.replace(responses.POST, TOKEN_URL, json={"access_token": "very-secret-token-value", "expires_in": 60})
        assert provider(tmp_path, auth).token() == "very-secret-token-value"
        assertion = parse_qs(mock.calls[-1].request.body)["client_assertion"][0]
    assert "very-secret-token-value" not in caplog.text
    assert assertion not in caplog.text and "BEGIN PRIVATE KEY" not in caplog.text


def test_discovery_without_a_token_endpoint_says_to_configure_it(tmp_path, rsa_key):
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/.well-known/smart-configuration", json={"issuer": "x"})
        with pytest.raises(PermanentDeliveryError, match="gave no token_endpoint; set auth.token_url"):
            provider(tmp_path, smart_options(tmp_path, rsa_key, "RS384")).token()


def test_key_and_algorithm_mistakes_are_config_errors(tmp_path, rsa_key, ec_key):
    with pytest.raises(ConfigError, match="alg ES384 needs an EC private key on curve P-384"):
        provider(tmp_path, smart_options(tmp_path, rsa_key, "ES384"))
    with pytest.raises(ConfigError, match="alg RS384 needs an RSA private key"):
        provider(tmp_path, smart_options(tmp_path, ec_key, "RS384"))
    with pytest.raises(ConfigError, match="unsupported alg 'HS256'"):
        provider(tmp_path, smart_options(tmp_path, rsa_key, "HS256"))
    auth = smart_options(tmp_path, rsa_key, "RS384")
    (tmp_path / "keys" / "backend.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="options.auth.key_file: not an unencrypted PEM private key"):
        provider(tmp_path, auth)
    auth["key_file"] = "keys/missing.pem"
    with pytest.raises(ConfigError, match="options.auth.key_file: cannot read"):
        provider(tmp_path, auth)
    with pytest.raises(ConfigError, match="options.auth.kid: is required"):
        provider(tmp_path, {k: v for k, v in smart_options(tmp_path, rsa_key, "RS384").items() if k != "kid"})


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_the_published_jwk_verifies_what_the_key_signs(alg, rsa_key, ec_key):
    key = rsa_key if alg == "RS384" else ec_key
    jwk = public_jwk(key, "key-2026", alg)
    token = sign_jwt({"alg": alg, "typ": "JWT", "kid": "key-2026"}, {"iss": "me", "exp": int(time.time()) + 60}, key)
    verifier = jwt.PyJWK(jwk)
    assert jwt.decode(token, verifier.key, algorithms=[alg])["iss"] == "me"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS384" else \
        ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(sign_jwt({"alg": alg, "kid": "key-2026"}, {"iss": "me"}, other), verifier.key, algorithms=[alg])

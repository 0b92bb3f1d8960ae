"""A fake OAuth2 token endpoint on loopback that checks client authentication like a real one.

Two client authentications, both for the ``client_credentials`` grant:

- ``private_key_jwt`` (SMART Backend Services, RFC 7523): the form's ``client_assertion`` is a JWT the
  endpoint verifies with the public key it was given — signature (RS256/384/512, ES256/384/512),
  ``kid`` when one is configured, ``iss`` = ``sub`` = client id, ``aud`` = the token URL, ``exp`` in the
  future and at most five minutes ahead, a ``jti`` never seen before (a replay is refused);
- ``client_secret_basic`` (RFC 6749 §2.3.1): ``Authorization: Basic`` with the form-urlencoded client
  id and secret.

Failures answer as RFC 6749 §5.2 says (``400``/``401`` with ``error`` and ``error_description``).
Every token issued is added to :attr:`FakeTokenEndpoint.issued`; hand that set to
``FakeFhirServer.tokens`` (or a vendor fake) so the resource server accepts exactly those tokens.
Verification uses ``cryptography`` only, independently of the product's signing code.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from werkzeug.wrappers import Request, Response

from .http import FakeHttpServer, Injection

TOKEN_PATH = "/oauth2/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


class TokenRefused(Exception):
    """An RFC 6749 error answer: status, ``error`` code and a description saying what was wrong."""

    def __init__(self, status: int, error: str, description: str):
        self.status, self.error, self.description = status, error, description
        super().__init__(description)


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused(400, "invalid_client", "client_assertion is not base64url") from None


def load_public_key(key: Any) -> Any:
    """A cryptography public key from a key object, a private key (its public half) or PEM text."""
    if isinstance(key, (str, bytes)):
        return serialization.load_pem_public_key(key.encode() if isinstance(key, str) else key)
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return key.public_key()
    return key


def verify_signature(public_key: Any, alg: str, signing_input: bytes, signature: bytes) -> None:
    """Check a JWS signature; TokenRefused when the algorithm is unsupported or the signature wrong."""
    family, bits = alg[:2], alg[2:]
    if bits not in HASHES or family not in ("RS", "ES"):
        raise TokenRefused(400, "invalid_client", f"unsupported JWT alg {alg!r}")
    digest = HASHES[bits]()
    try:
        if family == "RS" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signing_input, padding.PKCS1v15(), digest)
        elif family == "ES" and isinstance(public_key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
            public_key.verify(der, signing_input, ec.ECDSA(digest))
        else:
            raise TokenRefused(400, "invalid_client", f"JWT alg {alg} does not match the registered key")
    except InvalidSignature:
        raise TokenRefused(400, "invalid_client", "client_assertion signature does not verify") from None


class FakeTokenEndpoint(FakeHttpServer):
    """``with FakeTokenEndpoint(client_id=…, public_key=…) as tokens:`` — ``tokens.token_url``."""

    def __init__(self, *, client_id: str = "bridge-test", public_key: Any = None, kid: str | None = None,
                 algorithms: Iterable[str] = ("RS384", "ES384"), client_secret: str | None = None,
                 expires_in: int = 300, scope: str | None = None):
        super().__init__()
        self.client_id = client_id
        self.public_key = load_public_key(public_key) if public_key is not None else None
        self.kid = kid
        self.algorithms = tuple(algorithms)
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.required_scope = scope
        self.issued: set[str] = set()
        self.claims: list[dict[str, Any]] = []
        self.forms: list[dict[str, str]] = []
        self.refusals: list[str] = []
        self._seen_jti: set[str] = set()

    @property
    def token_url(self) -> str:
        return f"{self.url}{TOKEN_PATH}"

    def revoke_all(self) -> None:
        """Forget every token issued (the resource server sharing :attr:`issued` then answers 401)."""
        with self.lock:
            self.issued.clear()

    # -- HTTP --

    def scripted_body(self, injection: Injection) -> Any:
        return {"error": "temporarily_unavailable", "error_description": injection.text or "scripted failure"}

    def answer(self, request: Request) -> Response:
        try:
            if request.path != TOKEN_PATH or request.method != "POST":
                raise TokenRefused(404, "invalid_request", f"no token endpoint at {request.method} {request.path}")
            form = {k: v for k, v in request.form.items()}
            with self.lock:
                self.forms.append(form)
            self.check_grant(form)
            self.authenticate(request, form)
            return self.issue(form)
        except TokenRefused as refused:
            with self.lock:
                self.refusals.append(refused.description)
            headers = {"WWW-Authenticate": 'Basic realm="token"'} if refused.status == 401 else {}
            return self.json(refused.status, {"error": refused.error, "error_description": refused.description},
                             headers)

    def check_grant(self, form: dict[str, str]) -> None:
        if form.get("grant_type") != "client_credentials":
            raise TokenRefused(400, "unsupported_grant_type",
                               f"grant_type must be client_credentials, got {form.get('grant_type')!r}")
        if self.required_scope and form.get("scope") != self.required_scope:
            raise TokenRefused(400, "invalid_scope", f"scope {form.get('scope')!r} is not {self.required_scope!r}")

    def authenticate(self, request: Request, form: dict[str, str]) -> None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            return self.check_basic(header[6:])
        if "client_assertion" in form:
            return self.check_assertion(form)
        raise TokenRefused(401, "invalid_client", "no client authentication (Basic header or client_assertion)")

    def check_basic(self, encoded: str) -> None:
        if self.client_secret is None:
            raise TokenRefused(401, "invalid_client", "client_secret_basic is not enabled for this client")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            raise TokenRefused(401, "invalid_client", "Basic credentials are not base64 of id:secret") from None
        if unquote_plus(user) != self.client_id or not secrets.compare_digest(unquote_plus(password),
                                                                              self.client_secret):
            raise TokenRefused(401, "invalid_client", "client id or secret is wrong")

    def check_assertion(self, form: dict[str, str]) -> None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenRefused(400, "invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
        if self.public_key is None:
            raise TokenRefused(400, "invalid_client", "private_key_jwt is not enabled (no public key registered)")
        parts = form["client_assertion"].split(".")
        if len(parts) != 3:
            raise TokenRefused(400, "invalid_client", "client_assertion is not a compact JWS")
        header, claims = (self._json_part(p, name) for p, name in zip(parts[:2], ("header", "claims")))
        alg = header.get("alg", "")
        if alg not in self.algorithms:
            raise TokenRefused(400, "invalid_client", f"JWT alg {alg!r} is not allowed ({', '.join(self.algorithms)})")
        if self.kid is not None and header.get("kid") != self.kid:
            raise TokenRefused(400, "invalid_client", f"JWT kid {header.get('kid')!r} is not {self.kid!r}")
        verify_signature(self.public_key, alg, f"{parts[0]}.{parts[1]}".encode(), _b64decode(parts[2]))
        self.check_claims(claims)
        with self.lock:
            self.claims.append(claims)

    def _json_part(self, part: str, name: str) -> dict[str, Any]:
        try:
            value = json.loads(_b64decode(part))
        except ValueError:
            raise TokenRefused(400, "invalid_client", f"client_assertion {name} is not JSON") from None
        if not isinstance(value, dict):
            raise TokenRefused(400, "invalid_client", f"client_assertion {name} is not a JSON object")
        return value

    def check_claims(self, claims: dict[str, Any]) -> None:
        now = time.time()
        for name in ("iss", "sub", "aud", "exp", "jti"):
            if name not in claims:
                raise TokenRefused(400, "invalid_client", f"client_assertion lacks the {name!r} claim")
        if claims["iss"] != self.client_id or claims["sub"] != self.client_id:
            raise TokenRefused(400, "invalid_client", "iss and sub must both be the client id")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if self.token_url not in audiences:
            raise TokenRefused(400, "invalid_client", f"aud must be the token URL {self.token_url}")
        if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now:
            raise TokenRefused(400, "invalid_client", "client_assertion has expired")
        if claims["exp"] > now + MAX_ASSERTION_LIFETIME + 5:
            raise TokenRefused(400, "invalid_client", "exp is more than five minutes ahead")
        with self.lock:
            if claims["jti"] in self._seen_jti:
                raise TokenRefused(400, "invalid_client", "jti was already used (a replayed assertion)")
            self._seen_jti.add(claims["jti"])

    def issue(self, form: dict[str, str]) -> Response:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.issued.add(token)
        body: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}
        if form.get("scope"):
            body["scope"] = form["scope"]
        return self.json(200, body, {"Cache-Control": "no-store"})

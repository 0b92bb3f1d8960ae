"""OAuth 2.0 client-credentials tokens for FHIR servers: SMART Backend Services and client-secret basic.

Why a class of its own: every EHR integration (this plugin's REST destination and poller, and the
vendor plugins for Epic, Oracle Health and athenahealth) needs the same three things — get a token,
keep it until shortly before it expires, and drop it when the server answers 401. ``TokenProvider``
is that contract: ``token()`` returns a usable access token (fetching one when needed, thread-safe)
and ``invalidate()`` forgets it so the next ``token()`` fetches a fresh one.

SMART Backend Services (``private_key_jwt``): we sign a short-lived JWT (``iss`` = ``sub`` = client
id, ``aud`` = token URL, unique ``jti``, ``exp`` at most five minutes ahead, ``kid`` in the header)
with RS384 or ES384 and POST it as ``client_assertion``. Signing uses ``cryptography`` directly: the
JWS compact form is a few lines, and it avoids a second crypto dependency.

Tokens, secrets and keys are never logged and never put in error messages.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bridge import ConfigError, PermanentDeliveryError, TransientDeliveryError
from bridge.bounded_http import AnswerTooLarge, BoundedAnswer, request_within

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTH_TYPES = ("none", "bearer", "smart-backend", "client-secret-basic")
ALGORITHMS = ("RS384", "ES384")
ASSERTION_LIFETIME = 300
"""Seconds an assertion is valid: SMART allows at most five minutes."""
REFRESH_MARGIN = 60.0
"""A cached token is replaced this many seconds before it expires (or at half its life if shorter)."""
DEFAULT_EXPIRES_IN = 300.0
"""Assumed lifetime when a token response carries no ``expires_in``."""
MAX_AUTH_ANSWER_BYTES = 1024 * 1024
"""A SMART configuration or token answer is a small JSON document: more is refused unread."""


# --- the contract ---------------------------------------------------------------------------------


class TokenProvider:
    """Gives an access token for an ``Authorization: Bearer`` header, or ``None`` for no auth."""

    def token(self) -> str | None:
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget the cached token (the server answered 401); the next ``token()`` fetches anew."""


class NoAuth(TokenProvider):
    def token(self) -> str | None:
        return None


class StaticToken(TokenProvider):
    """A bearer token read from an environment variable (read again after a 401, in case it rotated)."""

    def __init__(self, env_name: str):
        self.env_name = env_name
        self._token = read_env(env_name, "auth.token_env")

    def token(self) -> str | None:
        return self._token

    def invalidate(self) -> None:
        self._token = read_env(self.env_name, "auth.token_env")


class CachedTokenProvider(TokenProvider):
    """Caches what ``fetch()`` returns until shortly before it expires; one fetch at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def fetch(self) -> tuple[str, float]:
        """Return ``(access_token, expires_in_seconds)`` from the authorization server."""
        raise NotImplementedError

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                token, expires_in = self.fetch()
                margin = min(REFRESH_MARGIN, expires_in / 2)
                self._token, self._renew_at = token, self._clock() + expires_in - margin
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


# --- secrets and keys -----------------------------------------------------------------------------


def read_env(name: str, where: str) -> str:
    value = os.environ.get(str(name))
    if not value:
        raise ConfigError([(where, f"environment variable {name!r} is not set or empty")])
    return value


def read_secret(options: Mapping[str, Any], file_key: str, env_key: str, config_dir: str, where: str) -> str:
    """A secret from a file (relative to the config folder) or from an environment variable."""
    if options.get(file_key):
        path = Path(str(options[file_key]))
        if not path.is_absolute():
            path = Path(config_dir) / path
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([(f"{where}.{file_key}", f"cannot read {path}: {exc.strerror or exc}")]) from None
    if options.get(env_key):
        return read_env(options[env_key], f"{where}.{env_key}")
    raise ConfigError([(where, f"needs {file_key} or {env_key}")])


def load_private_key(pem: str, alg: str, where: str) -> Any:
    """Load a PEM private key and check it suits ``alg`` (RSA for RS384, P-384 EC for ES384)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError([(where, f"not an unencrypted PEM private key ({type(exc).__name__})")]) from None
    if alg == "RS384" and not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError([(where, "alg RS384 needs an RSA private key")])
    if alg == "ES384" and not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"):
        raise ConfigError([(where, "alg ES384 needs an EC private key on curve P-384 (secp384r1)")])
    return key


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(header: Mapping[str, Any], claims: Mapping[str, Any], key: Any) -> str:
    """JWS compact serialization of ``claims``, signed with RS384 or ES384 per ``header['alg']``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode("utf-8")) for part in (header, claims)
    ).encode("ascii")
    if header["alg"] == "RS384":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA384())
    elif header["alg"] == "ES384":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")  # JWS wants raw r||s, not DER
    else:
        raise ValueError(f"unsupported JWT alg {header['alg']!r}")
    return signing_input.decode("ascii") + "." + b64url(signature)


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, str]:
    """The public half of a private key as a JWK, for the JWKS the EHR is given (URL or upload).

    Why here: the key that signs must be the key published, so one function derives both.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        size = (numbers.n.bit_length() + 7) // 8
        return {"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
                "n": b64url(numbers.n.to_bytes(size, "big")), "e": b64url(numbers.e.to_bytes(3, "big").lstrip(b"\0"))}
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        return {"kty": "EC", "kid": kid, "alg": alg, "use": "sig", "crv": "P-384",
                "x": b64url(numbers.x.to_bytes(48, "big")), "y": b64url(numbers.y.to_bytes(48, "big"))}
    raise ValueError(f"cannot publish a {type(public).__name__} as a JWK")


# --- token endpoint calls -------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings:
    """How auth and FHIR calls reach the network: a :func:`~bridge.bounded_http.bounded_session`, the
    connect timeout and the total time of a whole request (status line, headers and body)."""

    session: requests.Session
    connect_timeout: float = 5.0
    timeout: float = 30.0


def discover_token_url(base: str, http: HttpSettings) -> str:
    """``token_endpoint`` from ``{base}/.well-known/smart-configuration``."""
    url = base.rstrip("/") + "/.well-known/smart-configuration"
    try:
        response = _call(http, "GET", url, headers={"Accept": "application/json"})
    except (requests.RequestException, AnswerTooLarge) as exc:
        raise TransientDeliveryError(f"SMART discovery at {url} failed: {type(exc).__name__}") from None
    if response.status >= 500 or response.status == 429:
        raise TransientDeliveryError(f"SMART discovery at {url} answered HTTP {response.status}")
    if response.status != 200:
        raise PermanentDeliveryError(f"SMART discovery at {url} answered HTTP {response.status}; "
                                     "set auth.token_url")
    endpoint = _json_or_empty(response).get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise PermanentDeliveryError(f"SMART discovery at {url} gave no token_endpoint; set auth.token_url")
    return endpoint


def request_token(url: str, form: Mapping[str, str], http: HttpSettings,
                  basic: tuple[str, str] | None = None) -> tuple[str, float]:
    """POST a client-credentials form; return ``(access_token, expires_in)`` or raise a delivery error."""
    try:
        response = _call(http, "POST", url, data=dict(form), auth=basic,
                         headers={"Accept": "application/json"}, allow_redirects=False)
    except (requests.RequestException, AnswerTooLarge) as exc:
        raise TransientDeliveryError(f"token request to {url} failed: {type(exc).__name__}") from None
    if response.status >= 500 or response.status == 429:
        raise TransientDeliveryError(f"token endpoint {url} answered HTTP {response.status}")
    body = _json_or_empty(response)
    if response.status != 200:
        reason = " ".join(str(body.get(k)) for k in ("error", "error_description") if body.get(k))
        raise PermanentDeliveryError(
            f"token endpoint {url} refused the client: HTTP {response.status}"
            + (f" ({reason[:300]})" if reason else ""))
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise PermanentDeliveryError(f"token endpoint {url} answered without an access_token")
    try:
        expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    log.info("fhir auth: got an access token from %s (expires in %.0f s)", url, expires_in)
    return token, expires_in


def _call(http: HttpSettings, method: str, url: str, **kwargs: Any) -> BoundedAnswer:
    """One auth request, all of it (status line and headers too) within ``http.timeout``."""
    return request_within(http.session, method, url, connect_seconds=http.connect_timeout,
                          total_seconds=http.timeout, max_bytes=MAX_AUTH_ANSWER_BYTES, **kwargs)


def _json_or_empty(response: BoundedAnswer) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- the two OAuth flows --------------------------------------------------------------------------


class SmartBackendTokens(CachedTokenProvider):
    """SMART Backend Services: a signed client assertion exchanged for a system-scoped token."""

    def __init__(self, *, client_id: str, key: Any, kid: str, alg: str, scope: str, http: HttpSettings,
                 token_url: str | None = None, base: str | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        super().__init__(clock)
        self.client_id, self.key, self.kid, self.alg, self.scope = client_id, key, kid, alg, scope
        self.http, self.base, self._token_url = http, base, token_url
        self._wall_clock = wall_clock

    def token_url(self) -> str:
        if self._token_url is None:
            if not self.base:
                raise PermanentDeliveryError("no auth.token_url and no FHIR base to discover it from")
            self._token_url = discover_token_url(self.base, self.http)
        return self._token_url

    def assertion(self, audience: str) -> str:
        now = int(self._wall_clock())
        header = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience,
                  "jti": uuid.uuid4().hex, "iat": now, "exp": now + ASSERTION_LIFETIME}
        return sign_jwt(header, claims, self.key)

    def fetch(self) -> tuple[str, float]:
        url = self.token_url()
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(url)}
        if self.scope:
            form["scope"] = self.scope
        return request_token(url, form, self.http)


class ClientSecretBasicTokens(CachedTokenProvider):
    """client_credentials with HTTP Basic client authentication (Oracle Health, athenahealth)."""

    def __init__(self, *, client_id: str, secret: str, scope: str, token_url: str, http: HttpSettings,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.client_id, self.secret, self.scope, self.url, self.http = client_id, secret, scope, token_url, http

    def fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return request_token(self.url, form, self.http, basic=(self.client_id, self.secret))


# --- from config ----------------------------------------------------------------------------------


def _required(options: Mapping[str, Any], key: str, where: str) -> str:
    value = options.get(key)
    if not value:
        raise ConfigError([(f"{where}.{key}", "is required")])
    return str(value)


def _scope(options: Mapping[str, Any]) -> str:
    scope = options.get("scope", "")
    return " ".join(scope) if isinstance(scope, (list, tuple)) else str(scope)


def token_provider_from_options(auth: Mapping[str, Any] | None, *, base: str, config_dir: str,
                                http: HttpSettings, where: str = "options.auth") -> TokenProvider:
    """Build the provider an ``auth:`` mapping describes; raises ConfigError naming the bad key."""
    auth = dict(auth or {})
    kind = str(auth.get("type", "none"))
    if kind not in AUTH_TYPES:
        raise ConfigError([(f"{where}.type", f"unknown auth type {kind!r} (one of {', '.join(AUTH_TYPES)})")])
    if kind == "none":
        return NoAuth()
    if kind == "bearer":
        return StaticToken(_required(auth, "token_env", where))
    client_id = _required(auth, "client_id", where)
    if kind == "client-secret-basic":
        secret = read_secret(auth, "client_secret_file", "client_secret_env", config_dir, where).strip()
        return ClientSecretBasicTokens(client_id=client_id, secret=secret, scope=_scope(auth),
                                       token_url=_required(auth, "token_url", where), http=http)
    alg = str(auth.get("alg", "RS384"))
    if alg not in ALGORITHMS:
        raise ConfigError([(f"{where}.alg", f"unsupported alg {alg!r} (one of {', '.join(ALGORITHMS)})")])
    pem = read_secret(auth, "key_file", "key_env", config_dir, where)
    key = load_private_key(pem, alg, f"{where}.key_file" if auth.get("key_file") else f"{where}.key_env")
    return SmartBackendTokens(client_id=client_id, key=key, kid=_required(auth, "kid", where), alg=alg,
                              scope=_scope(auth), http=http, token_url=auth.get("token_url"), base=base)

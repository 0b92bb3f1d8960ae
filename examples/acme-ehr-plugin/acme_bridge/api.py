"""The ``acme`` destination profile: posts visit documents to Acme EHR's REST API.

Configuration (``destinations.NAME.options``)::

    profile: acme
    options:
      base_url: https://acme.example.org        # Acme's API root (http or https)
      practice_id: "1234"
      client_id: telemed-bridge
      client_secret_env: ACME_CLIENT_SECRET     # the secret comes from the environment, never the config
      token_url: https://acme.example.org/oauth2/token   # optional; this is the default
      connect_timeout: 5                        # seconds, optional
      timeout: 20                               # seconds per read, optional

Acme's answers, and what the engine does with them:

- 201 created → delivered; **409 duplicate visit number → delivered** (Acme's visit number is its
  idempotency key: a re-sent visit is already there, which is the outcome we wanted);
- 429 → retry, honouring ``Retry-After``; 5xx, timeouts and refused connections → retry;
- 401 → the cached token is dropped and the send retried (a token can expire early);
- other 4xx → dead letter, with Acme's error code kept as the detail.

Error messages name the status, Acme's error code and the practice — never the visit's content.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from bridge import (
    ConfigError,
    Delivery,
    DestinationContext,
    OptionSpec,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)

OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("base_url", "Acme's API root (http or https)", kind="string", required=True),
    OptionSpec("practice_id", "the Acme practice visits are posted to", kind="any", required=True),
    OptionSpec("client_id", "OAuth2 client id", kind="string", required=True),
    OptionSpec("client_secret_env", "environment variable holding the client secret", kind="string", required=True),
    OptionSpec("token_url", "token endpoint", kind="string", default="{base_url}/oauth2/token"),
    OptionSpec("connect_timeout", "seconds to connect", kind="number", default=5.0),
    OptionSpec("timeout", "seconds per read", kind="number", default=20.0),
)
"""What ``bridge check`` accepts under the destination's ``options:`` (the keys read below)."""

TOKEN_MARGIN_SECONDS = 30.0
"""A token is renewed this long before Acme says it expires."""


def _options(ctx: DestinationContext) -> dict[str, Any]:
    """Check the options and read the secret; a ConfigError lists every problem with its key path."""
    where = f"destinations.{ctx.name}.options"
    opts, problems = dict(ctx.options), []
    for key in ("base_url", "practice_id", "client_id", "client_secret_env"):
        if not str(opts.get(key) or "").strip():
            problems.append((f"{where}.{key}", "is required for the acme profile"))
    base = str(opts.get("base_url") or "")
    if base and urlsplit(base).scheme not in ("http", "https"):
        problems.append((f"{where}.base_url", "must be an http:// or https:// URL"))
    env = str(opts.get("client_secret_env") or "")
    if env and not os.environ.get(env):
        problems.append((f"{where}.client_secret_env", f"environment variable {env} is not set"))
    for key, default in (("connect_timeout", 5.0), ("timeout", 20.0)):
        try:
            opts[key] = float(opts.get(key, default))
            assert opts[key] > 0
        except (TypeError, ValueError, AssertionError):
            problems.append((f"{where}.{key}", "must be a positive number of seconds"))
    if problems:
        raise ConfigError(problems)
    opts["base_url"] = base.rstrip("/")
    opts.setdefault("token_url", f"{opts['base_url']}/oauth2/token")
    opts["client_secret"] = os.environ[env]
    return opts


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _acme_error(answer: requests.Response) -> str:
    """Acme's error code (``{"error": {"code": …}}``), or the status reason; never the request."""
    try:
        error = answer.json().get("error") or {}
        return str(error.get("code") or answer.reason or "no error code")[:100]
    except (ValueError, AttributeError):
        return answer.reason or "no error code"


class AcmeTokens:
    """OAuth2 client credentials with client-secret basic; one token cached until shortly before expiry."""

    def __init__(self, session: requests.Session, opts: Mapping[str, Any]):
        self.session, self.opts = session, opts
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = self._fetch()
                self._renew_at = time.monotonic() + max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2)
            return self._token

    def drop(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> tuple[str, float]:
        try:
            answer = self.session.post(self.opts["token_url"], data={"grant_type": "client_credentials"},
                                       auth=(self.opts["client_id"], self.opts["client_secret"]),
                                       timeout=(self.opts["connect_timeout"], self.opts["timeout"]))
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"Acme token endpoint unreachable ({type(exc).__name__})") from None
        if answer.status_code in (400, 401):
            raise PermanentDeliveryError(f"Acme refused client {self.opts['client_id']!r} (HTTP {answer.status_code})",
                                         detail=_acme_error_text(answer))
        if answer.status_code != 200:
            raise TransientDeliveryError(f"Acme token endpoint answered HTTP {answer.status_code}",
                                         retry_after=retry_after_seconds(answer.headers.get("Retry-After")))
        try:
            body = answer.json()
            return str(body["access_token"]), float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise TransientDeliveryError("Acme token endpoint answered without an access_token") from None


def _acme_error_text(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("error", ""))[:100]
    except (ValueError, AttributeError):
        return ""


class AcmeVisitsDestination:
    """Sends each payload (an ``acme-json`` visit document) as one ``POST …/visits``."""

    def __init__(self, ctx: DestinationContext):
        self.opts = _options(ctx)
        self.session = requests.Session()
        self.tokens = AcmeTokens(self.session, self.opts)
        self.visits_url = f"{self.opts['base_url']}/api/v1/practices/{self.opts['practice_id']}/visits"

    def send(self, delivery: Delivery) -> str:
        answer = self._post(delivery, self.tokens.get())
        if answer.status_code == 401:  # expired or revoked early: one fresh token, then judge again
            self.tokens.drop()
            answer = self._post(delivery, self.tokens.get())
        return self.judge(answer)

    def _post(self, delivery: Delivery, token: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": delivery.media_type,
                   "X-Request-Id": delivery.idempotency_key}
        try:
            return self.session.post(self.visits_url, data=delivery.payload, headers=headers,
                                     timeout=(self.opts["connect_timeout"], self.opts["timeout"]))
        except requests.Timeout:
            raise TransientDeliveryError(f"Acme did not answer within {self.opts['timeout']:g} s") from None
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"Acme unreachable ({type(exc).__name__})") from None

    def judge(self, answer: requests.Response) -> str:
        """Acme's answer → a timeline line, or the delivery error the engine acts on."""
        status, practice = answer.status_code, self.opts["practice_id"]
        if status in (200, 201):
            return f"visit recorded by Acme (HTTP {status})"
        if status == 409:
            return "visit already recorded by Acme (HTTP 409, duplicate visit number)"
        code = _acme_error(answer)
        if status == 429:
            raise TransientDeliveryError(f"Acme is rate limiting practice {practice} (HTTP 429)",
                                         retry_after=retry_after_seconds(answer.headers.get("Retry-After")))
        if status == 401:
            raise TransientDeliveryError("Acme refused a fresh access token (HTTP 401)", detail=code)
        if status >= 500:
            raise TransientDeliveryError(f"Acme failed (HTTP {status})", detail=code,
                                         retry_after=retry_after_seconds(answer.headers.get("Retry-After")))
        raise PermanentDeliveryError(f"Acme refused the visit for practice {practice} (HTTP {status}: {code})")

    def close(self) -> None:
        self.session.close()

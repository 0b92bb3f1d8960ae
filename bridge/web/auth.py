"""Authentication and roles for the admin app: passwords, API tokens, sessions, CSRF, login throttling.

Deny by default: every view needs an authenticated principal unless its endpoint is listed in
``PUBLIC_ENDPOINTS``, and a view that does not declare a role (with :func:`requires`, or a
``bridge_role`` attribute for plugin views) needs ``admin``. Roles are ordered; each includes the
ones before it: viewer < analyst < operator < admin.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

ROLES = ("viewer", "analyst", "operator", "admin")
PUBLIC_ENDPOINTS = frozenset({"healthz", "readyz", "static", "dashboard.login"})
TOKEN_PREFIX = "tbk_"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """Who is calling: a dashboard user or an API token, with its role."""

    name: str
    role: str
    kind: str  # "user" or "token"

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"{self.kind}:{self.name}"

    def can(self, role: str) -> bool:
        return has_role(self.role, role)


def has_role(actual: str, needed: str) -> bool:
    """True when ``actual`` is ``needed`` or above it; unknown roles have no rights."""
    if actual not in ROLES or needed not in ROLES:
        return False
    return ROLES.index(actual) >= ROLES.index(needed)


def requires(role: str) -> Callable[[F], F]:
    """Declare the least role a view needs (read by the app's before-request check)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def mark(view: F) -> F:
        view.bridge_role = role  # type: ignore[attr-defined]
        return view

    return mark


def required_role(view: Callable[..., Any] | None) -> str:
    return getattr(view, "bridge_role", "admin") if view is not None else "admin"


# --- passwords and tokens --------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """A self-describing scrypt hash: ``scrypt$N$r$p$salt$hash`` (hex), so parameters can grow later."""
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), expected)


# A hash to check against when the user does not exist, so a login for an unknown name takes as long
# as one for a known name (no user enumeration by timing).
_DUMMY_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${'00' * 16}${'00' * 32}"


def dummy_verify(password: str) -> None:
    verify_password(password, _DUMMY_HASH)


def new_token() -> str:
    """A new API token: 256 random bits, with a prefix so a leaked one is recognisable in a scan."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Tokens are random and long, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- secret key ------------------------------------------------------------------------------------


def load_secret_key(web: dict[str, Any], config_dir: str) -> tuple[bytes, str]:
    """The session-signing key and where it came from: env ``BRIDGE_SECRET_KEY``, the file named by
    ``web.secret_key_file``, else a random key for this process (sessions end when it restarts)."""
    env = os.environ.get("BRIDGE_SECRET_KEY")
    if env:
        return env.encode("utf-8"), "env:BRIDGE_SECRET_KEY"
    path = web.get("secret_key_file")
    if path:
        full = path if os.path.isabs(path) else os.path.join(config_dir, path)
        with open(full, "rb") as fh:
            key = fh.read().strip()
        if len(key) < 32:
            raise ValueError(f"web.secret_key_file {path}: the key needs at least 32 bytes")
        return key, f"file:{path}"
    return secrets.token_bytes(32), "random (per process)"


# --- login throttling ------------------------------------------------------------------------------


class LoginLimiter:
    """Counts failed logins per user name and per client address in a sliding window.

    In memory, per process: a restart or a second process starts counting afresh (documented). A
    success clears the user's count but not the address's, so one good password cannot be used to
    reset a guessing run against other names.

    Bounded: a key is stored only when a login fails (a check stores nothing), keys whose failures
    all left the window are dropped, and past ``max_keys`` the keys idle longest are forgotten — a
    flood of new user names from many addresses costs at most ``max_keys`` entries. A blocked key's
    refusal is to be audited once per window (:meth:`note_block`), not once per attempt.
    """

    def __init__(self, per_user: int = 5, per_address: int = 20, window_seconds: float = 900.0,
                 max_keys: int = 10_000):
        self.limits = {"user": per_user, "address": per_address}
        self.window = window_seconds
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._block_noted: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def blocked(self, keys: Iterable[tuple[str, str]], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            return any(self._over_limit(key, now) for key in keys)

    def note_block(self, keys: Iterable[tuple[str, str]], now: float | None = None) -> bool:
        """True the first time in a window that a blocked key is refused: the caller audits that one."""
        now = time.monotonic() if now is None else now
        first = False
        with self._lock:
            for key in keys:
                if self._over_limit(key, now) and self._block_noted.get(key, -self.window) <= now - self.window:
                    self._block_noted[key] = now
                    first = True
        return first

    def failed(self, keys: Iterable[tuple[str, str]], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in keys:
                times = self._failures.setdefault(key, deque())
                self._expire(times, now)
                times.append(now)
            if len(self._failures) > self.max_keys:
                self._shrink(now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(("user", user), None)
            self._block_noted.pop(("user", user), None)

    @property
    def key_count(self) -> int:
        """How many keys are held (user names and addresses with failures in the window). Not ``__len__``:
        an empty limiter must stay truthy where ``limiter or LoginLimiter()`` picks the configured one."""
        return len(self._failures)

    def _over_limit(self, key: tuple[str, str], now: float) -> bool:
        times = self._failures.get(key)
        if times is None:
            return False
        self._expire(times, now)
        if not times:
            del self._failures[key]
            return False
        return len(times) >= self.limits[key[0]]

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def _shrink(self, now: float) -> None:
        """Drop keys with nothing left in the window, then the longest idle until under the cap."""
        for key in list(self._failures):
            self._expire(self._failures[key], now)
            if not self._failures[key]:
                del self._failures[key]
        if len(self._failures) > self.max_keys:
            by_last_failure = sorted(self._failures, key=lambda k: self._failures[k][-1])
            for key in by_last_failure[:len(self._failures) - self.max_keys]:
                del self._failures[key]
        self._block_noted = {k: at for k, at in self._block_noted.items() if at > now - self.window}


# --- CSRF ------------------------------------------------------------------------------------------


def csrf_token(session: Any) -> str:
    """The session's CSRF token (created on first use); forms carry it in a hidden field."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: Any, sent: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and sent and hmac.compare_digest(expected, sent))

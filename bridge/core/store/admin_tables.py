"""The admin tables of both stores: users, API tokens, channel pause state, job history, audit search.

Kept apart from the message path so it stays readable; :class:`AdminTables` is mixed into
``SQLiteStore`` and ``PostgresStore`` and uses their ``_tx``, ``_read`` and ``_audit``. The SQL is
written once, with ``?`` for every parameter (``_q`` turns it into the backend's paramstyle) and in
the dialect both share (``ON CONFLICT``, ``FILTER``). Each change is audited in the same transaction
that makes it, so the audit trail can never miss a change that happened.
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.errors import BridgeError

from .base import ApiToken, AuditEntry, ChannelStats, User

ROLES = ("viewer", "analyst", "operator", "admin")
ERROR_STATUSES = ("failed", "rejected", "dead")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise BridgeError(f"unknown role {role!r} (known: {', '.join(ROLES)})")


def _check_name(name: str, what: str) -> None:
    if not name or not name.strip() or len(name) > 100 or any(c.isspace() for c in name):
        raise BridgeError(f"a {what} name must be 1-100 characters without spaces, got {name!r}")


class AdminTables(abc.ABC):
    """Mixin for both stores (needs ``_tx``, ``_read``, ``_x`` and ``_audit``, and the hook below)."""

    @abc.abstractmethod
    def _park_channel(self, conn: Any, channel: str, paused: bool) -> None:
        """Set a paused channel's lanes aside from claims (or bring them back), in the pause's transaction."""

    # --- users ---------------------------------------------------------------------------------

    def create_user(self, name: str, password_hash: str, role: str, *, actor: str) -> User:
        now = self._create_named("users", "user", name, "password_hash", password_hash, role, actor,
                                 f"a user named {name!r} already exists")
        return User(name, role, now, False, password_hash)

    def _create_named(self, table: str, what: str, name: str, secret_column: str, secret: str, role: str,
                      actor: str, taken: str) -> float:
        """Insert a user or token by its unique name (``taken`` is the error when the name is in use),
        audited in the same transaction; returns its creation time."""
        _check_name(name, what)
        _check_role(role)
        now = time.time()
        with self._tx() as conn:
            inserted = self._x(conn, f"INSERT INTO {table} (name, {secret_column}, role, created_at) VALUES (?,?,?,?)"
                                     " ON CONFLICT (name) DO NOTHING", (name, secret, role, now)).rowcount
            if inserted != 1:
                raise BridgeError(taken)
            self._audit(conn, actor, f"{what}.create", f"{what}:{name}", {"role": role}, now)
        return now

    def get_user(self, name: str) -> User | None:
        rows = self._select("SELECT name, role, created_at, disabled, password_hash, session_epoch FROM users"
                          " WHERE name=?", (name,))
        return _user(rows[0]) if rows else None

    def users(self) -> list[User]:
        return [_user(r) for r in self._select(
            "SELECT name, role, created_at, disabled, password_hash, session_epoch FROM users ORDER BY name")]

    def update_user(self, name: str, *, actor: str, password_hash: str | None = None, role: str | None = None,
                    disabled: bool | None = None) -> User:
        if role is not None:
            _check_role(role)
        changes = {k: v for k, v in (("role", role), ("disabled", disabled)) if v is not None}
        if password_hash is not None:
            changes["password"] = "changed"
        now = time.time()
        with self._tx() as conn:
            cur = self._x(
                conn, "UPDATE users SET password_hash=COALESCE(?, password_hash), role=COALESCE(?, role),"
                " disabled=COALESCE(?, disabled) WHERE name=?",
                (password_hash, role, None if disabled is None else int(disabled), name))
            if cur.rowcount != 1:
                raise BridgeError(f"no user named {name!r}")
            self._audit(conn, actor, "user.update", f"user:{name}", changes, now)
        user = self.get_user(name)
        assert user is not None
        return user

    def end_sessions(self, name: str, *, actor: str) -> None:
        """Every dashboard session of ``name`` ends (logout): sessions carry the epoch they began in."""
        with self._tx() as conn:
            self._x(conn, "UPDATE users SET session_epoch = session_epoch + 1 WHERE name=?", (name,))
            self._audit(conn, actor, "user.sessions_ended", f"user:{name}", {}, time.time())

    # --- API tokens ----------------------------------------------------------------------------

    def create_token(self, name: str, token_sha256: str, role: str, *, actor: str) -> ApiToken:
        now = self._create_named("api_tokens", "token", name, "token_sha256", token_sha256, role, actor,
                                 f"a token named {name!r} already exists (revoked tokens keep their name)")
        return ApiToken(name, role, now)

    def token_by_hash(self, token_sha256: str) -> ApiToken | None:
        rows = self._select("SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens"
                          " WHERE token_sha256=? AND revoked_at IS NULL", (token_sha256,))
        if not rows:
            return None
        token = ApiToken(*rows[0])
        now = time.time()
        if token.last_used_at is None or now - token.last_used_at > 60:  # one write a minute at most
            with self._tx() as conn:
                self._x(conn, "UPDATE api_tokens SET last_used_at=? WHERE name=?", (now, token.name))
        return token

    def tokens(self) -> list[ApiToken]:
        return [ApiToken(*r) for r in self._select(
            "SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name")]

    def revoke_token(self, name: str, *, actor: str) -> ApiToken:
        now = time.time()
        with self._tx() as conn:
            cur = self._x(conn, "UPDATE api_tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL", (now, name))
            if cur.rowcount != 1:
                raise BridgeError(f"no live token named {name!r}")
            self._audit(conn, actor, "token.revoke", f"token:{name}", {}, now)
        return next(t for t in self.tokens() if t.name == name)

    # --- channels --------------------------------------------------------------------------------

    def set_channel_paused(self, channel: str, paused: bool, *, reason: str, actor: str) -> None:
        if not reason or not reason.strip():
            raise BridgeError(f"a {'pause' if paused else 'resume'} needs a reason")
        now = time.time()
        with self._tx() as conn:
            self._x(
                conn, "INSERT INTO channel_state (channel, paused, updated_at, updated_by, reason) VALUES (?,?,?,?,?)"
                " ON CONFLICT(channel) DO UPDATE SET paused=excluded.paused, updated_at=excluded.updated_at,"
                " updated_by=excluded.updated_by, reason=excluded.reason",
                (channel, int(paused), now, actor, reason))
            self._park_channel(conn, channel, paused)
            self._audit(conn, actor, "channel.pause" if paused else "channel.resume", f"channel:{channel}",
                        {"reason": reason}, now)

    def paused_channels(self) -> dict[str, Mapping[str, Any]]:
        rows = self._select("SELECT channel, updated_at, updated_by, reason FROM channel_state WHERE paused=1")
        return {r[0]: {"since": r[1], "by": r[2], "reason": r[3]} for r in rows}

    minute_bucket_sql: ClassVar[str] = "CAST((received_at - ?) / 60 AS INTEGER)"
    """The minute after ``since`` a message arrived in (SQLite's CAST truncates; PostgreSQL overrides)."""

    def received_per_minute(self, since: float, minutes: int) -> dict[str, list[int]]:
        per: dict[str, list[int]] = {}
        for channel, minute, n in self._select(
                f"SELECT channel, {self.minute_bucket_sql} AS minute, COUNT(*) FROM messages"
                " WHERE received_at >= ? AND replay_of IS NULL GROUP BY 1, 2", (since, since)):
            if 0 <= int(minute) < minutes:
                per.setdefault(channel, [0] * minutes)[int(minute)] = n
        return per

    def channel_stats(self, since: float) -> dict[str, ChannelStats]:
        counts: dict[str, dict[str, int]] = {}
        for channel, status, n in self._select("SELECT channel, status, COUNT(*) FROM messages GROUP BY 1, 2"):
            counts.setdefault(channel, {})[status] = n
        waiting = {r[0]: r[1] for r in self._select(
            "SELECT channel, MIN(received_at) FROM messages WHERE status IN ('received', 'processing') GROUP BY 1")}
        recent = {r[0]: (r[1], r[2]) for r in self._select(
            "SELECT channel, COUNT(*), COUNT(*) FILTER (WHERE status IN ('failed', 'rejected', 'dead')) FROM messages"
            " WHERE received_at >= ? GROUP BY 1", (since,))}
        last = {r[0]: r[1] for r in self._select("SELECT channel, MAX(updated_at) FROM messages GROUP BY 1")}
        paused = self.paused_channels()
        out = {}
        for channel in sorted(set(counts) | set(paused)):
            per = counts.get(channel, {})
            n_recent, errors = recent.get(channel, (0, 0))
            pause = paused.get(channel, {})
            out[channel] = ChannelStats(
                channel=channel, paused=channel in paused,
                queue_depth=per.get("received", 0) + per.get("processing", 0),
                oldest_waiting_at=waiting.get(channel), received_recent=n_recent, errors_recent=errors or 0,
                last_activity_at=last.get(channel), counts=per,
                paused_by=pause.get("by"), paused_reason=pause.get("reason"))
        return out

    def destination_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for destination, status, n in self._select("SELECT destination, status, COUNT(*) FROM outbox GROUP BY 1, 2"):
            out.setdefault(destination, {})[status] = n
        return out

    # --- jobs and audit --------------------------------------------------------------------------

    def job_runs(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT id, job, slot, status, owner, started_at, finished_at, detail FROM job_runs"
        rows = self._select(sql + (" WHERE job=? ORDER BY id DESC LIMIT ?" if job else " ORDER BY id DESC LIMIT ?"),
                          (job, limit) if job else (limit,))
        return [{"id": r[0], "job": r[1], "slot": r[2], "status": r[3], "owner": r[4], "started_at": r[5],
                 "finished_at": r[6], "detail": _loads(r[7])} for r in rows]

    def search_audit(self, *, actor=None, action=None, target=None, since=None, until=None, limit=100,
                     before_id=None) -> list[AuditEntry]:
        where, params = [], []
        for clause, value in (("actor=?", actor), ("target=?", target), ("at>=?", since), ("at<?", until),
                              ("id<?", before_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if action:
            where.append("substr(action, 1, ?) = ?")
            params.extend((len(action), action))
        sql = "SELECT id, at, actor, action, target, detail, prev_hash, hash FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._select(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]


def _user(row: Any) -> User:
    return User(name=row[0], role=row[1], created_at=row[2], disabled=bool(row[3]), password_hash=row[4],
                session_epoch=row[5])


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {"unparsed": True}

"""The PostgreSQL store's admin and operations tables: users, API tokens, channel state, job runs
(leases), retention pruning, metric counts and audit search.

The SQLite twins are :mod:`.sqlite_admin` and :mod:`.sqlite_ops`; the rules are the same, the SQL is
PostgreSQL's. :class:`PgAdminTables` is mixed into ``PostgresStore`` and uses its ``_tx``, ``_read``
and ``_audit``. A job run's row is its lease: the ``UNIQUE(job, slot)`` insert with ``ON CONFLICT DO
NOTHING`` lets exactly one node start a slot, however many nodes race for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from bridge.errors import BridgeError

from .base import ApiToken, AuditEntry, ChannelStats, User
from .sqlite_admin import ERROR_STATUSES, _check_name, _check_role, _loads, _user
from .sqlite_ops import NEVER_PRUNED, _RUN_COLUMNS, run_dict

# Messages the prescription lifecycle points at are kept: a prescription's history outlives retention.
_PRUNABLE = """
    SELECT m.id FROM messages m
    WHERE m.channel = %(channel)s AND m.received_at < %(cutoff)s AND m.status = ANY(%(statuses)s)
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.status = 'pending')
      AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.message_id = m.id AND h.status = 'open')
      AND NOT EXISTS (SELECT 1 FROM prescriptions p WHERE p.message_id = m.id)
      AND NOT EXISTS (SELECT 1 FROM prescription_events e WHERE e.message_id = m.id)
    ORDER BY m.id LIMIT %(limit)s
"""


def _json(value: Any) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), default=str)


class PgAdminTables:
    """Mixin for PostgresStore (needs ``_tx``, ``_read`` and ``_audit``)."""

    # --- users ---------------------------------------------------------------------------------

    def create_user(self, name: str, password_hash: str, role: str, *, actor: str) -> User:
        _check_name(name, "user")
        _check_role(role)
        now = time.time()
        with self._tx() as conn:
            inserted = conn.execute("INSERT INTO users (name, password_hash, role, created_at) VALUES (%s,%s,%s,%s)"
                                    " ON CONFLICT (name) DO NOTHING", (name, password_hash, role, now)).rowcount
            if inserted != 1:
                raise BridgeError(f"a user named {name!r} already exists")
            self._audit(conn, actor, "user.create", f"user:{name}", {"role": role}, now)
        return User(name, role, now, False, password_hash)

    def get_user(self, name: str) -> User | None:
        rows = self._read("SELECT name, role, created_at, disabled, password_hash, session_epoch FROM users"
                          " WHERE name=%s", (name,))
        return _user(rows[0]) if rows else None

    def users(self) -> list[User]:
        return [_user(r) for r in self._read(
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
            cur = conn.execute(
                "UPDATE users SET password_hash=COALESCE(%s, password_hash), role=COALESCE(%s, role),"
                " disabled=COALESCE(%s, disabled) WHERE name=%s",
                (password_hash, role, None if disabled is None else int(disabled), name))
            if cur.rowcount != 1:
                raise BridgeError(f"no user named {name!r}")
            self._audit(conn, actor, "user.update", f"user:{name}", changes, now)
        user = self.get_user(name)
        assert user is not None
        return user

    def end_sessions(self, name: str, *, actor: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE users SET session_epoch = session_epoch + 1 WHERE name=%s", (name,))
            self._audit(conn, actor, "user.sessions_ended", f"user:{name}", {}, time.time())

    # --- API tokens ----------------------------------------------------------------------------

    def create_token(self, name: str, token_sha256: str, role: str, *, actor: str) -> ApiToken:
        _check_name(name, "token")
        _check_role(role)
        now = time.time()
        with self._tx() as conn:
            try:
                with conn.transaction():  # a savepoint: a duplicate leaves the outer transaction usable
                    conn.execute("INSERT INTO api_tokens (name, token_sha256, role, created_at) VALUES (%s,%s,%s,%s)",
                                 (name, token_sha256, role, now))
            except psycopg.errors.UniqueViolation:
                raise BridgeError(f"a token named {name!r} already exists (revoked tokens keep their name)") from None
            self._audit(conn, actor, "token.create", f"token:{name}", {"role": role}, now)
        return ApiToken(name, role, now)

    def token_by_hash(self, token_sha256: str) -> ApiToken | None:
        rows = self._read("SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens"
                          " WHERE token_sha256=%s AND revoked_at IS NULL", (token_sha256,))
        if not rows:
            return None
        token = ApiToken(*rows[0])
        now = time.time()
        if token.last_used_at is None or now - token.last_used_at > 60:  # one write a minute at most
            with self._tx() as conn:
                conn.execute("UPDATE api_tokens SET last_used_at=%s WHERE name=%s", (now, token.name))
        return token

    def tokens(self) -> list[ApiToken]:
        return [ApiToken(*r) for r in self._read(
            "SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name")]

    def revoke_token(self, name: str, *, actor: str) -> ApiToken:
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute("UPDATE api_tokens SET revoked_at=%s WHERE name=%s AND revoked_at IS NULL",
                               (now, name))
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
            conn.execute(
                "INSERT INTO channel_state (channel, paused, updated_at, updated_by, reason) VALUES (%s,%s,%s,%s,%s)"
                " ON CONFLICT (channel) DO UPDATE SET paused=excluded.paused, updated_at=excluded.updated_at,"
                " updated_by=excluded.updated_by, reason=excluded.reason",
                (channel, int(paused), now, actor, reason))
            self._audit(conn, actor, "channel.pause" if paused else "channel.resume", f"channel:{channel}",
                        {"reason": reason}, now)

    def paused_channels(self) -> dict[str, Mapping[str, Any]]:
        rows = self._read("SELECT channel, updated_at, updated_by, reason FROM channel_state WHERE paused=1")
        return {r[0]: {"since": r[1], "by": r[2], "reason": r[3]} for r in rows}

    def channel_stats(self, since: float) -> dict[str, ChannelStats]:
        counts: dict[str, dict[str, int]] = {}
        for channel, status, n in self._read("SELECT channel, status, COUNT(*) FROM messages GROUP BY 1, 2"):
            counts.setdefault(channel, {})[status] = n
        waiting = {r[0]: r[1] for r in self._read(
            "SELECT channel, MIN(received_at) FROM messages WHERE status IN ('received', 'processing') GROUP BY 1")}
        recent = {r[0]: (r[1], r[2]) for r in self._read(
            "SELECT channel, COUNT(*), COUNT(*) FILTER (WHERE status = ANY(%s)) FROM messages"
            " WHERE received_at >= %s GROUP BY 1", (list(ERROR_STATUSES), since))}
        last = {r[0]: r[1] for r in self._read("SELECT channel, MAX(updated_at) FROM messages GROUP BY 1")}
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
        return self.outbox_counts()

    # --- job history and audit search ------------------------------------------------------------

    def job_runs(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT id, job, slot, status, owner, started_at, finished_at, detail FROM job_runs"
        rows = self._read(sql + (" WHERE job=%s ORDER BY id DESC LIMIT %s" if job else " ORDER BY id DESC LIMIT %s"),
                          (job, limit) if job else (limit,))
        return [{"id": r[0], "job": r[1], "slot": r[2], "status": r[3], "owner": r[4], "started_at": r[5],
                 "finished_at": r[6], "detail": _loads(r[7])} for r in rows]

    def search_audit(self, *, actor=None, action=None, target=None, since=None, until=None, limit=100,
                     before_id=None) -> list[AuditEntry]:
        where, params = [], []
        for clause, value in (("actor=%s", actor), ("target=%s", target), ("at>=%s", since), ("at<%s", until),
                              ("id<%s", before_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if action:
            where.append("substr(action, 1, %s) = %s")
            params.extend((len(action), action))
        sql = "SELECT id, at, actor, action, target, detail, prev_hash, hash FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._read(sql + " ORDER BY id DESC LIMIT %s", (*params, limit))
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    # --- job runs (leases) -----------------------------------------------------------------------

    def claim_job_slot(self, job: str, slot: str, owner: str, lease_seconds: float,
                       now: float | None = None) -> dict[str, Any] | None:
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO job_runs (job, slot, status, owner, started_at, lease_expires, attempts)"
                " VALUES (%s, %s, 'running', %s, %s, %s, 1) ON CONFLICT (job, slot) DO NOTHING RETURNING id",
                (job, slot, owner, now, now + lease_seconds)).fetchone()
            if row is None:  # another node holds (or held) this slot: take it over only if its lease expired
                row = conn.execute(
                    "UPDATE job_runs SET owner=%s, lease_expires=%s, attempts=attempts+1, started_at=%s"
                    " WHERE job=%s AND slot=%s AND status='running' AND lease_expires < %s RETURNING id",
                    (owner, now + lease_seconds, now, job, slot, now)).fetchone()
                if row is None:
                    return None
            got = conn.execute(f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE id=%s", (row[0],)).fetchone()
        return run_dict(got)

    def renew_job_slot(self, run_id: int, owner: str, lease_seconds: float, *, attempts: int | None = None,
                       detail: Mapping[str, Any] | None = None) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE job_runs SET lease_expires=%s, attempts=COALESCE(%s, attempts), detail=COALESCE(%s, detail)"
                " WHERE id=%s AND owner=%s AND status='running'",
                (time.time() + lease_seconds, attempts, None if detail is None else _json(detail), run_id, owner))
        return cur.rowcount == 1

    def finish_job_slot(self, run_id: int, owner: str, status: str, detail: Mapping[str, Any]) -> bool:
        if status not in ("succeeded", "failed", "skipped"):
            raise ValueError(f"unknown job run status {status!r}")
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE job_runs SET status=%s, finished_at=%s, detail=%s, lease_expires=NULL"
                " WHERE id=%s AND owner=%s AND status='running'",
                (status, time.time(), _json(detail), run_id, owner))
        return cur.rowcount == 1

    def job_run(self, run_id: int) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE id=%s", (run_id,))
        return run_dict(rows[0]) if rows else None

    def job_run_history(self, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE job=%s ", (job,)) if job else ("", ())
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM job_runs {where}ORDER BY id DESC LIMIT %s", (*params, limit))
        return [run_dict(r) for r in rows]

    def expired_job_runs(self, job: str, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE status='running' AND lease_expires < %s"
                          " AND job=%s ORDER BY id", (now, job))
        return [run_dict(r) for r in rows]

    def last_scheduled_slot(self, job: str) -> str | None:
        rows = self._read("SELECT MAX(slot) FROM job_runs WHERE job=%s AND slot NOT LIKE 'manual-%%'", (job,))
        return rows[0][0] if rows else None

    def job_run_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for job, status, n in self._read("SELECT job, status, COUNT(*) FROM job_runs GROUP BY 1, 2"):
            out.setdefault(job, {})[status] = n
        return out

    def last_job_success(self) -> dict[str, float]:
        return {r[0]: r[1] for r in self._read(
            "SELECT job, MAX(finished_at) FROM job_runs WHERE status='succeeded' GROUP BY 1")}

    # --- metrics -------------------------------------------------------------------------------

    def message_intake(self, message_id: int) -> tuple[str, float] | None:
        rows = self._read("SELECT channel, received_at FROM messages WHERE id=%s", (message_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for destination, status, n in self._read("SELECT destination, status, COUNT(*) FROM outbox GROUP BY 1, 2"):
            out.setdefault(destination, {})[status] = n
        return out

    # --- retention -----------------------------------------------------------------------------

    def prune_messages(self, policies: Mapping[str, tuple[float, Sequence[str]]], *, actor: str,
                       limit: int = 10000, dry_run: bool = False) -> dict[str, dict[str, int]]:
        """Same contract as SQLite's: per channel, up to ``limit`` old messages in the given statuses
        with their events, outbox rows and holds, plus one audit entry, in one transaction."""
        for channel, (_, statuses) in policies.items():
            bad = sorted(set(statuses) & set(NEVER_PRUNED))
            if bad:
                raise ValueError(f"channel {channel}: statuses {bad} are never pruned")
        now = time.time()
        counts: dict[str, dict[str, int]] = {}
        with self._tx() as conn:
            for channel, (cutoff, statuses) in sorted(policies.items()):
                ids = _prunable_ids(conn, channel, cutoff, statuses, limit)
                counts[channel] = _delete_messages(conn, ids, dry_run)
            if not dry_run:
                self._audit(conn, actor, "retention.prune", "messages",
                            {"channels": counts, "policies": {c: {"before": p[0], "statuses": list(p[1])}
                                                              for c, p in policies.items()}}, now)
        return counts


def _prunable_ids(conn: Any, channel: str, cutoff: float, statuses: Sequence[str], limit: int) -> list[int]:
    ids = [r[0] for r in conn.execute(_PRUNABLE, {"channel": channel, "cutoff": cutoff,
                                                  "statuses": list(statuses), "limit": limit})]
    # A replay points at its original (replay_of): keep an original while a replay of it stays.
    while ids:
        kept = {r[0] for r in conn.execute(
            "SELECT DISTINCT replay_of FROM messages WHERE replay_of = ANY(%s) AND NOT (id = ANY(%s))",
            (ids, ids))}
        if not kept:
            break
        ids = [i for i in ids if i not in kept]
    return ids


def _delete_messages(conn: Any, ids: list[int], dry_run: bool) -> dict[str, int]:
    counted = {}
    for table in ("events", "outbox", "holds"):
        counted[table] = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE message_id = ANY(%s)", (ids,)).fetchone()[0]
    counted["messages"] = len(ids)
    if not dry_run and ids:
        for table in ("events", "outbox", "holds"):
            conn.execute(f"DELETE FROM {table} WHERE message_id = ANY(%s)", (ids,))
        conn.execute("DELETE FROM messages WHERE id = ANY(%s)", (ids,))
    return counted

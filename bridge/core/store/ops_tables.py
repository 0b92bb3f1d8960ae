"""The operations tables of both stores: job-run leases, metric counts, and (SQLite's) retention pruning.

Kept apart from the message path and :mod:`.admin_tables` (users, tokens, history reads);
:class:`OpsTables` is mixed into both stores and uses their ``_tx``, ``_read``, ``_q`` and ``_audit``.
Job runs and counts are written once, with ``?`` parameters and the dialect both share; pruning's SQL
here is SQLite's (a temporary table of ids), and ``PostgresStore`` overrides it with its own
(:mod:`.postgres_admin`).

A job run's row in ``job_runs`` is its lease: ``UNIQUE(job, slot)`` lets exactly one process insert
the row for a slot, and ``owner`` + ``lease_expires`` let another process take over a slot whose
runner died. Every write by the runner is fenced by ``owner``, so a runner whose lease was taken
over cannot overwrite the new owner's result.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

_RUN_COLUMNS = "id, job, slot, status, owner, started_at, finished_at, detail, lease_expires, attempts"
# Messages the prescription lifecycle points at are kept: a prescription's history outlives retention.
_PRUNABLE = """
    SELECT m.id FROM messages m
    WHERE m.channel = :channel AND m.received_at < :cutoff AND m.status IN ({statuses})
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.status = 'pending')
      AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.message_id = m.id AND h.status = 'open')
      AND NOT EXISTS (SELECT 1 FROM prescriptions p WHERE p.message_id = m.id)
      AND NOT EXISTS (SELECT 1 FROM prescription_events e WHERE e.message_id = m.id)
    ORDER BY m.id LIMIT :limit
"""
NEVER_PRUNED = ("received", "processing", "routed", "held")


def run_dict(row: Sequence[Any]) -> dict[str, Any]:
    """One ``job_runs`` row in the shape the admin API and CLI show (``detail`` holds error and result)."""
    try:
        detail = json.loads(row[7] or "{}")
    except ValueError:
        detail = {"unparsed": True}
    return {"id": row[0], "job": row[1], "slot": row[2], "status": row[3], "owner": row[4], "started_at": row[5],
            "finished_at": row[6], "detail": detail, "lease_expires": row[8], "attempts": row[9]}


class OpsTables(abc.ABC):
    """Mixin for both stores (needs ``_tx``, ``_read``, ``_x`` and ``_audit``)."""

    # --- job runs ------------------------------------------------------------------------------

    def claim_job_slot(self, job: str, slot: str, owner: str, lease_seconds: float,
                       now: float | None = None) -> dict[str, Any] | None:
        now = time.time() if now is None else now
        with self._tx() as conn:
            inserted = self._x(conn, "INSERT INTO job_runs (job, slot, status, owner, started_at, lease_expires,"
                                     " attempts) VALUES (?, ?, 'running', ?, ?, ?, 1) ON CONFLICT (job, slot) DO NOTHING",
                               (job, slot, owner, now, now + lease_seconds)).rowcount
            if inserted != 1:  # another process or node holds (or held) this slot: take it over only if its lease expired
                taken = self._x(conn, "UPDATE job_runs SET owner=?, lease_expires=?, attempts=attempts+1, started_at=?"
                                      " WHERE job=? AND slot=? AND status='running' AND lease_expires < ?",
                                (owner, now + lease_seconds, now, job, slot, now)).rowcount
                if taken != 1:
                    return None
            row = self._x(conn, f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE job=? AND slot=?", (job, slot)).fetchone()
        return run_dict(row)

    def renew_job_slot(self, run_id: int, owner: str, lease_seconds: float, *, attempts: int | None = None,
                       detail: Mapping[str, Any] | None = None) -> bool:
        with self._tx() as conn:
            cur = self._x(
                conn, "UPDATE job_runs SET lease_expires=?, attempts=COALESCE(?, attempts), detail=COALESCE(?, detail)"
                " WHERE id=? AND owner=? AND status='running'",
                (time.time() + lease_seconds, attempts, None if detail is None else _json(detail), run_id, owner))
        return cur.rowcount == 1

    def finish_job_slot(self, run_id: int, owner: str, status: str, detail: Mapping[str, Any]) -> bool:
        if status not in ("succeeded", "failed", "skipped"):
            raise ValueError(f"unknown job run status {status!r}")
        with self._tx() as conn:
            cur = self._x(
                conn, "UPDATE job_runs SET status=?, finished_at=?, detail=?, lease_expires=NULL"
                " WHERE id=? AND owner=? AND status='running'",
                (status, time.time(), _json(detail), run_id, owner))
        return cur.rowcount == 1

    def job_run(self, run_id: int) -> dict[str, Any] | None:
        rows = self._select(f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE id=?", (run_id,))
        return run_dict(rows[0]) if rows else None

    def job_run_history(self, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE job=? ", (job,)) if job else ("", ())
        rows = self._select(f"SELECT {_RUN_COLUMNS} FROM job_runs {where}ORDER BY id DESC LIMIT ?", (*params, limit))
        return [run_dict(r) for r in rows]

    def expired_job_runs(self, job: str, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        rows = self._select(f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE status='running' AND lease_expires < ?"
                          " AND job=? ORDER BY id", (now, job))
        return [run_dict(r) for r in rows]

    def last_scheduled_slot(self, job: str) -> str | None:
        """The newest scheduled (not manual) slot this job has a run for: where catch-up starts."""
        rows = self._select("SELECT MAX(slot) FROM job_runs WHERE job=? AND slot NOT LIKE 'manual-%'", (job,))
        return rows[0][0] if rows else None

    def job_run_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for job, status, n in self._select("SELECT job, status, COUNT(*) FROM job_runs GROUP BY 1, 2"):
            out.setdefault(job, {})[status] = n
        return out

    def last_job_success(self) -> dict[str, float]:
        return {r[0]: r[1] for r in self._select(
            "SELECT job, MAX(finished_at) FROM job_runs WHERE status='succeeded' GROUP BY 1")}

    # --- metrics -------------------------------------------------------------------------------

    def message_intake(self, message_id: int) -> tuple[str, float] | None:
        return self.message_intakes([message_id]).get(message_id)

    def message_intakes(self, message_ids: Sequence[int]) -> dict[int, tuple[str, float]]:
        """Channel and intake time of each of these messages (those that exist), in one query: the
        delivery latency metric reads a settled batch's messages at once, not one round trip each."""
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        rows = self._select(f"SELECT id, channel, received_at FROM messages WHERE id IN ({','.join('?' * len(ids))})",
                            ids)
        return {row[0]: (row[1], row[2]) for row in rows}

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for destination, status, n in self._select("SELECT destination, status, COUNT(*) FROM outbox GROUP BY 1, 2"):
            out.setdefault(destination, {})[status] = n
        return out

    # --- retention -----------------------------------------------------------------------------

    def prune_messages(self, policies: Mapping[str, tuple[float, Sequence[str]]], *, actor: str,
                       limit: int = 10000, dry_run: bool = False) -> dict[str, dict[str, int]]:
        """Delete, per channel, up to ``limit`` messages received before the cutoff in the given
        statuses, with their events, outbox rows and (resolved) holds, plus one audit entry with the
        counts — all in one transaction, so a prune is never half-done nor unaudited."""
        for channel, (_, statuses) in policies.items():
            bad = sorted(set(statuses) & set(NEVER_PRUNED))
            if bad:
                raise ValueError(f"channel {channel}: statuses {bad} are never pruned")
        now = time.time()
        counts: dict[str, dict[str, int]] = {}
        with self._tx() as conn:
            for channel, (cutoff, statuses) in sorted(policies.items()):
                ids = self._prunable_ids(conn, channel, cutoff, statuses, limit)
                counts[channel] = self._delete_messages(conn, ids, dry_run)
            if not dry_run:  # a dry run changes nothing, so it leaves no audit entry
                self._audit(conn, actor, "retention.prune", "messages",
                            {"channels": counts, "policies": {c: {"before": p[0], "statuses": list(p[1])}
                                                              for c, p in policies.items()}}, now)
            self._pruned(conn)
        return counts

    # The backend's pruning SQL: SQLite's here (a temporary table of ids), PostgreSQL's in postgres_admin.

    def _pruned(self, conn: Any) -> None:
        """Clean up after a prune, inside its transaction."""
        conn.execute("DELETE FROM temp.prune_ids")

    def _prunable_ids(self, conn: sqlite3.Connection, channel: str, cutoff: float, statuses: Sequence[str],
                      limit: int) -> list[int]:
        sql = _PRUNABLE.format(statuses=",".join(f":s{i}" for i in range(len(statuses))))
        params: dict[str, Any] = {"channel": channel, "cutoff": cutoff, "limit": limit}
        params.update({f"s{i}": s for i, s in enumerate(statuses)})
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS prune_ids (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM temp.prune_ids")
        conn.execute(f"INSERT INTO temp.prune_ids {sql}", params)
        # A replay points at its original (replay_of): keep an original while a replay of it stays.
        while conn.execute("DELETE FROM temp.prune_ids WHERE id IN (SELECT replay_of FROM messages"
                           " WHERE replay_of IN (SELECT id FROM temp.prune_ids)"
                           " AND id NOT IN (SELECT id FROM temp.prune_ids))").rowcount:
            pass
        return [r[0] for r in conn.execute("SELECT id FROM temp.prune_ids ORDER BY id")]

    @staticmethod
    def _delete_messages(conn: sqlite3.Connection, ids: list[int], dry_run: bool) -> dict[str, int]:
        counted = {}
        for table in ("events", "outbox", "holds"):
            counted[table] = conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE message_id IN (SELECT id FROM temp.prune_ids)").fetchone()[0]
        counted["messages"] = len(ids)
        if not dry_run:
            for table in ("events", "outbox", "holds"):
                conn.execute(f"DELETE FROM {table} WHERE message_id IN (SELECT id FROM temp.prune_ids)")
            conn.execute("DELETE FROM messages WHERE id IN (SELECT id FROM temp.prune_ids)")
        return counted


def _json(value: Any) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), default=str)

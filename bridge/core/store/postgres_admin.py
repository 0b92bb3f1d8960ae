"""The PostgreSQL store's operations tables: job runs (leases), retention pruning and metric counts.

Users, tokens, channel state and audit search are the shared :mod:`.admin_tables`; the SQLite twin
of the rest is :mod:`.sqlite_ops` (the rules are the same, the SQL is PostgreSQL's). :class:`PgAdminTables` is mixed into ``PostgresStore`` and uses its ``_tx``, ``_read``
and ``_audit``. A job run's row is its lease: the ``UNIQUE(job, slot)`` insert with ``ON CONFLICT DO
NOTHING`` lets exactly one node start a slot, however many nodes race for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .admin_tables import AdminTables
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


class PgAdminTables(AdminTables):
    """Mixin for PostgresStore (needs ``_tx``, ``_read`` and ``_audit``): the shared admin tables, and
    job runs, pruning and counts in PostgreSQL's SQL."""

    # --- users ---------------------------------------------------------------------------------

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

"""The PostgreSQL store's admin and operations tables: the shared ones (:mod:`.admin_tables`,
:mod:`.ops_tables`, whose job-run lease — an ``INSERT … ON CONFLICT DO NOTHING`` on the unique job and
slot — lets exactly one node start a slot however many race for it), and retention pruning in
PostgreSQL's SQL (the rules are SQLite's). :class:`PgAdminTables` is mixed into ``PostgresStore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .admin_tables import AdminTables
from .ops_tables import OpsTables

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


class PgAdminTables(AdminTables, OpsTables):
    """Mixin for PostgresStore (needs ``_tx``, ``_read`` and ``_audit``): the shared tables, and
    pruning in PostgreSQL's SQL."""

    def _prunable_ids(self, conn: Any, channel: str, cutoff: float, statuses: Sequence[str],
                      limit: int) -> list[int]:
        return _prunable_ids(conn, channel, cutoff, statuses, limit)

    @staticmethod
    def _delete_messages(conn: Any, ids: list[int], dry_run: bool) -> dict[str, int]:
        return _delete_messages(conn, ids, dry_run)

    def _pruned(self, conn: Any) -> None:
        """Nothing to clean up: the ids were a list, not a table."""


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
        conn.execute("DELETE FROM content_words WHERE message_id = ANY(%s)", (ids,))  # their search words
        conn.execute("DELETE FROM messages WHERE id = ANY(%s)", (ids,))
    return counted

"""Alert state in both stores: one row per (rule, subject), written only by compare-and-set updates.

Several engine nodes evaluate the same rules against the same store. Like the scheduler's
``UNIQUE(job, slot)`` insert, the store decides which node acts: a state change (firing, resolved)
is an ``INSERT … ON CONFLICT DO NOTHING`` or an ``UPDATE … WHERE state = <the old state>``, and the
right to send a notice is a lease on the row (``claim_owner`` + ``claim_expires``) that one node wins.
The winner sends, then writes the outcome fenced by its owner id, so a node whose lease lapsed
cannot mark a notice sent that another node is sending. Rows keep only names, counts and times:
never PHI.

:class:`AlertTables` is mixed into both stores and uses their ``_tx``, ``_x`` and ``_select``
(SQL written once with ``?`` parameters, in the dialect SQLite and PostgreSQL share).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import AlertState, DestinationDelivery

_ALERT_COLUMNS = ("rule, subject, state, episode, started_at, last_seen_at, resolved_at, notified_at, notices,"
                  " summary, facts, last_error, claim_owner, claim_expires")


def alert_state(row: Sequence[Any]) -> AlertState:
    try:
        facts = json.loads(row[10] or "{}")
    except ValueError:
        facts = {}
    return AlertState(rule=row[0], subject=row[1], state=row[2], episode=row[3], started_at=row[4],
                      last_seen_at=row[5], resolved_at=row[6], notified_at=row[7], notices=row[8],
                      summary=row[9], facts=facts, last_error=row[11], claim_owner=row[12], claim_expires=row[13])


class AlertTables:
    """Mixin for both stores (needs ``_tx``, ``_x`` and ``_select``)."""

    def alert_seen(self, rule: str, subject: str, summary: str, facts: Mapping[str, Any], now: float) -> bool:
        """The condition holds: start an episode (True) unless one is already firing (False)."""
        text = json.dumps(dict(facts), sort_keys=True, default=str)
        with self._tx() as conn:
            started = self._x(
                conn, "INSERT INTO alerts (rule, subject, state, episode, started_at, last_seen_at, notices, summary,"
                " facts) VALUES (?, ?, 'firing', 1, ?, ?, 0, ?, ?) ON CONFLICT (rule, subject) DO NOTHING",
                (rule, subject, now, now, summary, text)).rowcount == 1
            if not started:  # a resolved alert fires again as a new episode; exactly one node wins that
                started = self._x(
                    conn, "UPDATE alerts SET state='firing', episode=episode+1, started_at=?, last_seen_at=?,"
                    " resolved_at=NULL, notified_at=NULL, notices=0, summary=?, facts=?, last_error=NULL"
                    " WHERE rule=? AND subject=? AND state='resolved'",
                    (now, now, summary, text, rule, subject)).rowcount == 1
            if not started:
                self._x(conn, "UPDATE alerts SET last_seen_at=?, summary=?, facts=? WHERE rule=? AND subject=?"
                              " AND state='firing'", (now, summary, text, rule, subject))
        return started

    def alert_cleared(self, rule: str, subject: str, now: float) -> bool:
        """The condition no longer holds: resolve a firing alert (True for the one node that does)."""
        with self._tx() as conn:
            return self._x(conn, "UPDATE alerts SET state='resolved', resolved_at=?, notified_at=NULL"
                                 " WHERE rule=? AND subject=? AND state='firing'", (now, rule, subject)).rowcount == 1

    def claim_alert_notice(self, rule: str, subject: str, owner: str, now: float, repeat_seconds: float,
                           lease_seconds: float) -> AlertState | None:
        """The right to send this alert's due notice (first, repeat or resolved), or None when no
        notice is due or another node holds the claim."""
        with self._tx() as conn:
            taken = self._x(
                conn, "UPDATE alerts SET claim_owner=?, claim_expires=? WHERE rule=? AND subject=?"
                " AND (claim_expires IS NULL OR claim_expires < ?)"
                " AND ((state='firing' AND (notified_at IS NULL OR notified_at <= ?))"
                "      OR (state='resolved' AND notified_at IS NULL))",
                (owner, now + lease_seconds, rule, subject, now, now - repeat_seconds)).rowcount
            if taken != 1:
                return None
            row = self._x(conn, f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE rule=? AND subject=?",
                          (rule, subject)).fetchone()
        return alert_state(row)

    def finish_alert_notice(self, claimed: AlertState, owner: str, *, sent: bool, error: str | None,
                            now: float) -> bool:
        """Record a claimed notice's outcome. Sent: the notice counts (and is not due again until the
        repeat interval). Not sent: it stays due, so the next round tries again. A state change since
        the claim (it resolved, or fired again) leaves that new notice due."""
        with self._tx() as conn:
            done = self._x(
                conn, "UPDATE alerts SET notified_at=?, notices=notices+1, last_error=?, claim_owner=NULL,"
                " claim_expires=NULL WHERE rule=? AND subject=? AND claim_owner=? AND state=? AND episode=?",
                (now, error, claimed.rule, claimed.subject, owner, claimed.state, claimed.episode)
            ).rowcount if sent else 0
            if not done:
                self._x(conn, "UPDATE alerts SET last_error=COALESCE(?, last_error), claim_owner=NULL,"
                              " claim_expires=NULL WHERE rule=? AND subject=? AND claim_owner=?",
                        (error, claimed.rule, claimed.subject, owner))
        return bool(done)

    def alert_states(self, rule: str | None = None) -> list[AlertState]:
        where, params = (" WHERE rule=?", (rule,)) if rule else ("", ())
        rows = self._select(f"SELECT {_ALERT_COLUMNS} FROM alerts{where} ORDER BY rule, subject", params)
        return [alert_state(r) for r in rows]

    def destination_delivery(self, since: float) -> dict[str, DestinationDelivery]:
        """Pending and recently dead rows are read through the status index (their cost follows the
        backlog); the last delivery is looked up only for a destination whose work has waited since
        ``since`` or went dead since then — one in trouble —, with the dashboard's own reading
        (:meth:`DestinationReads.last_success_at`: the minutes, else the delivered rows)."""
        pending = {r[0]: (r[1], r[2], r[3]) for r in self._select(
            "SELECT destination, COUNT(*), MIN(created_at), COUNT(*) FILTER (WHERE attempts > 0) FROM outbox"
            " WHERE status='pending' GROUP BY destination")}
        dead = {r[0]: r[1] for r in self._select(
            "SELECT destination, COUNT(*) FROM outbox WHERE status='dead' AND created_at >= ? GROUP BY destination",
            (since,))}
        out = {}
        for name in sorted(set(pending) | set(dead)):
            waiting, oldest, retrying = pending.get(name, (0, None, 0))
            troubled = dead.get(name, 0) or (oldest is not None and oldest <= since)
            last = self.last_success_at(name) if troubled else None  # as the dashboard's state reads it
            out[name] = DestinationDelivery(destination=name, pending=waiting, oldest_pending_at=oldest,
                                            retrying=retrying, last_delivered_at=last, dead_recent=dead.get(name, 0))
        return out

    def channel_backlog(self) -> dict[str, tuple[int, float]]:
        """Per channel with unprocessed messages: how many, and when the oldest arrived (read through
        the queue index: the cost follows the backlog, not the table)."""
        rows = self._select("SELECT channel, COUNT(*), MIN(received_at) FROM messages"
                            " WHERE status IN ('received', 'processing') GROUP BY channel")
        return {r[0]: (r[1], r[2]) for r in rows}

    def channel_errors(self, since: float) -> dict[str, tuple[int, int]]:
        """Per channel: messages received since ``since``, and how many of them failed, were rejected
        or went dead (read through the received-time index: the cost follows the window)."""
        rows = self._select("SELECT channel, COUNT(*), COUNT(*) FILTER (WHERE status IN ('failed', 'rejected', 'dead'))"
                            " FROM messages WHERE received_at >= ? GROUP BY channel", (since,))
        return {r[0]: (r[1], r[2]) for r in rows}

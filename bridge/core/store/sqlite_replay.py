"""Replays in the store: what a replay may do, and what its deliveries settle (both backends).

A replay is a new message pointing at its chain's first message (``replay_root``). Everything that
leaves the engine is named from that first message — NCPDP MessageID, HL7v2 MSH-10, file names,
idempotency keys — so a receiver's own duplicate check sees a resend, never a new order. The rules
here keep a replay from sending a prescription twice by accident or opening a second hold for one.
They are plain functions over an open connection, called inside the store's transactions. SQLite and
PostgreSQL share them (:mod:`.postgres_replay` re-exports them): the SQL is the same but for the
parameter placeholder, which :func:`execute` picks from the connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.errors import ReplayRefused

Conn = Any  # an sqlite3.Connection or a psycopg.Connection, inside a transaction


@dataclass(frozen=True)
class ChainRow:
    """One outbox row of a replay chain: where the chain went and how it ended there."""

    id: int
    message_id: int
    destination: str
    status: str


def execute(conn: Conn, sql: str, params: Sequence[Any]) -> Any:
    """Run one statement in the connection's paramstyle: the SQL here is written with SQLite's ``?``
    (and has no other ``?`` or ``%``); psycopg takes ``%s``."""
    if not isinstance(conn, sqlite3.Connection):
        sql = sql.replace("?", "%s")
    return conn.execute(sql, params)


def chain_root(conn: Conn, message_id: int) -> int:
    row = execute(conn, "SELECT replay_root FROM messages WHERE id=?", (message_id,)).fetchone()
    return (row[0] if row else None) or message_id


def chain_outbox(conn: Conn, root: int) -> list[ChainRow]:
    rows = execute(conn,
        "SELECT o.id, o.message_id, o.destination, o.status FROM outbox o JOIN messages m ON m.id = o.message_id"
        " WHERE m.id = ? OR m.replay_root = ? ORDER BY o.id", (root, root)).fetchall()
    return [ChainRow(*r) for r in rows]


def check_replay(conn: Conn, message_id: int, status: str, prescription: str | None, root: int,
                 destinations: Sequence[str] | None, force: bool) -> list[str]:
    """Refuse what a replay must not do; returns the destinations that already have the prescription
    (non-empty only with ``force``, for the audit entry)."""
    if status == "held":
        raise ReplayRefused(f"message {message_id} is held for review; a replay would hold the same prescription"
                            f" a second time: release or reject it instead (bridge release|reject {message_id})")
    _refuse_if_chain_held(conn, message_id, root)
    prescription = prescription or chain_prescription(conn, root)  # a replay not processed yet has none
    history = chain_outbox(conn, root)
    went = sorted({r.destination for r in history})
    # a chain that never produced an outbox row (failed, filtered, rejected) lets the routes decide
    never = [d for d in destinations or () if d not in went] if history else []
    if never:
        raise ReplayRefused(f"message {message_id} never went to destination {', '.join(map(repr, never))}"
                            f" (it went to: {', '.join(went)}); replay without --destination to let the routes"
                            " decide")
    in_flight = execute(conn,
        "SELECT id FROM messages WHERE (id = ? OR replay_root = ?) AND status IN ('received', 'processing', 'routed')"
        " ORDER BY id LIMIT 1", (root, root)).fetchone()
    if prescription and in_flight and not force:
        raise ReplayRefused(f"message {in_flight[0]} of the same replay chain is still being processed or delivered;"
                            " wait for it (bridge show), or add --force to queue another copy")
    targets = list(destinations) if destinations else went
    delivered = sorted({r.destination for r in history if r.status == "delivered" and r.destination in targets})
    if prescription and delivered and not force:
        raise ReplayRefused(
            f"message {message_id} carries a prescription already delivered to {', '.join(delivered)}; a replay"
            " sends it again (with the same message ids, so the receiver can tell it is a resend): add --force"
            " to send it anyway, or --destination to choose others")
    return delivered if prescription else []


def _refuse_if_chain_held(conn: Conn, message_id: int, root: int) -> None:
    """A copy of the same chain waiting for review is the prescription in flight: another replay would
    only queue a second hold for it, and releasing both would send the same message twice."""
    held = execute(conn, "SELECT id FROM messages WHERE (id = ? OR replay_root = ?) AND status = 'held'"
                          " ORDER BY id LIMIT 1", (root, root)).fetchone()
    if held:
        raise ReplayRefused(f"message {held[0]} of the same replay chain is held for review; replaying message"
                            f" {message_id} would hold it a second time: release or reject that one instead"
                            f" (bridge release|reject {held[0]})")


def chain_prescription(conn: Conn, root: int) -> str | None:
    row = execute(conn, "SELECT prescription_number FROM messages WHERE (id = ? OR replay_root = ?)"
                         " AND prescription_number IS NOT NULL ORDER BY id LIMIT 1", (root, root)).fetchone()
    return row[0] if row else None


def original_row(conn: Conn, root: int, destination: str) -> tuple[int, int] | None:
    """``(message id, outbox id)`` of the chain's first outbox row for ``destination``, if any."""
    row = execute(conn,
        "SELECT o.message_id, o.id FROM outbox o JOIN messages m ON m.id = o.message_id"
        " WHERE o.destination = ? AND (m.id = ? OR m.replay_root = ?) ORDER BY o.id LIMIT 1",
        (destination, root, root)).fetchone()
    return (row[0], row[1]) if row else None


def dead_letters_resolved_by(conn: Conn, delivered_id: int, message_id: int,
                             destination: str) -> list[ChainRow]:
    """Mark the chain's earlier dead letters for ``destination`` resolved by the delivered row."""
    root = chain_root(conn, message_id)
    dead = [r for r in chain_outbox(conn, root)
            if r.destination == destination and r.status == "dead" and r.id < delivered_id]
    for r in dead:
        execute(conn, "UPDATE outbox SET status='resolved', resolved_by=?, resolved_by_message=?"
                       " WHERE id=? AND status='dead'", (delivered_id, message_id, r.id))
    return dead


def open_hold_for(conn: Conn, prescription: str, message_id: int) -> tuple[int, int] | None:
    """``(hold id, message id)`` of another message's open or waiting hold for the same prescription."""
    row = execute(conn,
        "SELECT h.id, h.message_id FROM holds h JOIN messages m ON m.id = h.message_id"
        " WHERE h.status IN ('open', 'waiting') AND m.prescription_number = ? AND h.message_id != ?"
        " ORDER BY h.id LIMIT 1", (prescription, message_id)).fetchone()
    return (row[0], row[1]) if row else None


def next_waiting_hold(conn: Conn, prescription: str | None) -> tuple[int, int] | None:
    """``(hold id, message id)`` of the oldest hold waiting for ``prescription``."""
    if not prescription:
        return None
    row = execute(conn,
        "SELECT h.id, h.message_id FROM holds h JOIN messages m ON m.id = h.message_id"
        " WHERE h.status = 'waiting' AND m.prescription_number = ? ORDER BY h.id LIMIT 1",
        (prescription,)).fetchone()
    return (row[0], row[1]) if row else None


def destinations_json(destinations: Sequence[str] | None) -> str | None:
    return json.dumps(sorted(set(destinations))) if destinations else None

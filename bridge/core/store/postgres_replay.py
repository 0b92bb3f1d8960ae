"""Replays in the PostgreSQL store: the rules of :mod:`.sqlite_replay`, in PostgreSQL's SQL.

A replay is a new message pointing at its chain's first message (``replay_root``); everything that
leaves the engine is named from that first message, so a receiver sees a resend, never a new order.
These plain functions run inside the store's transactions (one open psycopg connection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.errors import ReplayRefused

from .sqlite_replay import ChainRow, destinations_json

Conn = Any  # a psycopg.Connection inside a transaction


def chain_root(conn: Conn, message_id: int) -> int:
    row = conn.execute("SELECT replay_root FROM messages WHERE id=%s", (message_id,)).fetchone()
    return (row[0] if row else None) or message_id


def chain_outbox(conn: Conn, root: int) -> list[ChainRow]:
    rows = conn.execute(
        "SELECT o.id, o.message_id, o.destination, o.status FROM outbox o JOIN messages m ON m.id = o.message_id"
        " WHERE m.id = %s OR m.replay_root = %s ORDER BY o.id", (root, root)).fetchall()
    return [ChainRow(*r) for r in rows]


def check_replay(conn: Conn, message_id: int, status: str, prescription: str | None, root: int,
                 destinations: Sequence[str] | None, force: bool) -> list[str]:
    """Refuse what a replay must not do; returns the destinations that already have the prescription
    (non-empty only with ``force``, for the audit entry). Same rules and messages as SQLite's."""
    if status == "held":
        raise ReplayRefused(f"message {message_id} is held for review; a replay would hold the same prescription"
                            f" a second time: release or reject it instead (bridge release|reject {message_id})")
    _refuse_if_chain_held(conn, message_id, root)
    prescription = prescription or chain_prescription(conn, root)
    history = chain_outbox(conn, root)
    went = sorted({r.destination for r in history})
    never = [d for d in destinations or () if d not in went] if history else []
    if never:
        raise ReplayRefused(f"message {message_id} never went to destination {', '.join(map(repr, never))}"
                            f" (it went to: {', '.join(went)}); replay without --destination to let the routes"
                            " decide")
    in_flight = conn.execute(
        "SELECT id FROM messages WHERE (id = %s OR replay_root = %s)"
        " AND status IN ('received', 'processing', 'routed') ORDER BY id LIMIT 1", (root, root)).fetchone()
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
    held = conn.execute("SELECT id FROM messages WHERE (id = %s OR replay_root = %s) AND status = 'held'"
                        " ORDER BY id LIMIT 1", (root, root)).fetchone()
    if held:
        raise ReplayRefused(f"message {held[0]} of the same replay chain is held for review; replaying message"
                            f" {message_id} would hold it a second time: release or reject that one instead"
                            f" (bridge release|reject {held[0]})")


def chain_prescription(conn: Conn, root: int) -> str | None:
    row = conn.execute("SELECT prescription_number FROM messages WHERE (id = %s OR replay_root = %s)"
                       " AND prescription_number IS NOT NULL ORDER BY id LIMIT 1", (root, root)).fetchone()
    return row[0] if row else None


def original_row(conn: Conn, root: int, destination: str) -> tuple[int, int] | None:
    """``(message id, outbox id)`` of the chain's first outbox row for ``destination``, if any."""
    row = conn.execute(
        "SELECT o.message_id, o.id FROM outbox o JOIN messages m ON m.id = o.message_id"
        " WHERE o.destination = %s AND (m.id = %s OR m.replay_root = %s) ORDER BY o.id LIMIT 1",
        (destination, root, root)).fetchone()
    return (row[0], row[1]) if row else None


def dead_letters_resolved_by(conn: Conn, delivered_id: int, message_id: int, destination: str) -> list[ChainRow]:
    """Mark the chain's earlier dead letters for ``destination`` resolved by the delivered row."""
    root = chain_root(conn, message_id)
    dead = [r for r in chain_outbox(conn, root)
            if r.destination == destination and r.status == "dead" and r.id < delivered_id]
    for r in dead:
        conn.execute("UPDATE outbox SET status='resolved', resolved_by=%s, resolved_by_message=%s"
                     " WHERE id=%s AND status='dead'", (delivered_id, message_id, r.id))
    return dead


def open_hold_for(conn: Conn, prescription: str, message_id: int) -> tuple[int, int] | None:
    """``(hold id, message id)`` of another message's open or waiting hold for the same prescription."""
    row = conn.execute(
        "SELECT h.id, h.message_id FROM holds h JOIN messages m ON m.id = h.message_id"
        " WHERE h.status IN ('open', 'waiting') AND m.prescription_number = %s AND h.message_id != %s"
        " ORDER BY h.id LIMIT 1", (prescription, message_id)).fetchone()
    return (row[0], row[1]) if row else None


def next_waiting_hold(conn: Conn, prescription: str | None) -> tuple[int, int] | None:
    """``(hold id, message id)`` of the oldest hold waiting for ``prescription``."""
    if not prescription:
        return None
    row = conn.execute(
        "SELECT h.id, h.message_id FROM holds h JOIN messages m ON m.id = h.message_id"
        " WHERE h.status = 'waiting' AND m.prescription_number = %s ORDER BY h.id LIMIT 1",
        (prescription,)).fetchone()
    return (row[0], row[1]) if row else None


__all__ = ["ChainRow", "chain_root", "chain_outbox", "check_replay", "chain_prescription", "original_row",
           "dead_letters_resolved_by", "open_hold_for", "next_waiting_hold", "destinations_json"]

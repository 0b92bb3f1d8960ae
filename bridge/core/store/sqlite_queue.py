"""The SQLite queue: every statement that moves work through lanes, in one place.

A lane is ``(channel, order_key)`` for processing and ``(destination, order_key)`` for delivery (see
:mod:`bridge.core.store.base`). Each lane marks its one claimable item with ``lane_head``; claims
read only the partial indexes of heads (``messages_lane_heads``, ``outbox_lane_heads``), so a claim
costs the same with ten or a hundred thousand messages waiting. When a head finishes, the next item
of its lane (found through the lane index, by id) becomes the head in the same transaction.

SQLite has a single writer, so every function here runs inside the store's ``BEGIN IMMEDIATE``
transaction and sees a lane exactly as the last commit left it; no other locking is needed.
These are plain functions over an open connection, like :mod:`.sqlite_replay`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

# --- processing lanes (messages) ------------------------------------------------------------------

_UNFINISHED = "status IN ('received', 'processing')"  # spelled as in the partial index messages_lanes
_IN_LANE = f"SELECT 1 FROM messages WHERE channel = ? AND order_key = ? AND order_key IS NOT NULL AND {_UNFINISHED}"
"""An unfinished message of the lane (channel, order key): its two parameters."""
HEAD, PARKED = 1, 3
"""``lane_head`` of a lane's claimable message, and of the head of a lane whose channel is paused. A
parked head is not in ``messages_lane_heads``, so claims never pass over a paused channel's backlog:
pausing parks the channel's heads, resuming unparks them, and a head chosen while the channel is
paused is parked at once."""
# (its one parameter is the channel)
HEAD_MARKER_SQL = (f"CASE WHEN EXISTS (SELECT 1 FROM channel_state WHERE channel = ? AND paused = 1)"
                   f" THEN {PARKED} ELSE {HEAD} END")


def head_marker(conn: sqlite3.Connection, channel: str) -> int:
    """What a new head of ``channel``'s lanes is marked: claimable, or parked while the channel is paused."""
    return conn.execute(f"SELECT {HEAD_MARKER_SQL}", (channel,)).fetchone()[0]


def park_channel(conn: sqlite3.Connection, channel: str, paused: bool) -> None:
    """Pausing parks every head of the channel (in flight ones too: when they finish, the next head is
    parked); resuming makes them claimable again."""
    if paused:
        conn.execute(f"UPDATE messages SET lane_head = {PARKED} WHERE channel = ? AND lane_head = {HEAD}", (channel,))
    else:
        conn.execute(f"UPDATE messages SET lane_head = {HEAD} WHERE channel = ? AND lane_head = {PARKED}", (channel,))


NEW_LANE_HEAD_SQL = (f"CASE WHEN ? THEN CASE WHEN ? IS NOT NULL AND EXISTS ({_IN_LANE}) THEN 0"
                     f" ELSE {HEAD_MARKER_SQL} END ELSE 0 END")
"""A new message's ``lane_head``, inside its INSERT: the head (claimable, or parked while its channel is
paused) when nothing unfinished is ahead of it in its lane, else 0; never a head when ``can_lead`` is
false (a message stored as failed). Its arguments come from :func:`new_lane_head_args`."""


def new_lane_head_args(channel: str, order_key: str | None, *, can_lead: bool) -> tuple[Any, ...]:
    return (can_lead, order_key, channel, order_key, channel)


def new_lane_head(conn: sqlite3.Connection, channel: str, order_key: str | None) -> int:
    """``NEW_LANE_HEAD_SQL`` on its own, for an insert that cannot embed it (a replay's copy)."""
    args = new_lane_head_args(channel, order_key, can_lead=True)
    return conn.execute(f"SELECT {NEW_LANE_HEAD_SQL}", args).fetchone()[0]


def enter_message_lane(conn: sqlite3.Connection, message_id: int) -> None:
    """A stored message becomes unfinished again (a released hold): it joins the back of its lane."""
    channel, order_key = conn.execute("SELECT channel, order_key FROM messages WHERE id = ?", (message_id,)).fetchone()
    others = conn.execute(f"{_IN_LANE} AND id != ? LIMIT 1", (channel, order_key, message_id)).fetchone() \
        if order_key is not None else None
    conn.execute("UPDATE messages SET lane_head = ? WHERE id = ?", (0 if others else head_marker(conn, channel),
                                                                  message_id))


def leave_message_lane(conn: sqlite3.Connection, channel: str, order_key: str | None) -> None:
    """A head finished (its status is no longer unfinished): the oldest message left in its lane
    becomes the head."""
    if order_key is None:
        return
    conn.execute(
        f"UPDATE messages SET lane_head = {HEAD_MARKER_SQL} WHERE id = (SELECT MIN(id) FROM messages"
        f" WHERE channel = ? AND order_key = ? AND order_key IS NOT NULL AND {_UNFINISHED})",
        (channel, channel, order_key))


def claimable_heads(conn: sqlite3.Connection, limit: int, now: float) -> list[int]:
    """Ids of up to ``limit`` claimable lane heads, oldest first. Reads the heads index only: the
    rows it passes over are heads in flight, never a lane's backlog nor a paused channel's heads
    (parked, outside the index; the channel filter below is a second guard)."""
    paused = [r[0] for r in conn.execute("SELECT channel FROM channel_state WHERE paused = 1")]
    sql = ("SELECT id FROM messages INDEXED BY messages_lane_heads WHERE lane_head = 1"
           " AND (status = 'received' OR (status = 'processing' AND lease_expires < ?))")
    if paused:
        sql += f" AND channel NOT IN ({', '.join('?' * len(paused))})"
    rows = conn.execute(sql + " ORDER BY id LIMIT ?", (now, *paused, limit))
    return [r[0] for r in rows]


def lease_messages(conn: sqlite3.Connection, ids: Sequence[int], owner: str, expires: float, now: float) -> None:
    conn.executemany(
        "UPDATE messages SET status = 'processing', lease_owner = ?, lease_expires = ?,"
        " lease_token = lease_token + 1, updated_at = ? WHERE id = ?",
        [(owner, expires, now, message_id) for message_id in ids])


# --- delivery lanes (outbox) ----------------------------------------------------------------------


def outbox_lane_is_free(conn: sqlite3.Connection, destination: str, order_key: str | None) -> bool:
    """True when a row entering this lane now is its head (rows that stepped aside do not count)."""
    if order_key is None:
        return True
    row = conn.execute(
        "SELECT 1 FROM outbox WHERE destination = ? AND order_key = ? AND status = 'pending' AND lane_head != 2"
        " LIMIT 1", (destination, order_key)).fetchone()
    return row is None


def next_outbox_head(conn: sqlite3.Connection, destination: str, order_key: str | None) -> None:
    """The lane's head finished or stepped aside: its oldest waiting row becomes the head."""
    if order_key is None:
        return
    conn.execute(
        "UPDATE outbox SET lane_head = 1 WHERE id = (SELECT MIN(id) FROM outbox"
        " WHERE destination = ? AND order_key = ? AND status = 'pending' AND lane_head = 0)",
        (destination, order_key))


def due_outbox_heads(conn: sqlite3.Connection, limit: int, now: float) -> list[int]:
    """Ids of up to ``limit`` due, unleased heads (or stepped-aside rows), soonest due first."""
    rows = conn.execute(
        "SELECT id FROM outbox INDEXED BY outbox_lane_heads WHERE lane_head > 0 AND next_attempt_at <= ?"
        " AND (lease_expires IS NULL OR lease_expires < ?) ORDER BY next_attempt_at, id LIMIT ?",
        (now, now, limit))
    return [r[0] for r in rows]


def lease_outbox(conn: sqlite3.Connection, ids: Sequence[int], owner: str, expires: float) -> None:
    conn.executemany(
        "UPDATE outbox SET lease_owner = ?, lease_expires = ?, lease_token = lease_token + 1,"
        " attempts = attempts + 1 WHERE id = ?", [(owner, expires, outbox_id) for outbox_id in ids])


def settle_outbox_lane(conn: sqlite3.Connection, outbox_id: int, status: str) -> None:
    """Move the row's lane on after an outcome: a finished head hands over to the next row; in a
    ``rotate`` lane a head whose send failed steps aside (2) and hands over too; a ``strict`` head
    that will be retried stays the head, and the lane waits for it."""
    destination, order_key, mode, head = conn.execute(
        "SELECT destination, order_key, order_mode, lane_head FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
    if status != "pending":
        conn.execute("UPDATE outbox SET lane_head = 0 WHERE id = ?", (outbox_id,))
    elif mode == "rotate" and head == 1 and order_key is not None:
        conn.execute("UPDATE outbox SET lane_head = 2 WHERE id = ?", (outbox_id,))
    else:
        return
    if head == 1:
        next_outbox_head(conn, destination, order_key)

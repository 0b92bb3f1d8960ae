"""What operators do to messages, for both stores: replay, release or reject a hold, and the timeline
and watermark writes every part of the store shares.

The rules (what a replay may do, which hold opens next) are in :mod:`.sqlite_replay`; this mixin
writes their results. The SQL is written once with ``?`` parameters (``_x`` puts it in the backend's
paramstyle). Where the backends differ it asks them: ``_lock_replay_chain`` (PostgreSQL serialises
replays of one chain across nodes), ``_row_lock`` (``FOR UPDATE`` where rows need locking; SQLite's
single writer already serialises), ``_insert_replay`` and ``_requeue_released`` (how a message
enters its lane: a lane-head flag in SQLite, a lane row and a NOTIFY in PostgreSQL).
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Mapping
from typing import Any

from bridge.errors import BridgeError

from . import sqlite_replay as replays

_REPLAY_SOURCE = ("channel, format, raw, sha256, size, origin, control_id, sending_application, sending_facility,"
                  " message_type, trace_id, status, prescription_number, replay_root, order_key")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class OperatorActions(abc.ABC):
    """Mixin for both stores (needs ``_tx``, ``_x``, ``_audit``, ``holds``); each backend supplies the
    abstract hooks below, so a backend that misses one cannot be instantiated."""

    _row_lock = ""

    def _lock_replay_chain(self, conn: Any, root: int) -> None:
        """Hold off other replays of this chain until commit (a no-op where writers are serialised)."""

    @abc.abstractmethod
    def _insert_replay(self, conn: Any, row: Mapping[str, Any]) -> int:
        """Insert the replay's message row (status ``received``) into its lane; returns its id."""

    @abc.abstractmethod
    def _requeue_released(self, conn: Any, message_id: int, now: float) -> None:
        """A released message is ``received`` again and enters its lane (behind a head in flight)."""

    def replay(self, message_id, *, reason, actor, destinations=None, force=False):
        if not reason or not reason.strip():
            raise BridgeError("a replay needs a reason")
        now = time.time()
        with self._tx() as conn:
            src = self._x(conn, f"SELECT {_REPLAY_SOURCE} FROM messages WHERE id=?", (message_id,)).fetchone()
            if src is None:
                raise BridgeError(f"no message with id {message_id}")
            root = src[13] or message_id
            self._lock_replay_chain(conn, root)
            already = replays.check_replay(conn, message_id, src[11], src[12], root, destinations, force)
            new_id = self._insert_replay(conn, {
                "channel": src[0], "format": src[1], "received_at": now, "updated_at": now, "raw": src[2],
                "sha256": src[3], "size": src[4], "origin": src[5], "control_id": src[6],
                "sending_application": src[7], "sending_facility": src[8], "message_type": src[9],
                "trace_id": src[10], "replay_of": message_id, "replay_root": root,
                "replay_destinations": replays.destinations_json(destinations), "order_key": src[14]})
            scope = {"destinations": sorted(set(destinations))} if destinations else {}
            if force:
                scope.update(force=True, already_delivered_to=already)
            self._event(conn, message_id, "replayed", {"as": new_id, "reason": reason, "actor": actor, **scope}, now)
            self._event(conn, new_id, "replay", {"of": message_id, "original": root, "reason": reason,
                                                 "actor": actor, **scope}, now)
            self._audit(conn, actor, "replay", f"message:{message_id}",
                        {"reason": reason, "new_message": new_id, **scope}, now)
        return new_id

    def resolve_hold(self, message_id, action, *, reason, actor):
        if action not in ("release", "reject"):
            raise ValueError(f"unknown hold action {action!r}")
        if not reason or not reason.strip():
            raise BridgeError(f"a {action} needs a reason")
        now = time.time()
        with self._tx() as conn:
            hold = self._x(conn, "SELECT id FROM holds WHERE message_id=? AND status='open'" + self._row_lock,
                           (message_id,)).fetchone()
            if hold is None:
                raise BridgeError(self._no_open_hold(conn, message_id))
            resolved = "released" if action == "release" else "rejected"
            self._x(conn, "UPDATE holds SET status=?, resolved_at=?, resolved_by=?, resolution=? WHERE id=?",
                    (resolved, now, actor, reason, hold[0]))
            if action == "release":
                self._requeue_released(conn, message_id, now)
            else:
                self._x(conn, "UPDATE messages SET status='rejected', updated_at=? WHERE id=?", (now, message_id))
            self._event(conn, message_id, resolved, {"reason": reason, "actor": actor}, now)
            self._audit(conn, actor, f"hold.{action}", f"message:{message_id}", {"reason": reason}, now)
            self._open_next_hold(conn, message_id, resolved, now)
        return next(h for h in self.holds(None) if h.id == hold[0])

    def _no_open_hold(self, conn: Any, message_id: int) -> str:
        waiting = self._x(conn, "SELECT m.prescription_number FROM holds h JOIN messages m ON m.id = h.message_id"
                                " WHERE h.message_id=? AND h.status='waiting'", (message_id,)).fetchone()
        ahead = replays.open_hold_for(conn, waiting[0], message_id) if waiting and waiting[0] else None
        if ahead:
            return (f"message {message_id} has no open hold: it waits behind the hold of message {ahead[1]} for"
                    f" the same prescription; release or reject that one first")
        return f"message {message_id} has no open hold"

    def _open_next_hold(self, conn: Any, message_id: int, resolved: str, now: float) -> None:
        """The prescription's oldest waiting hold opens now that the one before it is resolved."""
        number = self._x(conn, "SELECT prescription_number FROM messages WHERE id=?", (message_id,)).fetchone()[0]
        nxt = replays.next_waiting_hold(conn, number)
        if nxt is None:
            return
        self._x(conn, "UPDATE holds SET status='open' WHERE id=?", (nxt[0],))
        self._event(conn, nxt[1], "hold_opened", {"after_message": message_id, "which_was": resolved}, now)

    def add_event(self, message_id, kind, detail):
        with self._tx() as conn:
            self._event(conn, message_id, kind, detail, time.time())

    def _event(self, conn: Any, message_id: int, kind: str, detail: Mapping[str, Any], now: float) -> None:
        self._x(conn, "INSERT INTO events (message_id, at, kind, detail) VALUES (?,?,?,?)",
                (message_id, now, kind, _json(dict(detail))))

    def set_watermark(self, name, value):
        with self._tx() as conn:
            self._x(conn, "INSERT INTO watermarks VALUES (?,?,?) ON CONFLICT (name) DO UPDATE"
                          " SET value=excluded.value, updated_at=excluded.updated_at", (name, value, time.time()))

    def audit(self, actor, action, target, detail):
        with self._tx() as conn:
            return self._audit(conn, actor, action, target, detail, time.time())

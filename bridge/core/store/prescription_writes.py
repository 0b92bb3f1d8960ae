"""The prescription lifecycle's writes, shared by both backends.

An inbound event (a pharmacy's RxFill, a denial, a cancel response) is matched to its prescription
and moves it; a delivered NewRx or CancelRx moves it too. The rules live in
:mod:`bridge.core.lifecycle`; these functions write their results (state, history row, timeline
story) inside the caller's transaction. SQLite and PostgreSQL run the same SQL but for the parameter
placeholder, which :func:`.sqlite_replay.execute` picks from the connection; PostgreSQL also locks the
prescription row (``FOR UPDATE``) so nodes applying events to one prescription queue up, where
SQLite's single writer already serialises them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from bridge.core import lifecycle

from .base import OutboxRow, PrescriptionEventIn
from .sqlite_replay import Conn
from .sqlite_replay import execute as _execute

# add_event(conn, message_id, kind, detail, now): the store's timeline writer
AddEvent = Callable[[Conn, int, str, Mapping[str, Any], float], None]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _locked(conn: Conn) -> str:
    return "" if isinstance(conn, sqlite3.Connection) else " FOR UPDATE"


def correlate(conn: Conn, event: PrescriptionEventIn) -> tuple[str | None, str | None]:
    """The prescription an inbound event is about, and how it was found: RelatesToMessageID first
    (the outbound message it answers), then the prescriber's order number."""
    if event.relates_to:
        row = _execute(conn, "SELECT m.prescription_number FROM outbox o JOIN messages m ON m.id = o.message_id"
                             " WHERE o.control_id = ? AND m.prescription_number IS NOT NULL ORDER BY o.id LIMIT 1",
                       (event.relates_to,)).fetchone()
        if row and _execute(conn, "SELECT 1 FROM prescriptions WHERE number=?", (row[0],)).fetchone():
            return row[0], "relates_to_message_id"
    if event.number and _execute(conn, "SELECT 1 FROM prescriptions WHERE number=?", (event.number,)).fetchone():
        return event.number, "prescriber_order_number"
    return None, None


def apply_inbound_event(conn: Conn, message_id: int, event: PrescriptionEventIn, now: float,
                        add_event: AddEvent) -> None:
    """Move the prescription an inbound event is about, or keep the event unmatched for an analyst."""
    number, matched_by = correlate(conn, event)
    detail = {k: v for k, v in (("code", event.code), ("fill_status", event.fill_status),
                                ("description", event.description), ("relates_to", event.relates_to),
                                ("ncpdp_message_id", event.message_id)) if v}
    if number is None:
        _execute(conn, "INSERT INTO prescription_events (message_id, number, event_type, at, detail)"
                       " VALUES (?, NULL, ?, ?, ?)", (message_id, event.event_type, now, _json(detail)))
        add_event(conn, message_id, "unmatched", {
            "event_type": event.event_type, "relates_to": event.relates_to, "order_number": event.number,
            "note": "no prescription matches; kept for an analyst"}, now)
        return
    current, origin, task = _execute(
        conn, "SELECT state, message_id, open_task FROM prescriptions WHERE number=?" + _locked(conn),
        (number,)).fetchone()
    new_state = lifecycle.advance(current, lifecycle.target_state(lifecycle.InboundEvent(
        event.event_type, event.code, event.fill_status, event.description)))
    new_task = lifecycle.TASK_OPENERS.get(event.event_type, task)
    _record(conn, number, message_id, event.event_type, matched_by, current, new_state, new_task, now, detail)
    story = {"prescription": number, "event_type": event.event_type, "via_message": message_id,
             "matched_by": matched_by, "from": current, "to": new_state or current, **detail}
    if new_state is None and lifecycle.target_state(lifecycle.InboundEvent(
            event.event_type, event.code, event.fill_status)) is not None:
        story["note"] = "arrived out of order or repeated: state kept"
    if new_task != task:
        story["task_opened"] = new_task
    add_event(conn, origin, "prescription", story, now)
    if origin != message_id:
        add_event(conn, message_id, "correlated", {"prescription": number, "message": origin,
                                                  "matched_by": matched_by}, now)


def apply_outbound(conn: Conn, row: OutboxRow, now: float, add_event: AddEvent) -> None:
    """A delivered NewRx/CancelRx/response moves its prescription (sent, cancel-requested, task closed).
    Anything else delivered (an ADT, a FHIR Bundle) moves nothing and costs no query."""
    if row.message_type not in lifecycle.OUTBOUND_STATES and row.message_type not in lifecycle.TASK_CLOSERS:
        return
    number = _execute(conn, "SELECT prescription_number FROM messages WHERE id=?", (row.message_id,)).fetchone()[0]
    if not number:
        return
    state = _execute(conn, "SELECT state, message_id, open_task FROM prescriptions WHERE number=?" + _locked(conn),
                     (number,)).fetchone()
    if state is None:
        return
    current, origin, task = state
    new_state = lifecycle.advance(current, lifecycle.OUTBOUND_STATES.get(row.message_type))
    new_task = None if lifecycle.TASK_CLOSERS.get(row.message_type) == task else task
    if new_state is None and new_task == task:
        return
    _record(conn, number, row.message_id, row.message_type, "outbound", current, new_state, new_task, now,
            {"destination": row.destination, "control_id": row.control_id})
    story = {"prescription": number, "event_type": row.message_type, "from": current, "to": new_state or current,
             "destination": row.destination, "control_id": row.control_id}
    if new_task != task:
        story["task_closed"] = task
    add_event(conn, origin, "prescription", story, now)


def _record(conn: Conn, number: str, message_id: int, event_type: str, matched_by: str | None, current: str,
            new_state: str | None, new_task: str | None, now: float, detail: Mapping[str, Any]) -> None:
    """The prescription's new state and open task, and the history row that says why."""
    _execute(conn, "UPDATE prescriptions SET state=?, open_task=?, updated_at=? WHERE number=?",
             (new_state or current, new_task, now, number))
    _execute(conn, "INSERT INTO prescription_events (message_id, number, event_type, matched_by, from_state,"
                   " to_state, at, detail) VALUES (?,?,?,?,?,?,?,?)",
             (message_id, number, event_type, matched_by, current, new_state or current, now, _json(detail)))

"""What each role may see of a message, shared by the JSON API and the dashboard.

A viewer sees operational metadata only: ids, channel, status, format, message type, control ids,
trace id, sizes, times, the kinds of records (not their contents), delivery statuses and the event
kinds on the timeline with allow-listed, content-free details. Patient, encounter and prescription
numbers, error texts (a decoder's error may quote the message), origins (file names, peers), records
and raw payloads need ``analyst`` or above; showing them is audited by the caller.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from bridge.core.model.keys import PHI_KEYS
from bridge.core.outcomes import destination_outcomes, failed_at
from bridge.core.store import Store
from bridge.core.store.base import Event, Hold, OutboxRow, StoredMessage

from .auth import Principal

# Event detail keys that never carry message contents: what a viewer sees of a timeline.
VIEWER_EVENT_KEYS = frozenset({
    "destination", "destinations", "outbox_id", "attempt", "bytes", "channel", "format", "records",
    "outcome", "rules", "as", "of", "next_attempt_at", "actor", "from_state", "to_state", "event_type",
    "original", "force", "already_delivered_to", "by_message", "by_outbox_id", "message", "behind_message",
    "after_message", "which_was", "encode_failed",
    "map", "version", "stage", "steps",  # a map's timeline entry: names, versions, step ids, paths and counts
})
# What a viewer sees of one policy rule (a hold's or a timeline event's): which rule and on what basis.
# Its ``reason`` names the drug and the patient's situation, so it needs ``analyst``.
VIEWER_RULE_KEYS = ("id", "outcome", "basis")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None, name: str) -> float | None:
    """ISO 8601 (``2026-03-01T12:00:00Z`` or a date) or epoch seconds; naive times are UTC."""
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: expected an ISO 8601 time such as 2026-03-01T12:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def record_kinds(message: StoredMessage) -> list[str]:
    return [str(r.get("kind", "?")) for r in message.records or []]


def message_summary(message: StoredMessage, principal: Principal) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": message.id, "channel": message.channel, "status": message.status, "format": message.format,
        "received_at": iso(message.received_at), "updated_at": iso(message.updated_at),
        "message_type": message.message_type, "control_id": message.control_id,
        "ncpdp_message_id": message.ncpdp_message_id, "trace_id": message.trace_id, "size": message.size,
        "sha256": message.sha256, "replay_of": message.replay_of,
        "replay_root": message.replay_root, "replay_destinations": message.replay_destinations, "record_kinds": record_kinds(message),
        "sending_application": message.sending_application, "sending_facility": message.sending_facility,
    }
    if principal.can("analyst"):
        out.update({key: getattr(message, key) for key in PHI_KEYS})
        out["error"] = message.error
        out["origin"] = dict(message.origin)
    else:
        out["has_error"] = message.error is not None
    return out


def event_view(event: Event, principal: Principal) -> dict[str, Any]:
    detail = dict(event.detail)
    if not principal.can("analyst"):
        detail = {k: v for k, v in detail.items() if k in VIEWER_EVENT_KEYS}
        if isinstance(detail.get("rules"), list):  # the policy and held events carry the hold's rules
            detail["rules"] = viewer_rules(detail["rules"])
    return {"at": iso(event.at), "kind": event.kind, "message_id": event.message_id, "detail": detail}


def viewer_rules(rules: list[Any]) -> list[dict[str, Any]]:
    """Policy rules as a viewer may see them: :data:`VIEWER_RULE_KEYS` only, whatever else a rule carries."""
    return [{k: rule.get(k) for k in VIEWER_RULE_KEYS} for rule in rules if isinstance(rule, dict)]


def delivery_view(row: OutboxRow, principal: Principal) -> dict[str, Any]:
    out = {"id": row.id, "message_id": row.message_id, "destination": row.destination, "status": row.status,
           "attempts": row.attempts, "created_at": iso(row.created_at), "delivered_at": iso(row.delivered_at),
           "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
           "media_type": row.media_type, "control_id": row.control_id, "message_type": row.message_type,
           "original_message_id": row.original_message_id or row.message_id,
           "resolved_by": row.resolved_by, "resolved_by_message": row.resolved_by_message,
           "failed_at": failed_at(row)}
    if principal.can("analyst"):
        out["last_error"] = row.last_error
    else:
        out["has_error"] = row.last_error is not None
    return out


def hold_view(hold: Hold, principal: Principal) -> dict[str, Any]:
    reasons = [dict(r) for r in hold.reasons]
    if not principal.can("analyst"):
        reasons = viewer_rules(reasons)
    return {"id": hold.id, "message_id": hold.message_id, "status": hold.status, "created_at": iso(hold.created_at),
            "reasons": reasons, "resolved_at": iso(hold.resolved_at), "resolved_by": hold.resolved_by,
            "resolution": hold.resolution if principal.can("analyst") else None}


def raw_view(raw: bytes) -> dict[str, Any]:
    """Text when the payload is UTF-8 (HL7v2, JSON, XML), base64 otherwise."""
    try:
        return {"encoding": "utf-8", "text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"encoding": "base64", "text": base64.b64encode(raw).decode("ascii")}


def message_detail(store: Store, message: StoredMessage, principal: Principal) -> dict[str, Any]:
    """Summary, timeline and deliveries for everyone; records and raw payload for analysts and up."""
    holds = [h for h in store.holds(None) if h.message_id == message.id]
    rows = store.outbox_rows(message_id=message.id)
    out: dict[str, Any] = {
        "message": message_summary(message, principal),
        "timeline": [event_view(e, principal) for e in store.events(message.id)],
        "deliveries": [delivery_view(o, principal) for o in rows],
        # which destination got it and which failed (where, and — for analysts — why)
        "destinations": destination_outcomes(rows, with_errors=principal.can("analyst")),
        "holds": [hold_view(h, principal) for h in holds],
    }
    if principal.can("analyst"):
        out["records"] = message.records
        out["raw"] = raw_view(store.get_raw(message.id) or b"")
    return out


def trace_view(store: Store, trace_id: str, principal: Principal, limit: int = 500) -> dict[str, Any] | None:
    """Every message of one journey, oldest first, and all their events merged on one timeline."""
    messages = list(reversed(store.search(keys={"trace_id": trace_id}, limit=limit)))
    if not messages:
        return None
    timeline: list[tuple[float, int, dict[str, Any]]] = []
    for m in messages:
        for event in store.events(m.id):
            view = event_view(event, principal)
            view.update(channel=m.channel, format=m.format)
            timeline.append((event.at, event.id, view))
    timeline.sort(key=lambda item: (item[0], item[2]["message_id"], item[1]))
    out: dict[str, Any] = {
        "trace_id": trace_id,
        "messages": [message_summary(m, principal) for m in messages],
        "timeline": [view for _, _, view in timeline],
        "deliveries": [delivery_view(o, principal) for m in messages for o in store.outbox_rows(message_id=m.id)],
    }
    if principal.can("analyst"):
        out["records"] = {str(m.id): m.records for m in messages}
    return out

"""What an interface analyst needs beside a message's summary: each destination's encoded payload
and what the destination answered, and the messages related to this one.

The store keeps both halves of every delivery: the outbox row's payload (what was sent) and, per
attempt, an event with the transport's answer (``delivered``: the peer's acknowledgement text;
``delivery_failed`` / ``dead_letter``: the error) and, when the peer answered with a message of its
own (an HL7 ACK, a FHIR response), that answer stored as a message (``reply_message``). Payloads and
answers can quote the message, so they are for analysts and up (the caller audits the view).
"""

from __future__ import annotations

from typing import Any

from bridge.core.store import Store
from bridge.core.store.base import Event, OutboxRow, StoredMessage

from .auth import Principal
from .present import delivery_view, iso, raw_view

DELIVERY_EVENTS = ("encode_failed", "delivery_failed", "dead_letter", "delivered")
MAX_SHOWN_BYTES = 512 * 1024  # a payload larger than this is cut on the page (the API has it whole)


def message_extras(store: Store, message: StoredMessage, who: Principal) -> dict[str, Any]:
    """``destination_panes`` and ``related`` of a message's detail (see :func:`present.message_detail`)."""
    rows = store.outbox_rows(message_id=message.id)
    events = store.events(message.id)
    return {"destination_panes": destination_panes(store, message, rows, events, who),
            "related": related_messages(message, events, rows)}


def destination_panes(store: Store, message: StoredMessage, rows: list[OutboxRow], events: list[Event],
                      who: Principal) -> list[dict[str, Any]]:
    """One pane per outbox row, oldest first: its delivery, payload (analysts) and every answer."""
    analyst = who.can("analyst")
    payloads = store.outbox_payloads(message.id) if analyst else {}
    panes = []
    for row in rows:
        answers = [_answer(e, analyst) for e in events
                   if e.kind in DELIVERY_EVENTS and e.detail.get("outbox_id") == row.id]
        pane: dict[str, Any] = {"delivery": delivery_view(row, who), "answers": answers}
        if analyst:
            pane["payload"] = _shown(payloads.get(row.id, b""))
            pane["replies"] = [_reply(store, a["reply_message"]) for a in answers if a.get("reply_message")]
        panes.append(pane)
    return panes


def _answer(event: Event, analyst: bool) -> dict[str, Any]:
    """One attempt's outcome: when, which attempt, and (analysts) the transport's words."""
    detail = event.detail
    out: dict[str, Any] = {"at": iso(event.at), "kind": event.kind, "attempt": detail.get("attempt"),
                           "next_attempt_at": iso(detail["next_attempt_at"]) if detail.get("next_attempt_at") else None,
                           "reply_message": detail.get("reply_message")}
    if analyst:
        out["text"] = detail.get("detail") or detail.get("error")
    return out


def _reply(store: Store, reply_id: int) -> dict[str, Any]:
    reply = store.get_message(reply_id)
    raw = store.get_raw(reply_id) or b""
    return {"id": reply_id, "format": reply.format if reply else None,
            "message_type": reply.message_type if reply else None, "raw": _shown(raw)}


def _shown(payload: bytes) -> dict[str, Any]:
    view = raw_view(payload[:MAX_SHOWN_BYTES])
    view.update(size=len(payload), cut=len(payload) > MAX_SHOWN_BYTES)
    return view


def related_messages(message: StoredMessage, events: list[Event], rows: list[OutboxRow]) -> list[dict[str, Any]]:
    """Messages linked to this one, each once, with how: the replay it is of, the chain's original,
    its replays, the peer answers it got, the delivery it answers, and replays that resolved its
    dead letters. Ids only (no contents): every role may follow them."""
    related: dict[int, str] = {}

    def add(message_id: Any, how: str) -> None:
        if isinstance(message_id, int) and message_id != message.id and message_id not in related:
            related[message_id] = how

    add(message.replay_of, "replay of")
    add(message.replay_root, "original of the replay chain")
    add((message.origin or {}).get("reply_to_message"), "answer to the delivery of")
    for event in events:
        if event.kind == "replayed":
            add(event.detail.get("as"), "replayed as")
        add(event.detail.get("reply_message"), "answer from " + str(event.detail.get("destination", "a peer")))
    for row in rows:
        add(row.resolved_by_message, f"replay that delivered to {row.destination}")
    return [{"id": message_id, "how": how} for message_id, how in related.items()]

"""The prescription lifecycle: one state machine across all of a prescription's messages.

created → sent → accepted (Status 000) | rejected (Error) → dispensed / partially-dispensed /
not-dispensed / transferred (RxFill) → cancel-requested → cancelled | cancel-denied
(CancelRxResponse). Renewal and change requests open a task for the prescriber; the responses we
send close it.

Pharmacy networks deliver callbacks late, twice, or out of order, so a transition only ever moves a
prescription *forward* (by rank): a Status 000 arriving after the RxFill is recorded in the timeline
but does not turn "dispensed" back into "accepted". This module is pure: the store applies its
answers inside the transaction that records the message.
"""

from __future__ import annotations

from dataclasses import dataclass

RANK = {
    "created": 0,
    "sent": 1,
    "accepted": 2,
    "rejected": 2,
    "partially-dispensed": 3,
    "dispensed": 4,
    "not-dispensed": 4,
    "transferred": 4,
    "cancel-requested": 5,
    "cancel-denied": 6,
    "cancelled": 6,
}
FILL_STATES = {
    "dispensed": "dispensed",
    "partiallydispensed": "partially-dispensed",
    "notdispensed": "not-dispensed",
    "transferred": "transferred",
}
OUTBOUND_STATES = {"NewRx": "sent", "CancelRx": "cancel-requested"}
TASK_OPENERS = {"RxRenewalRequest": "renewal", "RxChangeRequest": "change"}
TASK_CLOSERS = {"RxRenewalResponse": "renewal", "RxChangeResponse": "change"}
APPROVED = {"approved", "accepted", "000"}


@dataclass(frozen=True)
class InboundEvent:
    """What the lifecycle needs of a PrescriptionEvent record."""

    event_type: str
    code: str | None = None
    fill_status: str | None = None
    description: str | None = None


def target_state(event: InboundEvent) -> str | None:
    """The state an inbound event asks for, or None when it changes no state (Verify, requests)."""
    kind = event.event_type
    if kind == "Status":
        return "accepted" if (event.code or "").strip() == "000" else None
    if kind == "Error":
        return "rejected"
    if kind == "RxFill":
        return FILL_STATES.get((event.fill_status or "").replace("_", "").replace(" ", "").lower())
    if kind == "CancelRxResponse":
        return "cancelled" if (event.code or "").strip().lower() in APPROVED else "cancel-denied"
    return None


def advance(current: str, target: str | None) -> str | None:
    """The new state when ``target`` moves the prescription forward, else None (kept as it is)."""
    if target is None or target not in RANK:
        return None
    if RANK[target] > RANK.get(current, -1):
        return target
    return None

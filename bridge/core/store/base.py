"""The store interface: everything the engine keeps, behind one set of methods.

Callers (intake, pipeline, deliverer, CLI, web) use only this interface, so a PostgreSQL backend can
implement it without touching them; one shared test suite runs against every backend. Each method
that changes state is one transaction: a message is never half-received, and outbox rows are written
in the same transaction as the status change that creates them.

Claims use leases with fencing tokens: ``claim_*`` returns a token, and finishing work with a stale
token raises :class:`~bridge.errors.LeaseLost` instead of overwriting the new owner's result.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MESSAGE_STATUSES = (
    "received",    # durably stored, waiting for a worker
    "processing",  # claimed by a worker (leased)
    "failed",      # could not be decoded or encoded: kept with the error, replayable
    "held",        # a policy asked for review: waits for an operator
    "rejected",    # a policy blocked it, or an operator rejected the hold
    "filtered",    # no route matched: done, nothing to send
    "routed",      # outbox rows pending delivery
    "delivered",   # every outbox row delivered
    "dead",        # at least one outbox row dead-lettered, none pending
)
TERMINAL_OUTBOX = ("delivered", "dead")


@dataclass(frozen=True)
class StoredMessage:
    id: int
    channel: str
    status: str
    format: str
    received_at: float
    updated_at: float
    sha256: str
    size: int
    control_id: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    message_type: str | None = None
    patient_id: str | None = None
    encounter_id: str | None = None
    prescription_number: str | None = None
    ncpdp_message_id: str | None = None
    trace_id: str | None = None
    error: str | None = None
    replay_of: int | None = None
    origin: Mapping[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] | None = None
    policy_override: bool = False

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class MessageClaim:
    """A message a worker holds under lease. ``token`` fences its writes."""

    id: int
    channel: str
    format: str
    raw: bytes
    token: int
    trace_id: str | None
    control_id: str | None
    policy_override: bool


@dataclass(frozen=True)
class OutboxRow:
    id: int
    message_id: int
    destination: str
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    media_type: str
    file_extension: str
    order_key: str | None = None
    order_mode: str = "strict"
    last_error: str | None = None
    delivered_at: float | None = None
    control_id: str | None = None
    message_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class OutboxClaim:
    row: OutboxRow
    payload: bytes
    token: int
    trace_id: str | None


@dataclass(frozen=True)
class NewOutbox:
    """An outbox row to create when a message is routed."""

    destination: str
    payload: bytes
    media_type: str
    file_extension: str
    order_key: str | None
    order_mode: str
    control_id: str | None = None
    message_type: str | None = None


@dataclass(frozen=True)
class PrescriptionEventIn:
    """An inbound prescription event to correlate (SCRIPT Status, Error, RxFill…)."""

    event_type: str
    relates_to: str | None = None
    number: str | None = None
    code: str | None = None
    fill_status: str | None = None
    description: str | None = None
    message_id: str | None = None


@dataclass(frozen=True)
class PrescriptionState:
    number: str
    state: str
    message_id: int
    trace_id: str | None
    open_task: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Event:
    id: int
    message_id: int
    at: float
    kind: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Hold:
    id: int
    message_id: int
    status: str
    created_at: float
    reasons: Sequence[Mapping[str, Any]]
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ProcessingResult:
    """What a worker decided about a claimed message, written in one transaction."""

    status: str
    records: list[dict[str, Any]] | None = None
    keys: Mapping[str, str | None] = field(default_factory=dict)
    trace_id: str | None = None
    outbox: Sequence[NewOutbox] = ()
    events: Sequence[tuple[str, Mapping[str, Any]]] = ()
    hold_reasons: Sequence[Mapping[str, Any]] | None = None
    error: str | None = None
    prescriptions: Sequence[str] = ()
    prescription_events: Sequence[PrescriptionEventIn] = ()


class Store(abc.ABC):
    """Abstract store. See :class:`bridge.core.store.sqlite.SQLiteStore` for the embedded backend."""

    # --- intake --------------------------------------------------------------------------------

    @abc.abstractmethod
    def receive(self, channel: str, fmt: str, raw: bytes, *, dedupe_key: str | None,
                header: Mapping[str, Any], origin: Mapping[str, Any],
                error: str | None = None) -> tuple[int, bool]:
        """Durably store an inbound message; returns ``(message id, duplicate)``.

        A message whose ``dedupe_key`` was seen before is not stored again: the id of the first one
        is returned with ``duplicate=True`` and a ``duplicate`` event is added to its timeline.
        ``error`` stores the message as ``failed`` at once (kept for inspection, never queued).
        """

    @abc.abstractmethod
    def receive_many(self, items: Sequence[tuple[Any, ...]]) -> list[tuple[int, bool] | BaseException]:
        """Store several messages in one commit. Each item holds ``receive``'s arguments in order
        (channel, format, raw, dedupe_key, header, origin, error); each result is ``(id, duplicate)``
        or the error that kept that item from being stored."""

    # --- processing ----------------------------------------------------------------------------

    @abc.abstractmethod
    def claim_message(self, owner: str, lease_seconds: float) -> MessageClaim | None:
        """Claim the oldest waiting message of a channel that has no other message in flight."""

    @abc.abstractmethod
    def finish_processing(self, claim: MessageClaim, result: ProcessingResult) -> None:
        """Write a worker's decision, its outbox rows, hold and events, all in one transaction."""

    @abc.abstractmethod
    def find_trace(self, keys: Mapping[str, str | None]) -> str | None:
        """The trace id of an earlier message sharing an encounter id or prescription number, or
        whose outbound control id (e.g. a NewRx MessageID) is named by ``keys["relates_to"]``."""

    # --- prescriptions -------------------------------------------------------------------------

    @abc.abstractmethod
    def prescription(self, number: str) -> PrescriptionState | None: ...

    @abc.abstractmethod
    def prescription_events(self, number: str | None = None, *, unmatched: bool = False,
                            limit: int = 100) -> list[dict[str, Any]]:
        """Lifecycle events of one prescription, or the inbound events that matched none."""

    # --- delivery ------------------------------------------------------------------------------

    @abc.abstractmethod
    def claim_delivery(self, owner: str, lease_seconds: float, now: float | None = None) -> OutboxClaim | None:
        """Claim the next due outbox row whose lane (destination, order key) lets it go."""

    @abc.abstractmethod
    def finish_delivery(self, claim: OutboxClaim, outcome: str, detail: str | None,
                        next_attempt_at: float | None = None) -> None:
        """Record a send's outcome: ``delivered``, ``retry`` (at ``next_attempt_at``) or ``dead``."""

    # --- reading -------------------------------------------------------------------------------

    @abc.abstractmethod
    def get_message(self, message_id: int) -> StoredMessage | None: ...

    @abc.abstractmethod
    def get_raw(self, message_id: int) -> bytes | None: ...

    @abc.abstractmethod
    def events(self, message_id: int) -> list[Event]: ...

    @abc.abstractmethod
    def outbox_rows(self, message_id: int | None = None, status: str | None = None,
                    limit: int = 100) -> list[OutboxRow]: ...

    @abc.abstractmethod
    def search(self, *, status: str | None = None, channel: str | None = None,
               keys: Mapping[str, str] | None = None, since: float | None = None,
               until: float | None = None, limit: int = 50, before_id: int | None = None) -> list[StoredMessage]:
        """Newest first. ``keys`` are business keys (see ``bridge.core.model.KEY_NAMES``)."""

    @abc.abstractmethod
    def counts(self) -> dict[str, dict[str, int]]:
        """Message counts per channel and status (for overviews and metrics)."""

    # --- operator actions -----------------------------------------------------------------------

    @abc.abstractmethod
    def replay(self, message_id: int, *, reason: str, actor: str) -> int:
        """Queue a copy of a stored message for processing again; returns the new message id."""

    @abc.abstractmethod
    def holds(self, status: str | None = "open") -> list[Hold]: ...

    @abc.abstractmethod
    def resolve_hold(self, message_id: int, action: str, *, reason: str, actor: str) -> Hold:
        """``release`` (the message is routed, bypassing REVIEW) or ``reject`` an open hold."""

    @abc.abstractmethod
    def add_event(self, message_id: int, kind: str, detail: Mapping[str, Any]) -> None: ...

    # --- watermarks and audit -------------------------------------------------------------------

    @abc.abstractmethod
    def get_watermark(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def set_watermark(self, name: str, value: str) -> None: ...

    @abc.abstractmethod
    def audit(self, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> AuditEntry:
        """Append to the hash-chained audit log."""

    @abc.abstractmethod
    def audit_entries(self, limit: int = 100) -> list[AuditEntry]: ...

    @abc.abstractmethod
    def verify_audit(self) -> int | None:
        """The id of the first entry whose hash does not match the chain, or None when intact."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

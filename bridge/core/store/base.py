"""The store interface: everything the engine keeps, behind one set of methods.

Callers (intake, pipeline, deliverer, CLI, web) use only this interface, so a PostgreSQL backend can
implement it without touching them; one shared test suite runs against every backend. Each method
that changes state is one transaction: a message is never half-received, and outbox rows are written
in the same transaction as the status change that creates them.

Claims use leases with fencing tokens: ``claim_*`` returns a token, and finishing work with a stale
token raises :class:`~bridge.errors.LeaseLost` instead of overwriting the new owner's result.

The queue (see "Lanes and batches" in docs/architecture.md) is four batched methods —
``claim_messages`` / ``finish_processing_many`` for processing, ``claim_deliveries`` /
``finish_deliveries`` for delivery — plus a wake-up hint, ``wait_for_work``. They are the whole
driver surface a backend implements for the queue; each backend keeps its queue SQL in one place.

*Lanes.* Work moves in lanes: a message is in the processing lane ``(channel, order_key)``, an outbox
row in the delivery lane ``(destination, order_key)``. The order key is fixed when a message is
received (``header["order_key"]``, computed by the intake from the channel's ``order.by`` and the
format's cheap header read) and is copied to the outbox rows the message creates. A lane's *head* is
its oldest unfinished item; only heads are claimed, so within a lane nothing overtakes anything,
while different lanes proceed in parallel. ``order_key=None`` means the item is a lane of its own
(never waits, never makes anything wait).

*Unfinished* for processing means status ``received`` or ``processing``: a message that ends
``failed``, ``held``, ``rejected``, ``filtered`` or ``routed`` lets the next one of its lane go (a
released hold, or a replay, enters its lane again at the back). For delivery it means status
``pending``; what a failed send does to its lane is the row's ``order_mode``:
``strict`` — the row stays the head and the lane waits for its retries (until delivered or dead);
``rotate`` — a row whose send failed steps aside: it retries on its own schedule, no longer ordered,
and the next row of the lane becomes the head at once.

*Batches and cost.* One claim transaction takes up to ``limit`` heads (at most one per lane),
oldest first; one finish transaction writes a whole batch's results. The cost of a claim must not
grow with the number of waiting messages: a backend keeps lane heads findable through an index (or a
table of heads), never by scanning a lane's backlog.

*Leases and fencing.* Each claimed item gets ``lease_seconds`` and a fencing token that grows with
every claim. An item whose lease expired is claimable again (it is still its lane's head), and the
old owner's write with the old token is refused per item: ``finish_*`` return a
:class:`~bridge.errors.LeaseLost` in that item's place and still commit the rest of the batch.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import LeaseLost, StoreError

def _no_intake_journal() -> StoreError:
    """The error of a store without intake journal support (docs/mllp.md: SQLite only for now)."""
    return StoreError("this store does not support an intake journal (SQLite only for now)")


MESSAGE_STATUSES = (
    "received",    # durably stored, waiting for a worker
    "processing",  # claimed by a worker (leased)
    "failed",      # could not be decoded (or processing broke off): kept with the error, replayable
    "held",        # a policy asked for review: waits for an operator
    "rejected",    # a policy blocked it, or an operator rejected the hold
    "filtered",    # no route matched: done, nothing to send
    "routed",      # outbox rows pending delivery
    "delivered",   # every outbox row delivered
    "dead",        # at least one outbox row dead-lettered (a send or its encode failed), none pending
    "resolved",    # was dead: every dead letter was delivered since by a replay (outbox rows "resolved")
)
TERMINAL_OUTBOX = ("delivered", "dead", "resolved")
# A prescription has at most one "open" hold; a later held message for it waits ("waiting") and its
# hold opens when the one before it is released or rejected.
HOLD_STATUSES = ("open", "waiting", "released", "rejected")


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
    replay_root: int | None = None
    replay_destinations: list[str] | None = None

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
    replay_root: int | None = None
    replay_destinations: tuple[str, ...] | None = None
    order_key: str | None = None  # its lane's key (copied to the outbox rows it creates); None: a lane of its own

    @property
    def original_id(self) -> int:
        """The first message of this one's replay chain: outbound identities are named from it, so a
        replay reaches its receivers with the identities they saw the first time."""
        return self.replay_root or self.id


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
    original_message_id: int | None = None
    original_outbox_id: int | None = None
    resolved_by: int | None = None
    resolved_by_message: int | None = None

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
class DeliveryOutcome:
    """The result of one send, for :meth:`Store.finish_deliveries`.

    ``outcome`` is ``delivered``, ``retry`` (at ``next_attempt_at``) or ``dead``; ``reply`` is
    ``(channel, format, raw)`` of the peer's synchronous answer, stored as a new message in the same
    transaction (so an answer is never lost once the delivery counts as done)."""

    claim: OutboxClaim
    outcome: str
    detail: str | None
    next_attempt_at: float | None = None
    reply: tuple[str, str, bytes] | None = None


@dataclass(frozen=True)
class NewOutbox:
    """An outbox row to create when a message is routed.

    ``error`` is set when the destination's encoder refused the message (or failed): the row is stored
    as a dead letter at once, with that error as ``last_error``, an empty payload and ``attempts`` 0
    (never claimed: that is how views tell an encode failure from a send failure), and an
    ``encode_failed`` event; the message settles in the same transaction (``dead`` when every row is
    dead). So one destination that cannot take a message fails alone and stays visible and replayable
    (``replay --destination``) while the message's other rows are delivered."""

    destination: str
    payload: bytes
    media_type: str
    file_extension: str
    order_key: str | None
    order_mode: str
    control_id: str | None = None
    message_type: str | None = None
    error: str | None = None


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
class User:
    """A dashboard login. ``password_hash`` is a self-describing scrypt string (see bridge.web.auth)."""

    name: str
    role: str
    created_at: float
    disabled: bool
    password_hash: str = field(default="", repr=False)
    session_epoch: int = 0


@dataclass(frozen=True)
class ApiToken:
    """An API token's metadata; only the SHA-256 of the token is stored, never the token."""

    name: str
    role: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True)
class ChannelStats:
    """What an operator needs to see about a channel at a glance."""

    channel: str
    paused: bool
    queue_depth: int
    oldest_waiting_at: float | None
    received_recent: int
    errors_recent: int
    last_activity_at: float | None
    counts: Mapping[str, int] = field(default_factory=dict)
    paused_by: str | None = None
    paused_reason: str | None = None

    @property
    def error_rate(self) -> float:
        """Share of the recent window's messages that failed, were rejected or dead-lettered."""
        return self.errors_recent / self.received_recent if self.received_recent else 0.0


@dataclass(frozen=True)
class AlertState:
    """One alert's stored state (``alerts`` table): names, counts and times only, never PHI."""

    rule: str
    subject: str
    state: str
    """``firing`` or ``resolved``."""
    episode: int
    """How many times this (rule, subject) has started firing."""
    started_at: float
    last_seen_at: float
    resolved_at: float | None = None
    notified_at: float | None = None
    """When the last notice of this episode's current state went out (None: one is due)."""
    notices: int = 0
    summary: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    claim_owner: str | None = None
    claim_expires: float | None = None


@dataclass(frozen=True)
class DestinationDelivery:
    """How a destination's deliveries stand, for alert rules (aggregates of its outbox rows)."""

    destination: str
    pending: int
    oldest_pending_at: float | None
    retrying: int
    """Pending rows that have failed at least once."""
    last_delivered_at: float | None
    """The last delivery, looked up only for a destination in trouble (work waiting since the window's
    start, or dead letters in it); None otherwise or when it never delivered."""
    dead_recent: int
    """Rows created since the window's start that are dead letters."""


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
        or the error that kept that item from being stored.

        ``header["order_key"]`` (absent: None) puts the message in the processing lane
        ``(channel, order_key)``: at the back of it, or at its head when the lane has nothing unfinished.
        This must stay cheap: the intake's commit is what a sender waits for."""

    def receive_now(self, items: Sequence[tuple[Any, ...]]) -> (
            tuple[list[tuple[int, bool]], Callable[[], None]] | None):
        """``receive_many`` for a caller that must not block (a listener's event loop): commit at once
        if the store can without waiting for another writer, and return ``(results, wait)`` where
        ``wait()`` blocks (on another thread) until the commit is on the disk and raises StoreError if
        it cannot be; the sender may be answered only after ``wait()`` returned. None means "not now"
        (busy, or a row needs the careful path): the caller uses ``receive_many``. Stores whose commit
        is durable when it returns, or that cannot commit without waiting, keep this default."""
        return None

    # --- intake journals (bridge.core.journal; SQLite only for now) ----------------------------

    supports_intake_journal = False

    def journal_position(self, journal_id: str) -> Any:
        raise _no_intake_journal()

    def journal_positions(self) -> list[dict[str, Any]]:
        return []

    def move_journal(self, journal_id: str, channel: str, expected: Any, new: Any,
                     rows: Sequence[tuple[Any, ...]], extra: Sequence[tuple[Any, ...]] = ()) -> list[Any] | None:
        raise _no_intake_journal()

    def channel_dedupe_keys(self, channel: str) -> Any:
        raise _no_intake_journal()

    def journal_durable(self) -> None:
        """Return once every journal move of this thread is on the disk."""

    def known_dedupe_keys(self, keys: Any, *, before: float) -> set[str]:
        raise _no_intake_journal()

    # --- the queue: processing -----------------------------------------------------------------

    @abc.abstractmethod
    def claim_messages(self, owner: str, lease_seconds: float, limit: int) -> list[MessageClaim]:
        """Claim up to ``limit`` lane heads in one transaction, oldest first: messages ``received`` (or
        ``processing`` under an expired lease) that head their lane, of channels that are not paused.
        At most one message per lane; an empty list when nothing is claimable. Its cost does not
        depend on how many messages wait behind the heads."""

    @abc.abstractmethod
    def finish_processing_many(self, results: Sequence[tuple[MessageClaim, ProcessingResult]]
                               ) -> list[LeaseLost | None]:
        """Write a batch of workers' decisions — status, records, keys, events, outbox rows (with
        the message's ``order_key`` and the channel's order mode), holds, prescription lifecycle — in
        one transaction, and let the next message of each finished lane become its head.

        Per item: None when written, or the :class:`~bridge.errors.LeaseLost` for a claim whose
        token is stale (that item is skipped; the others commit)."""

    def claim_message(self, owner: str, lease_seconds: float) -> MessageClaim | None:
        """One lane head, or None (``claim_messages`` with a batch of one)."""
        claims = self.claim_messages(owner, lease_seconds, 1)
        return claims[0] if claims else None

    def finish_processing(self, claim: MessageClaim, result: ProcessingResult) -> None:
        """Write one worker's decision in one transaction; raises LeaseLost when the claim is stale."""
        (lost,) = self.finish_processing_many([(claim, result)])
        if lost is not None:
            raise lost

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a hint that another process committed queue work
        (a received message, an outbox row, a settled lane); True when a hint came. Only a hint:
        callers claim afterwards and must also poll. This default sleeps and returns False; a
        backend may do better (SQLite watches the file's data version, PostgreSQL can LISTEN for a
        NOTIFY sent at most once per committed batch)."""
        import time

        time.sleep(timeout)
        return False

    def wait_for(self, kind: str, timeout: float) -> bool:
        """``wait_for_work`` for one kind of work, ``"messages"`` (a worker's) or ``"deliveries"`` (a
        deliverer's), so a hint for one kind does not wake the threads waiting for the other. This
        default waits for any hint; PostgreSQL's NOTIFY says which kind its batch made claimable."""
        return self.wait_for_work(timeout)

    @abc.abstractmethod
    def find_trace(self, keys: Mapping[str, str | None]) -> str | None:
        """The trace id of an earlier message sharing an encounter id or prescription number, or
        whose outbound control id (e.g. a NewRx MessageID) is named by ``keys["relates_to"]``."""

    def find_traces(self, lookups: Sequence[Mapping[str, str | None]]) -> list[str | None]:
        """``find_trace`` for each of a batch's messages, in order. A backend over a network answers
        them in one round trip; this default asks one by one."""
        return [self.find_trace(keys) for keys in lookups]

    # --- prescriptions -------------------------------------------------------------------------

    @abc.abstractmethod
    def prescription(self, number: str) -> PrescriptionState | None: ...

    @abc.abstractmethod
    def prescription_events(self, number: str | None = None, *, unmatched: bool = False,
                            limit: int = 100) -> list[dict[str, Any]]:
        """Lifecycle events of one prescription, or the inbound events that matched none."""

    # --- delivery ------------------------------------------------------------------------------

    @abc.abstractmethod
    def claim_deliveries(self, owner: str, lease_seconds: float, limit: int,
                         now: float | None = None) -> list[OutboxClaim]:
        """Claim up to ``limit`` due outbox rows in one transaction: ``pending`` rows whose
        ``next_attempt_at`` has come, not under a live lease, that head their lane ``(destination,
        order_key)`` — or that stepped aside in a ``rotate`` lane. Soonest due first; each claim
        counts an attempt. Its cost does not depend on how many rows wait."""

    @abc.abstractmethod
    def finish_deliveries(self, outcomes: Sequence[DeliveryOutcome]) -> list[int | None | LeaseLost]:
        """Record a batch of sends' outcomes in one transaction: outbox status, timeline events, the
        prescription lifecycle, dead letters resolved by a replay, each message's overall status,
        stored replies; and move each lane on (see the module docstring for strict and rotate).

        Per item: the stored reply's message id (None without a reply), or the
        :class:`~bridge.errors.LeaseLost` for a stale claim (skipped; the others commit)."""

    @abc.abstractmethod
    def renew_deliveries(self, claims: Sequence[OutboxClaim], lease_seconds: float) -> list[bool]:
        """Extend the leases of claimed rows whose sends are still in flight to ``lease_seconds`` from
        now, fenced by each claim's token: a send that outlasts its lease must not let another
        deliverer claim the row and send it again concurrently. Per claim: True when renewed, False
        when the claim is stale (settled, or claimed anew after its lease expired)."""

    def claim_delivery(self, owner: str, lease_seconds: float, now: float | None = None) -> OutboxClaim | None:
        """One due lane head, or None (``claim_deliveries`` with a batch of one)."""
        claims = self.claim_deliveries(owner, lease_seconds, 1, now)
        return claims[0] if claims else None

    def finish_delivery(self, claim: OutboxClaim, outcome: str, detail: str | None,
                        next_attempt_at: float | None = None, reply: tuple[str, str, bytes] | None = None) -> int | None:
        """Record one send's outcome (see :class:`DeliveryOutcome`); returns the stored reply's id.
        Raises LeaseLost when the claim is stale, ValueError for an unknown outcome."""
        (result,) = self.finish_deliveries([DeliveryOutcome(claim, outcome, detail, next_attempt_at, reply)])
        if isinstance(result, LeaseLost):
            raise result
        return result

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
    def outbox_payloads(self, message_id: int) -> dict[int, bytes]:
        """The encoded payload of each of a message's outbox rows, by outbox id."""

    @abc.abstractmethod
    def search(self, *, status: str | None = None, channel: str | None = None,
               keys: Mapping[str, str] | None = None, since: float | None = None,
               until: float | None = None, limit: int = 50, before_id: int | None = None,
               message_type: str | None = None, destination: str | None = None,
               text: str | None = None) -> list[StoredMessage]:
        """Newest first. ``keys`` are business keys (see ``bridge.core.model.KEY_NAMES``);
        ``destination``: messages with an outbox row for it; ``text``: words in the raw input or an
        outbox payload, from the content index (a trailing ``*`` matches a prefix; BridgeError when
        there is no word)."""

    indexes_content_later: bool = False
    """True when new payloads reach the content index only through :meth:`index_content` (the engine
    then runs it in a thread of its own); False when the database indexes them as they are written."""

    def index_content(self, limit: int = 2000) -> int:
        """Bring the content index up to date by at most ``limit`` rows per table, in one transaction;
        returns how many rows it indexed (0: up to date). A backend whose database maintains the index
        itself (PostgreSQL's GIN index) has nothing to do."""
        return 0

    @abc.abstractmethod
    def message_types(self, limit: int = 200) -> list[str]:
        """The distinct message types stored, sorted."""

    @abc.abstractmethod
    def counts(self) -> dict[str, dict[str, int]]:
        """Message counts per channel and status (for overviews and metrics)."""

    # --- operator actions -----------------------------------------------------------------------

    @abc.abstractmethod
    def replay(self, message_id: int, *, reason: str, actor: str, destinations: Sequence[str] | None = None,
               force: bool = False) -> int:
        """Queue a copy of a stored message for processing again; returns the new message id.

        The copy keeps its chain's first message as ``replay_root``, so what it sends carries the
        original's outbound identities. ``destinations`` limits it to destinations the chain was
        routed to before. Raises :class:`~bridge.errors.ReplayRefused` for a held message, for a
        destination the chain never went to, and — unless ``force`` — when the message carries a
        prescription already delivered to one of the destinations it would go to."""

    @abc.abstractmethod
    def holds(self, status: str | None = "open") -> list[Hold]: ...

    @abc.abstractmethod
    def resolve_hold(self, message_id: int, action: str, *, reason: str, actor: str) -> Hold:
        """``release`` (the message is routed, bypassing REVIEW) or ``reject`` an open hold; the oldest
        hold waiting for the same prescription opens in the same transaction."""

    @abc.abstractmethod
    def add_event(self, message_id: int, kind: str, detail: Mapping[str, Any]) -> None: ...

    # --- admin: users, API tokens, channel state, job history, audit search ----------------------
    # Every change here is audited in the same transaction as the change itself.

    @abc.abstractmethod
    def create_user(self, name: str, password_hash: str, role: str, *, actor: str) -> User: ...

    @abc.abstractmethod
    def get_user(self, name: str) -> User | None: ...

    @abc.abstractmethod
    def users(self) -> list[User]: ...

    @abc.abstractmethod
    def update_user(self, name: str, *, actor: str, password_hash: str | None = None, role: str | None = None,
                    disabled: bool | None = None) -> User: ...

    @abc.abstractmethod
    def end_sessions(self, name: str, *, actor: str) -> None:
        """End every dashboard session of a user (logout), wherever its cookie was copied."""

    @abc.abstractmethod
    def create_token(self, name: str, token_sha256: str, role: str, *, actor: str) -> ApiToken: ...

    @abc.abstractmethod
    def token_by_hash(self, token_sha256: str) -> ApiToken | None:
        """The live (not revoked) token with this hash; records its use."""

    @abc.abstractmethod
    def tokens(self) -> list[ApiToken]: ...

    @abc.abstractmethod
    def revoke_token(self, name: str, *, actor: str) -> ApiToken: ...

    @abc.abstractmethod
    def set_channel_paused(self, channel: str, paused: bool, *, reason: str, actor: str) -> None:
        """Pause or resume a channel: workers do not claim a paused channel's messages (intake goes on)."""

    @abc.abstractmethod
    def paused_channels(self) -> dict[str, Mapping[str, Any]]: ...

    @abc.abstractmethod
    def received_per_minute(self, since: float, minutes: int) -> dict[str, list[int]]:
        """Per channel with traffic: messages received (replays left out) in each minute after
        ``since``, oldest first (``minutes`` counts; the overview's throughput chart)."""

    @abc.abstractmethod
    def channel_stats(self, since: float) -> dict[str, ChannelStats]:
        """Per channel: queue depth, oldest waiting, activity and errors since ``since``."""

    @abc.abstractmethod
    def destination_counts(self) -> dict[str, dict[str, int]]:
        """Outbox row counts per destination and status (pending, delivered, dead)."""

    @abc.abstractmethod
    def job_runs(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Job run history, newest first (the scheduler writes it)."""

    @abc.abstractmethod
    def search_audit(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
                     since: float | None = None, until: float | None = None, limit: int = 100,
                     before_id: int | None = None) -> list[AuditEntry]:
        """Audit entries, newest first; ``action`` matches a prefix (``hold.`` finds releases and rejections)."""

    # --- scheduled jobs, retention, metrics (bridge.core.scheduler / retention / metrics) --------
    # A job run's row is its lease: UNIQUE(job, slot) lets one process insert it; ``owner`` fences
    # every later write. Run dicts have the keys of ``job_runs`` plus ``lease_expires`` and ``attempts``.

    @abc.abstractmethod
    def claim_job_slot(self, job: str, slot: str, owner: str, lease_seconds: float,
                       now: float | None = None) -> dict[str, Any] | None:
        """Start the run of ``job`` for ``slot`` (status ``running``), or take over a run of that slot
        whose lease expired; None when another process has (or had) the slot."""

    @abc.abstractmethod
    def renew_job_slot(self, run_id: int, owner: str, lease_seconds: float, *, attempts: int | None = None,
                       detail: Mapping[str, Any] | None = None) -> bool:
        """Extend a running run's lease (and record its attempts); False when ``owner`` lost it."""

    @abc.abstractmethod
    def finish_job_slot(self, run_id: int, owner: str, status: str, detail: Mapping[str, Any]) -> bool:
        """End a run as ``succeeded``, ``failed`` or ``skipped``; False when ``owner`` lost the lease."""

    @abc.abstractmethod
    def job_run(self, run_id: int) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def job_run_history(self, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Runs newest first, with lease and attempts."""

    @abc.abstractmethod
    def expired_job_runs(self, job: str, now: float | None = None) -> list[dict[str, Any]]:
        """Runs still marked running whose lease expired (their process died)."""

    @abc.abstractmethod
    def last_scheduled_slot(self, job: str) -> str | None:
        """The newest non-manual slot the job has a run row for (ISO text sorts in time order)."""

    @abc.abstractmethod
    def job_run_counts(self) -> dict[str, dict[str, int]]:
        """Run counts per job and status."""

    @abc.abstractmethod
    def last_job_success(self) -> dict[str, float]:
        """Per job, when its newest successful run finished."""

    @abc.abstractmethod
    def message_intake(self, message_id: int) -> tuple[str, float] | None:
        """A message's channel and ``received_at`` (one cheap read, for the latency histogram)."""

    @abc.abstractmethod
    def message_intakes(self, message_ids: Sequence[int]) -> dict[int, tuple[str, float]]:
        """``message_intake`` of several messages in one read (those that exist), by id."""

    @abc.abstractmethod
    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Outbox row counts per destination and status (queue depth per destination)."""

    @abc.abstractmethod
    def destination_outbox_activity(self, names: Iterable[str] = ()) -> dict[str, Any]:
        """Per destination (``names``, and any with waiting or dead rows), an ``OutboxActivity`` (store.destination_reads): backlog, waiting rows whose
        last attempt failed, the oldest waiting row, the last success and the dead letters."""

    @abc.abstractmethod
    def destination_attempts(self, since: float) -> dict[str, Any]:
        """Per destination, an ``AttemptActivity`` (store.destination_reads): its send attempts and
        failures recorded at or after ``since``, the newest failure and when the current run of
        failures began."""

    @abc.abstractmethod
    def prune_messages(self, policies: Mapping[str, tuple[float, Sequence[str]]], *, actor: str,
                       limit: int = 10000, dry_run: bool = False) -> dict[str, dict[str, int]]:
        """Per channel ``(cutoff timestamp, statuses)``: delete messages received before the cutoff in
        those statuses — never waiting or held ones, nor any with a pending outbox row — with their
        events, outbox rows and resolved holds, and append one ``retention.prune`` audit entry with the
        counts, in one transaction. Returns counts per channel (``messages``, ``events``, ``outbox``,
        ``holds``); ``dry_run`` counts without deleting or auditing."""

    # --- alerts (bridge.core.alerts; compare-and-set, so several nodes send each notice once) ---------

    @abc.abstractmethod
    def alert_seen(self, rule: str, subject: str, summary: str, facts: Mapping[str, Any], now: float) -> bool:
        """The alert's condition holds: True when this call started a new firing episode."""

    @abc.abstractmethod
    def alert_cleared(self, rule: str, subject: str, now: float) -> bool:
        """The condition no longer holds: True when this call resolved a firing alert."""

    @abc.abstractmethod
    def claim_alert_notice(self, rule: str, subject: str, owner: str, now: float, repeat_seconds: float,
                           lease_seconds: float) -> AlertState | None:
        """Lease the alert's due notice (first, repeat after ``repeat_seconds``, or resolved) to ``owner``;
        None when none is due or another owner holds an unexpired lease."""

    @abc.abstractmethod
    def finish_alert_notice(self, claimed: AlertState, owner: str, *, sent: bool, error: str | None,
                            now: float) -> bool:
        """Settle a claimed notice (fenced by ``owner``); unsent notices stay due. True when counted."""

    @abc.abstractmethod
    def alert_states(self, rule: str | None = None) -> list[AlertState]: ...

    @abc.abstractmethod
    def destination_delivery(self, since: float) -> dict[str, DestinationDelivery]:
        """Per destination with pending rows or dead letters since ``since``: pending rows, the oldest
        pending, retrying rows, recent dead, and (for one in trouble) its last delivery."""

    @abc.abstractmethod
    def channel_backlog(self) -> dict[str, tuple[int, float]]:
        """Per channel with unprocessed messages: ``(how many, the oldest's received_at)``."""

    @abc.abstractmethod
    def channel_errors(self, since: float) -> dict[str, tuple[int, int]]:
        """Per channel: ``(received since, of which failed, rejected or dead)``."""

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

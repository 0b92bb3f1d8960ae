"""What plugins register: small frozen dataclasses returned by the registration hooks.

The core decides what to do with them (conda's pattern): the plugin manager flattens what every
plugin returned, validates it, rejects duplicate names and hands typed tables to the engine. The
per-message path then calls the callables held here directly, never a pluggy broadcast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bridge.core.model.envelope import MessageEnvelope
from bridge.core.model.records import Record

Outcome = Literal["ALLOW", "REVIEW", "BLOCK"]
OUTCOMES: tuple[str, ...] = ("ALLOW", "REVIEW", "BLOCK")


# --- options -----------------------------------------------------------------------------------

OPTION_KINDS: tuple[str, ...] = ("string", "number", "integer", "boolean", "mapping", "list", "any")


@dataclass(frozen=True)
class OptionSpec:
    """One key a plugin accepts under ``options:`` (or in its policy's settings section).

    Plugins declare what they read so ``bridge check`` and start-up can refuse a typo or an option
    meant for another plugin (with the key path and a "did you mean") instead of ignoring it.
    ``kind`` is one of :data:`OPTION_KINDS` and is checked, as are ``choices``; ``required`` is
    checked too, so mark only what the plugin refuses to run without. ``default`` is documentation.
    """

    name: str
    description: str = ""
    kind: str = "any"
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None


# --- formats -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageHeader:
    """What the intake learns from a cheap read of the raw bytes, before the durable commit.

    It must be fast and must not fail on content it does not understand: the full decode happens
    later, in a worker. ``dedupe_key`` overrides the default key built from sending application,
    facility and control id.

    The order keys (``patient_id``, ``encounter_id``, ``prescription_number``) put the message in its
    lane (the channel's ``order.by``). A format sets ``keys_read=True`` when its peek looked for them:
    a key it then leaves None means the message has none (it is a lane of its own). A peek that does
    not read keys (``keys_read=False``, the default) puts every message of the channel in one lane,
    which keeps arrival order at the cost of parallelism.
    """

    control_id: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    message_type: str | None = None
    dedupe_key: str | None = None
    trace_id: str | None = None
    patient_id: str | None = None
    encounter_id: str | None = None
    prescription_number: str | None = None
    keys_read: bool = False


def no_header(raw: bytes) -> MessageHeader:
    """Default ``peek`` for formats that carry no header worth reading at intake."""
    return MessageHeader()


@dataclass(frozen=True)
class FormatSpec:
    """A message format: bytes to records (``decode``) and records to bytes (``encode``).

    ``decode(raw, options)`` returns the records a message carries, or raises ``DecodeError``.
    ``encode(records, options)`` returns bytes, or raises ``EncodeError``. ``options`` are the
    channel's or destination's ``options:`` mapping from config (e.g. the HL7v2 telehealth convention).
    """

    name: str
    media_type: str
    decode: Callable[[bytes, Mapping[str, Any]], list[Record]]
    encode: Callable[[Sequence[Record], Mapping[str, Any]], bytes]
    peek: Callable[[bytes], MessageHeader] = no_header
    detect: Callable[[bytes], bool] | None = None
    file_extension: str = "dat"
    description: str = ""
    record_kinds: Callable[[MessageHeader], frozenset[str] | None] | None = None
    """Optional: the record kinds a message decodes to, known from its header alone (``None`` when
    the header does not tell). Lets a source skip decoding for policy checks that cannot apply."""
    needs_timezone: bool = False
    """True when ``encode`` cannot write a local time without its offset (FHIR): ``bridge check``
    then warns about channels without a ``timezone`` that feed this format."""
    decode_options: tuple[OptionSpec, ...] | None = None
    """The ``options:`` keys ``decode`` reads (a channel's). ``None``: not declared (not checked, warned)."""
    encode_options: tuple[OptionSpec, ...] | None = None
    """The ``options:`` keys ``encode`` reads (a destination's). ``None``: not declared."""
    peek_quick: Callable[[bytes], MessageHeader] | None = None
    """Optional: a cheaper ``peek`` for a listener whose intake reads the full header later (an intake
    journal, whose mover calls ``peek``): the fields the dedupe key and ``record_kinds`` need, no
    order keys. It must give the same dedupe key as ``peek``. Never raises."""
    envelope: Callable[[bytes], MessageEnvelope | None] | None = None
    """Optional: what a message says about itself (sender, receiver, time, software, event), read
    from the raw bytes; None when it says nothing or is a batch. The engine passes it, localized,
    to every destination's encoder as ``options["source_envelope"]`` (a FHIR MessageHeader and
    Provenance are built from it). It must not raise on bytes that decoded."""


# --- transports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """The intake's answer to a source: committed (or a duplicate of something committed), or refused."""

    message_id: int | None
    accepted: bool
    duplicate: bool = False
    error: str | None = None
    header: MessageHeader = MessageHeader()


@dataclass(frozen=True)
class SourceContext:
    """Everything a source needs: its URL, its channel's settings and the intake to submit to.

    ``submit(raw, origin)`` commits the bytes durably and returns a :class:`Receipt`; only after it
    returns may the source acknowledge its sender. It raises ``StoreError`` when the commit failed
    (answer with an error, never a success). ``origin`` describes where the bytes came from (file
    name, peer address) and is stored with the message. ``submit(raw, origin, error="…")`` keeps
    bytes the source refuses (e.g. a request that failed validation) as a ``failed`` message, so bad
    input is never lost, and returns a Receipt with ``accepted=False`` and that message's id.

    ``submit_many([(raw, origin, error), …])`` commits several messages in one transaction (group
    commit, for listeners with many connections); each result is a Receipt or the StoreError for a
    message that was not stored. An item may carry a fourth element, the header ``peek(raw)``
    returned, so a source that already read it spares the intake a second read.

    ``submit_now(items)`` is ``submit_many`` for an event loop that must not block: it commits only
    if the store can at once, and returns ``(results, wait)`` or None ("not now": use ``submit_many``
    on a thread). The senders may be answered only after ``wait()`` (when not None) returned on another
    thread; if it raises StoreError, every stored item's sender gets an error answer instead. A
    ``wait`` that also has ``when_durable(loop, deliver, batch, results)`` (an intake journal's) may
    be handed that instead, from the loop: it calls ``deliver(batch, results)`` on ``loop`` once the
    items are durable (results then hold the error, if any), sparing a thread hand-off per batch.

    ``peek(raw)`` is the channel format's cheap header read (never raises), and
    ``policy_applies(header)`` says whether some policy may judge a message with that header: a source
    calls ``evaluate`` only when it does (an ADT for a gate that judges prescriptions needs no decode
    before its ACK). It is None when no policy is registered.

    ``evaluate(raw)`` decodes and runs the policy gates, for sources that tell their sender at once
    that a message is blocked (HL7 AR with the reasons in ERR, HTTP 422): it returns the combined
    :class:`PolicyDecision`, or None when the bytes do not decode (the worker records why). It is
    None when no policy is registered. The message is stored either way; the worker rejects it.

    ``decode(raw)`` runs the channel's format decoder (with the channel's options) for sources that
    must answer synchronously about content (HTTP APIs answering 4xx); it raises ``DecodeError``.
    """

    url: str
    channel: str
    options: Mapping[str, Any]
    submit: Callable[..., Receipt]
    config_dir: str
    max_message_bytes: int
    format_name: str
    decode: Callable[[bytes], list[Record]] | None = None
    evaluate: Callable[[bytes], PolicyDecision | None] | None = None
    submit_many: Callable[[Sequence[tuple[Any, ...]]], list[Any]] | None = None
    submit_now: Callable[[Sequence[tuple[Any, ...]]], Any] | None = None
    peek: Callable[[bytes], MessageHeader] | None = None
    policy_applies: Callable[[MessageHeader], bool] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    observe_ack: Callable[[float], None] | None = None  # a listener reports each answer's latency (seconds)
    intake_full: Callable[[], bool] | None = None
    """True while the intake cannot take more (an intake journal at its ``max_bytes``): a listener
    stops reading its connections until it turns False (back-pressure)."""


class Source(Protocol):
    """A running source: ``start()`` returns once it is listening; ``stop()`` stops it.

    A source may also have a ``listening`` property (bridge.core.health reads it for /readyz and the
    listener-up gauge, the listener_down alert too); a source without it counts as up while it runs."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """One outbox row handed to a destination."""

    outbox_id: int
    message_id: int
    destination: str
    payload: bytes
    media_type: str
    file_extension: str
    attempt: int
    trace_id: str | None = None
    idempotency_key: str = ""
    # The first message of a replay chain and its outbox row for this destination (the row's own ids
    # when it is not a replay): name anything the receiver sees from these, so a replay overwrites or
    # matches what the first delivery left instead of looking new.
    original_message_id: int | None = None
    original_outbox_id: int | None = None


@dataclass(frozen=True)
class SendResult:
    """A delivered send, with the peer's synchronous answer when it is a message in its own right.

    ``reply`` (e.g. a pharmacy switch's SCRIPT Status) is stored as a message of the channel
    ``<destination>.replies`` in the same transaction that marks the delivery done, then decoded with
    the destination's format and correlated like any inbound message (prescription lifecycle, trace).
    """

    detail: str
    reply: bytes | None = None


class Destination(Protocol):
    """Sends payloads. ``send`` returns a short description of the peer's answer for the timeline
    (or a :class:`SendResult` carrying the answer itself), or raises ``TransientDeliveryError`` /
    ``PermanentDeliveryError``."""

    def send(self, delivery: Delivery) -> str | SendResult | None: ...

    def close(self) -> None: ...

    # Optional (the deliverer looks for them; most destinations have neither): sends that share their
    # last step. Before each send the deliverer calls ``begin_batch()`` in its thread, and before it
    # records any of that thread's sends as delivered it calls ``flush()``, in the same thread. Between
    # the two, ``send`` may leave what makes its send durable to ``flush()`` (the folder destination
    # flushes its folder once per batch instead of once per file). ``flush()`` raises (``OSError``, a
    # ``DeliveryError``) when it could not: every send of that batch to this destination is then
    # retried. A ``send`` without ``begin_batch()`` first (tests, other callers) must be durable itself.
    #
    # def begin_batch(self) -> None: ...
    # def flush(self) -> None: ...


@dataclass(frozen=True)
class DestinationContext:
    url: str
    name: str
    options: Mapping[str, Any]
    config_dir: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransportSpec:
    """A transport for one URL scheme: a source factory, a destination factory, or both."""

    scheme: str
    source: Callable[[SourceContext], Source] | None = None
    destination: Callable[[DestinationContext], Destination] | None = None
    description: str = ""
    source_options: tuple[OptionSpec, ...] | None = None
    """The channel ``options:`` keys the source reads. ``None``: not declared (not checked, warned)."""
    destination_options: tuple[OptionSpec, ...] | None = None
    """The destination ``options:`` keys the destination reads. ``None``: not declared."""


@dataclass(frozen=True)
class DestinationProfile:
    """A vendor's way of receiving records (``profile: NAME`` on a destination).

    ``make_destination`` builds the destination from the destination's config; ``format`` is the
    format the profile encodes with when the destination names none.
    """

    name: str
    make_destination: Callable[[DestinationContext], Destination]
    format: str | None = None
    description: str = ""
    options: tuple[OptionSpec, ...] | None = None
    """The destination ``options:`` keys the profile reads. ``None``: not declared (not checked, warned)."""
    needs_timezone: bool = False
    """True when the profile cannot send a local time without its offset (it writes FHIR dates):
    ``bridge check`` then warns about channels without a ``timezone`` that feed it."""


# --- policies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    """One rule that fired: its id, outcome, a plain-language reason and its legal basis."""

    id: str
    outcome: Outcome
    reason: str
    basis: str = ""


@dataclass(frozen=True)
class PolicyDecision:
    outcome: Outcome
    rules: tuple[RuleResult, ...] = ()
    ruleset: str | None = None

    def explain(self) -> str:
        """The reasons for a refusal, one line, for an HL7 ERR segment or an OperationOutcome:
        the rules whose outcome is this decision's, each with its basis."""
        chosen = [r for r in self.rules if r.outcome == self.outcome] or list(self.rules)
        parts = [f"{r.id}: {r.reason}" + (f" [{r.basis}]" if r.basis else "") for r in chosen]
        return f"{self.outcome.lower()}ed by policy: " + "; ".join(parts) if parts else f"{self.outcome} by policy"


@dataclass(frozen=True)
class PolicyRequest:
    """What a policy sees: the decoded records of one message, and where it came from."""

    records: tuple[Record, ...]
    channel: str
    message_id: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The policy's own config section (same name as the policy's plugin section, e.g. ``policy:``),
    with ``config_dir`` added so relative paths resolve against the config file's folder."""
    facility_state: str | None = None
    """The state of the facility the channel serves (channel key ``facility_state``): where a patient
    seen in person was, when the record does not say."""


@dataclass(frozen=True)
class PolicySpec:
    """A gate every message passes before routing. The strictest outcome of all policies wins."""

    name: str
    evaluate: Callable[[PolicyRequest], PolicyDecision]
    description: str = ""
    record_kinds: tuple[str, ...] = ()
    """The record kinds the policy judges; a message with none of them is not shown to it (ALLOW).
    Empty: every message."""
    options: tuple[OptionSpec, ...] | None = None
    """The keys of the policy's settings section (the config section its plugin registers, e.g.
    ``policy:``). ``None``: not declared (not checked, warned)."""


# --- jobs, web, config -------------------------------------------------------------------------


@dataclass(frozen=True)
class JobContext:
    name: str
    settings: Mapping[str, Any]
    submit: Callable[[str, bytes, Mapping[str, Any]], Receipt] | None = None
    config_dir: str = "."
    get_watermark: Callable[[str], str | None] | None = None
    set_watermark: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class JobType:
    """A kind of scheduled job (``jobs: {NAME: {type: …}}``), e.g. a FHIR poller."""

    name: str
    run: Callable[[JobContext], Any]
    description: str = ""


@dataclass(frozen=True)
class WebBlueprint:
    """A Flask blueprint to mount in the admin app. ``factory`` builds it (no import-time state)."""

    name: str
    factory: Callable[[], Any]
    url_prefix: str | None = None


@dataclass(frozen=True)
class ConfigSection:
    """A top-level config section owned by a plugin. ``validate`` returns ``(path, problem)`` pairs.

    A mapping section is validated, and handed to the plugin's policies at run time, with
    ``config_dir`` added (the config file's folder), so relative paths can be resolved and checked.
    """

    name: str
    validate: Callable[[Any], list[tuple[str, str]]]
    description: str = ""


@dataclass(frozen=True)
class CommandSpec:
    """A ``bridge`` sub-command contributed by a plugin (e.g. ``bridge send`` from the HL7v2 plugin).

    ``configure(parser)`` adds its arguments to an ``argparse`` sub-parser; ``run(args)`` returns
    the exit code (0 success, 1 failure, 2 bad usage or input) and raises ``BridgeError`` subclasses
    for problems, which the CLI prints as one clear line.
    ``args.formats`` holds the registered formats by name (``FormatSpec``), so a command can read
    any format without importing another plugin.
    """

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int]

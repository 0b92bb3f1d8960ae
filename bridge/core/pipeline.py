"""The worker: claimed message → decode → policy gates → routes → encoded outbox rows.

Everything a worker decides about a message is written by one ``finish_processing`` call, so the
status change and the outbox rows it creates commit together: a crash either leaves the message to
be claimed again (its lease expires) or has fully queued it, never half.
"""

from __future__ import annotations

import logging
import uuid
from zoneinfo import ZoneInfo
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bridge.core.config import ChannelConfig, DestinationConfig
from bridge.core.maps import Map, MapOutcome
from bridge.core.maps.pipeline import (
    apply_destination_maps,
    channel_map_events,
    edit_outbound,
    merge_map_routes,
    run_channel_maps,
)
from bridge.core.model.codec import record_to_dict
from bridge.core.model.envelope import MessageEnvelope, localize_envelope
from bridge.core.model.keys import keys_of
from bridge.core.model.records import Prescription, PrescriptionEvent, Record
from bridge.core.model.times import load_zone, localize_records
from bridge.core.router import Router
from bridge.core.store.base import MessageClaim, NewOutbox, PrescriptionEventIn, ProcessingResult, Store
from bridge.errors import DecodeError, EncodeError, LeaseLost, StoreError
from bridge.plugin_types import FormatSpec, MessageHeader, PolicyDecision, PolicyRequest, PolicySpec, RuleResult

log = logging.getLogger(__name__)

_SEVERITY = {"ALLOW": 0, "REVIEW": 1, "BLOCK": 2}


@dataclass(frozen=True)
class ChannelPlan:
    """A channel resolved at start-up: its format object and its compiled router."""

    config: ChannelConfig
    format: FormatSpec
    router: Router
    maps: tuple[Map, ...] = ()


@dataclass(frozen=True)
class DestinationPlan:
    config: DestinationConfig
    format: FormatSpec
    maps: tuple[Map, ...] = ()


@dataclass(frozen=True)
class _Decoded:
    """A claim's decoded records and what was read from them, between decoding and judging."""

    claim: MessageClaim
    plan: ChannelPlan
    records: list[Record]
    keys: dict[str, Any]
    prescriptions: list[str]
    rx_events: list[PrescriptionEventIn]
    lookup: dict[str, str | None]  # what find_traces needs: the keys and the RelatesToMessageID
    envelope: MessageEnvelope | None = None  # what the message says about itself, for the encoders
    mapped: MapOutcome | None = None  # what the channel's maps did (docs/maps.md)


def combine(decisions: Sequence[tuple[str, PolicyDecision]]) -> tuple[str, list[dict[str, Any]]]:
    """The strictest outcome wins; every rule that fired is kept, named with its policy."""
    outcome = "ALLOW"
    rules: list[dict[str, Any]] = []
    for policy, decision in decisions:
        if _SEVERITY[decision.outcome] > _SEVERITY[outcome]:
            outcome = decision.outcome
        for rule in decision.rules:
            rules.append({"policy": policy, "ruleset": decision.ruleset, **asdict(rule)})
    return outcome, rules


class Processor:
    """Processes one claimed message. Holds only start-up-resolved tables; no hook calls here."""

    def __init__(self, store: Store, channels: Mapping[str, ChannelPlan],
                 destinations: Mapping[str, DestinationPlan], policies: Mapping[str, PolicySpec],
                 config_dir: str = "."):
        self.store = store
        self.config_dir = config_dir
        self.policy_settings: dict[str, Mapping[str, Any]] = {}
        self.channels = channels
        self.destinations = destinations
        self.policies = tuple(policies.values())
        # Record kinds some policy judges, known at start-up; None when a policy judges every message.
        self.judged_kinds: frozenset[str] | None = (
            frozenset(k for p in self.policies for k in p.record_kinds)
            if self.policies and all(p.record_kinds for p in self.policies) else None)
        # Which policies judge each channel, and which it names that no plugin provides: resolved once
        # here, not per message.
        loaded = {p.name for p in self.policies}
        self._judging: dict[str, tuple[PolicySpec, ...]] = {}
        self._missing: dict[str, tuple[str, ...]] = {}
        self._zones: dict[str, ZoneInfo] = {}
        for name, plan in channels.items():
            names = plan.config.policies
            self._judging[name] = self.policies if names is None else tuple(
                p for p in self.policies if p.name in names)
            self._missing[name] = tuple(n for n in names or () if n not in loaded)
            if plan.config.timezone:
                self._zones[name] = load_zone(plan.config.timezone)

    def process(self, claim: MessageClaim) -> ProcessingResult:
        result = self.decide(claim)
        self.store.finish_processing(claim, result)
        return result

    def fail(self, claim: MessageClaim, error: str) -> None:
        """Record that processing broke off (fenced by the claim), so the channel's lane moves on."""
        try:
            self.store.finish_processing(claim, _failed(error, "processing"))
        except LeaseLost:
            pass

    def decide(self, claim: MessageClaim) -> ProcessingResult:
        return self.decide_many([claim])[0]

    def decide_many(self, claims: Sequence[MessageClaim]) -> list[ProcessingResult]:
        """Decide a batch: decode each claim, find the traces of those that need one in one store read
        (a round trip per message was a fifth of a worker's time on PostgreSQL), then judge, route and
        encode each. A message whose processing raises fails alone; store trouble fails the batch."""
        steps: list[ProcessingResult | _Decoded] = [self._guarded(claim, lambda c=claim: self._decode(c))
                                                     for claim in claims]
        wanted = [i for i, step in enumerate(steps) if isinstance(step, _Decoded) and not step.claim.trace_id]
        found = self.store.find_traces([steps[i].lookup for i in wanted]) if wanted else []  # type: ignore[union-attr]
        traces = _share_new_traces([(steps[i].lookup, trace) for i, trace in zip(wanted, found)])  # type: ignore[union-attr]
        traces = dict(zip(wanted, traces))
        return [step if isinstance(step, ProcessingResult) else self._guarded(
                    step.claim, lambda step=step, i=i: self._judge(step, traces.get(i)))
                for i, step in enumerate(steps)]

    @staticmethod
    def _guarded(claim: MessageClaim, work: Any) -> Any:
        try:
            return work()
        except StoreError:
            raise  # store trouble, not the message's fault: the batch's leases expire and it is processed again
        except Exception as exc:  # never leave a claim to block its lane: fail it, visibly
            log.error("message %s: processing raised %s; marked failed", claim.id, type(exc).__name__)
            return internal_failure(exc)

    def _decode(self, claim: MessageClaim) -> ProcessingResult | _Decoded:
        """The claim's records (zone-resolved), or the result of a message that cannot be decoded."""
        plan = self.channels.get(claim.channel)
        if plan is None:
            return _failed(f"channel {claim.channel!r} is not in the running configuration", "config")
        try:
            records = plan.format.decode(claim.raw, plan.config.options)
        except DecodeError as exc:
            return _failed(f"{plan.format.name} decode failed: {exc}", "decode")
        except Exception as exc:  # a plugin bug must not lose the message: keep it, say what failed
            log.error("channel %s: %s decoder raised %s", claim.channel, plan.format.name, type(exc).__name__)
            return _failed(f"{plan.format.name} decoder error ({type(exc).__name__}): {exc}", "decode")
        if not records:
            return _failed(f"{plan.format.name} decode produced no records", "decode")
        if claim.channel in self._zones:  # the sender's local times become exact before policies and routes see them
            localize_records(records, self._zones[claim.channel])
        mapped = run_channel_maps(plan.maps, records, _hl7(plan.format, claim.raw))
        if mapped is not None:
            if mapped.failure:
                return ProcessingResult(status="failed", error=mapped.failure, events=[
                    *channel_map_events(mapped), ("map_failed", {"error": mapped.failure})])
            records = mapped.records
        keys = asdict(keys_of(records))
        prescriptions, rx_events = _lifecycle_inputs(records)
        relates_to = next((e.relates_to for e in rx_events if e.relates_to), None)
        return _Decoded(claim, plan, records, keys, prescriptions, rx_events, {**keys, "relates_to": relates_to},
                        self._envelope(claim), mapped)

    def _envelope(self, claim: MessageClaim) -> MessageEnvelope | None:
        """The message's envelope in the channel's zone, when its format reads one. A format bug
        here must not fail a message that decoded: the records still go out, without it."""
        plan = self.channels[claim.channel]
        if plan.format.envelope is None:
            return None
        try:
            envelope = plan.format.envelope(claim.raw)
        except Exception as exc:  # noqa: BLE001 - the envelope is an extra; never worth a failed message
            log.warning("channel %s: %s envelope reader raised %s; sent without it", claim.channel,
                        plan.format.name, type(exc).__name__)
            return None
        if envelope is not None and claim.channel in self._zones:
            envelope = localize_envelope(envelope, self._zones[claim.channel])
        return envelope

    def _judge(self, decoded: _Decoded, found_trace: str | None) -> ProcessingResult:
        """Policies, routes and encodings of a decoded message."""
        claim, plan, records, keys = decoded.claim, decoded.plan, decoded.records, decoded.keys
        prescriptions, rx_events = decoded.prescriptions, decoded.rx_events
        trace_id = claim.trace_id or found_trace or uuid.uuid4().hex
        summary = [record_to_dict(r) for r in records]
        events: list[tuple[str, Mapping[str, Any]]] = [
            ("decoded", {"format": plan.format.name, "records": [r.kind for r in records],
                         **({"timezone": plan.config.timezone} if plan.config.timezone else {})})
        ]
        events.extend(channel_map_events(decoded.mapped))
        base = {"records": summary, "keys": keys, "trace_id": trace_id}
        # The prescription lifecycle moves only for messages that are let through: a held fill has not
        # been reviewed yet, a blocked NewRx was never sent (a release processes the message again).
        lifecycle = {"prescriptions": prescriptions, "prescription_events": rx_events}

        outcome, rules, rulesets = self.evaluate(claim.channel, claim.id, records)
        if self.channel_judged(claim.channel):
            events.append(("policy", {"outcome": outcome, "rules": rules, "rulesets": rulesets}))
        if decoded.mapped is not None and decoded.mapped.holds:  # a map's hold is a review like a policy's
            outcome, rules = ("BLOCK" if outcome == "BLOCK" else "REVIEW"), rules + decoded.mapped.hold_rules
        if outcome == "REVIEW" and claim.policy_override:
            events.append(("policy_override", {"outcome": outcome, "note": "released by an operator"}))
            outcome = "ALLOW"
        if outcome == "BLOCK":
            return ProcessingResult(status="rejected", events=events, error=_reasons(rules), **base)
        if outcome == "REVIEW":
            events.append(("held", {"rules": rules}))
            return ProcessingResult(status="held", events=events, hold_reasons=rules, **base)

        inbound_type = _peek(plan.format, claim.raw).message_type if plan.router.needs_message_type else None
        routed = plan.router.route(records, inbound_type)
        if decoded.mapped is not None and decoded.mapped.routes:
            routed = merge_map_routes(routed, decoded.mapped.routes, records)
        if claim.replay_destinations is not None:
            routed = _replay_targets(routed, claim.replay_destinations, events)
        if not routed and not records:
            events.append(("filtered", {"reason": "the channel's maps dropped every record"}))
            return ProcessingResult(status="filtered", events=events, **base, **lifecycle)
        inbound_hl7 = _hl7(plan.format, claim.raw)
        routed, map_failures, map_holds = apply_destination_maps(
            {name: self.destinations[name].maps for name in routed}, routed, events, inbound_hl7)
        if map_holds and not claim.policy_override:
            events.append(("held", {"rules": map_holds}))
            return ProcessingResult(status="held", events=events, hold_reasons=map_holds, **base)
        if not routed and not map_failures:
            events.append(("filtered", {"reason": "no route matched"}))
            return ProcessingResult(status="filtered", events=events, **base, **lifecycle)
        order_key = claim.order_key  # delivery lanes continue the message's processing lane
        identity: dict[str, Any] = {"message_control_id": f"TB{claim.original_id}", "trace_id": trace_id}
        if decoded.envelope is not None:
            identity["source_envelope"] = decoded.envelope
        field_holds: list[dict[str, Any]] = []
        outbox = [self.encode_for(name, chosen, _mapped_identity(identity, decoded.mapped is not None
                                                             or bool(self.destinations[name].maps)),
                                  order_key, plan.config.order_mode, claim.id, inbound_hl7, events, field_holds)
                  for name, chosen in routed.items()]
        if field_holds and not claim.policy_override:  # a field lookup's missing code, on an outbound message
            events.append(("held", {"rules": field_holds}))
            return ProcessingResult(status="held", events=events, hold_reasons=field_holds, **base)
        outbox += [NewOutbox(name, b"", self.destinations[name].format.media_type,
                             self.destinations[name].format.file_extension, order_key, plan.config.order_mode,
                             error=error) for name, error in map_failures.items()]
        routed_event: dict[str, Any] = {"destinations": sorted({*routed, *map_failures})}
        refused = sorted(item.destination for item in outbox if item.error is not None)
        if refused:
            routed_event["encode_failed"] = refused
        events.append(("routed", routed_event))
        return ProcessingResult(status="routed", outbox=outbox, events=events, **base, **lifecycle)

    def encode_for(self, name: str, chosen: Sequence[Record], identity: Mapping[str, Any], order_key: str | None,
                   order_mode: str, message_id: int, inbound_hl7: bytes | None = None,
                   events: list[tuple[str, Mapping[str, Any]]] | None = None,
                   field_holds: list[dict[str, Any]] | None = None) -> NewOutbox:
        """One destination's outbox row. Destinations are independent: when this one's encoder refuses
        (or a plugin bug raises), its row carries the error and becomes a dead letter, and the others
        are still queued. A ``passthrough`` destination sends the sender's HL7v2 message instead of
        encoding; then (or when its maps edit fields) the maps' field-position steps edit the message."""
        dest = self.destinations[name]
        fmt = dest.format

        def failed(error: str) -> NewOutbox:
            return NewOutbox(name, b"", fmt.media_type, fmt.file_extension, order_key, order_mode, error=error)

        if dest.config.passthrough:
            if inbound_hl7 is None:
                return failed(f"destination {name} passes the sender's HL7v2 message through, but this message "
                              "did not arrive as HL7v2")
            payload = inbound_hl7
        else:
            try:
                payload = fmt.encode(chosen, {**dest.config.options, **identity, "config_dir": self.config_dir})
            except EncodeError as exc:
                log.warning("message %s: %s refused it for destination %s; dead-lettered", message_id, fmt.name, name)
                return failed(f"encoding {fmt.name} for {name} failed: {exc}")
            except Exception as exc:  # plugin bug: keep the message and say where
                log.error("destination %s: %s encoder raised %s", name, fmt.name, type(exc).__name__)
                return failed(f"{fmt.name} encoder error for {name} ({type(exc).__name__}): {exc}")
        if dest.config.passthrough or any(m.edits_fields for m in dest.maps):
            control_id = str(identity["message_control_id"]) if dest.config.passthrough else None
            try:
                payload, edited = edit_outbound(dest.maps, payload, chosen, f"destination:{name}",
                                                events if events is not None else [], control_id)
            except DecodeError as exc:
                return failed(f"the maps of {name} edit HL7v2 fields, but its message is not HL7v2: {exc}")
            if edited.failure:
                return failed(edited.failure)
            if field_holds is not None:
                field_holds.extend(edited.hold_rules)
        header = _peek(fmt, payload)
        return NewOutbox(name, payload, fmt.media_type, fmt.file_extension, order_key, order_mode,
                         header.control_id, header.message_type)

    def verdict(self, channel: str, raw: bytes) -> PolicyDecision | None:
        """The policy decision for raw bytes of ``channel``, for sources that refuse blocked messages
        at once; None when the bytes do not decode (the worker will record the decode error)."""
        plan = self.channels[channel]
        if not self.channel_judged(channel) or self._no_policy_applies(plan.format, raw):
            return None
        try:
            records = plan.format.decode(raw, plan.config.options)
        except Exception:  # DecodeError or a plugin bug: the worker reports it; no verdict here
            return None
        if channel in self._zones:
            localize_records(records, self._zones[channel])
        # the gate judges what the worker will judge
        mapped = run_channel_maps(plan.maps, records, _hl7(plan.format, raw))
        if mapped is not None and mapped.failure:
            return None
        records = mapped.records if mapped is not None else records
        outcome, rules, rulesets = self.evaluate(channel, None, records)
        results = tuple(RuleResult(r["id"], r["outcome"], r["reason"], r.get("basis", "")) for r in rules)
        return PolicyDecision(outcome, results, ", ".join(v for v in rulesets.values() if v) or None)

    def channel_policies(self, channel: str) -> tuple[PolicySpec, ...]:
        """The policies a channel names (``policies:``); every registered one when it names none."""
        return self._judging.get(channel, self.policies)

    def _missing_policies(self, channel: str) -> tuple[str, ...]:
        """Names the channel lists that no loaded plugin provides (a plugin disabled after ``bridge check``)."""
        return self._missing.get(channel, ())

    def channel_judged(self, channel: str) -> bool:
        """True when some policy judges the channel's messages (or one it names is missing: held)."""
        return bool(self.channel_policies(channel) or self._missing_policies(channel))

    def _no_policy_applies(self, fmt: FormatSpec, raw: bytes) -> bool:
        """True when the header alone shows no policy judges this message (an ADT for a gate that
        only judges prescriptions): the source then skips the decode."""
        if fmt.record_kinds is None or self.judged_kinds is None:
            return False
        try:
            header = fmt.peek(raw)
        except Exception:  # a peek bug costs only the shortcut
            return False
        return self._kinds_unjudged(fmt, header)

    def policy_applies(self, channel: str, header: MessageHeader) -> bool:
        """Whether some policy may judge a message of ``channel`` with this header: the check a source
        makes before asking for a verdict, from the header it already read (no second read)."""
        if not self.channel_judged(channel):
            return False
        return not self._kinds_unjudged(self.channels[channel].format, header)

    def _kinds_unjudged(self, fmt: FormatSpec, header: MessageHeader) -> bool:
        if fmt.record_kinds is None or self.judged_kinds is None:
            return False
        try:
            kinds = fmt.record_kinds(header)
        except Exception:  # a classification bug costs only the shortcut
            return False
        return kinds is not None and not (kinds & self.judged_kinds)

    def evaluate(self, channel: str, message_id: int | None,
                 records: Sequence[Record]) -> tuple[str, list[dict[str, Any]], dict[str, str | None]]:
        """The combined outcome, every rule that fired, and each policy's rule-set version."""
        decisions = [(name, PolicyDecision("REVIEW", (_rule(
            "policy-missing", f"the channel names policy {name!r}, which no loaded plugin provides"),)))
            for name in self._missing_policies(channel)]
        kinds = {r.kind for r in records}
        plan = self.channels.get(channel)
        facility_state = plan.config.facility_state if plan is not None else None
        for policy in self.channel_policies(channel):
            if policy.record_kinds and not kinds.intersection(policy.record_kinds):
                continue
            request = PolicyRequest(records=tuple(records), channel=channel, message_id=message_id,
                                    settings=self.policy_settings.get(policy.name, {}), facility_state=facility_state)
            try:
                decisions.append((policy.name, policy.evaluate(request)))
            except Exception as exc:  # a failing gate holds the message for a person; it never allows
                log.error("policy %s raised %s", policy.name, type(exc).__name__)
                decisions.append((policy.name, PolicyDecision(
                    "REVIEW", (_rule("policy-error", f"policy {policy.name} failed: {type(exc).__name__}"),))))
        outcome, rules = combine(decisions)
        return outcome, rules, {name: decision.ruleset for name, decision in decisions}


def _hl7(fmt: FormatSpec, raw: bytes) -> bytes | None:
    """``raw`` when it is an HL7v2 message (what field positions and pass-through read), else None."""
    return raw if fmt.name == "hl7v2" else None


def _peek(fmt: FormatSpec, payload: bytes) -> MessageHeader:
    """The control id and type our own encoded payload carries (to correlate the answers it gets)."""
    try:
        return fmt.peek(payload)
    except Exception:  # peek must not fail; a buggy one only costs correlation
        return MessageHeader()


def _lifecycle_inputs(records: Sequence[Record]) -> tuple[list[str], list[PrescriptionEventIn]]:
    """Prescriptions this message creates, and prescription events it reports, for the lifecycle."""
    numbers, events = [], []
    for record in records:
        if isinstance(record, Prescription) and (record.prescriber_order_number or record.id):
            numbers.append(record.prescriber_order_number or record.id)
        elif isinstance(record, PrescriptionEvent):
            events.append(PrescriptionEventIn(
                event_type=record.event_type, relates_to=record.relates_to_message_id,
                number=record.prescriber_order_number or record.prescription_id, code=record.code,
                fill_status=record.fill_status, description=record.description, message_id=record.message_id))
    return numbers, events


def _replay_targets(routed: Mapping[str, Any], asked: Sequence[str],
                    events: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """A replay limited to some destinations goes only where it was asked to *and* the routes pick now
    (a destination the routes no longer pick is skipped, and the timeline says so)."""
    skipped = sorted(set(asked) - set(routed))
    if skipped:
        events.append(("replay_skipped", {"destinations": skipped, "note": "the routes do not pick them now"}))
    return {name: chosen for name, chosen in routed.items() if name in asked}


def _rule(rule_id: str, reason: str) -> RuleResult:
    return RuleResult(id=rule_id, outcome="REVIEW", reason=reason)


def _reasons(rules: Sequence[Mapping[str, Any]]) -> str:
    blocking = [r for r in rules if r.get("outcome") == "BLOCK"] or list(rules)
    return "; ".join(f"{r['id']}: {r['reason']}" for r in blocking)


def _share_new_traces(found: Sequence[tuple[Mapping[str, str | None], str | None]]) -> list[str | None]:
    """Messages of one batch that share an encounter or prescription with no earlier trace start one
    trace together (each would otherwise start its own: the store sees neither until the batch commits)."""
    started: dict[tuple[str, str], str] = {}
    out: list[str | None] = []
    for lookup, trace in found:
        names = [(k, v) for k in ("encounter_id", "prescription_number") if (v := lookup.get(k))]
        if trace is None and names:
            trace = next((started[n] for n in names if n in started), None) or uuid.uuid4().hex
        for name in names:
            started.setdefault(name, trace)  # type: ignore[arg-type]
        out.append(trace)
    return out


def internal_failure(exc: BaseException) -> ProcessingResult:
    """The result for a message whose processing raised (a bug, not bad input): failed, replayable."""
    return _failed(f"internal error while processing ({type(exc).__name__}); replay once the cause is fixed",
                   "processing")



def _mapped_identity(identity: Mapping[str, Any], mapped: bool) -> Mapping[str, Any]:
    """The options the engine adds, with ``records_mapped`` when maps ran on these records."""
    return {**identity, "records_mapped": True} if mapped else identity


def _failed(error: str, stage: str) -> ProcessingResult:
    return ProcessingResult(status="failed", error=error, events=[(f"{stage}_failed", {"error": error})])

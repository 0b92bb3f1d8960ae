"""HL7v2 orders (ORM^O01, OML^O21/O33/O35, OMG^O19) and referrals (REF^I12-I15) to ServiceRequest.

The tables here are documented in docs/hl7v2.md ("Orders, referrals, pharmacy and immunizations").
An order message carries a patient and visit, then order groups: each ORC starts one, and an OBR
that follows an ORC belongs to it (an OBR with no ORC of its own, as some senders write OML, starts
a group too, with a warning). A group with RXO and no OBR is a medication order: a Prescription,
as OMP^O09 gives it. The OBX of an order (before any SPM) are Observations; an earlier result sent
with an OML or OMG order (PRIOR_RESULT: its PID/PV1, then ORC, OBR, OBX) is a DiagnosticReport of
its own visit (:func:`prior_result`). The patient's AL1,
DG1 and IN1 give AllergyIntolerance, Condition and Coverage as in an ADT. Everything else the message carries (IN1, GT1, DG1, OBX, SPM, FT1, BLG…) is
kept: the whole message body travels in the first record (see :func:`keep_message`), so an HL7v2
round trip gives it back unchanged, and the other records say ``carried``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge import (
    Coding,
    DecodeError,
    Encounter,
    Identifier,
    Patient,
    Period,
    Practitioner,
    Record,
    RelatedPerson,
    ServiceRequest,
)

from . import adt, guarantors, people, places, results, specimens
from . import datatypes as dt
from . import organizations
from .reader import NULL, Segment, reencode_segment, text

if TYPE_CHECKING:
    from .decode import Decoder, Scope

ORDER_MESSAGES = {("ORM", "O01"), ("OML", "O21"), ("OML", "O33"), ("OML", "O35"), ("OMG", "O19")}
REFERRAL_EVENTS = ("I12", "I13", "I14", "I15")
ORDER_STATUS = {"A": "active", "CA": "revoked", "CM": "completed", "DC": "revoked", "ER": "entered-in-error",
                "HD": "on-hold", "IP": "active", "RP": "revoked", "SC": "active"}
"""ORC-5 order status (table 0038) → FHIR request-status, as the v2-to-FHIR IG maps it (cancelled,
discontinued and replaced orders are ``revoked``); A (some results in), which the map leaves out, is active."""
ORDER_CONTROL = {"NW": "active", "OK": "active", "AF": "active", "PR": "active", "PY": "active", "RL": "active",
                 "RO": "active", "RQ": "active", "CA": "revoked", "HD": "on-hold", "HR": "on-hold", "OH": "on-hold",
                 "CR": "revoked", "DC": "revoked", "DF": "revoked", "DR": "revoked", "OC": "revoked",
                 "OD": "revoked", "FU": "completed"}
"""ORC-1 order control (table 0119), read when ORC-5 is empty: the HL7 v2-to-FHIR IG's concept map
(OrderControlCode → ServiceRequest.status), but for the placer's cancel and hold requests. The IG
keeps CA and HD ``active`` until the filler confirms (CR, HR); a ServiceRequest is the placer's
own request, though, and its author has withdrawn (or paused) it, so CA is ``revoked`` and HD
``on-hold`` at once, as our MedicationRequest reads them (a FHIR server must not show a cancelled
order as one to carry out). Codes the map leaves out give ``unknown``."""
PRIORITIES = {"S": "stat", "A": "asap", "R": "routine", "T": "urgent", "C": "urgent", "P": "urgent"}
"""TQ1-9 / OBR-27.6 / RF1-2 priority (tables 0485 and 0280) → FHIR request-priority. T (timing
critical), C (callback) and P (pre-op) are urgent; PRN and other codes give no priority."""
REFERRAL_STATUS = {"A": "active", "P": "on-hold", "H": "on-hold", "R": "revoked", "E": "revoked"}
"""RF1-1 referral status (table 0283): accepted referrals are active, pending ones on hold (not yet
acted on, as Microsoft's converter maps P); rejected and
expired ones revoked. REF^I14 (cancel) is revoked whatever RF1-1 says."""
LAB_TYPES = frozenset(("OML", "OUL"))
NO_ORC_WARNING = "{label} without ORC: order read from OBR"


@dataclass
class OrderGroup:
    """One order's segments: its ORC (or none), its OBR or RXO, and what follows them."""

    segments: list[Segment] = field(default_factory=list)

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


def order_groups(segments: list[Segment], starts: tuple[str, ...] = ("OBR", "RXO")) -> list[OrderGroup]:
    """Split at each ORC; an OBR (or RXO) starts a group of its own when the current one has one."""
    groups: list[OrderGroup] = []
    for seg in segments:
        if seg.name == "ORC" or not groups:
            groups.append(OrderGroup())
        elif seg.name in starts and any(s.name in starts for s in groups[-1].segments):
            groups.append(OrderGroup())
        groups[-1].segments.append(seg)
    return groups


def keep_message(dec: Decoder, records: list[Record]) -> list[Record]:
    """The whole message body, as read, in the first record; the others say ``carried``.

    The HL7v2 encoder writes such a record back from what it kept (a fresh MSH, then every other
    segment unchanged): a round trip is lossless by construction, and edits made to the records
    are not reflected in HL7v2 output (docs/hl7v2.md says which types are written this way)."""
    kept = records[0].extra.setdefault("hl7v2", {})  # type: ignore[attr-defined]
    msh9 = dec.message.msh.get(9)
    kept["message"] = {"type": text(msh9, dec.seps).replace(dec.seps.component, "^") if msh9 else "",
                       "segments": [reencode_segment(s, dec.seps) for s in dec.message.segments[1:]]}
    for record in records[1:]:
        record.extra.setdefault("hl7v2", {})["carried"] = True  # type: ignore[attr-defined]
    return records


def related_person(dec: Decoder, nk1: Segment, patient: Patient) -> RelatedPerson | None:
    """NK1: name (2), relationship (3, table 0063) and contact role (7, table 0131), address (4),
    home and work phones (5, 6), identifiers (33). An NK1 that names nobody gives nothing."""
    names = dec.reps(nk1, 2)
    relationship = []
    for number, table in ((3, "HL70063"), (7, "HL70131")):
        reps = dec.reps(nk1, number)
        coding = dt.read_coding(reps[0], dec.seps) if reps else None
        if coding is not None:
            coding.system = coding.system or table
            relationship.append(coding)
    telecom = [c for n in (5, 6) for c in (dt.read_telecom(r, dec.seps) for r in dec.reps(nk1, n)) if c]
    person = RelatedPerson(
        identifiers=[i for i in (dt.read_identifier(r, dec.seps) for r in dec.reps(nk1, 33)) if i],
        name=dt.read_name(names[0], dec.seps) if names else None,
        relationship=relationship,
        telecom=telecom,
        addresses=[a for a in (dt.read_address(r, dec.seps) for r in dec.reps(nk1, 4)) if a],
        patient=patient,
    )
    return person if person.name or person.identifiers else None


def background(dec: Decoder, segments: list[Segment], patient: Patient | None,
               encounter: Encounter | None) -> list[Record]:
    """The patient's next of kin (NK1) and guarantors (GT1, guarantors.py) as RelatedPersons,
    allergies (AL1/IAM), diagnoses (DG1) and insurance (IN1/IN2) in ``segments``, the last three read
    as an ADT reads them (adt.ClinicalReader); carried, like every other record but the message's first."""
    if patient is None:
        return []
    people: list[Record] = [p for p in (related_person(dec, s, patient) for s in segments if s.name == "NK1") if p]
    people += guarantors.guarantors(dec, segments, patient)
    reader = adt.ClinicalReader(dec.seps, dec.t, dec.reps)
    return [*people, *reader.records(adt.Group(segments=segments), patient, encounter)]


def observations(dec: Decoder, group: OrderGroup, patient: Patient | None,
                 encounter: Encounter | None) -> list[Record]:
    """The OBX of an order group before its SPM (what the orderer observed: a weight, a pregnancy
    status, an ask-at-order-entry answer) as Observations; the OBX after an SPM describe the specimen
    and stay in the kept message."""
    obr = group.first("OBR")
    section = dec.t(obr, 24)
    out: list[Record] = []
    for seg in group.segments:
        if seg.name == "SPM":
            break
        if seg.name == "OBX":
            obs = dec._observation(seg, obr, section)
            obs.patient, obs.encounter, obs.extra = patient, encounter, {}
            out.append(obs)
    return out


def header(dec: Decoder, segments: list[Segment], scope: Scope) -> tuple[Patient | None, Encounter | None]:
    """The patient (first PID) and visit (first PV1 that says something) before the orders."""
    pid = next((s for s in segments if s.name == "PID"), None)
    pv1 = next((s for s in segments if s.name == "PV1"), None)
    pv2 = next((s for s in segments if s.name == "PV2"), None)
    patient = dec.patient(pid, dec.new_pid_scope()) if pid is not None else None
    encounter = None
    if pv1 is not None:
        encounter = dec.encounter(pv1, pv2, scope, None)
        if places.says_nothing(encounter):
            encounter = None
    return patient, encounter


def codings(dec: Decoder, seg: Segment | None, number: int) -> list[Coding]:
    return [c for rep in dec.reps(seg, number) for c in dt.read_codings(rep, dec.seps)]


def practitioner(dec: Decoder, seg: Segment | None, number: int) -> Practitioner | None:
    found = dec.reps(seg, number)
    return dt.read_practitioner(found[0], dec.seps) if found else None


def priority(dec: Decoder, tq1: Segment | None, obr: Segment | None) -> str | None:
    code = dec.t(tq1, 9)
    if not code and obr is not None and obr.get(27):
        parts = obr.get(27).split(dec.seps.repetition)[0].split(dec.seps.component)
        code = text(parts[5], dec.seps) if len(parts) > 5 else ""
    code = code or dec.t(obr, 5)
    return PRIORITIES.get(code.upper()) if code else None


def occurrence(dec: Decoder, orc: Segment | None, tq1: Segment | None, scope: Scope) -> Period | None:
    """TQ1-7 to TQ1-8 (v2.5+), else the deprecated ORC-7 TQ start (.4) and end (.5)."""
    start = dec.when(tq1, 7, scope) if tq1 is not None else None
    end = dec.when(tq1, 8, scope) if tq1 is not None else None
    if not (start or end) and orc is not None and orc.get(7):
        start = dec.when(orc, 7, scope, component=4)
        end = dec.when(orc, 7, scope, component=5)
    return Period(start=start, end=end) if start or end else None


def status(dec: Decoder, orc: Segment | None) -> str:
    code = dec.t(orc, 5).upper()
    if code in ORDER_STATUS:
        return ORDER_STATUS[code]
    return ORDER_CONTROL.get(dec.t(orc, 1).upper(), "unknown")


def category(dec: Decoder, obr: Segment | None) -> str | None:
    """OBR-24 says laboratory or imaging; an OML (laboratory order) without one is laboratory."""
    section = dec.t(obr, 24).upper()
    if section in results.IMAGING_SECTIONS:
        return "imaging"
    if section in results.LAB_SECTIONS or (not section and dec.type in LAB_TYPES):
        return "laboratory"
    return None


def notes_after(dec: Decoder, group: OrderGroup, anchor: Segment | None) -> list[str]:
    """NTE-3 lines that directly follow the order's OBR (or ORC): comments on the order itself."""
    if anchor is None:
        return []
    at = group.segments.index(anchor)
    return notes_following(dec, group.segments[at + 1:], skip=("TQ1", "TQ2", "PRT"))


def notes_following(dec: Decoder, segments: Sequence[Segment], skip: tuple[str, ...] = ()) -> list[str]:
    """The NTE-3 text of the NTE segments at the head of ``segments`` (past any ``skip`` ones), one
    entry per NTE, its repetitions as lines."""
    out: list[str] = []
    for seg in segments:
        if seg.name in skip:
            continue
        if seg.name != "NTE":
            break
        lines = [text(r, dec.seps) for r in dec.reps(seg, 3)]
        if lines:
            out.append("\n".join(lines))
    return out


def service_request(dec: Decoder, group: OrderGroup, patient: Patient | None,
                    encounter: Encounter | None, scope: Scope) -> ServiceRequest:
    orc, obr, tq1 = group.first("ORC"), group.first("OBR"), group.first("TQ1")
    ids = dec._order_ids(orc, 2, 3) if orc is not None else []
    if not ids and obr is not None:
        ids = dec._order_ids(obr, 2, 3)
    spm = [c for s in group.all("SPM") for c in dt.read_codings(s.get(4), dec.seps)[:1]]
    if not spm and obr is not None and obr.get(15):
        spm = dt.read_codings(obr.get(15).split(dec.seps.component)[0].replace(dec.seps.subcomponent,
                                                                              dec.seps.component), dec.seps)[:1]
    requester = practitioner(dec, orc, 12) or practitioner(dec, obr, 16)
    return ServiceRequest(
        identifiers=ids,
        status=status(dec, orc) if orc is not None else "active",
        intent="order",
        category=category(dec, obr),
        priority=priority(dec, tq1, obr),
        code=dt.read_codings(obr.get(4), dec.seps) if obr is not None else [],
        occurrence=occurrence(dec, orc, tq1, scope),
        authored=dec.when(orc, 9, scope) if orc is not None else None,
        requester=requester,
        reason=codings(dec, obr, 31) + codings(dec, orc, 16),
        specimen_types=spm,
        notes=notes_after(dec, group, obr or orc),
        patient=patient,
        encounter=encounter,
        participants=people.order(dec.message, orc, obr, dec.seps),  # derived: fields stay kept
        parent_order=parent_order(dec, orc, obr),  # derived: ORC-8 and OBR-29 stay kept
    )


def parent_order(dec: Decoder, orc: Segment | None, obr: Segment | None) -> list[Identifier]:
    """The order this one is a child of (ORC-8 parent, else OBR-29 parent: EIP, placer ^ filler
    number): the placer and filler numbers of one parent order."""
    for seg, number in ((orc, 8), (obr, 29)):
        raw = seg.get(number) if seg is not None else ""
        if raw and raw != NULL:
            return specimens.read_eip(raw.split(dec.seps.repetition)[0], dec.seps)
    return []


def decode_orders(dec: Decoder) -> list[Record]:
    """ORM/OML/OMG: one ServiceRequest per order group (a Prescription for an RXO group)."""
    segs = dec.message.segments
    first = next((i for i, s in enumerate(segs) if s.name in ("ORC", "OBR", "RXO")), None)
    label = f"{dec.type}^{dec.event}"
    if first is None:
        raise DecodeError(f"{label} has no order: no ORC, OBR or RXO segment", "ORC")
    scope = dec.scope()
    patient, encounter = header(dec, segs[:first], scope)
    pv1 = next((s for s in segs[:first] if s.name == "PV1"), None)
    records: list[Record] = []
    warnings: list[str] = []
    for group in order_groups(segs[first:]):
        if group.first("ORC") is None and NO_ORC_WARNING.format(label=label) not in warnings:
            warnings.append(NO_ORC_WARNING.format(label=label))
        if group.first("RXO") is not None and group.first("OBR") is None and group.first("ORC") is not None:
            rx = dec._prescription(group.segments, patient, encounter, pv1)
            rx.extra = {}
            records.append(rx)
        else:
            records.append(service_request(dec, group, patient, encounter, scope))
    groups = order_groups(segs[first:])
    for previous, group in zip([None, *groups], groups):
        report = prior_result(dec, previous, group, patient, encounter, scope) if dec.type in PRIOR_TYPES else None
        records += [report] if report is not None else observations(dec, group, patient, encounter)
    records += background(dec, segs, patient, encounter)
    keep_message(dec, records)
    if warnings:
        records[0].extra["hl7v2"]["warnings"] = warnings  # type: ignore[attr-defined]
    return records


PRIOR_TYPES = frozenset(("OML", "OMG"))
"""Order messages whose orders may carry earlier results (OML^O21 and OMG^O19's PRIOR_RESULT group)."""
PRIOR_VISIT = frozenset(("PID", "PD1", "PRT", "ARV", "PV1", "PV2", "AL1"))
"""What a PRIOR_RESULT group opens with before its ORC: the patient and visit of the earlier result
(with their PRT participations and ARV access restrictions)."""


def prior_visit(previous: OrderGroup | None) -> list[Segment]:
    """The PID/PV1 (and PD1, PV2, AL1) right before an ORC, which ``order_groups`` leaves at the end
    of the group before: they open a PRIOR_RESULT group. Empty when the ORC is a new order's."""
    if previous is None:
        return []
    trailing: list[Segment] = []
    for seg in reversed(previous.segments):
        if seg.name not in PRIOR_VISIT:
            break
        trailing.insert(0, seg)
    return trailing if any(s.name in ("PID", "PV1") for s in trailing) else []


def prior_result(dec: Decoder, previous: OrderGroup | None, group: OrderGroup, patient: Patient | None,
                 encounter: Encounter | None, scope: Scope) -> Record | None:
    """An earlier result an OML or OMG sends with its order (PRIOR_RESULT: PV1, ORC, OBR, OBX), as
    the DiagnosticReport of that OBR holding one Observation per OBX, as an ORU's would be: a result,
    not a request (its order stays a ServiceRequest). It belongs to the earlier visit its PV1 names,
    else to the message's. None for an ordinary order group or one with no OBX (then its OBX, if
    any, are read as the orderer's observations)."""
    opening = prior_visit(previous)
    if patient is None or not opening or group.first("OBR") is None or group.first("OBX") is None:
        return None
    pv1 = next((s for s in opening if s.name == "PV1"), None)
    visit = dec.encounter(pv1, next((s for s in opening if s.name == "PV2"), None), scope, None) \
        if pv1 is not None else None
    if visit is None or places.says_nothing(visit):
        visit = encounter
    else:
        visit.patient = patient
    report = dec._report([s for s in group.segments if s.name != "PV1"], patient, visit)
    report.extra = {}  # derived: the segments stay in the kept message
    for obs in report.observations:
        obs.patient, obs.encounter, obs.extra = patient, visit, {}
    return report


def referral_provider(dec: Decoder, prd: Segment) -> Practitioner | None:
    """PRD-2 name and PRD-7 identifiers (PI: id ^ type ^ state)."""
    names = dec.reps(prd, 2)
    name = dt.read_name(names[0], dec.seps) if names else None
    ids = []
    for rep in dec.reps(prd, 7):
        parts = [text(p, dec.seps) for p in rep.split(dec.seps.component)] + ["", ""]
        if parts[0]:
            ids.append(Identifier(value=parts[0], type=parts[1] or None))
    if name is None and not ids:
        return None
    npi = next((i.value for i in ids if i.type == "NPI"), None)
    return Practitioner(name=name, npi=npi, identifiers=[i for i in ids if i.type != "NPI"])


def referral(dec: Decoder, rf1: Segment, scope: Scope, patient: Patient | None,
             encounter: Encounter | None) -> ServiceRequest:
    """RF1 as a referral ServiceRequest: RF1-6 and RF1-11 ids, RF1-1 status (REFERRAL_STATUS), RF1-2
    priority, RF1-3 kind, RF1-7/8 effective and expiration, RF1-9 process date, RF1-10 reason,
    RF1-19 authorized provider and RF1-20 the health professional authorized (v2.7+, XCN): the
    person the referral may be carried out by, FHIR's ServiceRequest.performer beside the provider
    organization (a REF's PRD of role RT, who the patient is referred to, takes precedence)."""
    ids = []
    for number, kind in ((6, "PLAC"), (11, None)):
        for rep in dec.reps(rf1, number)[:1]:
            parts = [text(p, dec.seps) for p in rep.split(dec.seps.component)] + ["", ""]
            if parts[0]:
                ids.append(Identifier(value=parts[0], type=kind, assigner=parts[1] or None))
    start, end = dec.when(rf1, 7, scope), dec.when(rf1, 8, scope)
    request = ServiceRequest(
        identifiers=ids,
        status=REFERRAL_STATUS.get(dec.t(rf1, 1).upper(), "unknown"),
        intent="order",
        category="referral",
        priority=PRIORITIES.get(dec.t(rf1, 2).upper()),
        referral_type=dt.read_coding(rf1.get(3), dec.seps),  # a kind of referral, not the service asked for
        occurrence=Period(start=start, end=end) if start or end else None,
        authored=dec.when(rf1, 9, scope) or start,
        reason=codings(dec, rf1, 10),
        patient=patient,
        encounter=encounter,
    )
    request.performing_organization = organizations.first_organization(rf1, 19, dec.seps)  # authorized provider
    request.performers = people.practitioners(rf1, 20, dec.seps)[:1]  # derived: RF1 stays kept
    return request


def decode_referral(dec: Decoder) -> list[Record]:
    """REF^I12-I15: one ServiceRequest (category referral) from RF1, PRD, DG1 and the patient."""
    segs = dec.message.segments
    rf1 = next((s for s in segs if s.name == "RF1"), None)
    if rf1 is None:
        raise DecodeError(f"REF^{dec.event} has no RF1 segment: nothing says what is referred", "RF1")
    scope = dec.scope()
    patient, encounter = header(dec, segs, scope)
    requester, performers, participants = None, [], []
    for prd in (s for s in segs if s.name == "PRD"):
        role = dec.t(prd, 1).upper()
        provider = referral_provider(dec, prd)
        if provider is None:
            continue
        participants += people.referral(prd, provider, dec.seps)  # derived: the message is kept whole
        if role == "RP" and requester is None:
            requester = provider
        elif role == "RT":
            performers.append(provider)
    diagnoses = [c for s in segs if s.name == "DG1" for c in dt.read_codings(s.get(3), dec.seps)[:1]]
    request = referral(dec, rf1, scope, patient, encounter)
    if dec.event == "I14":
        request.status = "revoked"
    request.reason += diagnoses
    request.requester, request.participants = requester, participants
    request.performers = performers or request.performers
    return keep_message(dec, [request, *background(dec, segs, patient, encounter)])

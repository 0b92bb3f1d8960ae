"""What an ADT message says beyond the visit: events, merges, allergies, diagnoses and insurance.

The tables here are documented in docs/hl7v2.md ("ADT events"). An ADT carries one patient (two
for a swap, A17, or a link, A24/A37; one or more for a merge, A40), the visit, and the patient's
clinical background: AL1 and IAM allergies, DG1 diagnoses, IN1/IN2 insurance. Those segments are
also kept, as read, in the message's first record, so an HL7v2 round trip loses nothing; the
records built from them carry ``extra["hl7v2"]["carried"] = True`` to say so (the HL7v2 encoder
writes nothing for a carried record).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge import (
    AllergyIntolerance,
    Coding,
    Condition,
    Coverage,
    Encounter,
    HumanName,
    Identifier,
    Patient,
    PatientLink,
    Period,
    Record,
    RelatedPerson,
)

from . import datatypes as dt
from . import accounts, organizations, procedures
from .header import Separators
from .reader import NULL, Segment, text

OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")

VISIT_STATUS = {
    "A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "in-progress",
    "A05": "planned", "A06": "in-progress", "A07": "in-progress", "A09": "in-progress",
    "A10": "in-progress", "A11": "cancelled", "A12": "in-progress", "A13": "in-progress",
    "A14": "planned", "A15": "in-progress", "A16": "in-progress", "A17": "in-progress",
    "A21": "in-progress", "A22": "in-progress", "A23": "entered-in-error", "A25": "in-progress",
    "A26": "in-progress", "A27": "cancelled", "A32": "in-progress", "A33": "in-progress",
    "A38": "cancelled", "A52": "in-progress", "A53": "in-progress", "A54": "in-progress",
    "A55": "in-progress", "A61": "in-progress", "A62": "in-progress",
}
"""Encounter status by trigger event, for events about a visit. A cancel or reversal says what the
visit is once the cancelled event is undone: A11 (cancel admit) cancelled, A13 (cancel discharge)
in progress again. Every other event (A08, A31, the merges…) reads PV1 (see ``Decoder._status``).
The event itself is kept (``extra["hl7v2"]["event"]``) whenever the encoder would not pick it."""

DISCHARGE_CANCELS = frozenset(("A13", "A25"))
"""Cancel discharge and cancel pending discharge: the visit goes on, so a PV1-45 the message still
carries is no end of the Encounter (it is kept on the wire for the HL7v2 round trip)."""

STRUCTURES = {
    "A01": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03", "A04": "ADT_A01", "A05": "ADT_A05", "A06": "ADT_A06",
    "A07": "ADT_A06", "A08": "ADT_A01", "A09": "ADT_A09", "A10": "ADT_A09", "A11": "ADT_A09", "A12": "ADT_A12",
    "A13": "ADT_A01", "A14": "ADT_A05", "A15": "ADT_A15", "A16": "ADT_A16", "A17": "ADT_A17", "A18": "ADT_A18",
    "A20": "ADT_A20", "A21": "ADT_A21", "A22": "ADT_A21", "A23": "ADT_A21", "A24": "ADT_A24", "A25": "ADT_A21",
    "A26": "ADT_A21", "A27": "ADT_A21", "A28": "ADT_A05", "A29": "ADT_A21", "A30": "ADT_A30", "A31": "ADT_A05",
    "A32": "ADT_A21", "A33": "ADT_A21", "A34": "ADT_A30", "A35": "ADT_A30", "A36": "ADT_A30", "A37": "ADT_A37",
    "A38": "ADT_A38", "A39": "ADT_A39", "A40": "ADT_A39", "A41": "ADT_A39", "A42": "ADT_A39", "A43": "ADT_A43",
    "A44": "ADT_A43", "A45": "ADT_A45", "A46": "ADT_A30", "A47": "ADT_A30", "A48": "ADT_A30", "A49": "ADT_A30",
    "A50": "ADT_A50", "A51": "ADT_A50", "A52": "ADT_A52", "A53": "ADT_A52", "A54": "ADT_A54", "A55": "ADT_A52",
    "A60": "ADT_A60", "A61": "ADT_A61", "A62": "ADT_A61",
}
"""The v2.5 message structure of each ADT event (MSH-9.3), for the encoder."""

VISIT_EVENTS = frozenset((*VISIT_STATUS, "A08"))
"""Events that always give an Encounter. A08 (update patient information) is among them, as it was
before every event decoded: its visit status is read from PV1."""

MERGES = frozenset(("A18", "A30", "A34", "A36", "A39", "A40", "A41", "A42", "A46", "A47", "A48", "A49"))
"""Events whose MRG segment names a retired patient identifier (MRG-1): the surviving patient gets a
link of type ``replaces`` to it. (A41 and A42 merge accounts and visits: a link only when MRG-1
names a patient identifier the PID no longer carries.)"""

LINKS = frozenset(("A24",))
"""Events that link two patients' records (A24): the first patient gets a ``seealso`` link to the
second. Its cancel, A37 (unlink), gives both patients without a link."""

NO_VISIT = frozenset(("A20",))
"""Events with no patient at all (A20 is a bed status update: NPU, no PID)."""

ALLERGY_CATEGORY = {"DA": "medication", "FA": "food", "EA": "environment", "AA": "environment",
                    "PA": "environment", "LA": "environment"}
"""HL7 table 0127 allergen type → FHIR AllergyIntolerance.category (MA and MC, miscellaneous,
have no category: the sender's type is kept in ``allergen_type``)."""
ALLERGY_SEVERITY = {"SV": "severe", "MO": "moderate", "MI": "mild"}
"""HL7 table 0128 (U, unknown, claims nothing)."""
DIAGNOSIS_METHODS = {"I9": dt.CODE_SYSTEMS["I9C"], "I9C": dt.CODE_SYSTEMS["I9C"], "I10": dt.CODE_SYSTEMS["I10"],
                     "I10C": dt.CODE_SYSTEMS["I10C"]}
"""DG1-2 coding method (deprecated, still sent), used as the code's system when DG1-3 names none."""
RELATIONSHIPS = {"SEL": "self", "SPO": "spouse", "DOM": "common", "CHD": "child", "PAR": "parent",
                 "MTH": "parent", "FTH": "parent", "EME": "other", "GRD": "other", "OTH": "other",
                 "ONESELF": "self", "01": "self", "02": "spouse", "03": "child", "18": "self", "19": "child"}
"""Insured's relationship to patient (IN1-17: HL7 table 0063, and the X12 codes some senders use)
→ FHIR subscriber-relationship. Unknown codes are kept raw."""


@dataclass
class Group:
    """One patient's segments in an ADT (the first group also holds MSH and EVN)."""

    pid: Segment | None = None
    segments: list[Segment] = field(default_factory=list)

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


def patient_groups(segments: list[Segment]) -> list[Group]:
    """Split the message at each PID: a swap (A17), a link (A24) or a merge list (A40) repeats it."""
    groups = [Group()]
    for seg in segments:
        if seg.name == "PID":
            if groups[-1].pid is not None:
                groups.append(Group())
            groups[-1].pid = seg
        groups[-1].segments.append(seg)
    return groups


def carried(record: Record) -> Record:
    """Mark a record whose segments travel in the message's first record."""
    record.extra.setdefault("hl7v2", {})["carried"] = True  # type: ignore[attr-defined]
    return record


def says_something(pv1: Segment | None, t: Callable[[Segment | None, int], str]) -> bool:
    """A PV1 beyond a set id and a not-applicable or unknown class (the bare PV1 a person-level
    event such as A28 or A40 must carry) describes a visit."""
    if pv1 is None:
        return False
    if any(v and v != NULL for v in pv1.fields[3:]):
        return True
    return t(pv1, 2) not in ("", "N", "U")


class ClinicalReader:
    """Builds the AL1/IAM, DG1 and IN1 records of one patient group."""

    def __init__(self, seps: Separators, t: Callable[[Segment | None, int], str],
                 reps: Callable[[Segment | None, int], list[str]]):
        self.seps = seps
        self.t = t
        self.reps = reps

    def entity_id(self, seg: Segment, number: int) -> list[Identifier]:
        """EI (id ^ namespace ^ universal id ^ its type): DG1-20 and IAM-7 name the record itself."""
        values = self.reps(seg, number)
        if not values:
            return []
        parts = [text(p, self.seps) for p in values[0].split(self.seps.component)] + ["", "", ""]
        if not parts[0]:
            return []
        universal = parts[2]
        system = None
        if OID.fullmatch(universal):
            system = f"urn:oid:{universal}"
        elif universal.startswith(("urn:", "http://", "https://")):
            system = universal
        return [Identifier(value=parts[0], system=system, assigner=parts[1] or None)]

    def date(self, seg: Segment, number: int) -> str | None:
        raw = seg.get(number)
        if not raw or raw == NULL:
            return None
        return dt.read_datetime(text(raw.split(self.seps.repetition)[0].split(self.seps.component)[0], self.seps))

    def coding(self, seg: Segment, number: int, default_system: str | None = None) -> Coding | None:
        value = self.reps(seg, number)
        coding = dt.read_coding(value[0], self.seps) if value else None
        if coding is not None and default_system and not coding.system:
            coding.system = default_system
        return coding

    def records(self, group: Group, patient: Patient, encounter: Encounter | None) -> list[Record]:
        out: list[Record] = []
        segments = group.segments
        for index, seg in enumerate(segments):
            if seg.name in ("AL1", "IAM"):
                out.append(carried(self.allergy(seg, patient)))
            elif seg.name == "DG1":
                condition = self.condition(seg, patient, encounter)
                if condition is not None:
                    out.append(carried(condition))
            elif seg.name == "PR1":
                procedure = procedures.read(self, seg, patient, encounter, segments[index + 1:])
                if procedure is not None:
                    out.append(carried(procedure))
            elif seg.name == "IN1":
                in2 = segments[index + 1] if index + 1 < len(segments) and segments[index + 1].name == "IN2" else None
                coverage = self.coverage(seg, in2, patient)
                if coverage is not None:
                    out.append(carried(coverage))
        if group.pid is None:  # an order's or a result's segments: their account is not read (yet)
            return out
        return out + accounts.read(self, group.pid, group.first("PV1"), patient, encounter)

    def allergy(self, seg: Segment, patient: Patient) -> AllergyIntolerance:
        """AL1 (and IAM, which shares fields 2-5): type, allergen, severity, reactions, date."""
        kind = self.coding(seg, 2, "HL70127")
        severity = self.t(seg, 4).upper()
        reactions = [r for r in (text(rep.split(self.seps.component)[0], self.seps)
                                 or text((rep.split(self.seps.component) + ["", ""])[1], self.seps)
                                 for rep in self.reps(seg, 5)) if r]
        return AllergyIntolerance(
            identifiers=self.entity_id(seg, 7) if seg.name == "IAM" else [],
            clinical_status="active",
            allergen_type=kind,
            category=ALLERGY_CATEGORY.get(kind.code.upper()) if kind else None,
            code=self.coding(seg, 3),
            severity=ALLERGY_SEVERITY.get(severity),
            reactions=reactions,
            identified_at=self.date(seg, 6) if seg.name == "AL1" else self.date(seg, 11),
            reported_by=self.reporter(seg, patient) if seg.name == "IAM" else None,
            patient=patient,
        )

    def reporter(self, iam: Segment, patient: Patient) -> RelatedPerson | None:
        """IAM-14 reported by (XPN) and IAM-15 relationship to the patient (table 0063): who told of
        the allergy, as a RelatedPerson. None when the patient reported it (``SEL``) or no name is
        given: FHIR's asserter would then be the patient, which the allergy already names."""
        relationships = self.reps(iam, 15)
        relationship = dt.read_coding(relationships[0], self.seps) if relationships else None
        if relationship is not None and relationship.code.upper() == "SEL":
            return None
        if relationship is not None:
            relationship.system = relationship.system or "HL70063"
        names = [n for n in (dt.read_name(r, self.seps) for r in self.reps(iam, 14)) if n]
        if not names:
            return None
        return RelatedPerson(name=names[0], relationship=[relationship] if relationship is not None else [],
                             patient=patient)

    def condition(self, seg: Segment, patient: Patient, encounter: Encounter | None) -> Condition | None:
        """DG1: a diagnosis of the visit (category encounter-diagnosis), coded as sent."""
        method = DIAGNOSIS_METHODS.get(self.t(seg, 2).upper())
        code = self.coding(seg, 3, method)
        description = self.t(seg, 4) or None
        if code is None and description is None:
            return None  # a DG1 that names no diagnosis (kept raw) makes no Condition
        clinicians = self.reps(seg, 16)
        return Condition(
            identifiers=self.entity_id(seg, 20),
            category="encounter-diagnosis",
            diagnosis_type=self.coding(seg, 6, "HL70052"),
            code=code,
            description=description,
            onset=self.date(seg, 5),
            recorded=self.date(seg, 19),
            asserter=dt.read_practitioner(clinicians[0], self.seps) if clinicians else None,
            patient=patient,
            encounter=encounter,
        )

    def coverage(self, in1: Segment, in2: Segment | None, patient: Patient) -> Coverage | None:
        """IN1 (+IN2): plan, payer, group, subscriber, relationship, period; IN2-61 (patient member
        number) and IN2-72 (relationship, v2.6+) when IN1-36 and IN1-17 are empty. An IN1 that names
        no payer (IN1-3/IN1-4) makes no Coverage: FHIR requires one (the segment stays kept raw)."""
        payer_ids = [i for i in (dt.read_identifier(r, self.seps) for r in self.reps(in1, 3)) if i]
        payer_name = self.t(in1, 4) or None
        if not payer_ids and payer_name is None:
            return None
        start, end = self.date(in1, 12), self.date(in1, 13)
        names = self.reps(in1, 16)
        relationship = (self.t(in1, 17) or self.t(in2, 72)).upper()
        subscriber = self.reps(in1, 49)
        subscriber_name = dt.read_name(names[0], self.seps) if names else None
        coverage = Coverage(
            status="active",
            plan=self.coding(in1, 2),
            plan_type=self.coding(in1, 15),
            payer_name=payer_name,
            payer_identifiers=payer_ids,
            member_id=self.t(in1, 36) or self.t(in2, 61) or None,
            group_number=self.t(in1, 8) or None,
            group_name=self.t(in1, 9) or None,
            subscriber_id=text(subscriber[0].split(self.seps.component)[0], self.seps) or None if subscriber else None,
            subscriber_name=subscriber_name,
            relationship=RELATIONSHIPS.get(relationship) if relationship else None,
            period=Period(start=start, end=end) if start or end else None,
            patient=patient,
            policy_holder=organizations.policy_holder(in1, self.seps),
        )
        coverage.subscriber = self.insured(in1, subscriber_name, patient) if coverage.relationship != "self" else None
        return coverage

    def insured(self, in1: Segment, name: HumanName | None, patient: Patient) -> RelatedPerson | None:
        """The insured other than the patient as a person: IN1-16 name, IN1-17 relationship (table
        0063), IN1-19 address, IN1-49 identifier (CX, its assigning authority kept). Nobody named, nobody made."""
        if name is None:
            return None
        relationship = self.coding(in1, 17, "HL70063")
        return RelatedPerson(
            identifiers=[i for i in (dt.read_identifier(r, self.seps) for r in self.reps(in1, 49)) if i],
            name=copy.deepcopy(name),
            relationship=[relationship] if relationship is not None else [],
            addresses=[a for a in (dt.read_address(r, self.seps) for r in self.reps(in1, 19)) if a],
            patient=patient,
        )


def merge_links(event: str, group: Group, patient: Patient, seps: Separators,
                reps: Callable[[Segment | None, int], list[str]]) -> list[PatientLink]:
    """``replaces`` links to the identifiers a merge retired (MRG-1, and MRG-4 patient ids)."""
    if event not in MERGES:
        return []
    links = []
    current = {(i.value, i.system, i.assigner) for i in patient.identifiers}
    for mrg in group.all("MRG"):
        for number in (1, 4):
            for rep in reps(mrg, number):
                ident = dt.read_identifier(rep, seps)
                if ident is None or (ident.value, ident.system, ident.assigner) in current:
                    continue
                links.append(PatientLink(other=ident, type="replaces"))
    return links


def link_to(other: Patient | None) -> list[PatientLink]:
    """A24: a ``seealso`` link to the other patient's first identifier."""
    if other is None or not other.identifiers:
        return []
    first = other.identifiers[0]
    return [PatientLink(other=Identifier(value=first.value, system=first.system, type=first.type,
                                         assigner=first.assigner), type="seealso")]

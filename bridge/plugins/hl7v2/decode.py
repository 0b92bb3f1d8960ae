"""HL7v2 messages to canonical records.

ADT A01-A62 → Encounter (or Patient for an event about the person only), with AllergyIntolerance,
Condition and Coverage from AL1/IAM, DG1 and IN1/IN2 and patient links from merges (see adt.py);
SIU S12-S15 → Appointment; RDE^O11 and OMP^O09 → Prescription (one per ORC group); MDM^T02 →
ClinicalNote; ORU^R01 → DiagnosticReport (one per OBR, with one Observation per OBX; the mapping
tables are in :mod:`.results`); ORM/OML/OMG → ServiceRequest and REF → referral ServiceRequest
(:mod:`.orders`), RDS → RxFill PrescriptionEvent and RAS/RGV → MedicationAdministration
(:mod:`.pharmacy`), VXU → Immunization (:mod:`.immunization`); RDE^O25 decodes as RDE^O11; BAR and
DFT → the visit or Patient they are about, their financial segments kept raw (no record maps them yet);
PPR^PC1-PC3 → one problem-list Condition per PRB (:mod:`.problems`).
Other types are refused with ``DecodeError("unsupported message type X")`` (see docs/hl7v2.md).

Nothing is silently dropped: on the segments a mapping reads, fields it does not map are kept
verbatim in ``extra["hl7v2"]["fields"]`` (``{"PID-10": "2106-3^White^HL70005"}``), explicit nulls
(``""``) in ``extra["hl7v2"]["nulls"]``, values that could not be read (a malformed date, an unknown
code) in ``fields`` too, and every other segment (Z-segments, repeats, unknown ones) in
``extra["hl7v2"]["segments"]`` with the mapped segment it followed. The encoder re-emits all of it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from bridge import (
    Appointment,
    ClinicalNote,
    Coding,
    DecodeError,
    DiagnosticReport,
    Encounter,
    Identifier,
    Medication,
    Observation,
    Patient,
    Period,
    Practitioner,
    Prescription,
    Quantity,
    Range,
    Ratio,
    Record,
)

from . import adt, companions, people, wire
from . import datatypes as dt
from . import immunization, orders, pharmacy, places, problems, results, results_encode, specimens, telehealth
from . import carried_orders, equipment, organizations, procedures
from . import accounts, billing_background, charges, deaths, further_visits, visit_ids
from .header import Separators
from .reader import NULL, Message, Segment, esc, parse_path, read_messages, reencode, reencode_segment, text

log = logging.getLogger(__name__)

ADT_EVENTS = tuple(f"A{n:02d}" for n in range(1, 63))
"""Every ADT trigger event of v2.5-v2.9 (A01-A62); the tables of what each means are in adt.py."""
SIU_EVENTS = tuple(f"S{n}" for n in range(12, 27))
SIU_STATUS = {"S12": "booked", "S13": "booked", "S14": "booked", "S15": "cancelled", "S16": "cancelled",
              "S17": "entered-in-error", "S26": "noshow"}
"""Appointment.status by SIU trigger when SCH-25 (filler status) is empty: S12 new, S13 rescheduled
and S14 modified are booked; S15 cancelled and S16 discontinued are cancelled; S17 deleted is
entered-in-error; S26 is a no-show. S18-S25 (services and resources added, changed, cancelled,
discontinued or deleted, blocked/opened slots, a query notice) say nothing of the appointment's own
status. SCH-25, when valued, is the sender's explicit status and wins."""
GENDERS = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}
CLASSES = {"E": "EMER", "I": "IMP", "O": "AMB", "P": "PRENC"}
ORDER_STATUS = {"CM": "completed", "CA": "cancelled", "DC": "stopped", "HD": "on-hold", "IP": "active",
                "SC": "active", "ER": "entered-in-error"}
ORDER_TYPES = {"I": "inpatient", "O": "outpatient"}
"""ORC-29 order type (HL7 table 0482). An outpatient order from an inpatient or emergency stay, or
from a message whose PV1-36 discharge disposition is valued, is a discharge prescription."""
STAY_CLASSES = ("I", "E")
ORDER_CONTROL = {"NW": "active", "CA": "cancelled", "DC": "stopped", "HD": "on-hold", "OK": "active"}
"""ORC-5 (table 0038) and ORC-1 (table 0119) as FHIR R4 MedicationRequest.status codes: a cancelled order
was never acted on, a discontinued one is stopped (R4 has no "revoked" for medication requests)."""
APPOINTMENT_STATUS = {"BOOKED": "booked", "PENDING": "pending", "CANCELLED": "cancelled", "COMPLETE": "fulfilled",
                      "NOSHOW": "noshow", "WAITLIST": "waitlist", "STARTED": "arrived", "DELETED": "entered-in-error",
                      "OVERBOOK": "booked", "DC": "cancelled"}
NOTE_STATUS = {"AU": "final", "LA": "final", "IP": "preliminary", "PA": "preliminary",
               "IN": "preliminary", "DI": "preliminary"}
MDM_EVENTS = {"T01": "original", "T02": "original", "T03": "status-change", "T04": "status-change",
              "T05": "addendum", "T06": "addendum", "T07": "edit", "T08": "edit", "T09": "replacement",
              "T10": "replacement", "T11": "cancel"}
"""ClinicalNote.document_event by MDM trigger; odd triggers (and T11) are notifications without the
document's text, even ones carry it in OBX."""
FINANCIAL_TYPES = ("BAR", "DFT")
"""Account and charge messages (every trigger: BAR P01/P02/P05/P06/P10/P12, DFT P03/P11): stored
and routed as what they are, with their financial segments kept raw (see Decoder.financial)."""
NO_CLAIM = frozenset(("U", "DO"))
"""Codes that claim nothing (class unknown, document merely "documented"): read as no value."""
TEXT_TYPES = ("TX", "FT", "ST")
SUBSTITUTION_NOT_ALLOWED = ("N", "0", "1", "7")
SUBSTITUTION_ALLOWED = ("G", "T", "2", "3", "4", "5", "8")

# Fields each mapping reads, per segment: everything else on these segments is kept raw.
MAPPED: dict[str, set[int]] = {
    "MSH": set(range(0, 100)),
    "EVN": set(),  # kept as sent: the event is MSH-9.2's, EVN-2 the sender's recorded time
    "PID": {1, 2, 3, 4, 5, 7, 8, 11, 13, 14, 19},
    "PV1": {1, 2, 7, 19, 44, 45},
    "PV2": {3},
    "SCH": {1, 2, 7, 8, 9, 10, 11, 25},
    "RGS": {1},
    "AIP": {1, 3},
    "ORC": {1, 2, 3, 5, 9, 12, 29},
    "RXE": {2, 7, 9, 10, 11, 12, 27, 32},
    "RXO": {1, 7, 9, 11, 12, 13},
    "TQ1": {1},
    "RXR": set(),
    "TXA": {1, 2, 3, 4, 9, 12, 13, 17},
    "OBR": {1, 2, 3, 4, 7, 22, 24, 25},
    "OBX": {1, 2, 3, 5, 6, 7, 8, 11, 14, 16, 21},
}


REQUIRED_UNKNOWN: dict[str, dict[int, str]] = {
    "SCH": {6: NULL, 16: NULL, 20: NULL},
    "RXE": {3: "0", 5: NULL},
    "RXR": {1: NULL},
}
"""Fields v2.5 requires that records cannot fill, and the placeholder the encoder sends for them:
``""`` (no value), or ``0`` for RXE-3 (a number; the dose is in the sig, RXE-21). The decoder reads
a placeholder back as nothing. (SCH-6 event reason, SCH-16 filler contact, SCH-20 entered by,
RXE-3 give amount, RXE-5 give units.)"""


class Scope:
    """What one record keeps of its segments: raw fields, explicit nulls, unmapped segments."""

    def __init__(self, seps: Separators, mapped: Mapping[str, set[int]]):
        self.seps = seps
        self.mapped = mapped
        self.fields: dict[str, str] = {}
        self.nulls: list[str] = []
        self.segments: list[dict[str, str]] = []
        self.warnings: list[str] = []
        self.wire: dict[str, list[str]] = {}
        self.missing: list[str] = []
        self.anchor = "MSH"

    def take(self, seg: Segment, into: Scope | None = None, fields: bool = True) -> None:
        """Mark ``seg`` as mapped: keep its unmapped fields and nulls (in ``into`` when given)."""
        self.anchor = seg.name
        if into is not None:
            into.take(seg)
            return
        mapped = self.mapped.get(seg.name, ())
        if seg.name != "MSH" and fields:  # MDM text OBX keep only type and value (see docs)
            for number in range(1, len(seg.fields)):
                value = seg.fields[number]
                if not value:
                    continue
                key = f"{seg.name}-{number}"
                if REQUIRED_UNKNOWN.get(seg.name, {}).get(number) == value:
                    continue
                if number not in mapped:
                    self.fields[key] = reencode(value, self.seps)
                elif value == NULL:
                    self.nulls.append(key)

    def keep(self, seg: Segment) -> None:
        """Keep a segment this mapping does not read, after the mapped segment it followed."""
        self.segments.append({"after": self.anchor, "segment": reencode_segment(seg, self.seps)})

    def unreadable(self, key: str, raw: str) -> None:
        """A mapped value that could not be read (bad date, unknown code): keep it as written."""
        if raw and raw != NULL:
            self.fields[key] = reencode(raw, self.seps)

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.fields:
            out["fields"] = dict(self.fields)
        if self.nulls:
            out["nulls"] = list(self.nulls)
        if self.segments:
            out["segments"] = list(self.segments)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.wire:
            out["wire"] = dict(self.wire)
        if self.missing:
            out["missing"] = list(self.missing)
        return {"hl7v2": out} if out else {}


class Decoder:
    """Decodes one message; ``options`` carry the channel's telehealth convention."""

    def __init__(self, message: Message, options: Mapping[str, Any]):
        self.message = message
        self.seps = message.separators
        self.convention = telehealth.convention_from(options)
        self.mapped = dict(MAPPED)
        for name, numbers in self.convention.mapped_fields().items():
            self.mapped[name] = self.mapped.get(name, set()) | numbers
        self.owned_z = self.convention.z_segments()
        msh = message.msh
        parts = msh.get(9).split(self.seps.component)
        self.type = text(parts[0], self.seps)
        self.event = text(parts[1], self.seps) if len(parts) > 1 else ""
        self.structure = text(parts[2], self.seps) if len(parts) > 2 else ""

    # --- helpers ---

    def scope(self) -> Scope:
        return Scope(self.seps, self.mapped)

    def new_pid_scope(self) -> Scope:
        """The patient's own scope: PID's unmapped fields belong on the Patient record."""
        self.pid_scope = Scope(self.seps, self.mapped)
        return self.pid_scope

    def t(self, seg: Segment | None, number: int) -> str:
        """Field ``number`` of ``seg`` as text (first repetition, first component)."""
        if seg is None:
            return ""
        value = seg.get(number)
        if not value:
            return ""
        return text(value.split(self.seps.repetition)[0].split(self.seps.component)[0], self.seps)

    def reps(self, seg: Segment | None, number: int) -> list[str]:
        if seg is None:
            return []
        value = seg.get(number)
        return [r for r in value.split(self.seps.repetition) if r and r != NULL] if value else []

    def when(self, seg: Segment | None, number: int, scope: Scope, component: int = 1) -> str | None:
        """A date-time field as ISO 8601, or None (and the raw value kept) when it is malformed."""
        if seg is None:
            return None
        raw = seg.get(number)
        if not raw or raw == NULL:
            return None
        value = raw.split(self.seps.repetition)[0].split(self.seps.component)[component - 1:component]
        iso = dt.read_datetime(text(value[0], self.seps)) if value else None
        if iso is None:
            scope.unreadable(f"{seg.name}-{number}", raw)
        return iso

    def coded(self, seg: Segment | None, number: int, table: Mapping[str, str], scope: Scope) -> str | None:
        code = self.t(seg, number)
        if not code:
            return None
        value = table.get(code) or table.get(code.upper())
        if value is None and code not in NO_CLAIM:
            scope.unreadable(f"{seg.name}-{number}", seg.get(number))
        return value

    def walk(self, segments: list[Segment], scope: Scope, wanted: tuple[str, ...],
             late: tuple[str, ...] = (), after: str = "") -> dict[str, Segment]:
        """Take the first of each wanted segment (``late`` ones only once ``after`` was seen);
        keep the rest (owned Z-segments are consumed)."""
        found: dict[str, Segment] = {}
        for seg in segments:
            eligible = seg.name in wanted or (seg.name in late and after in found)
            if eligible and seg.name not in found:
                found[seg.name] = seg
                scope.take(seg, into=self.pid_scope if seg.name == "PID" else None)
            elif seg.name in self.owned_z:
                continue
            else:
                scope.keep(seg)
        return found

    def telehealth(self, scope: Scope, home_state: str | None) -> telehealth.Telehealth:
        """The convention's facts; a modality code it does not know is kept as a raw field."""
        facts = telehealth.read(self.message, self.convention, home_state)
        path = self.convention.modality_field
        if facts.unknown_code and path and not path.startswith("Z"):
            seg_name, number, _ = parse_path(path)
            seg = self.message.segment(seg_name)
            if seg is not None:
                scope.unreadable(f"{seg_name}-{number}", seg.get(number))
        return facts

    # --- entities ---

    def patient(self, pid: Segment | None, scope: Scope) -> Patient | None:
        if pid is None:
            return None
        ids: list[Identifier] = []
        for number in (2, 3, 4):
            ids += [i for i in (dt.read_identifier(r, self.seps) for r in self.reps(pid, number)) if i]
        ssn = self.t(pid, 19)
        if ssn:
            ids.append(Identifier(value=ssn, system=dt.SSN_SYSTEM, type="SS"))
        names = self.reps(pid, 5)
        addresses = [a for a in (dt.read_address(r, self.seps) for r in self.reps(pid, 11)) if a]
        telecom = [c for n in (13, 14) for c in (dt.read_telecom(r, self.seps) for r in self.reps(pid, n)) if c]
        patient = Patient(
            identifiers=ids,
            name=dt.read_name(names[0], self.seps) if names else None,
            birth_date=self.when(pid, 7, scope),
            gender=self.coded(pid, 8, GENDERS, scope),
            addresses=addresses,
            telecom=telecom,
        )
        if patient == Patient() and not scope.fields and not scope.nulls:
            return None  # a bare PID (required by the structure) says nothing; unmapped fields keep it
        scope.wire.update(wire.keep(pid, self.seps, wire.pid_written(patient)))
        patient.extra = scope.extra()
        patient.primary_facility = organizations.primary_facility(self.message.segments, pid, self.seps)
        patient.general_practitioners = people.general_practitioners(self.message, pid, self.seps)  # derived
        return patient

    def encounter(self, pv1: Segment | None, pv2: Segment | None, scope: Scope,
                  patient: Patient | None) -> Encounter:
        end = self.when(pv1, 45, scope)
        status = self._status(pv1, end) if self.type == "ADT" or self._visit_known(pv1, end) else None
        start, end = self._period(pv1, pv2, status, end, scope)
        visit = [dt.read_identifier(r, self.seps) for r in self.reps(pv1, 19)[:1]]
        for ident in visit:
            if ident is not None:
                ident.type = "VN"  # PV1-19 is the visit number whatever CX.5 says
        attending = self.reps(pv1, 7)
        home_state = patient.addresses[0].state if patient and patient.addresses else None
        facts = self.telehealth(scope, home_state)
        encounter = Encounter(
            identifiers=[v for v in visit if v],
            status=status,
            modality=facts.modality,
            encounter_class=self.coded(pv1, 2, CLASSES, scope),
            period=Period(start=start, end=end) if start or end else None,
            patient=patient,
            practitioner=dt.read_practitioner(attending[0], self.seps) if attending else None,
            patient_location=facts.location,
            practitioner_state=facts.practitioner_state,
            consent_captured=facts.consent,
            reason=[c for c in (dt.read_coding(r, self.seps) for r in self.reps(pv2, 3)) if c],
        )
        scope.wire.update(wire.keep(pv1, self.seps, wire.pv1_written(encounter)))
        places.attach(encounter, pv1, self.seps, pv2)
        encounter.participants = people.visit(self.message, pv1, pv2, self.seps)  # derived: PV1/ROL stay kept
        visit_ids.attach(encounter, pv1, self.seps)
        return encounter

    def _status(self, pv1: Segment | None, end: str | None) -> str:
        """By event for an event about a visit (adt.VISIT_STATUS: A03 finished, A11 cancelled, A05
        planned…); any other event (A08 update, A31, a merge) and any other message type with a PV1
        (ORU, ORM, MDM, RDE, SIU, BAR…) reads PV1: finished when PV1-45 is valued, planned for a
        pre-admit (PV1-2 P), else in-progress."""
        if self.event in adt.VISIT_STATUS:
            return adt.VISIT_STATUS[self.event]
        if end:
            return "finished"
        return "planned" if self.t(pv1, 2) == "P" else "in-progress"

    def _visit_known(self, pv1: Segment | None, end: str | None) -> bool:
        """Outside ADT a PV1 says where the visit stands only with a class (PV1-2 other than U/N,
        the unknown class our encoder writes for a visit without one) or a discharge time: a bare
        PV1 of a result or an order gets no invented status."""
        return pv1 is not None and (bool(end) or self.t(pv1, 2) not in ("", "N", "U"))

    def _period(self, pv1: Segment | None, pv2: Segment | None, status: str | None, end: str | None,
                scope: Scope) -> tuple[str | None, str | None]:
        """PV1-44/45, the actual admit and discharge times. A visit that has not taken place
        (planned, or cancelled before it began) has its *expected* dates as its period, so PV2-8/9
        fill what PV1-44/45 leave empty; an in-progress visit's expected discharge is not an end.
        A cancelled discharge (A13, A25) leaves the visit open: PV1-45 stays on the wire only."""
        start = self.when(pv1, 44, scope)
        if self.type == "ADT" and self.event in adt.DISCHARGE_CANCELS:
            end = None
        if status in ("planned", "cancelled"):
            start = start or self.when(pv2, 8, scope)
            end = end or self.when(pv2, 9, scope)
        return start, end

    # --- message types ---

    def adt(self) -> list[Record]:
        """Every ADT event: the visit (Encounter) when the event is about one or PV1 describes one,
        else the Patient; then merges and links, allergies, diagnoses and insurance (see adt.py)."""
        scope, pid_scope = self.scope(), self.new_pid_scope()
        segs = self.message.segments
        pid, pv1 = self.message.segment("PID"), self.message.segment("PV1")
        visit = self.event in adt.VISIT_EVENTS or adt.says_something(pv1, self.t) or pid is None
        # Without a visit, a bare PV1 (required by A28's structure) is kept whole, not read.
        found = self.walk(segs, scope, ("MSH", "EVN", "PID", "PV1", "PV2") if visit else ("MSH", "EVN", "PID"))
        self._prune_evn(scope)
        if pid is None:
            self._check_pidless(pv1)
        patient = self.patient(pid, pid_scope) if pid is not None else None
        encounter = None
        if visit:
            encounter = self.encounter(found.get("PV1"), found.get("PV2"), scope, patient)
            encounter.extra = scope.extra()
            self._note_event(encounter, default_adt_event(encounter.status))
        else:
            patient = patient or Patient()
            kept = patient.extra.setdefault("hl7v2", {})
            if scope.extra():
                kept["header"] = scope.extra()["hl7v2"]
            kept["event"] = self.event  # a Patient is encoded as an ADT only with the event it came with
        first: Record = encounter if encounter is not None else patient  # type: ignore[assignment]
        if pid is None:  # what the sender left out, so an HL7v2 round trip leaves it out too
            kept = first.extra.setdefault("hl7v2", {})  # type: ignore[attr-defined]
            kept["warnings"] = [f"ADT^{self.event} has no PID segment: the visit is decoded without a patient"]
            kept["missing"] = [*kept.get("missing", ()), "PID"]
        return [first, *self._groups(adt.patient_groups(segs), patient, encounter)]

    def financial(self) -> list[Record]:
        """BAR and DFT: no record maps accounts or charges yet, but they are stored and routed as
        what they are. The record is the visit of the first PV1 (with its patient) or, without one,
        the Patient; every other segment (FT1, GT1, IN1, DG1, PR1, further visits…) is kept raw, and
        ``extra["hl7v2"]["message_type"]`` (MSH-9 as sent) tells routes and the encoder what it was.
        Nothing is refused: a message without PID still gives its visit or an empty Patient."""
        scope, pid_scope = self.scope(), self.new_pid_scope()
        pid, pv1 = self.message.segment("PID"), self.message.segment("PV1")
        visit = adt.says_something(pv1, self.t)
        found = self.walk(self.message.segments, scope,
                          ("MSH", "EVN", "PID", "PV1", "PV2") if visit else ("MSH", "EVN", "PID"))
        self._prune_evn(scope)
        patient = self.patient(pid, pid_scope) if pid is not None else None
        record: Encounter | Patient
        if visit:
            record = self.encounter(found.get("PV1"), found.get("PV2"), scope, patient)
            record.extra = scope.extra()
        else:
            record = patient or Patient()
            if scope.extra():
                record.extra.setdefault("hl7v2", {})["header"] = scope.extra()["hl7v2"]
        kept = record.extra.setdefault("hl7v2", {})
        kept["message_type"] = reencode(self.message.msh.get(9), self.seps)
        if pid is None:
            kept["missing"] = [*kept.get("missing", ()), "PID"]
            kept["warnings"] = [f"{self.type}^{self.event} has no PID segment"]
        log.info("hl7v2 decode: %s^%s kept as sent (financial segments are not mapped to records)",
                 self.type, self.event)
        return [record, *procedures.financial(self, record), *billing_background.read(self, record),
                *further_visits.further(self, record)]

    def _prune_evn(self, scope: Scope) -> None:
        """EVN-1 equal to MSH-9.2 says nothing the encoder would not write itself (the event). EVN-2
        is kept as sent even when it equals MSH-7: it is when the sender recorded the event, a fact
        that must not become the time a later forward or replay happens to run. A message sent
        without EVN (or EVN-2) is marked so, and goes back without one rather than with our time."""
        if scope.fields.get("EVN-1") == self.event:
            del scope.fields["EVN-1"]
        evn = self.message.segment("EVN")
        if evn is None:
            scope.missing.append("EVN")
        elif not evn.get(2):
            scope.missing.append("EVN-2")

    def _check_pidless(self, pv1: Segment | None) -> None:
        """An ADT without PID is decoded only when its PV1 describes a visit."""
        if self.event in adt.NO_VISIT:
            raise DecodeError(f"ADT^{self.event} is a bed status update: it names no patient or visit "
                              "(no record maps it)", "MSH-9")
        if not adt.says_something(pv1, self.t):
            raise DecodeError(f"ADT^{self.event} has no PID segment and no visit (PV1) to decode: "
                              "nothing says whose message it is", "PID")

    def _groups(self, groups: list[adt.Group], patient: Patient | None,
                encounter: Encounter | None) -> list[Record]:
        """Links and clinical records of the first patient, then each further patient (a swap's
        second visit, a link's or merge list's other patients) as records of their own."""
        reader = adt.ClinicalReader(self.seps, self.t, self.reps)
        out: list[Record] = []
        patients = [patient] + [self.patient(g.pid, self.scope()) for g in groups[1:]]
        for index, group in enumerate(groups):
            current = patients[index]
            if current is None:
                continue
            current.links += adt.merge_links(self.event, group, current, self.seps, self.reps)
            if self.event in adt.LINKS and index + 1 < len(patients) and index % 2 == 0:
                current.links += adt.link_to(patients[index + 1])
            visit = encounter
            if index > 0:
                pv1 = group.first("PV1")
                if pv1 is not None and adt.says_something(pv1, self.t):
                    visit = self.encounter(pv1, group.first("PV2"), self.scope(), current)
                    visit.extra = {}
                    out.append(adt.carried(visit))
                else:
                    visit = None
                    out.append(adt.carried(current))
            out += self._further_visits(group, current)  # an A45's second MRG/PV1: a visit moved too
            out += reader.records(group, current, visit)
            out += companions.for_group(self, group, current, visit)  # NK1, PID-21 mother, OBX
        return out

    def _further_visits(self, group: adt.Group, patient: Patient) -> list[Record]:
        """Every PV1 of a patient group after its first (ADT^A45 moves one visit per MRG/PV1 pair)
        that describes a visit, as a carried Encounter of that patient (the segments stay kept)."""
        return list(further_visits.carried_visits(self, further_visits.visits_in(group.segments)[1:], patient))

    def _note_event(self, record: Any, default: str) -> None:
        """Keep the trigger event when the encoder would not pick the same one from the record."""
        if self.event and self.event != default:
            record.extra.setdefault("hl7v2", {})["event"] = self.event

    def siu(self) -> list[Record]:
        """SIU S12-S26 → Appointment. Start and end from TQ1-7/8 (v2.5+), else from SCH-11.4/5;
        RGS, AIS, AIG, AIL and every AIP after the first are kept as they came."""
        pv1_fields = {1} | self.convention.mapped_fields().get("PV1", set())
        mapped = {**self.mapped, "PV1": pv1_fields, "TQ1": {7, 8}}
        scope, pid_scope = Scope(self.seps, mapped), self.new_pid_scope()
        found = self.walk(self.message.segments, scope, ("MSH", "SCH", "PID", "PV1", "RGS", "AIP"),
                          late=("TQ1",), after="SCH")
        sch = found.get("SCH")
        if sch is None:
            raise DecodeError(f"SIU^{self.event} has no SCH segment", "SCH")
        patient = self.patient(found.get("PID"), pid_scope)
        start, end = self._appointment_times(sch, found.get("TQ1"), scope)
        status = self.coded(sch, 25, APPOINTMENT_STATUS, scope) or SIU_STATUS.get(self.event)
        aip = found.get("AIP")
        staff = self.reps(aip, 3)
        home_state = patient.addresses[0].state if patient and patient.addresses else None
        facts = self.telehealth(scope, home_state)
        appointment = Appointment(
            identifiers=self._order_ids(sch, 1, 2),
            status=status,
            start=start,
            end=end,
            duration_minutes=self._minutes(sch, scope),
            modality=facts.modality,
            reason=[c for c in (dt.read_coding(r, self.seps) for r in self.reps(sch, 7)) if c],
            appointment_type=dt.read_coding(sch.get(8), self.seps),
            patient=patient,
            practitioner=dt.read_practitioner(staff[0], self.seps) if staff else None,
            patient_location=facts.location,
        )
        appointment.locations = places.appointment_places(self.message.segments, self.seps)
        appointment.participants = people.appointment(self.message, self.seps)  # derived: AIP stays kept
        scope.wire.update(wire.keep(sch, self.seps, wire.sch_written(appointment)))
        for name in ("RGS", "AIP"):
            scope.wire.update(wire.keep(found.get(name), self.seps, {1: "1"}))
        appointment.extra = scope.extra()
        if "TQ1" in found:
            appointment.extra.setdefault("hl7v2", {})["timing"] = "TQ1"
        self._note_event(appointment, default_siu_event(status))
        return [appointment]

    def _appointment_times(self, sch: Segment, tq1: Segment | None,
                           scope: Scope) -> tuple[str | None, str | None]:
        """TQ1-7/8 start and end (v2.5+); SCH-11.4/5 (deprecated TQ) when no TQ1 gives them."""
        if tq1 is not None and (tq1.get(7) or tq1.get(8)):
            return self.when(tq1, 7, scope), self.when(tq1, 8, scope)
        timing = sch.get(11).split(self.seps.repetition)[0].split(self.seps.component) if sch.get(11) else []
        start = dt.read_datetime(text(timing[3], self.seps)) if len(timing) > 3 else None
        end = dt.read_datetime(text(timing[4], self.seps)) if len(timing) > 4 else None
        if (len(timing) > 3 and timing[3] and not start) or (len(timing) > 4 and timing[4] and not end):
            scope.unreadable("SCH-11", sch.get(11))
        return start, end

    def _minutes(self, sch: Segment, scope: Scope) -> int | None:
        amount = self.t(sch, 9)
        if not amount:
            return None
        unit = self.t(sch, 10).upper()
        factor = {"": 1, "MIN": 1, "M": 1, "MINUTES": 1, "H": 60, "HR": 60, "HOURS": 60}.get(unit)
        try:
            return round(float(amount) * factor) if factor else None
        except ValueError:
            scope.unreadable("SCH-9", sch.get(9))
            return None

    def _order_ids(self, seg: Segment, placer: int, filler: int) -> list[Identifier]:
        ids = []
        for number, kind in ((placer, "PLAC"), (filler, "FILL")):
            raw = self.reps(seg, number)
            if raw:
                parts = raw[0].split(self.seps.component)
                value = text(parts[0], self.seps)
                if value:
                    namespace = text(parts[1], self.seps) if len(parts) > 1 else ""
                    universal = text(parts[2], self.seps) if len(parts) > 2 else ""
                    system = f"urn:oid:{universal}" if universal else None
                    ids.append(Identifier(value=value, system=system, type=kind, assigner=namespace or None))
        return ids

    def pharmacy(self) -> list[Record]:
        segs = self.message.segments
        first_orc = next((i for i, s in enumerate(segs) if s.name == "ORC"), None)
        warning = None
        if first_orc is None:
            first_orc, warning = self._orderless(segs)
        header_scope, pid_scope = self.scope(), self.new_pid_scope()
        found = self.walk(segs[:first_orc], header_scope, ("MSH", "PID", "PV1", "PV2"))
        patient = self.patient(found.get("PID"), pid_scope)
        encounter = None
        if "PV1" in found:
            encounter = self.encounter(found.get("PV1"), found.get("PV2"), header_scope, None)
        groups: list[list[Segment]] = []
        for seg in segs[first_orc:]:
            if seg.name == "ORC" or not groups:
                groups.append([])
            groups[-1].append(seg)
        pv1 = found.get("PV1")
        records: list[Record] = [self._prescription(group, patient, encounter, pv1) for group in groups]
        header = header_scope.extra().get("hl7v2")
        if header:
            records[0].extra.setdefault("hl7v2", {})["header"] = header
        if warning:
            kept = records[0].extra.setdefault("hl7v2", {})
            kept["warnings"] = [warning, *kept.get("warnings", ())]
            kept["missing"] = ["ORC"]
            log.warning("hl7v2 decode: %s^%s without ORC; one order read from its %s",
                        self.type, self.event, "RXE" if self.type == "RDE" else "RXO")
        if self.event != "O11" and self.type == "RDE":
            records[0].extra.setdefault("hl7v2", {})["event"] = self.event
        return records

    def _orderless(self, segs: list[Segment]) -> tuple[int, str]:
        """An RDE (or OMP) without ORC: one order when exactly one RXE (RXO) says what it is, with
        a warning; otherwise refused with the reason (which order each segment belongs to is unknown)."""
        give = "RXE" if self.type == "RDE" else "RXO"
        label = f"{self.type}^{self.event}"
        at = [i for i, s in enumerate(segs) if s.name == give]
        if not at:
            raise DecodeError(f"{label} has no ORC segment and no {give}: nothing says what is ordered", "ORC")
        if len(at) > 1:
            raise DecodeError(f"{label} has no ORC segment and {len(at)} {give} segments: without ORC "
                              "nothing says which segments belong to which order", "ORC")
        return at[0], f"{label} without ORC: one order read from its {give} (no order number or status)"

    def _prescription(self, group: list[Segment], patient: Patient | None,
                      encounter: Encounter | None, pv1: Segment | None = None,
                      encoded: bool | None = None) -> Prescription:
        """``encoded``: read the pharmacy's RXE (an RDE's, or an RDS's), else the RXO as ordered."""
        scope = self.scope()
        encoded = self.type == "RDE" if encoded is None else encoded
        if encoded:  # the encoded order's timing and route follow RXE
            found = self.walk(group, scope, ("ORC", "RXE"), late=("TQ1", "RXR"), after="RXE")
        else:
            found = self.walk(group, scope, ("ORC", "RXO"))
        orc, rxe, rxo = found.get("ORC"), found.get("RXE"), found.get("RXO")
        give = rxe if rxe is not None else rxo
        code_field, sub_field, amount, units, refills, sig_field = (
            (2, 9, 10, 11, 12, 7) if rxe is not None else (1, 9, 11, 12, 13, 7))
        codings = dt.read_codings(give.get(code_field), self.seps) if give is not None else []
        medication = self._medication(codings) if codings else None
        status = self.coded(orc, 5, ORDER_STATUS, scope) if self.t(orc, 5) else None
        control = self.t(orc, 1)
        if status is None:
            status = ORDER_CONTROL.get(control)
        if control and control not in ORDER_CONTROL:
            scope.unreadable("ORC-1", orc.get(1))
        prescribers = self.reps(orc, 12)
        dea_named = not prescribers and rxe is not None and bool(self.reps(rxe, 13))
        written = self.when(orc, 9, scope) or (self.when(rxe, 32, scope) if rxe is not None else None)
        rx = Prescription(
            prescriber_order_number=self._order_ids(orc, 2, 3)[0].value if self.t(orc, 2) else None,
            identifiers=self._order_ids(orc, 2, 3),
            status=status,
            intent="filler-order" if encoded else "original-order",
            category=self._category(orc, pv1, scope),
            medication=medication,
            quantity=self._quantity(give, amount, units, scope),
            refills=self._int(give, refills, scope),
            sig=self._sig(give, sig_field),
            substitution_allowed=self._substitution(give, sub_field, scope),
            written_date=written,
            patient=patient,
            prescriber=dt.read_practitioner(prescribers[0], self.seps) if prescribers
            else people.dea_prescriber(rxe, self.seps) if dea_named else None,
            encounter=encounter,
            diagnosis=[c for c in (dt.read_coding(r, self.seps) for r in self.reps(rxe, 27)) if c],
            participants=people.prescription(self.message, orc, give, self.seps),  # derived: ORC-10, PRT stay kept
        )
        scope.wire.update(wire.keep(rxe, self.seps, wire.rxe_written(rx)))  # RXE-2/7 as worded
        if dea_named:  # the prescriber is RXE-13's: ORC-12 goes back empty, RXE-13 stays kept
            scope.wire.update(wire.keep(orc, self.seps, {12: dt.write_practitioner(rx.prescriber)}))
        scope.wire.update(wire.keep(found.get("TQ1"), self.seps, {1: "1"}))  # a set id other than ours
        rx.extra = scope.extra()
        return rx

    def _category(self, orc: Segment | None, pv1: Segment | None, scope: Scope) -> str | None:
        """Inpatient, outpatient or discharge, from ORC-29 and the visit (PV1-2 class, PV1-36 discharge
        disposition): the telehealth gate judges prescriptions, not orders given in the hospital."""
        code = self.t(orc, 29).upper()
        discharging = bool(self.t(pv1, 36)) if pv1 is not None else False
        stay = pv1 is not None and self.t(pv1, 2) in STAY_CLASSES
        if code and code not in ORDER_TYPES:
            scope.unreadable("ORC-29", orc.get(29))
            code = ""
        if code == "O" and (stay or discharging):
            return "discharge"
        if code:
            return ORDER_TYPES[code]
        return "discharge" if discharging else None

    def _medication(self, codings: list[Coding]) -> Medication:
        first = codings[0]
        by_system = {c.system: c.code for c in codings}
        return Medication(description=first.display, codings=codings,
                          ndc=by_system.get(dt.CODE_SYSTEMS["NDC"]), rxnorm=by_system.get(dt.CODE_SYSTEMS["RXNORM"]))

    def _number(self, seg: Segment | None, number: int, scope: Scope) -> float | None:
        raw = self.t(seg, number)
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            scope.unreadable(f"{seg.name}-{number}", seg.get(number))
            return None

    def _int(self, seg: Segment | None, number: int, scope: Scope) -> int | None:
        value = self._number(seg, number, scope)
        if value is not None and value != int(value):
            scope.unreadable(f"{seg.name}-{number}", seg.get(number))
            return None
        return int(value) if value is not None else None

    def _quantity(self, seg: Segment | None, amount: int, units: int, scope: Scope) -> Quantity | None:
        value = self._number(seg, amount, scope)
        if value is None:
            return None
        unit = dt.read_coding(seg.get(units), self.seps)
        return Quantity(value=value, unit=(unit.display or unit.code) if unit else None,
                        code=unit.code or None if unit else None, system=unit.system if unit else None)

    def _sig(self, seg: Segment | None, number: int) -> str | None:
        lines = []
        for rep in self.reps(seg, number):
            coding = dt.read_coding(rep, self.seps)
            if coding:
                lines.append(coding.display or coding.code)
        return "\n".join(lines) or None

    def _substitution(self, seg: Segment | None, number: int, scope: Scope) -> bool | None:
        code = self.t(seg, number)
        if not code:
            return None
        if code in SUBSTITUTION_ALLOWED:
            return True
        if code in SUBSTITUTION_NOT_ALLOWED:
            return False
        scope.unreadable(f"{seg.name}-{number}", seg.get(number))
        return None

    def mdm(self) -> list[Record]:
        """MDM T01-T11 → ClinicalNote: the trigger says what happened to the document (see
        MDM_EVENTS), TXA the document, text OBX its content (kept as sent when the text is unchanged)."""
        scope, pid_scope = self.scope(), self.new_pid_scope()
        found: dict[str, Segment] = {}
        lines: list[str] = []
        text_obx: list[str] = []
        for seg in self.message.segments:
            if seg.name in ("MSH", "EVN", "PID", "PV1", "PV2", "TXA") and seg.name not in found:
                found[seg.name] = seg
                scope.take(seg, into=pid_scope if seg.name == "PID" else None)
            elif seg.name == "OBX" and self.t(seg, 2) in TEXT_TYPES:
                scope.take(seg, fields=False)
                lines += self._obx_lines(seg)
                text_obx.append(reencode_segment(seg, self.seps))
            elif seg.name not in self.owned_z:
                scope.keep(seg)
        self._prune_evn(scope)
        txa = found.get("TXA")
        if txa is None:
            raise DecodeError(f"MDM^{self.event} has no TXA segment", "TXA")
        patient = self.patient(found.get("PID"), pid_scope)
        encounter = self.encounter(found["PV1"], found.get("PV2"), scope, None) if "PV1" in found else None
        if encounter is not None and places.says_nothing(encounter):  # an MDM's bare PV1: no visit
            encounter = None
        note = self.txa_note(txa, lines, patient, encounter, scope)
        note.document_event = MDM_EVENTS[self.event]
        self._keep_mdm_wording(txa, note, text_obx, scope)
        note.extra = scope.extra()
        self._note_event(note, default_mdm_event(note))
        return [note]

    def txa_note(self, txa: Segment, lines: list[str], patient: Patient | None, encounter: Encounter | None,
                 scope: Scope) -> ClinicalNote:
        """TXA (with the text ``lines`` of its OBX) as a ClinicalNote: TXA-12 number, TXA-17 status, TXA-2
        type (table 0270), TXA-4 activity time, TXA-9 author, TXA-13 parent document, its people."""
        authors = self.reps(txa, 9)
        doc_type = dt.read_coding(txa.get(2), self.seps)
        if doc_type and not doc_type.system:
            doc_type.system = "HL70270"
        number = txa.get(12).split(self.seps.component)[0] if txa.get(12) else ""
        parents = self._order_ids(txa, 13, 13)[:1]
        note = ClinicalNote(
            identifiers=[Identifier(value=text(number, self.seps))] if number else [],
            status=self.coded(txa, 17, NOTE_STATUS, scope),
            note_type=doc_type,
            text="\n".join(lines) or None,
            content_type="text/plain" if lines else None,
            authored=self.when(txa, 4, scope),
            author=dt.read_practitioner(authors[0], self.seps) if authors else None,
            patient=patient,
            encounter=encounter,
            parent_document=Identifier(value=parents[0].value, system=parents[0].system,
                                       assigner=parents[0].assigner) if parents else None,
        )
        note.participants = people.document(txa, self.seps)  # derived: TXA stays kept
        return note

    def _keep_mdm_wording(self, txa: Segment, note: ClinicalNote, text_obx: list[str], scope: Scope) -> None:
        """TXA-3 and TXA-12 as sent when the encoder would word them otherwise, and the text OBX
        segments themselves (their codes, sub-ids, statuses) with a digest of the text they carry."""
        presentation = reencode(txa.get(3), self.seps) if txa.get(3) else ""
        if presentation != ("TX" if note.text else ""):
            scope.fields["TXA-3"] = presentation
        number = reencode(txa.get(12), self.seps) if txa.get(12) else ""
        if number and number != (esc(note.identifiers[0].value) if note.identifiers else ""):
            scope.fields["TXA-12"] = number
        if text_obx and text_obx != wire.note_obx(note.text):
            scope.wire["OBX"] = [text_digest(note.text), *text_obx]

    def _obx_lines(self, seg: Segment) -> list[str]:
        out = []
        kind = self.t(seg, 2)
        for rep in seg.get(5).split(self.seps.repetition) if seg.get(5) else []:
            parts = rep.split(self.seps.component)
            if kind == "ST":
                parts = parts[:1]
            out.append(" ".join(text(p, self.seps) for p in parts))
        return out

    def oru(self) -> list[Record]:
        """One DiagnosticReport per OBR, holding one Observation per OBX. An ORU without OBR (real
        feeds send them) gives its OBX as Observations with a warning; one without OBX is refused."""
        segs = self.message.segments
        first = next((i for i, s in enumerate(segs) if s.name in ("ORC", "OBR")), None)
        if first is None or not any(s.name == "OBR" for s in segs[first:]):
            return self._bare_observations(segs)
        header_scope, pid_scope = self.scope(), self.new_pid_scope()
        found = self.walk(segs[:first], header_scope, ("MSH", "PID", "PV1", "PV2"))
        patient = self.patient(found.get("PID"), pid_scope)
        encounter = self._result_encounter(found, header_scope)
        reports: list[Record] = []
        for index, group in enumerate(self._report_groups(segs[first:]), start=1):
            reports.append(self._report(group, patient, encounter, index))
            if self.type == "ORU":
                self._obr_specimen(reports[-1], group, patient)
        header = header_scope.extra().get("hl7v2")
        if header:
            reports[0].extra.setdefault("hl7v2", {})["header"] = header
        return reports

    def _obr_specimen(self, report: DiagnosticReport, group: list[Segment], patient: Patient | None) -> None:
        """An ORU^R01 OBR whose group has no SPM: the sample its specimen fields describe (the v2-to-FHIR
        IG's ORU^R01 map applies *Segment OBR to Specimen* to each OBR), unless its section examines
        the patient rather than a sample or an SPM elsewhere in the message names the same sample.
        Derived: the OBR stays kept as read, so an HL7v2 round trip is unchanged."""
        if report.specimens:
            return
        obr = next(s for s in group if s.name == "OBR")
        if specimens.names_no_sample(obr, self.seps):
            return
        sample = specimens.from_obr(obr, self.seps, patient)
        if sample is not None and not specimens.named_elsewhere(sample, self.message.segments, self.seps):
            report.specimens = [sample]

    def _result_encounter(self, found: dict[str, Segment], scope: Scope) -> Encounter | None:
        encounter = self.encounter(found["PV1"], found.get("PV2"), scope, None) if "PV1" in found else None
        return None if encounter is None or places.says_nothing(encounter) else encounter  # a bare PV1

    def _report_groups(self, segs: list[Segment]) -> list[list[Segment]]:
        """Split at each OBR; an ORC right before an OBR belongs to that OBR's group."""
        groups: list[list[Segment]] = []
        pending: list[Segment] = []
        for seg in segs:
            if seg.name == "ORC":
                pending.append(seg)
            elif seg.name == "OBR":
                groups.append([*pending, seg])
                pending = []
            elif not groups:
                pending.append(seg)
            else:
                groups[-1].extend([*pending, seg])
                pending = []
        if pending and groups:
            groups[-1].extend(pending)
        return groups

    def _report(self, group: list[Segment], patient: Patient | None,
                encounter: Encounter | None, index: int = 1) -> DiagnosticReport:
        scope = self.scope()
        at = next(i for i, s in enumerate(group) if s.name == "OBR")
        obr = group[at]
        for seg in group[:at]:
            scope.keep(seg)  # the ORC: order control and ordering details stay raw
        scope.take(obr)
        self._keep_beyond_triplets(obr, 4, scope)
        section = self.t(obr, 24)
        observations: list[Observation] = []
        samples = []
        specimen = False
        for seg in group[at + 1:]:
            if seg.name == "SPM":
                specimen = True
            elif specimen and self.type == "OUL" and seg.name in ("SAC", "INV"):
                # OUL^R24: SPECIMEN {SPM, OBX, CONTAINER {SAC, INV}} comes before the order's RESULT
                # {OBX}: an OBX after the specimen's container is a result again, not the sample's
                specimen = False
            if seg.name == "SPM":
                samples.append(specimens.read(seg, self.seps, patient))  # derived: the SPM stays kept
            if seg.name == "OBX" and not specimen:
                observations.append(self._observation(seg, obr, section, len(observations) + 1))
                scope.anchor = "OBX"  # what follows the results (SPM…) goes back after them
            elif seg.name == "NTE" and observations:
                self._note(observations[-1], seg)
            elif seg.name not in self.owned_z:
                scope.keep(seg)  # NTE on the OBR, TQ1 kept after the OBR; SPM and its OBX after the results
        report = DiagnosticReport(
            identifiers=self._order_ids(obr, 2, 3),
            status=self.coded(obr, 25, results.REPORT_STATUS, scope),
            category=results.section_coding(section),
            code=dt.read_codings(obr.get(4), self.seps),
            effective=self.when(obr, 7, scope),
            issued=self.when(obr, 22, scope),
            observations=observations,
            specimens=samples,
            patient=patient,
            encounter=encounter,
            participants=people.report(self.message, obr, self.seps),  # derived: OBR-32/33/34 stay kept
        )
        scope.wire.update(wire.keep(obr, self.seps, results_encode.obr(report, index)))
        report.extra = scope.extra()
        return report

    def _bare_observations(self, segs: list[Segment]) -> list[Record]:
        first = next((i for i, s in enumerate(segs) if s.name == "OBX"), None)
        if first is None:
            raise DecodeError("ORU^R01 has no OBR and no OBX segment", "OBR")
        header_scope, pid_scope = self.scope(), self.new_pid_scope()
        found = self.walk(segs[:first], header_scope, ("MSH", "PID", "PV1", "PV2"))
        patient = self.patient(found.get("PID"), pid_scope)
        encounter = self._result_encounter(found, header_scope)
        observations: list[Observation] = []
        for seg in segs[first:]:
            if seg.name == "OBX":
                observations.append(self._observation(seg, None, "", len(observations) + 1))
                observations[-1].patient, observations[-1].encounter = patient, encounter
            elif seg.name == "NTE":
                self._note(observations[-1], seg)
            elif seg.name not in self.owned_z:
                observations[-1].extra.setdefault("hl7v2", {}).setdefault("segments", []).append(
                    {"after": "OBX", "segment": reencode_segment(seg, self.seps)})
        extra = observations[0].extra.setdefault("hl7v2", {})
        extra["warnings"] = [NO_OBR_WARNING]
        header = header_scope.extra().get("hl7v2")
        if header:
            extra["header"] = header
        log.warning("hl7v2 decode: ORU^R01 without OBR; %d OBX decoded as observations without a report",
                    len(observations))
        return list(observations)

    def _observation(self, obx: Segment, obr: Segment | None, section: str, index: int = 1) -> Observation:
        scope = self.scope()
        scope.take(obx)
        for number in (3, 6):
            self._keep_beyond_triplets(obx, number, scope)
        codes = dt.read_codings(obx.get(3), self.seps)
        units = dt.read_coding(obx.get(6), self.seps)
        pain = results.is_pain_score(codes)
        measure = units or (Coding(code=results.SCORE_UNIT, system=dt.CODE_SYSTEMS["UCUM"]) if pain else None)
        obs = Observation(
            identifiers=self._instance_ids(obx),
            status=self.coded(obx, 11, results.OBSERVATION_STATUS, scope),
            category=results.category(codes, section),
            code=codes,
            value_type=self.t(obx, 2) or None,
            units=units,
            reference_range=results.reference_range(self.t(obx, 7), measure),
            interpretation=[results.interpretation(text(f.split(self.seps.component)[0], self.seps))
                            for f in self.reps(obx, 8)],
            effective=self.when(obx, 14, scope) or (self.when(obr, 7, self.scope()) if obr else None),
            performer=self._first_practitioner(obx, 16),
            performing_organization=places.performing_organization(obx, self.seps),  # OBX-23/24 stay kept
            participants=people.observation(self.message, obx, self.seps),  # derived: OBX-16/25 stay kept
            equipment=equipment.read(obx, self.seps),  # derived: OBX-18 stays kept
        )
        self._value(obs, obx, measure, scope)
        if pain:
            self._pain(obs, scope)
        scope.wire.update(wire.keep(obx, self.seps, results_encode.obx(obs, index)))
        obs.extra = scope.extra()
        return obs

    def _value(self, obs: Observation, obx: Segment, units: Coding | None, scope: Scope) -> None:
        """OBX-5 in the record field for its type; a value that cannot be read is kept raw."""
        kind, raw = obs.value_type or "", obx.get(5)
        if not raw or raw == NULL:
            return
        first = raw.split(self.seps.repetition)[0]
        plain = text(first.split(self.seps.component)[0], self.seps)
        read: object = None
        if self.seps.repetition in raw and (kind in ("NM", "SN") or kind in results.DATE_VALUE_TYPES):
            # One number or time per result: picking the first of several would report a value the
            # sender did not single out (Microsoft's converter also gives none).
            scope.warnings.append(REPEATED_VALUE_WARNING.format(kind=kind))
        elif kind == "NM":
            read = obs.value_quantity = results.read_number(plain, units)
        elif kind == "SN":
            value = results.read_structured([text(p, self.seps) for p in first.split(self.seps.component)], units)
            read = value
            if isinstance(value, Quantity):
                obs.value_quantity = value
            elif isinstance(value, Range):
                obs.value_range = value
            elif isinstance(value, Ratio):
                obs.value_ratio = value
        elif kind in results.CODED_VALUE_TYPES:
            read = obs.value_codings = [c for r in self.reps(obx, 5) for c in dt.read_codings(r, self.seps)]
        elif kind in results.DATE_VALUE_TYPES:
            read = obs.value_datetime = dt.read_datetime(plain)
        elif kind in results.TEXT_VALUE_TYPES or not kind:
            read = obs.value_text = "\n".join(self._obx_lines(obx)) or None
        if not read:
            scope.unreadable("OBX-5", raw)
        elif kind in results.CODED_VALUE_TYPES:
            self._keep_beyond_triplets(obx, 5, scope)

    def _pain(self, obs: Observation, scope: Scope) -> None:
        """LOINC 72514-3: a whole number 0-10 as a ``{score}`` quantity, also when sent as text."""
        if obs.value_quantity is None and obs.value_text and obs.value_text.strip().isdigit():
            obs.value_quantity, obs.value_text = results.score(float(obs.value_text.strip())), None
            scope.fields.pop("OBX-5", None)
        elif obs.value_quantity is not None and obs.units is None:
            obs.value_quantity = results.score(obs.value_quantity.value)
        number = obs.value_quantity.value if obs.value_quantity else None
        if number is not None and (number != int(number) or not 0 <= number <= 10):
            scope.warnings.append(PAIN_RANGE_WARNING)

    def _note(self, obs: Observation, nte: Segment) -> None:
        """NTE-3 comment lines become one note; an NTE with a source or type is also kept whole."""
        lines = [text(r, self.seps) for r in self.reps(nte, 3)]
        if lines:
            obs.notes.append("\n".join(lines))
        if len([f for f in nte.fields[1:] if f]) > (1 if nte.get(1) else 0) + (1 if lines else 0):
            obs.extra.setdefault("hl7v2", {}).setdefault("segments", []).append(
                {"after": "OBX", "segment": reencode_segment(nte, self.seps)})

    def _keep_beyond_triplets(self, seg: Segment, number: int, scope: Scope) -> None:
        """A CWE read as codings keeps two triplets; one that says more (versions, original text
        in CWE.9) is also kept raw, so nothing the sender wrote is lost."""
        raw = seg.get(number)
        for rep in self.reps(seg, number):
            if any(rep.split(self.seps.component)[6:]):
                scope.fields[f"{seg.name}-{number}"] = reencode(raw, self.seps)
                return

    def _instance_ids(self, obx: Segment) -> list[Identifier]:
        """OBX-21 observation instance identifier (EI), when the sender gives one."""
        raw = self.reps(obx, 21)
        if not raw:
            return []
        parts = raw[0].split(self.seps.component)
        value = text(parts[0], self.seps)
        namespace = text(parts[1], self.seps) if len(parts) > 1 else ""
        universal = text(parts[2], self.seps) if len(parts) > 2 else ""
        return [Identifier(value=value, system=f"urn:oid:{universal}" if universal else None,
                           assigner=namespace or None)] if value else []

    def _first_practitioner(self, seg: Segment, number: int) -> Practitioner | None:
        found = self.reps(seg, number)
        return dt.read_practitioner(found[0], self.seps) if found else None


NO_OBR_WARNING = "ORU^R01 without OBR: observations decoded without a report"
REPEATED_VALUE_WARNING = "OBX-5 of type {kind} repeats: kept as sent, no value read (one result, one value)"
PAIN_RANGE_WARNING = "pain score (LOINC 72514-3) is not a whole number from 0 to 10"


def text_digest(value: str | None) -> str:
    """A short digest of a note's text: the encoder re-sends kept text OBX only for the same text."""
    return hashlib.sha256((value or "").encode()).hexdigest()[:16]


def default_mdm_event(note: ClinicalNote) -> str:
    """The MDM trigger the encoder picks: by document_event, the even one when there is text."""
    odd = {"original": 1, "status-change": 3, "addendum": 5, "edit": 7, "replacement": 9}
    if note.document_event == "cancel":
        return "T11"
    number = odd.get(note.document_event or "original", 1) + (1 if note.text is not None else 0)
    return f"T{number:02d}"


def default_siu_event(status: str | None) -> str:
    """The SIU trigger the encoder picks for an appointment status (the decoder records any other)."""
    return {"cancelled": "S15", "entered-in-error": "S17", "noshow": "S26"}.get(status or "", "S12")


def default_adt_event(status: str | None) -> str:
    """The ADT event the encoder picks for a status (the decoder records any other event)."""
    return {"finished": "A03", "cancelled": "A11", "planned": "A08"}.get(status or "", "A04")


def decode_message(message: Message, options: Mapping[str, Any]) -> list[Record]:
    decoder = Decoder(message, options)
    kind, event = decoder.type, decoder.event
    label = f"{kind}^{event}" if event else kind or "(empty MSH-9)"
    if kind == "ADT" and event in ADT_EVENTS:
        records = decoder.adt()
    elif kind == "SIU" and event in SIU_EVENTS:
        records = decoder.siu()
    elif (kind, event) in (("RDE", "O11"), ("RDE", "O01"), ("OMP", "O09")):  # O01: v2.3's name for O11
        records = decoder.pharmacy()
    elif (kind, event) == ("RDE", "O25"):  # a refill: read as O11, written back as the message it was
        records = orders.keep_message(decoder, decoder.pharmacy())
        records += companions.refill_background(decoder, records)
    elif (kind, event) in orders.ORDER_MESSAGES:
        records = orders.decode_orders(decoder)
        records += companions.order_specimens(decoder, records)
    elif kind == "REF" and event in orders.REFERRAL_EVENTS:
        records = orders.decode_referral(decoder)
        records += companions.referral_results(decoder, records)
    elif (kind, event) == ("RDS", "O13"):
        records = pharmacy.decode_dispense(decoder)  # with the orders dispensed (companions)
    elif (kind, event) in (("RAS", "O17"), ("RGV", "O15")):
        records = pharmacy.decode_administration(decoder)
    elif (kind, event) == ("VXU", "V04"):
        records = immunization.decode_vxu(decoder)
    elif kind == "MDM" and event in MDM_EVENTS:
        records = decoder.mdm()
    elif (kind, event) == ("ORU", "R01"):
        records = decoder.oru()
    elif kind == "OUL" and event in ("R22", "R23", "R24"):  # lab results by specimen: read as ORU, kept whole
        records = orders.keep_message(decoder, decoder.oru())
    elif kind in FINANCIAL_TYPES:
        records = decoder.financial()
    elif kind == "PPR" and event in problems.PROBLEM_EVENTS:
        records = problems.decode_problems(decoder)
    else:
        raise DecodeError(f"unsupported message type {label}", "MSH-9")
    records += carried_orders.for_message(decoder, kind, event, records)  # SIU, MDM, ORU, OUL, RDE^O11
    records += accounts.beside(decoder, records)  # PID-18, PV1-54 where the type's decoder does not
    records += accounts.billed_orders(decoder, records)  # BLG-3
    records += charges.beside(decoder, records)  # FT1
    records += deaths.beside(decoder, records)  # ACC, PDA flags of BAR, DFT, REF
    if records[0].extra.get("hl7v2", {}).get("message"):  # type: ignore[attr-defined]
        records += companions.message_mother(decoder, records)  # kept whole, with its companions
    _check_msh_time(message, records)
    if message.warnings:
        kept = records[0].extra.setdefault("hl7v2", {})  # type: ignore[attr-defined]
        kept["warnings"] = [*message.warnings, *kept.get("warnings", ())]
    return records


def _check_msh_time(message: Message, records: list[Record]) -> None:
    """A malformed MSH-7 does not stop the decode; its raw text is kept on the first record."""
    raw = message.msh.get(7)
    if raw and raw != NULL and dt.read_datetime(text(raw, message.separators)) is None:
        extra = records[0].extra.setdefault("hl7v2", {})  # type: ignore[attr-defined]
        extra.setdefault("fields", {})["MSH-7"] = reencode(raw, message.separators)


def decode(raw: bytes, options: Mapping[str, Any] | None = None) -> list[Record]:
    """Decode one message or a batch file into records (all messages' records, in order)."""
    options = options or {}
    records: list[Record] = []
    messages = read_messages(raw)
    for index, message in enumerate(messages):
        try:
            records += decode_message(message, options)
        except DecodeError as exc:
            if len(messages) == 1:
                raise
            raise DecodeError(f"message {index + 1} of {len(messages)}: {exc}") from None
    return records

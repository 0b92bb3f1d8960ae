"""Canonical records to HL7v2 (v2.5, standard encoding characters, CR segment endings).

Encounter → ADT^A04 (A03 when finished, A11 when cancelled, or the event the record arrived with);
Appointment → SIU^S12 (S15 when cancelled); consecutive Prescriptions of one patient → one RDE^O11
with an ORC group each; ClinicalNote → MDM^T02; a record decoded from an order, referral, dispense,
administration or immunization message → that message, written back from what it kept. Several
such records give several messages in a row. What a decoded record kept in ``extra["hl7v2"]`` (raw fields, explicit nulls, unmapped and
Z-segments) is written back where it came from, so decode → encode → decode loses nothing.

MSH-10 is ``options["message_control_id"]`` when given, else a digest of the message body, so
encoding the same records twice gives the same control id (receivers can drop the duplicate).
MSH-7 is ``options["message_datetime"]`` (ISO 8601) when given, else the current time: in UTC, or
in the receiver's zone when ``options["timezone"]`` names one (an IANA name). With ``timezone`` set,
every date-time that carries an offset is written as that zone's local time with its offset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from bridge import (
    Appointment,
    ClinicalNote,
    Coding,
    DiagnosticReport,
    EncodeError,
    Encounter,
    Identifier,
    Observation,
    Patient,
    Prescription,
    Record,
    convert_times,
    record_to_dict,
)

from . import adt, adt_encode, results_encode, visit_ids, wire
from . import datatypes as dt
from . import decode as dec
from . import equipment, kept_edits, people, places, telehealth, versions
from .datatypes import write_number as number
from .reader import NULL, comp, esc, join, parse_path

VERSION = versions.DEFAULT
"""What the encoder builds; option ``version`` makes it fit another one (:mod:`.versions`)."""


def _reverse(table: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for code, value in table.items():
        out.setdefault(value, code)
    return out


GENDER_CODES = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
CLASS_CODES = _reverse(dec.CLASSES)
APPOINTMENT_CODES = wire.APPOINTMENT_CODES
NOTE_CODES = {"final": "AU", "preliminary": "IP"}
MDM_STRUCTURES = {event: "MDM_T01" if event in ("T01", "T03", "T05", "T07", "T09", "T11") else "MDM_T02"
                  for event in dec.MDM_EVENTS}
"""Notifications without content use MDM_T01 (no OBX), the others MDM_T02."""
ORC1_CODES = {"active": "NW", "cancelled": "CA", "stopped": "DC", "revoked": "CA", "on-hold": "HD"}
"""(``revoked``: what records decoded before R4 codes were used still say.)"""
ORC5_CODES = {"completed": "CM", "entered-in-error": "ER"}
ORC29_CODES = {"inpatient": "I", "outpatient": "O", "community": "O", "discharge": "O"}


class Scope:
    """Writes the segments of one record, merging back what its decode kept in ``extra``."""

    def __init__(self, extra: Mapping[str, Any] | None, th_values: Mapping[str, str] | None = None):
        kept = (extra or {}).get("hl7v2", {}) if isinstance(extra, Mapping) else {}
        self.fields: dict[str, str] = dict(kept.get("fields", {}))
        self.fields.pop("MSH-7", None)
        self.nulls = set(kept.get("nulls", ()))
        self.kept: list[dict[str, str]] = list(kept.get("segments", ()))
        self.wire: dict[str, list[str]] = dict(kept.get("wire", {}))
        self.missing = set(kept.get("missing", ()))
        self.th_values = dict(th_values or {})
        self.out: list[tuple[str, str]] = []

    def add(self, name: str, values: Mapping[int, str]) -> None:
        values = dict(values)
        wire.apply(name, values, self.wire)
        fields = [name] + [""] * max([0, *values.keys()])
        for n, v in values.items():
            fields[n] = v
        for n, placeholder in dec.REQUIRED_UNKNOWN.get(name, {}).items():
            if not self.fields.get(f"{name}-{n}"):
                self._set(fields, n, placeholder, overwrite=False)
        for key, raw in self.fields.items():
            seg, _, n = key.partition("-")
            if seg == name and n.isdigit():
                self._set(fields, int(n), raw, overwrite=False)
        for key in self.nulls:
            seg, _, n = key.partition("-")
            if seg == name and n.isdigit():
                self._set(fields, int(n), NULL, overwrite=False)
        for path, value in self.th_values.items():
            seg, n, c = parse_path(path)
            if seg == name:
                self._set(fields, n, value, component=c)
        self.out.append((name, join(fields, "|")))

    @staticmethod
    def _set(fields: list[str], n: int, value: str, overwrite: bool = True, component: int | None = None) -> None:
        while len(fields) <= n:
            fields.append("")
        if component:
            parts = fields[n].split("^")
            parts += [""] * (component - len(parts))
            parts[component - 1] = value
            fields[n] = join(parts, "^")
        elif overwrite or not fields[n]:
            fields[n] = value

    def z_segments(self) -> list[tuple[str, str]]:
        """The telehealth convention's Z-segments (e.g. ZTH), built from its values."""
        out = []
        for name in sorted({parse_path(p)[0] for p in self.th_values if p.startswith("Z")}):
            fields = [name, "1"]
            for path, value in self.th_values.items():
                seg, n, c = parse_path(path)
                if seg == name:
                    self._set(fields, n, value, component=c)
            out.append((name, join(fields, "|")))
        return out

    def render(self) -> list[str]:
        """Segments in order, each kept segment after the last segment named like its anchor."""
        last: dict[str, int] = {"MSH": -1}
        for i, (name, _) in enumerate(self.out):
            last[name] = i
        slots: dict[int, list[str]] = {}
        tail: list[str] = []
        for item in self.kept:
            anchor = last.get(item.get("after", ""))
            (slots.setdefault(anchor, []) if anchor is not None else tail).append(item["segment"])
        lines = []
        lines += slots.get(-1, [])
        for i, (_, text_) in enumerate(self.out):
            lines.append(text_)
            lines += slots.get(i, [])
        return lines + tail


# --- shared segments -------------------------------------------------------------------------------


def pid_segment(patient: Patient | None) -> tuple[str, str]:
    patient = patient or Patient()
    scope = Scope(patient.extra)
    scope.add("PID", {
        1: "1",
        **wire.pid_written(patient),
        7: dt.write_datetime(patient.birth_date),
        8: GENDER_CODES.get(patient.gender or "", ""),
    })
    return scope.out[0]


def pv1_values(encounter: Encounter | None) -> dict[int, str]:
    if encounter is None:
        return {1: "1", 2: "U"}
    return {
        1: "1",
        2: CLASS_CODES.get(encounter.encounter_class or "", ""),
        **wire.pv1_written(encounter),
        **places.written(encounter),
        **people.visit_written(encounter),
        **visit_ids.written(encounter),
    }


def encounter_facts(encounter: Encounter | None) -> telehealth.Telehealth:
    if encounter is None:
        return telehealth.Telehealth()
    return telehealth.Telehealth(encounter.modality, encounter.patient_location, encounter.practitioner_state,
                                 encounter.consent_captured)


def _fill_pv1_defaults(values: dict[int, str], scope: Scope) -> None:
    """PV1-2 is required: use the kept raw value, else U (unknown). A place field kept as read (an
    HL7v2 visit's PV1-3…) is written as read, not from the places derived from it."""
    if not values.get(2) and "PV1-2" not in scope.fields:
        values[2] = "U"
    for number in places.PLACE_FIELDS:
        if f"PV1-{number}" in scope.fields or f"PV1-{number}" in scope.nulls:
            values.pop(number, None)
    if people.kept_as_read([*scope.fields, *scope.nulls]):  # the providers as the PV1 sent them
        for number in people.WRITTEN_FIELDS.values():
            values.pop(number, None)
    visit_ids.kept_wins(values, set(scope.fields) | set(scope.nulls))


# --- message types ---------------------------------------------------------------------------------


class Encoder:
    def __init__(self, options: Mapping[str, Any]):
        self.options = options
        self.convention = telehealth.convention_from(options)
        self.zone = ZoneInfo(options["timezone"]) if options.get("timezone") else timezone.utc
        self.version = versions.version_of(options)

    def now(self) -> str:
        """The current time for MSH-7/EVN-2: in the receiver's ``timezone`` when set, else UTC."""
        return datetime.now(self.zone).strftime("%Y%m%d%H%M%S%z")

    def th(self, facts: telehealth.Telehealth) -> dict[str, str]:
        return telehealth.values(facts, self.convention)

    def msh(self, kind: str, event: str, structure: str, body: list[str]) -> str:
        o = self.options
        when = o.get("message_datetime")
        stamp = dt.write_datetime(when) if when else self.now()
        control = o.get("message_control_id") or "TB" + hashlib.sha1("\r".join(body).encode()).hexdigest()[:18]
        fields = ["MSH", "^~\\&", esc(o.get("sending_application")), esc(o.get("sending_facility")),
                  esc(o.get("receiving_application")), esc(o.get("receiving_facility")), stamp, "",
                  comp(*versions.message_type(self.version, kind, event, structure)), esc(str(control)),
                  esc(o.get("processing_id") or "P"), self.version]
        return "|".join(fields)

    def message(self, kind: str, event: str, structure: str, body: list[str]) -> str:
        body = versions.conform(body, self.version)
        return "\r".join([self.msh(kind, event, structure, body), *body]) + "\r"

    def adt(self, encounter: Encounter, background: Sequence[Record] = ()) -> str:
        """ADT for a visit; ``background`` (allergies, diagnoses, insurance built elsewhere) follows PV2."""
        kept = encounter.extra.get("hl7v2", {})
        event = self.options.get("adt_event") or kept.get("event") or dec.default_adt_event(encounter.status)
        structure = adt.STRUCTURES.get(event, "ADT_A01")
        scope = Scope(encounter.extra, self.th(encounter_facts(encounter)))
        self.evn(scope, event)
        if encounter.patient is not None or "PID" not in kept.get("missing", ()):
            scope.out.append(pid_segment(encounter.patient))
        values = pv1_values(encounter)
        _fill_pv1_defaults(values, scope)
        scope.add("PV1", values)
        _add_pv2(scope, encounter)
        for name, values in adt_encode.segments(list(background)):
            scope.add(name, values)
        scope.out += scope.z_segments()
        return self.message("ADT", event, structure, scope.render())

    def adt_patient(self, patient: Patient, background: Sequence[Record] = ()) -> str:
        """A Patient decoded from a person-level ADT (A28, A31, a merge…): EVN, PID, then the
        segments its decode kept (a bare PV1, MRG, AL1…); MRG segments are written from
        ``links`` of type replaces only when none were kept."""
        kept = patient.extra.get("hl7v2", {})
        event = self.options.get("adt_event") or kept["event"]
        structure = adt.STRUCTURES.get(event, "ADT_A05")
        header = kept.get("header") or {}
        scope = Scope({"hl7v2": header})
        self.evn(scope, event)
        scope.out.append(pid_segment(patient))
        if not any(item.get("segment", "").startswith("MRG") for item in header.get("segments", ())):
            for link in patient.links:
                if link.type == "replaces":
                    scope.add("MRG", {1: dt.write_identifier(link.other)})
        for name, values in adt_encode.segments(list(background)):
            scope.add(name, values)
        return self.message("ADT", event, structure, scope.render())

    def evn(self, scope: Scope, event: str) -> None:
        """EVN as the sender wrote it (EVN-1 and EVN-2 kept raw), else the event and the current time;
        ``options.adt_event`` rewrites EVN-1 with the event it asks for. None when the decoded
        message had none (``missing``), so a forward adds no recorded time the sender never gave."""
        if "EVN" in scope.missing:
            return
        kept_event = scope.fields.get("EVN-1")
        if kept_event is not None and kept_event != event and self.options.get("adt_event"):
            scope.fields.pop("EVN-1")
        as_sent = "EVN-2" in scope.fields or "EVN-2" in scope.missing
        values = {1: "" if "EVN-1" in scope.fields else event, 2: "" if as_sent else self.stamp()}
        scope.add("EVN", values)

    def stamp(self) -> str:
        when = self.options.get("message_datetime")
        return dt.write_datetime(when) if when else self.now()

    def siu(self, appt: Appointment) -> str:
        kept = appt.extra.get("hl7v2", {})
        event = kept.get("event") or dec.default_siu_event(appt.status)
        facts = telehealth.Telehealth(modality=appt.modality, location=appt.patient_location)
        scope = Scope(appt.extra, self.th(facts))
        placer = next((i for i in appt.identifiers if i.type == "PLAC"), None)
        filler = next((i for i in appt.identifiers if i.type == "FILL"), None)
        status = "" if "SCH-25" in scope.fields else APPOINTMENT_CODES.get(appt.status or "", "")
        scope.add("SCH", {
            1: _ei(placer), 2: _ei(filler),
            7: "~".join(dt.write_coding(c) for c in appt.reason),
            8: dt.write_coding(appt.appointment_type),
            **wire.sch_written(appt), 25: status,
        })
        if kept.get("timing") == "TQ1":  # start and end came in TQ1-7/8 (v2.5+): they go back there
            scope.add("TQ1", {7: dt.write_datetime(appt.start), 8: dt.write_datetime(appt.end)})
        scope.out.append(pid_segment(appt.patient))
        if any(p.startswith("PV1") for p in scope.th_values) or any(k.startswith("PV1-") for k in scope.fields):
            values: dict[int, str] = {1: "1"}
            _fill_pv1_defaults(values, scope)
            scope.add("PV1", values)
        scope.out += scope.z_segments()
        scope.add("RGS", {1: "1"})
        if not any(k.get("segment", "").startswith("AIL|") for k in scope.kept):  # kept AIL go back as read
            for number, place in enumerate(appt.locations, start=1):
                scope.add("AIL", {1: str(number), 3: places.write_place(place)})
        if appt.practitioner:
            scope.add("AIP", {1: "1", 3: dt.write_practitioner(appt.practitioner)})
        return self.message("SIU", event, "SIU_S12", scope.render())

    def _patient_visit(self, first: Record) -> str:
        """PID and, when there is a visit (or kept PV1 fields), PV1/PV2, then the kept Z segments of the
        header: the part of an order or result message before its first order or report."""
        kept_header = first.extra.get("hl7v2", {}).get("header")  # type: ignore[attr-defined]
        encounter = getattr(first, "encounter", None)
        header = Scope({"hl7v2": kept_header} if kept_header else None, self.th(encounter_facts(encounter)))
        header.out.append(pid_segment(getattr(first, "patient", None)))
        if encounter is not None or any(k.startswith("PV1-") for k in header.fields):
            values = pv1_values(encounter)
            _fill_pv1_defaults(values, header)
            header.add("PV1", values)
            _add_pv2(header, encounter)
        header.out += header.z_segments()
        return header.render()

    def rde(self, orders: list[Prescription]) -> str:
        first = orders[0]
        body = self._patient_visit(first)
        for order in orders:
            body += self._order(order)
        event = first.extra.get("hl7v2", {}).get("event") or "O11"
        return self.message("RDE", event, f"RDE_{event}", body)

    def kept_message(self, kept: Mapping[str, Any]) -> str:
        """A message decoded whole (orders, referrals, dispenses, administrations, immunizations):
        a fresh MSH with the type it arrived with, then its segments as they were read."""
        kind, event, structure = ([*str(kept.get("type", "")).split("^"), "", "", ""])[:3]
        segments = [str(s) for s in kept.get("segments", ())]
        if not kind or not segments:
            raise EncodeError("extra.hl7v2.message must name the message type and hold its segments")
        return self.message(kind, event, structure, segments)

    def _order(self, rx: Prescription) -> list[str]:
        scope = Scope(rx.extra)
        placer = next((i for i in rx.identifiers if i.type == "PLAC"), None)
        filler = next((i for i in rx.identifiers if i.type == "FILL"), None)
        if placer is None and rx.prescriber_order_number:
            placer = Identifier(value=rx.prescriber_order_number, type="PLAC")
        control = ORC1_CODES.get(rx.status or "", "")
        if not control and "ORC-1" not in scope.fields:
            control = "NW"
        orderless = "ORC" in rx.extra.get("hl7v2", {}).get("missing", ()) and placer is None and filler is None
        if not orderless:  # an RDE decoded without ORC is written back without one (the decoder warns again)
            scope.add("ORC", {1: control, 2: _ei(placer), 3: _ei(filler), 5: ORC5_CODES.get(rx.status or "", ""),
                              9: dt.write_datetime(rx.written_date), 12: dt.write_practitioner(rx.prescriber),
                              29: ORC29_CODES.get(rx.category or "", "")})
        qty = rx.quantity
        units = comp(esc(qty.code), esc(qty.unit), esc(dt.system_name(qty.system))) if qty else ""
        sub = "" if rx.substitution_allowed is None else ("G" if rx.substitution_allowed else "N")
        scope.add("RXE", {
            **wire.rxe_written(rx), 9: sub, 10: number(qty.value) if qty else "", 11: units,
            12: str(rx.refills) if rx.refills is not None else "",
            27: "~".join(dt.write_coding(c) for c in rx.diagnosis),
        })
        scope.add("TQ1", {1: "1"})  # RDE_O11 requires the encoded order's timing and route
        scope.add("RXR", {})
        return scope.render()

    def mdm(self, note: ClinicalNote) -> str:
        kept = note.extra.get("hl7v2", {})
        event = kept.get("event") or dec.default_mdm_event(note)
        scope = Scope(note.extra, self.th(encounter_facts(note.encounter)))
        self.evn(scope, event)
        scope.out.append(pid_segment(note.patient))
        values = pv1_values(note.encounter)
        _fill_pv1_defaults(values, scope)
        scope.add("PV1", values)
        _add_pv2(scope, note.encounter)
        scope.out += scope.z_segments()
        scope.add("TXA", {
            1: "1", 2: esc(note.note_type.code) if note.note_type else "",
            3: "" if "TXA-3" in scope.fields else ("TX" if note.text else ""),
            4: dt.write_datetime(note.authored), 9: dt.write_practitioner(note.author),
            12: "" if "TXA-12" in scope.fields else (esc(note.identifiers[0].value) if note.identifiers else ""),
            13: _ei(note.parent_document),
            17: NOTE_CODES.get(note.status or "", "") or ("" if "TXA-17" in scope.fields else "DO"),
            # DO (documented) reads back as no status: TXA-17 is required, and DO claims nothing.
        })
        kept_obx = scope.wire.get("OBX")
        if kept_obx and kept_obx[0] == dec.text_digest(note.text):
            scope.out += [("OBX", segment) for segment in kept_obx[1:]]  # the text as the sender wrote it
        else:
            scope.out += [("OBX", segment) for segment in wire.note_obx(note.text)]
        return self.message("MDM", event, MDM_STRUCTURES.get(event, "MDM_T02"), scope.render())


    def financial(self, record: Encounter | Patient) -> str:
        """A BAR or DFT decoded by us, as its MSH-9 said: EVN, PID, the visit, then every segment
        kept with it (FT1, GT1, IN1…) in its place."""
        kept = record.extra["hl7v2"]
        kind, event, structure = (kept["message_type"].split("^") + ["", ""])[:3]
        if isinstance(record, Encounter):
            scope = Scope(record.extra, self.th(encounter_facts(record)))
            self.evn(scope, event)
            if "PID" not in kept.get("missing", ()):
                scope.out.append(pid_segment(record.patient))
            values = pv1_values(record)
            _fill_pv1_defaults(values, scope)
            scope.add("PV1", values)
            _add_pv2(scope, record)
            scope.out += scope.z_segments()
        else:
            scope = Scope({"hl7v2": kept.get("header") or {}})
            self.evn(scope, event)
            if "PID" not in kept.get("missing", ()):
                scope.out.append(pid_segment(record))
        return self.message(kind, event, structure, scope.render())

    def oru(self, results: list[DiagnosticReport | Observation]) -> str:
        """One ORU^R01 for consecutive results of one patient: PID and the visit once, then an OBR
        with its OBX (and NTE notes) per DiagnosticReport, or bare OBX for Observations decoded
        from an ORU without OBR."""
        first = results[0]
        body = self._patient_visit(first)
        for index, result in enumerate(results, start=1):
            if isinstance(result, DiagnosticReport):
                body += self._report(result, index)
            else:
                body += _observation(result, index)
        return self.message("ORU", "R01", "ORU_R01", body)

    def _report(self, report: DiagnosticReport, index: int) -> list[str]:
        """OBR (after the ORC and notes kept with it), its results, then what followed them (SPM…)."""
        scope = Scope(report.extra)
        after_results = [k["segment"] for k in scope.kept if k.get("after") == "OBX"]
        scope.kept = [k for k in scope.kept if k.get("after") != "OBX"]
        scope.add("OBR", results_encode.obr(report, index))
        lines = scope.render()
        for number, obs in enumerate(report.observations, start=1):
            lines += _observation(obs, number)
        return lines + after_results


def _observation(obs: Observation, index: int) -> list[str]:
    """OBX, then an NTE per note unless the note's NTE was kept whole (it carried more than text)."""
    scope = Scope(obs.extra)
    values = results_encode.obx(obs, index)
    if not any(f"OBX-{n}" in scope.fields or f"OBX-{n}" in scope.nulls for n in (23, 24)):  # kept: as read
        values.update(places.performing_organization_written(obs.performing_organization))
    if "OBX-18" not in scope.fields and "OBX-18" not in scope.nulls:  # kept: as read
        values[18] = equipment.written(obs.equipment)
    scope.add("OBX", values)
    kept_notes = {item["segment"].split("|")[3] for item in scope.kept
                  if item.get("segment", "").startswith("NTE|") and item["segment"].count("|") >= 3}
    for number, note in enumerate(obs.notes, start=1):
        written = results_encode.nte(note, number)
        if written.split("|")[3] not in kept_notes:
            scope.out.append(("NTE", written))
    return scope.render()


def _add_pv2(scope: Scope, encounter: Encounter | None) -> None:
    """PV2 carries the visit reason; it is written when there is one or when PV2 fields were kept."""
    reason = encounter.reason if encounter else []
    if reason or any(k.startswith("PV2-") for k in scope.fields) or any(k.startswith("PV2-") for k in scope.nulls):
        scope.add("PV2", {3: "~".join(dt.write_coding(c) for c in reason)})


def _ei(identifier: Any) -> str:
    if identifier is None:
        return ""
    system = identifier.system or ""
    universal = system[8:] if system.startswith("urn:oid:") else ""
    return comp(esc(identifier.value), esc(identifier.assigner), esc(universal), "ISO" if universal else "")


def _same_patient(a: Any, b: Any) -> bool:
    return record_to_dict(a.patient) == record_to_dict(b.patient) and \
        record_to_dict(a.encounter) == record_to_dict(b.encounter)


def _background(records: Sequence[Record], index: int, patient: Patient | None) -> list[Record]:
    """The allergies, diagnoses and insurance of ``patient`` that directly follow records[index] and
    were not decoded with it (those travel in its kept segments): they go into the same ADT."""
    out: list[Record] = []
    for record in records[index + 1:]:
        if not isinstance(record, adt_encode.BACKGROUND) or record.extra.get("hl7v2", {}).get("carried"):
            break
        if patient is None or record.patient is None or \
                record_to_dict(record.patient) != record_to_dict(patient):
            break
        out.append(record)
    return out


def _in_receiver_zone(records: Sequence[Record], zone: Any) -> list[Record]:
    """Exact times as the receiver's wall-clock time with its offset (option ``timezone``): many
    HL7v2 receivers read only the digits, so those must be their local time. Times without an
    offset stay as they are, since their zone is unknown."""
    try:
        return convert_times(records, str(zone))
    except ValueError as exc:
        raise EncodeError(f"options.timezone: {exc}") from None


def encode(records: Sequence[Record], options: Mapping[str, Any] | None = None) -> bytes:
    """Encode records as one HL7v2 message per record (consecutive Prescriptions share one RDE)."""
    options = options or {}
    if not records:
        raise EncodeError("nothing to encode: no records")
    if options.get("records_mapped"):  # maps ran: their changes to carried records go into the kept segments
        records = kept_edits.with_edits(records)  # (before the zone change: compared as the sender wrote them)
    if options.get("timezone"):
        records = _in_receiver_zone(records, options["timezone"])
    encoder = Encoder(options)
    messages: list[str] = []
    i = 0
    while i < len(records):
        record = records[i]
        kept = record.extra.get("hl7v2", {})  # type: ignore[attr-defined]
        if kept.get("message"):
            messages.append(encoder.kept_message(kept["message"]))
        elif kept.get("carried"):
            pass  # its segments are in the message's first record, written with it
        elif isinstance(record, Prescription):
            group = [record]
            while i + 1 < len(records) and isinstance(records[i + 1], Prescription) \
                    and _same_patient(record, records[i + 1]) and not records[i + 1].extra.get("hl7v2", {}).get("header"):
                i += 1
                group.append(records[i])  # type: ignore[arg-type]
            messages.append(encoder.rde(group))
        elif isinstance(record, (Encounter, Patient)) and record.extra.get("hl7v2", {}).get("message_type"):
            messages.append(encoder.financial(record))  # a BAR or DFT goes back as what it was
        elif record.extra.get("hl7v2", {}).get("carried"):  # type: ignore[attr-defined]
            pass  # its segments are in the message's first record, written with it
        elif isinstance(record, Encounter):
            background = _background(records, i, record.patient)
            messages.append(encoder.adt(record, background))
            i += len(background)
        elif isinstance(record, Patient) and record.extra.get("hl7v2", {}).get("event"):
            background = _background(records, i, record)
            messages.append(encoder.adt_patient(record, background))
            i += len(background)
        elif isinstance(record, (DiagnosticReport, Observation)):
            group = [record]
            while i + 1 < len(records) and isinstance(records[i + 1], type(record)) \
                    and _same_patient(record, records[i + 1]) and not records[i + 1].extra.get("hl7v2", {}).get("header"):
                i += 1
                group.append(records[i])  # type: ignore[arg-type]
            messages.append(encoder.oru(group))
        elif isinstance(record, Appointment):
            messages.append(encoder.siu(record))
        elif isinstance(record, ClinicalNote):
            messages.append(encoder.mdm(record))
        else:
            raise EncodeError(f"records[{i}]: HL7v2 output has no message for a {record.kind} "
                              "(supported: Encounter, Appointment, Prescription, ClinicalNote, DiagnosticReport, "
                              "Observation, the records an ADT decode gives, and records decoded from an order, "
                              "referral, dispense, administration or immunization message, which are written back "
                              "as that message)")
        i += 1
    if not messages:
        raise EncodeError("HL7v2 writes the allergies, diagnoses and insurance of an ADT with the message's "
                          "first record (its Encounter or Patient): route that record with them")
    if len(messages) > 1 and options.get("message_control_id"):
        raise EncodeError("options.message_control_id names one message, but the records make "
                          f"{len(messages)} messages")
    return "".join(messages).encode("utf-8")

"""The ``acme-json`` format: Acme EHR's visit document ↔ one Encounter and its ClinicalNotes.

An Acme visit document (fictional, version ``visit/1``)::

    {"acme": "visit/1",
     "visit": {"visit_number": "V1001", "state": "completed", "mode": "video",
               "started_at": "2024-05-01T10:00:00-05:00", "ended_at": "…", "patient_state": "OR",
               "patient": {"mrn": "…", "last_name": "…", "first_names": ["…"], "dob": "1980-02-03",
                           "sex": "F", "phone": "…", "address": {"lines": ["…"], "city": "…",
                           "state": "OR", "zip": "97201"}},
               "clinician": {"npi": "1234567893", "last_name": "…", "first_names": ["…"]}},
     "notes": [{"note_id": "N1", "title": "…", "body": "…", "written_at": "…", "author_npi": "…"}]}

Errors name the place (``visit.patient.dob``) and never the value: values here are PHI.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from bridge import (
    Address,
    ClinicalNote,
    ContactPoint,
    DecodeError,
    EncodeError,
    Encounter,
    HumanName,
    Identifier,
    Patient,
    PatientLocation,
    Period,
    Practitioner,
    Record,
)

FORMAT_NAME = "acme-json"
MEDIA_TYPE = "application/vnd.acme.visit+json"
VERSION = "visit/1"

STATES = {"planned": "scheduled", "in-progress": "in_progress", "finished": "completed", "cancelled": "cancelled"}
MODES = {"video": "video", "audio_only": "phone", "async": "async", "in_person": "office"}
SEXES = {"female": "F", "male": "M", "other": "O", "unknown": "U"}


def _reverse(table: Mapping[str, str]) -> dict[str, str]:
    return {acme: ours for ours, acme in table.items()}


# --- decode --------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object, with errors naming the path and never the value."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise DecodeError("expected a JSON object", path)
        self.data, self.path = data, path

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise DecodeError("is required", f"{self.path}.{key}")
            return None
        if not isinstance(value, str) or not value.strip():
            raise DecodeError("expected a non-empty string", f"{self.path}.{key}")
        return value

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DecodeError("expected a list of strings", f"{self.path}.{key}")
        return list(value)

    def moment(self, key: str) -> str | None:
        value = self.text(key)
        if value is not None:
            try:
                datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise DecodeError("expected an ISO 8601 date or date-time", f"{self.path}.{key}") from None
        return value

    def code(self, key: str, table: Mapping[str, str], required: bool = False) -> str | None:
        value = self.text(key, required)
        if value is not None and value not in table:
            raise DecodeError(f"unknown code (expected one of {', '.join(sorted(table))})", f"{self.path}.{key}")
        return table.get(value) if value is not None else None

    def child(self, key: str) -> _Reader | None:
        return _Reader(self.data[key], f"{self.path}.{key}") if self.data.get(key) is not None else None

    def children(self, key: str) -> list[_Reader]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise DecodeError("expected a list", f"{self.path}.{key}")
        return [_Reader(item, f"{self.path}.{key}[{i}]") for i, item in enumerate(value)]


def _name(reader: _Reader) -> HumanName | None:
    family, given = reader.text("last_name"), reader.texts("first_names")
    return HumanName(family=family, given=given) if family or given else None


def _patient(reader: _Reader) -> Patient:
    address = reader.child("address")
    phone = reader.text("phone")
    return Patient(
        identifiers=[Identifier(value=reader.text("mrn", required=True) or "", type="MR")],
        name=_name(reader), birth_date=reader.moment("dob"), gender=reader.code("sex", _reverse(SEXES)),
        addresses=[Address(lines=address.texts("lines"), city=address.text("city"), state=address.text("state"),
                           postal_code=address.text("zip"))] if address else [],
        telecom=[ContactPoint(value=phone, system="phone")] if phone else [],
    )


def _clinician(reader: _Reader) -> Practitioner:
    return Practitioner(npi=reader.text("npi"), name=_name(reader))


def _encounter(visit: _Reader) -> Encounter:
    started, ended = visit.moment("started_at"), visit.moment("ended_at")
    patient, clinician = visit.child("patient"), visit.child("clinician")
    state = visit.text("patient_state")
    if patient is None:
        raise DecodeError("is required", "visit.patient")
    return Encounter(
        identifiers=[Identifier(value=visit.text("visit_number", required=True) or "", type="VN")],
        status=visit.code("state", _reverse(STATES), required=True),
        modality=visit.code("mode", _reverse(MODES)),
        period=Period(start=started, end=ended) if started or ended else None,
        patient=_patient(patient),
        practitioner=_clinician(clinician) if clinician else None,
        patient_location=PatientLocation(state=state) if state else None,
    )


def _note(reader: _Reader) -> ClinicalNote:
    author = reader.text("author_npi")
    return ClinicalNote(id=reader.text("note_id"), title=reader.text("title"),
                        text=reader.text("body", required=True), content_type="text/plain",
                        authored=reader.moment("written_at"), author=Practitioner(npi=author) if author else None)


def decode(raw: bytes, options: Mapping[str, Any] | None = None) -> list[Record]:
    """An Acme visit document → [Encounter, ClinicalNote…]; DecodeError names what and where."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    top = _Reader(doc, "document")
    if doc.get("acme") != VERSION:
        raise DecodeError(f"not an Acme {VERSION} document", "acme")
    visit = top.child("visit")
    if visit is None:
        raise DecodeError("is required", "visit")
    visit.path = "visit"
    notes = top.children("notes")
    for reader in notes:
        reader.path = reader.path.replace("document.", "")
    return [_encounter(visit), *(_note(reader) for reader in notes)]


def detect(raw: bytes) -> bool:
    return raw.lstrip()[:1] == b"{" and f'"acme":"{VERSION}"'.encode() in raw[:64].replace(b" ", b"")


# --- encode --------------------------------------------------------------------------------------


def _require(value: Any, what: str) -> Any:
    if value in (None, "", []):
        raise EncodeError(f"{what} is required by Acme")
    return value


def _coded(value: str | None, table: Mapping[str, str], what: str) -> str | None:
    if value is None:
        return None
    if value not in table:
        raise EncodeError(f"{what} {value!r} has no Acme equivalent (Acme knows {', '.join(table)})")
    return table[value]


def _identifier(identifiers: Sequence[Identifier], kind: str) -> str | None:
    return next((i.value for i in identifiers if i.type == kind), None)


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v not in (None, [], {})}


def _named(name: HumanName | None) -> dict[str, Any]:
    return {"last_name": name.family if name else None, "first_names": list(name.given) if name else []}


def _patient_doc(patient: Patient) -> dict[str, Any]:
    address = patient.addresses[0] if patient.addresses else None
    phone = next((t.value for t in patient.telecom if t.system == "phone"), None)
    return _compact({
        "mrn": _require(_identifier(patient.identifiers, "MR"), "Encounter.patient's MRN (identifier of type MR)"),
        **_named(patient.name), "dob": patient.birth_date, "sex": _coded(patient.gender, SEXES, "Patient.gender"),
        "phone": phone,
        "address": _compact({"lines": address.lines, "city": address.city, "state": address.state,
                             "zip": address.postal_code}) if address else None,
    })


def _visit_doc(encounter: Encounter) -> dict[str, Any]:
    period = encounter.period or Period()
    return _compact({
        "visit_number": _require(_identifier(encounter.identifiers, "VN"), "Encounter's visit number (identifier of type VN)"),
        "state": _require(_coded(encounter.status, STATES, "Encounter.status"), "Encounter.status"),
        "mode": _coded(encounter.modality, MODES, "Encounter.modality"),
        "started_at": period.start, "ended_at": period.end,
        "patient_state": encounter.patient_location.state if encounter.patient_location else None,
        "patient": _patient_doc(_require(encounter.patient, "Encounter.patient")),
        "clinician": _compact({"npi": encounter.practitioner.npi, **_named(encounter.practitioner.name)})
        if encounter.practitioner else None,
    })


def _note_doc(note: ClinicalNote, index: int) -> dict[str, Any]:
    if note.content_type not in (None, "text/plain"):
        raise EncodeError(f"ClinicalNote {index}: Acme takes plain-text notes, not {note.content_type}")
    return _compact({"note_id": note.id, "title": note.title, "body": _require(note.text, f"ClinicalNote {index} text"),
                     "written_at": note.authored, "author_npi": note.author.npi if note.author else None})


def encode(records: Sequence[Record], options: Mapping[str, Any] | None = None) -> bytes:
    """[Encounter, ClinicalNote…] → an Acme visit document; EncodeError says what Acme cannot take."""
    others = sorted({r.kind for r in records if not isinstance(r, (Encounter, ClinicalNote))})
    if others:
        raise EncodeError(f"Acme visits carry Encounter and ClinicalNote records, not {', '.join(others)}")
    encounters = [r for r in records if isinstance(r, Encounter)]
    if len(encounters) != 1:
        raise EncodeError(f"an Acme visit document needs exactly one Encounter, got {len(encounters)}")
    notes = [r for r in records if isinstance(r, ClinicalNote)]
    doc = {"acme": VERSION, "visit": _visit_doc(encounters[0]),
           "notes": [_note_doc(n, i) for i, n in enumerate(notes)]}
    return (json.dumps(_compact(doc), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


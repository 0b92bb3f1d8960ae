"""The ``epic`` destination profile: what a telehealth visit becomes in Epic.

Epic's R4 API does not let us create or update Encounters or MedicationRequests (its capability
statement lists them as read/search only), so the visit must already exist in Epic and we write
*around* it, with create-only interactions from Epic's catalogue:

- a finished visit (an Encounter record) → one DocumentReference visit note (LOINC 11506-3 progress
  note, base64 ``text/plain``) whose ``context.encounter`` is the Epic encounter found by
  ``Encounter?identifier=<visit number system>|<visit number>`` and whose subject is the patient
  found by MRN (DocumentReference.Create, Clinical Notes);
- vital signs on an Encounter record → one vital-signs Observation each, while Epic's encounter is
  still open (Observation.Create, Vitals); a closed Epic encounter gets none (said in the outcome);
- a Prescription → **its own note** (the prescription summary), never an edit of the visit note:
  Epic's catalogue has DocumentReference Create, Read and Search for clinical notes but no Update,
  so a note, once filed, is not changed through the API;
- a ClinicalNote → its own DocumentReference against the visit's encounter.

Epic has no conditional create, and we do not rely on it keeping our ``identifier``: every write
first looks for our earlier one by what Epic keeps — the note's patient, type and encounter plus the
marker ``[telemed-bridge note-id …]`` in its text; a vital's patient, code, encounter, time and
value — and a create whose answer never came is reconciled by looking again. See ``docs/vendors.md``.

Documentation (each request names its page in its docstring):
https://fhir.epic.com/Specifications (catalogue: DocumentReference.Create/Read/Search (Clinical
Notes) (R4), Observation.Create (Vitals) (R4), Observation.Search (Vitals), Encounter.Search,
Patient.Search, Practitioner.Search, Binary.Read (Clinical Notes)).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge import (
    ClinicalNote,
    Delivery,
    DestinationContext,
    Encounter,
    PermanentDeliveryError,
    Practitioner,
    Prescription,
    Record,
    TransientDeliveryError,
)

from bridge.plugins.fhir import vendorkit as kit

log = logging.getLogger(__name__)

SANDBOX_BASE = "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4"
DEFAULT_SCOPE = ("system/Patient.read system/Encounter.read system/Practitioner.read "
                 "system/DocumentReference.read system/DocumentReference.write system/Binary.read "
                 "system/Observation.read system/Observation.write")
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PROGRESS_NOTE = {"system": kit.LOINC, "code": "11506-3", "display": "Progress note"}
NOTE_CATEGORY = {"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                 "code": "clinical-note", "display": "Clinical Note"}
DOC_STATUSES = ("final", "preliminary")
OPEN_ENCOUNTER = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave"})
MAX_NOTES_READ = 20
"""At most this many candidate notes are opened (Binary read) when looking for our marker."""

CATALOGUE = "https://open.epic.com/Interface/FHIR"
SPECS = "https://fhir.epic.com/Specifications"
"""Epic's FHIR catalogue and its specification pages, where each interaction we use is listed by the
name our docstrings give (e.g. ``DocumentReference.Create (Clinical Notes) (R4)``)."""


def note_marker(note_id: str) -> str:
    """The line that lets us recognise our note by its text alone (Epic may not keep our identifier)."""
    return f"Filed by Telemed Bridge [telemed-bridge note-id {note_id}]"


@dataclass(frozen=True)
class EpicSettings:
    base: str
    environment: str
    systems: kit.IdentifierSystems
    note_type: Mapping[str, str]
    write_vitals: bool
    doc_status: str
    options: Mapping[str, Any]


def base_url(opts: kit.Options, url: str) -> str:
    """``options.base_url``, else the destination's ``url`` (``fhir+https://…`` or ``https://…``)."""
    base = opts.text("base_url") or (url[len("fhir+"):] if url.lower().startswith("fhir+") else url)
    if not base:
        opts.problem("base_url", f"is required (the customer's Epic FHIR R4 base, e.g. {SANDBOX_BASE})")
        return ""
    if not base.startswith(("https://", "http://")):
        opts.problem("base_url", f"expected an https:// URL, got {base!r}")
    return base.rstrip("/")


def read_settings(opts: kit.Options, url: str = "", writes: bool = True) -> tuple[EpicSettings, dict[str, Any]]:
    """Settings and the FHIR plugin's ``auth:`` mapping; every problem names its key.

    A ``final`` note (the default ``doc_status``) needs ``provider_id_system``: Epic signs a final note
    as its author, and a note without one would be signed as the app's background user."""
    base = base_url(opts, url)
    environment, client_id = kit.client_id_for(opts)
    auth = kit.auth_mapping(opts, client_id, token_url=opts.text("token_url"),
                            scope=opts.text("scope", default=DEFAULT_SCOPE) or DEFAULT_SCOPE,
                            methods=("private_key_jwt",))
    note_type = opts.mapping("note_type") or PROGRESS_NOTE
    if not note_type.get("code"):
        opts.problem("note_type.code", "is required (e.g. LOINC 11506-3)")
    write_vitals = opts.raw.get("write_vitals", True)
    if not isinstance(write_vitals, bool):
        opts.problem("write_vitals", "expected true or false")
    doc_status = opts.choice("doc_status", DOC_STATUSES, "final")
    systems = kit.IdentifierSystems.read(opts, required=writes)
    if writes and doc_status == "final" and not systems.provider_id:
        opts.problem("provider_id_system", "is required when doc_status is final (the default): Epic signs a "
                                           "final note as its author, and without one it would be signed as "
                                           "the app's background user; set provider_id_system (e.g. the NPI "
                                           "system) or doc_status: preliminary")
    settings = EpicSettings(base, environment, systems, {"system": kit.LOINC, **note_type}, bool(write_vitals),
                            doc_status, opts.raw)
    return settings, auth


class EpicSession(kit.VendorSession):
    """Epic's answers: a 403 says which interaction Epic refused and keeps Epic's own text, because it
    has several causes (the API not enabled for this client at this organisation, a missing scope, or
    the background user lacking security for the action), not only an unactivated client."""

    def __init__(self, *args: Any, environment: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.environment = environment

    def judge(self, response: kit.FhirResponse, what: str) -> None:
        if response.status == 403:
            text = kit.error_text(response)
            raise PermanentDeliveryError(
                f"Epic refused {what} (HTTP 403" + (f" — {text}" if text else "") + "): this client may not do "
                f"this at {self.base}. Check that the API is enabled for options.client_ids.{self.environment} "
                "at this organisation, that the token's scope includes it, and that Epic's background user "
                "has security for it (e.g. the note type)")
        super().judge(response, what)


def make_session(opts: kit.Options, settings: EpicSettings, auth: Mapping[str, Any],
                 config_dir: str) -> kit.VendorSession:
    http = kit.http_settings(opts, config_dir)
    opts.check()
    tokens = kit.tokens_for(opts, auth, settings.base, config_dir, http)
    errors = kit.VendorErrors(forbidden=f"Epic refused the client {settings.environment} at {settings.base}")
    return EpicSession(settings.base, tokens, http, errors, environment=settings.environment)


@dataclass(frozen=True)
class EpicEncounter:
    id: str
    status: str

    @property
    def open(self) -> bool:
        return self.status in OPEN_ENCOUNTER


class EpicDestination:
    """Writes visit notes, vitals and prescription summaries into Epic (see the module docstring)."""

    def __init__(self, ctx: DestinationContext):
        opts = kit.Options(ctx.options, f"destinations.{ctx.name}.options")
        self.settings, auth = read_settings(opts, ctx.url)
        self.fhir = make_session(opts, self.settings, auth, ctx.config_dir)

    def send(self, delivery: Delivery) -> str:
        return kit.write_records(delivery, "epic", [(Encounter, self.visit), (Prescription, self.prescription),
                                                     (ClinicalNote, self.clinical_note)])

    def close(self) -> None:
        self.fhir.close()

    # -- records --

    def visit(self, encounter: Encounter, outcome: kit.Outcome) -> None:
        """A finished visit files its note; vitals are filed whenever the record carries them and
        Epic's encounter is still open (so the start of the visit files them, not only its end)."""
        visit_number = self.visit_number(encounter, "Encounter")
        vitals = kit.vitals_of(encounter) if self.settings.write_vitals else []
        if encounter.status != "finished" and not vitals:
            outcome.add(f"visit {encounter.status or 'unknown'}: Epic encounters are read-only; the note is filed "
                        "when the visit finishes")
            return
        patient = self.patient_id(encounter)
        epic_encounter = self.encounter_of(visit_number, patient)
        for vital in vitals:
            outcome.add(self.vital(vital, patient, epic_encounter))
        if encounter.status != "finished":
            outcome.add(f"visit {encounter.status or 'unknown'}: the note is filed when the visit finishes")
            return
        when = encounter.period.end or encounter.period.start if encounter.period else None
        text = kit.visit_summary(encounter, visit_number)
        outcome.add(self.file_note(patient, epic_encounter.id, kit.note_id_for_visit(visit_number), text, when,
                                   encounter.practitioner, self.settings.note_type))

    def prescription(self, rx: Prescription, outcome: kit.Outcome) -> None:
        """The prescription summary as its own note: Epic offers no update of a filed clinical note."""
        visit_number = self.visit_number(rx.encounter, "Prescription")
        patient = self.patient_id(rx)
        epic_encounter = self.encounter_of(visit_number, patient)
        text = f"Prescription written during telehealth visit {visit_number}\n{kit.prescription_line(rx)}"
        outcome.add(self.file_note(patient, epic_encounter.id, f"rx-{kit.prescription_key(rx)}", text,
                                   rx.written_date, rx.prescriber, self.settings.note_type))

    def clinical_note(self, note: ClinicalNote, outcome: kit.Outcome) -> None:
        note_id = note.id or (note.identifiers[0].value if note.identifiers else None)
        if not note_id:
            raise PermanentDeliveryError("the ClinicalNote has no id or identifier: Epic has no conditional "
                                         "create, so it could not be written idempotently")
        visit_number = self.visit_number(note.encounter, "ClinicalNote")
        patient = self.patient_id(note)
        epic_encounter = self.encounter_of(visit_number, patient)
        note_type = note.note_type if note.note_type and note.note_type.system == kit.LOINC else None
        coding = ({"system": kit.LOINC, "code": note_type.code, **({"display": note_type.display}
                                                                   if note_type.display else {})}
                  if note_type else dict(self.settings.note_type))
        if (note.content_type or "text/plain") not in ("text/plain", "text/html"):
            raise PermanentDeliveryError(f"the ClinicalNote is {note.content_type}: Epic files clinical notes as "
                                         "text/plain or text/html")
        outcome.add(self.file_note(patient, epic_encounter.id, f"note-{note_id}", note.text or "", note.authored,
                                   note.author, coding, note.content_type or "text/plain"))

    # -- lookups --

    def visit_number(self, encounter: Encounter | None, kind: str) -> str:
        number = self.settings.systems.visit_number_of(encounter)
        if not number:
            raise PermanentDeliveryError(f"the {kind} carries no visit number (type VN or system "
                                         f"{self.settings.systems.visit_number}): Epic notes attach to an "
                                         "existing Epic encounter, found by visit number")
        return number

    def patient_id(self, record: Record) -> str:
        """``GET Patient?identifier={mrn_system}|{MRN}`` (Patient.Search (R4), https://fhir.epic.com/Specifications)."""
        mrn = self.settings.systems.mrn_of(record, f"{record.kind} for Epic")
        found = kit.find_one(self.fhir, "Patient", [("identifier", kit.token(self.settings.systems.mrn, mrn))],
                             "search Patient by MRN")
        if found is None:
            raise PermanentDeliveryError("search Patient by MRN: no Epic patient has this MRN in "
                                         f"{self.settings.systems.mrn} (check options.mrn_system)")
        return str(found["id"])

    def encounter_of(self, visit_number: str, patient: str) -> EpicEncounter:
        """``GET Encounter?identifier={visit_number_system}|{visit}`` (Encounter.Search (R4),
        https://fhir.epic.com/Specifications); its subject must be the MRN's patient."""
        system = self.settings.systems.visit_number
        found = kit.find_one(self.fhir, "Encounter", [("identifier", kit.token(system, visit_number))],
                             "search Encounter by visit number")
        if found is None:
            raise TransientDeliveryError("search Encounter by visit number: Epic has no encounter with this visit "
                                         "number yet (it must exist in Epic before the note can be filed); "
                                         "will try again")
        subject = ((found.get("subject") or {}).get("reference") or "").split("/")[-1]
        if subject and subject != patient:
            raise PermanentDeliveryError("the Epic encounter with this visit number belongs to another patient "
                                         "than the MRN names; not filing the note")
        return EpicEncounter(str(found["id"]), str(found.get("status") or ""))

    def author_ref(self, practitioner: Practitioner | None) -> dict[str, str] | None:
        """``GET Practitioner?identifier={provider_id_system}|{id}`` (Practitioner.Search (R4),
        https://fhir.epic.com/Specifications). A final note without an author would be signed
        as Epic's background user, so then a missing author is a permanent error."""
        system = self.settings.systems.provider_id
        final = self.settings.doc_status == "final"
        ident = kit.pick(practitioner.identifiers, system, None) if practitioner and system else None
        value = ident.value if ident else (practitioner.npi if practitioner and system == NPI_SYSTEM else None)
        found = kit.find_one(self.fhir, "Practitioner", [("identifier", kit.token(system, value))],
                             "search Practitioner") if system and value else None
        if found:
            return {"reference": f"Practitioner/{found['id']}"}
        if final:
            why = ("the record names no practitioner with an id in " + str(system)) if not value else \
                "no Epic practitioner has the practitioner's id in " + str(system)
            raise PermanentDeliveryError(f"{why}: a final note is not filed without its author (Epic would sign "
                                         "it as the background user); fix the provider id or use doc_status: "
                                         "preliminary")
        return None

    # -- notes --

    def document(self, patient: str, encounter: str, note_id: str, text: str, when: str | None,
                 author: Practitioner | None, coding: Mapping[str, str], content_type: str = "text/plain") -> dict:
        """The DocumentReference.Create (Clinical Notes) (R4) body
        (https://fhir.epic.com/Specifications): type, subject, ``context.encounter``, a base64
        ``text/plain`` or ``text/html`` attachment whose text ends with our marker, docStatus and author."""
        marked = f"{text}\n\n{note_marker(note_id)}" if content_type == "text/plain" else \
            f"{text}\n<p>{note_marker(note_id)}</p>"
        body: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "identifier": [{"system": kit.NOTE_ID_SYSTEM, "value": note_id}],
            "status": "current",
            "docStatus": self.settings.doc_status,
            "type": {"coding": [dict(coding)], "text": coding.get("display") or coding["code"]},
            "category": [{"coding": [NOTE_CATEGORY]}],
            "subject": {"reference": f"Patient/{patient}"},
        }
        date = kit.record_date(when, "note date", self.settings.options)
        if date:
            body["date"] = date
        author_ref = self.author_ref(author)
        if author_ref:
            body["author"] = [author_ref]
        body["content"] = [{"attachment": {"contentType": content_type, "data": kit.b64_text(marked)}}]
        body["context"] = {"encounter": [{"reference": f"Encounter/{encounter}"}]}
        return body

    def note_text(self, resource: Mapping[str, Any]) -> str:
        """A note's text: inline data, else its Binary (Binary.Read (Clinical Notes),
        https://fhir.epic.com/Specifications)."""
        inline = kit.attachment_text(resource)
        if inline is not None:
            return inline
        for content in resource.get("content") or []:
            url = ((content or {}).get("attachment") or {}).get("url") or ""
            if url.startswith("Binary/") or "/Binary/" in url:
                binary = self.fhir.get_json("Binary/" + url.rsplit("/", 1)[-1], "read Binary")
                return kit.attachment_text({"content": [{"attachment": binary}]}) or ""
        return ""

    def find_note(self, patient: str, encounter: str, note_id: str, coding: Mapping[str, str]) -> str | None:
        """Our earlier note, by what Epic keeps: ``GET DocumentReference?patient=…&type=LOINC|code``
        (DocumentReference.Search (Clinical Notes) (R4),
        https://fhir.epic.com/Specifications),
        then on our side the encounter and our identifier or the marker in the note's text."""
        doc = self.fhir.get_json(f"DocumentReference?{kit.query([('patient', kit.plain(patient)), ('type', kit.token(kit.LOINC, coding['code']))])}",
                                 "search DocumentReference")
        here = [r for r in kit.matches(doc, "DocumentReference", "search DocumentReference")
                if any(ref.get("reference", "").endswith(f"Encounter/{encounter}")
                       for ref in (r.get("context") or {}).get("encounter") or [])]
        marker = note_marker(note_id)
        found = [r for r in here if kit.has_identifier(r, kit.NOTE_ID_SYSTEM, note_id)]
        if not found:
            found = [r for r in here[:MAX_NOTES_READ] if marker in self.note_text(r)]
        if len(found) > 1:
            raise PermanentDeliveryError(f"search DocumentReference: {len(found)} notes carry one note id; resolve "
                                         "the duplicates in Epic")
        return str(found[0]["id"]) if found else None

    def file_note(self, patient: str, encounter: str, note_id: str, text: str, when: str | None,
                  author: Practitioner | None, coding: Mapping[str, str], content_type: str = "text/plain") -> str:
        """Create the note once: ``POST DocumentReference`` (DocumentReference.Create (Clinical Notes)
        (R4),
        https://fhir.epic.com/Specifications) unless our earlier one is found; a
        create whose answer was lost is reconciled by searching again. A note is never updated."""
        def find() -> str | None:
            return self.find_note(patient, encounter, note_id, coding)

        existing = find()
        if existing:
            return f"DocumentReference/{existing} exists"
        body = self.document(patient, encounter, note_id, text, when, author, coding, content_type)

        def create() -> str:
            response = self.fhir.call("POST", "DocumentReference", body=kit.json_bytes(body),
                                      what="create DocumentReference")
            return kit.created_id(response, "DocumentReference", "create DocumentReference")

        how, doc_id = kit.create_reconciled(create, find, "create DocumentReference")
        return f"DocumentReference/{doc_id} {how}"

    # -- vitals --

    def find_vital(self, vital: kit.Vital, patient: str, encounter: str, effective: str | None) -> str | None:
        """Our earlier reading, by what Epic keeps: ``GET Observation?patient=…&category=vital-signs&code=…``
        (Observation.Search (Vitals) (R4),
        https://fhir.epic.com/Specifications), then on our
        side the encounter, the time and the value."""
        doc = self.fhir.get_json("Observation?" + kit.query([("patient", kit.plain(patient)),
                                                             ("category", "vital-signs"),
                                                             ("code", kit.token(kit.LOINC, vital.loinc))]),
                                 "search Observation")

        def same(r: Mapping[str, Any]) -> bool:
            value = (r.get("valueQuantity") or {}).get("value")
            return ((r.get("encounter") or {}).get("reference", "").endswith(f"Encounter/{encounter}")
                    and (effective is None or r.get("effectiveDateTime") == effective)
                    and isinstance(value, (int, float)) and abs(float(value) - vital.value) < 1e-9)

        found = [r for r in kit.matches(doc, "Observation", "search Observation") if same(r)]
        return str(found[0].get("id")) if found else None

    def vital(self, vital: kit.Vital, patient: str, encounter: EpicEncounter) -> str:
        """``POST Observation`` (Observation.Create (Vitals) (R4),
        https://fhir.epic.com/Specifications) while Epic's encounter is open; a reading Epic
        already holds is not sent again, and one Epic refuses as a repeat (400) is taken as filed
        when the search then finds it."""
        effective = kit.record_date(vital.effective, "vital.effective", self.settings.options)

        def find() -> str | None:
            return self.find_vital(vital, patient, encounter.id, effective)

        existing = find()
        if existing:
            return f"Observation/{existing} exists"
        if not encounter.open:
            return (f"vital {vital.loinc} not filed: the Epic encounter is {encounter.status or 'closed'} "
                    "(Epic files vitals on an open encounter)")
        body = kit.vital_observation(vital, obs_id=f"{encounter.id}-{vital.loinc}-{effective or 'undated'}",
                                     patient_ref=f"Patient/{patient}", encounter_ref=f"Encounter/{encounter.id}",
                                     options=self.settings.options)

        def create() -> str:
            response = self.fhir.call("POST", "Observation", body=kit.json_bytes(body), what="create Observation")
            return kit.created_id(response, "Observation", "create Observation")

        try:
            how, obs = kit.create_reconciled(create, find, "create Observation")
        except PermanentDeliveryError as exc:
            again = find() if "HTTP 400" in str(exc) else None
            if again is None:
                raise
            how, obs = "already filed (Epic refused the repeat)", again
        return f"Observation/{obs} {how}"

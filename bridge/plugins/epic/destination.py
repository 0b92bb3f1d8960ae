"""The ``epic`` destination profile: what a telehealth visit becomes in Epic.

Epic's R4 API does not let us create or update Encounters or MedicationRequests (its capability
statement lists them as read/search only), so the visit must already exist in Epic and we write
*around* it:

- a finished visit (an Encounter record) → one DocumentReference visit note (LOINC 11506-3 progress
  note, base64 ``text/plain``, status current) whose ``context.encounter`` is the Epic encounter
  found by ``Encounter?identifier=<visit number system>|<visit number>`` and whose subject is the
  patient found by MRN; plus one vital-signs Observation per vital the record carries;
- a Prescription → a section of that same note (drug, quantity, sig, refills, pharmacy), added with
  an ETag-guarded update (412 → re-read, merge again, retry once);
- a ClinicalNote → its own DocumentReference against the visit's encounter.

Epic has no conditional create: every write searches first on our identifier
(``https://telemed-bridge.org/fhir/sid/note-id|visit-<visit number>``) and a create whose answer
never came is reconciled by searching again. See ``docs/vendors.md``.
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
                 "system/DocumentReference.read system/DocumentReference.write "
                 "system/Observation.read system/Observation.write")
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PROGRESS_NOTE = {"system": kit.LOINC, "code": "11506-3", "display": "Progress note"}
NOTE_CATEGORY = {"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                 "code": "clinical-note", "display": "Clinical Note"}


@dataclass(frozen=True)
class EpicSettings:
    base: str
    environment: str
    systems: kit.IdentifierSystems
    note_type: Mapping[str, str]
    write_vitals: bool
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
    """Settings and the FHIR plugin's ``auth:`` mapping; every problem names its key."""
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
    settings = EpicSettings(base, environment, kit.IdentifierSystems.read(opts, required=writes),
                            {"system": kit.LOINC, **note_type}, bool(write_vitals), opts.raw)
    return settings, auth


def make_session(opts: kit.Options, settings: EpicSettings, auth: Mapping[str, Any],
                 config_dir: str) -> kit.VendorSession:
    http = kit.http_settings(opts, config_dir)
    opts.check()
    tokens = kit.tokens_for(opts, auth, settings.base, config_dir, http)
    errors = kit.VendorErrors(forbidden=f"Epic refused the client: check options.client_ids.{settings.environment} "
                                        f"is activated for {settings.base} with the scopes it needs")
    return kit.VendorSession(settings.base, tokens, http, errors)


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
        visit_number = self.visit_number(encounter, "Encounter")
        if encounter.status != "finished":
            outcome.add(f"visit {encounter.status or 'unknown'}: Epic encounters are read-only; the note is filed "
                        "when the visit finishes")
            return
        patient = self.patient_id(encounter)
        epic_encounter = self.encounter_id(visit_number, patient)
        when = encounter.period.end or encounter.period.start if encounter.period else None
        outcome.add(self.upsert_note(patient, epic_encounter, visit_number, when, encounter.practitioner,
                                     summary=kit.visit_summary(encounter, visit_number)))
        if self.settings.write_vitals:
            for vital in kit.vitals_of(encounter):
                outcome.add(self.vital(vital, patient, epic_encounter, visit_number))

    def prescription(self, rx: Prescription, outcome: kit.Outcome) -> None:
        visit_number = self.visit_number(rx.encounter, "Prescription")
        patient = self.patient_id(rx)
        epic_encounter = self.encounter_id(visit_number, patient)
        outcome.add(self.upsert_note(patient, epic_encounter, visit_number, rx.written_date, rx.prescriber,
                                     rx_line=kit.prescription_line(rx)))

    def clinical_note(self, note: ClinicalNote, outcome: kit.Outcome) -> None:
        note_id = note.id or (note.identifiers[0].value if note.identifiers else None)
        if not note_id:
            raise PermanentDeliveryError("the ClinicalNote has no id or identifier: Epic has no conditional "
                                         "create, so it could not be written idempotently")
        visit_number = self.visit_number(note.encounter, "ClinicalNote")
        patient = self.patient_id(note)
        epic_encounter = self.encounter_id(visit_number, patient)
        note_type = note.note_type if note.note_type and note.note_type.system == kit.LOINC else None
        coding = ({"system": kit.LOINC, "code": note_type.code, **({"display": note_type.display}
                                                                   if note_type.display else {})}
                  if note_type else dict(self.settings.note_type))
        body = self.document(patient, epic_encounter, note_id, note.text or "", note.authored, note.author,
                             coding, note.content_type or "text/plain")
        outcome.add(self.write_document(patient, note_id, body, lambda current: None))

    # -- lookups --

    def visit_number(self, encounter: Encounter | None, kind: str) -> str:
        number = self.settings.systems.visit_number_of(encounter)
        if not number:
            raise PermanentDeliveryError(f"the {kind} carries no visit number (type VN or system "
                                         f"{self.settings.systems.visit_number}): Epic notes attach to an "
                                         "existing Epic encounter, found by visit number")
        return number

    def patient_id(self, record: Record) -> str:
        mrn = self.settings.systems.mrn_of(record, f"{record.kind} for Epic")
        found = kit.find_one(self.fhir, "Patient", [("identifier", kit.token(self.settings.systems.mrn, mrn))],
                             "search Patient by MRN")
        if found is None:
            raise PermanentDeliveryError("search Patient by MRN: no Epic patient has this MRN in "
                                         f"{self.settings.systems.mrn} (check options.mrn_system)")
        return str(found["id"])

    def encounter_id(self, visit_number: str, patient: str) -> str:
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
        return str(found["id"])

    def practitioner_ref(self, practitioner: Practitioner | None) -> dict[str, str] | None:
        system = self.settings.systems.provider_id
        if practitioner is None or not system:
            return None
        ident = kit.pick(practitioner.identifiers, system, None)
        value = ident.value if ident else (practitioner.npi if system == NPI_SYSTEM else None)
        if not value:
            return None
        found = kit.find_one(self.fhir, "Practitioner", [("identifier", kit.token(system, value))],
                             "search Practitioner")
        return {"reference": f"Practitioner/{found['id']}"} if found else None

    # -- the note --

    def document(self, patient: str, encounter: str, note_id: str, text: str, when: str | None,
                 author: Practitioner | None, coding: Mapping[str, str], content_type: str = "text/plain") -> dict:
        body: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "identifier": [{"system": kit.NOTE_ID_SYSTEM, "value": note_id}],
            "status": "current",
            "docStatus": "final",
            "type": {"coding": [dict(coding)], "text": coding.get("display") or coding["code"]},
            "category": [{"coding": [NOTE_CATEGORY]}],
            "subject": {"reference": f"Patient/{patient}"},
        }
        date = kit.record_date(when, "note date", self.settings.options)
        if date:
            body["date"] = date
        author_ref = self.practitioner_ref(author)
        if author_ref:
            body["author"] = [author_ref]
        body["content"] = [{"attachment": {"contentType": content_type, "data": kit.b64_text(text)}}]
        body["context"] = {"encounter": [{"reference": f"Encounter/{encounter}"}]}
        return body

    def upsert_note(self, patient: str, encounter: str, visit_number: str, when: str | None,
                    author: Practitioner | None, *, summary: str | None = None, rx_line: str | None = None) -> str:
        """Create the visit note, or merge this visit section / prescription line into it."""
        note_id = kit.note_id_for_visit(visit_number)

        def body_for(current: Mapping[str, Any] | None) -> dict[str, Any]:
            existing = kit.attachment_text(current) if current else None
            text = kit.merge_note(existing, summary=summary, rx_line=rx_line, visit_number=visit_number)
            body = self.document(patient, encounter, note_id, text, when, author, self.settings.note_type)
            if current and current.get("date") and not summary:  # a prescription keeps the visit's date
                body["date"] = current["date"]
            return body

        return self.write_document(patient, note_id, body_for(None), body_for)

    def write_document(self, patient: str, note_id: str, new_body: dict[str, Any], merged: Any) -> str:
        """Search on our note id; create (reconciled) if absent, else update under If-Match.

        ``merged(current)`` gives the body for an existing note (None: replace with ``new_body``).
        """
        def find() -> dict[str, Any] | None:
            return kit.find_one(self.fhir, "DocumentReference",
                                [("patient", kit.plain(patient)), ("identifier", kit.token(kit.NOTE_ID_SYSTEM, note_id))],
                                "search DocumentReference by note id",
                                keep=lambda r: kit.has_identifier(r, kit.NOTE_ID_SYSTEM, note_id))

        found = find()
        if found is None:
            def create() -> str:
                response = self.fhir.call("POST", "DocumentReference", body=kit.json_bytes(new_body),
                                          what="create DocumentReference")
                return kit.created_id(response, "DocumentReference", "create DocumentReference")

            how, doc_id = kit.create_reconciled(create, lambda: (find() or {}).get("id"), "create DocumentReference")
            return f"DocumentReference/{doc_id} {how}"

        def attempt(current: dict[str, Any], etag: str | None) -> str:
            body = merged(current) or new_body
            if kit.attachment_text(body) == kit.attachment_text(current):
                return f"DocumentReference/{current['id']} unchanged"
            body = {**body, "id": current["id"]}
            headers = {"If-Match": etag} if etag else {}
            self.fhir.call("PUT", f"DocumentReference/{current['id']}", body=kit.json_bytes(body), headers=headers,
                           what="update DocumentReference")
            return f"DocumentReference/{current['id']} updated"

        return kit.with_conflict_retry(attempt, found, kit.etag_from_resource(found),
                                       lambda: kit.read_resource(self.fhir, "DocumentReference", str(found["id"])),
                                       "update DocumentReference")

    def vital(self, vital: kit.Vital, patient: str, encounter: str, visit_number: str) -> str:
        obs_id = f"{kit.note_id_for_visit(visit_number)}-{vital.loinc}"

        def find() -> str | None:
            match = kit.find_one(self.fhir, "Observation",
                                 [("patient", kit.plain(patient)), ("category", "vital-signs"),
                                  ("code", kit.token(kit.LOINC, vital.loinc))],
                                 "search Observation", keep=lambda r: kit.has_identifier(
                                     r, kit.OBSERVATION_ID_SYSTEM, obs_id))
            return str(match["id"]) if match else None

        existing = find()
        if existing:
            return f"Observation/{existing} exists"
        body = kit.vital_observation(vital, obs_id=obs_id, patient_ref=f"Patient/{patient}",
                                     encounter_ref=f"Encounter/{encounter}", options=self.settings.options)

        def create() -> str:
            response = self.fhir.call("POST", "Observation", body=kit.json_bytes(body), what="create Observation")
            return kit.created_id(response, "Observation", "create Observation")

        how, obs = kit.create_reconciled(create, find, "create Observation")
        return f"Observation/{obs} {how}"


"""The ``athena`` destination profile: athenaOne, written through its v1 API, read through FHIR R4.

athenahealth's FHIR R4 API is read/search only for clinical resources, so writes go to the v1 API
under the practice id, as form-encoded parameters:

- a finished visit (Encounter record) → an encounter document, subclass progress note, whose text
  is the visit summary: ``POST /v1/{practiceid}/patients/{patientid}/documents/encounterdocument``
  with ``departmentid``, ``documentsubclass``, ``documentdata`` (the endpoint's text parameter;
  ``textdata`` is not one of its parameters), ``internalnote`` (our key) and, when known,
  ``encounterid``;
- a Prescription → another encounter document with the prescription summary (drug, quantity,
  sig, refills, pharmacy). It documents the prescription; it does not e-prescribe;
- a ClinicalNote → an encounter document with the note's text.

athena lists a ``PUT`` on an encounter document, but its parameters are the department, appointment,
encounter, priority and an internal note that is appended — not the document's text. So a document's
text is never rewritten, and a prescription gets its own document.

The athenaNet patient id comes from a FHIR search by MRN scoped to the practice
(``Patient?identifier=…&ah-practice=Organization/a-1.Practice-{practiceid}``; ids read
``a-{practiceid}.E-{patientid}``). The v1 API has no idempotency key, so each document carries
``[telemed-bridge note-id …]`` in its internal note (athena keeps it and lists it) and we list the
patient's encounter documents before creating one; a create whose answer never came is reconciled
by listing again. Tokens are cached for their hour (athena limits new tokens per minute and blocks
the client for the rest of the minute with 429); a 429 from the API waits for Retry-After, else the
engine's backoff. See ``docs/vendors.md``.

Documentation (each request names its page in its docstring):
https://docs.athenahealth.com/api/api-ref/document-type-encounter-document (encounter documents),
https://api.platform.athenahealth.com/fhir/r4/metadata (the FHIR CapabilityStatement: search
parameters), https://docs.athenahealth.com/api/guides/authentication-and-url-locations (tokens).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bridge import (
    ClinicalNote,
    Delivery,
    DestinationContext,
    Encounter,
    PermanentDeliveryError,
    Prescription,
    Record,
    TransientDeliveryError,
)
from bridge.plugins.fhir import vendorkit as kit
from bridge.plugins.fhir.auth import TokenProvider

log = logging.getLogger(__name__)

HOSTS = {"production": "https://api.platform.athenahealth.com",
         "non-production": "https://api.preview.platform.athenahealth.com"}
DEFAULT_SCOPE = "athena/service/Athenanet.MDP.* system/Patient.read"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
FHIR_PATIENT_ID = re.compile(r"^a-(?P<practice>\d+)\.E-(?P<patient>\d+)$")
ENCOUNTER_DOCUMENTS = "https://docs.athenahealth.com/api/api-ref/document-type-encounter-document"
CAPABILITIES = "https://api.platform.athenahealth.com/fhir/r4/metadata"
TOKENS = "https://docs.athenahealth.com/api/guides/authentication-and-url-locations"


class MinuteLimitedTokens(TokenProvider):
    """The token cache with athena's token limit: past its per-minute count of new tokens (5 in
    preview, 50 in production) athena answers 429 and refuses new tokens for the rest of the minute
    (https://docs.athenahealth.com/api/guides/authentication-and-url-locations). Tokens are reused
    until shortly before their hour is up, so this only happens when many processes share one app;
    the delivery then waits for the next minute instead of retrying sooner."""

    def __init__(self, inner: TokenProvider):
        self.inner = inner

    def token(self) -> str | None:
        try:
            return self.inner.token()
        except TransientDeliveryError as exc:
            if "HTTP 429" not in str(exc):
                raise
            wait = 61 - time.time() % 60
            raise TransientDeliveryError(f"{exc}: athenahealth refuses new tokens for the rest of this minute "
                                         "after its per-minute limit",
                                         retry_after=max(wait, exc.retry_after or 0)) from None

    def invalidate(self) -> None:
        self.inner.invalidate()


@dataclass(frozen=True)
class AthenaSettings:
    practice_id: str
    department_id: str
    host: str
    environment: str
    systems: kit.IdentifierSystems
    document_subclass: str
    encounter_id_system: str | None
    options: Mapping[str, Any]

    @property
    def fhir_base(self) -> str:
        return f"{self.host}/fhir/r4"

    @property
    def v1_base(self) -> str:
        return f"{self.host}/v1/{self.practice_id}"

    @property
    def ah_practice(self) -> str:
        return f"Organization/a-1.Practice-{self.practice_id}"


def digits(opts: kit.Options, key: str, required: bool) -> str:
    value = opts.text(key, required=required) or ""
    if value and not value.isdigit():
        opts.problem(key, f"expected athenaNet's numeric id, got {value!r}")
    return value


def read_settings(opts: kit.Options, writes: bool = True) -> tuple[AthenaSettings, dict[str, Any]]:
    practice = digits(opts, "practice_id", True)
    department = digits(opts, "department_id", writes)
    environment, client_id = kit.client_id_for(opts)
    host = (opts.text("base_url") or HOSTS[environment]).rstrip("/")
    if not host.startswith(("https://", "http://")):
        opts.problem("base_url", f"expected https://host, got {host!r}")
    auth = kit.auth_mapping(opts, client_id, token_url=opts.text("token_url") or f"{host}/oauth2/v1/token",
                            scope=opts.text("scope", default=DEFAULT_SCOPE) or DEFAULT_SCOPE,
                            methods=("client_secret_basic", "private_key_jwt"))
    settings = AthenaSettings(
        practice_id=practice, department_id=department, host=host, environment=environment,
        systems=kit.IdentifierSystems.read(opts, required=writes),
        document_subclass=opts.text("document_subclass", default="PROGRESSNOTE") or "PROGRESSNOTE",
        encounter_id_system=opts.text("encounter_id_system"), options=opts.raw)
    return settings, auth


def sessions(opts: kit.Options, settings: AthenaSettings, auth: Mapping[str, Any],
             config_dir: str) -> tuple[kit.VendorSession, kit.VendorSession]:
    """The v1 and FHIR sessions: one token cache, one HTTP pool, two bases."""
    http = kit.http_settings(opts, config_dir)
    opts.check()
    tokens = MinuteLimitedTokens(kit.tokens_for(opts, auth, settings.fhir_base, config_dir, http))
    errors = kit.VendorErrors(forbidden=f"Practice not valid or accessible: check {opts.where}.practice_id = "
                                        f"{settings.practice_id} (and that client_ids.{settings.environment} is "
                                        "enabled for it)")
    return (kit.VendorSession(settings.v1_base, tokens, http, errors),
            kit.VendorSession(settings.fhir_base, tokens, http, errors))


def marker(note_id: str) -> str:
    return f"[telemed-bridge note-id {note_id}]"


def documents_in(answer: Any) -> list[dict[str, Any]]:
    """The documents of a v1 list answer (a list, or the first list inside the object)."""
    if isinstance(answer, list):
        return [d for d in answer if isinstance(d, dict)]
    if isinstance(answer, dict):
        for value in answer.values():
            if isinstance(value, list):
                return [d for d in value if isinstance(d, dict)]
        return []
    raise TransientDeliveryError("list encounter documents: the answer is not JSON")


class AthenaDestination:
    """Files visit, prescription and clinical notes as athenaOne encounter documents."""

    def __init__(self, ctx: DestinationContext):
        opts = kit.Options(ctx.options, f"destinations.{ctx.name}.options")
        self.settings, auth = read_settings(opts)
        self.v1, self.fhir = sessions(opts, self.settings, auth, ctx.config_dir)

    def send(self, delivery: Delivery) -> str:
        return kit.write_records(delivery, "athena", [
            (Encounter, lambda r, out: out.add(self.visit(r))),
            (Prescription, lambda r, out: out.add(self.prescription(r))),
            (ClinicalNote, lambda r, out: out.add(self.clinical_note(r)))])

    def close(self) -> None:
        self.v1.close()

    # -- records --

    def visit(self, encounter: Encounter) -> str:
        visit_number = self.visit_number(encounter, "Encounter")
        if encounter.status != "finished":
            return f"visit {encounter.status or 'unknown'}: the visit note is filed when the visit finishes"
        text = kit.visit_summary(encounter, visit_number)
        return self.file(encounter, kit.note_id_for_visit(visit_number), text, encounter)

    def prescription(self, rx: Prescription) -> str:
        visit_number = self.settings.systems.visit_number_of(rx.encounter)
        heading = f"Prescription written during telehealth visit {visit_number}" if visit_number \
            else "Prescription written on the telemedicine platform"
        text = f"{heading}\n{kit.prescription_line(rx)}"
        return self.file(rx, f"rx-{kit.prescription_key(rx)}", text, rx.encounter)

    def clinical_note(self, note: ClinicalNote) -> str:
        note_id = note.id or (note.identifiers[0].value if note.identifiers else None)
        if not note_id:
            raise PermanentDeliveryError("the ClinicalNote has no id or identifier: athenahealth has no "
                                         "idempotency key, so it could not be written once only")
        text = (f"{note.title}\n\n" if note.title else "") + (note.text or "")
        return self.file(note, f"note-{note_id}", text, note.encounter)

    def visit_number(self, encounter: Encounter | None, kind: str) -> str:
        number = self.settings.systems.visit_number_of(encounter)
        if not number:
            raise PermanentDeliveryError(f"the {kind} carries no visit number (type VN or system "
                                         f"{self.settings.systems.visit_number})")
        return number

    # -- athenaNet --

    def patient_id(self, record: Record) -> str:
        """athenaNet's patient id, from a practice-scoped FHIR search by MRN:
        ``GET /fhir/r4/Patient?identifier=…&ah-practice=…`` (both listed for Patient in athena's
        CapabilityStatement, https://api.platform.athenahealth.com/fhir/r4/metadata)."""
        mrn = self.settings.systems.mrn_of(record, f"{record.kind} for athenahealth")
        found = kit.find_one(self.fhir, "Patient",
                             [("identifier", kit.token(self.settings.systems.mrn, mrn)),
                              ("ah-practice", kit.plain(self.settings.ah_practice))],
                             "search Patient by MRN")
        if found is None:
            raise PermanentDeliveryError("search Patient by MRN: no athenaOne patient in this practice has the "
                                         f"MRN in {self.settings.systems.mrn} (check options.mrn_system)")
        match = FHIR_PATIENT_ID.match(str(found["id"]))
        if not match or match.group("practice") != self.settings.practice_id:
            raise PermanentDeliveryError("search Patient by MRN: the patient id is not a-{practice}.E-{id} of "
                                         "this practice; check options.practice_id")
        return match.group("patient")

    def encounter_id(self, encounter: Encounter | None) -> str | None:
        system = self.settings.encounter_id_system
        ident = kit.pick(encounter.identifiers, system, None) if encounter and system else None
        return ident.value if ident and ident.value.isdigit() else None

    def documents_path(self, patient: str) -> str:
        return f"patients/{patient}/documents/encounterdocument"

    def find_document(self, patient: str, note_id: str) -> str | None:
        """Our earlier document, by the marker athena keeps in its internal note: ``GET
        /v1/{practiceid}/patients/{patientid}/documents/encounterdocument?departmentid=…&documentsubclass=…``
        (Get list of patient's encounter documents,
        https://docs.athenahealth.com/api/api-ref/document-type-encounter-document)."""
        params = urlencode({"departmentid": self.settings.department_id,
                            "documentsubclass": self.settings.document_subclass})
        answer = self.v1.get_json(f"{self.documents_path(patient)}?{params}", "list encounter documents",
                                  headers={"Accept": JSON})
        found = [d for d in documents_in(answer) if marker(note_id) in str(d.get("internalnote") or "")]
        if len(found) > 1:
            raise PermanentDeliveryError(f"list encounter documents: {len(found)} documents carry one note id; "
                                         "resolve the duplicates in athenaOne")
        return str(found[0].get("encounterdocumentid") or found[0].get("documentid") or "?") if found else None

    def file(self, record: Record, note_id: str, text: str, encounter: Encounter | None) -> str:
        """Create the document once: ``POST /v1/{practiceid}/patients/{patientid}/documents/encounterdocument``,
        form-encoded ``departmentid``, ``documentsubclass``, ``documentdata``, ``internalnote`` and
        ``encounterid`` (Add encounter document to patient's chart,
        https://docs.athenahealth.com/api/api-ref/document-type-encounter-document), unless the list
        shows our marker; a lost answer is reconciled by listing again."""
        patient = self.patient_id(record)
        existing = self.find_document(patient, note_id)
        if existing:
            return f"encounter document {existing} exists"
        form = {"departmentid": self.settings.department_id,
                "documentsubclass": self.settings.document_subclass,
                "documentdata": text,
                "internalnote": f"Filed by Telemed Bridge {marker(note_id)}"}
        encounter_id = self.encounter_id(encounter)
        if encounter_id:
            form["encounterid"] = encounter_id

        def create() -> str:
            response = self.v1.call("POST", self.documents_path(patient), body=urlencode(form).encode("ascii"),
                                    content_type=FORM, headers={"Accept": JSON}, what="create encounter document")
            answer = response.json()
            if not isinstance(answer, dict) or str(answer.get("success", "")).lower() not in ("true", "1"):
                reason = answer.get("errormessage") if isinstance(answer, dict) else None
                raise PermanentDeliveryError("create encounter document: athenahealth did not confirm success"
                                             + (f" — {reason}" if reason else ""))
            return str(answer.get("encounterdocumentid") or "?")

        how, doc_id = kit.create_reconciled(create, lambda: self.find_document(patient, note_id),
                                            "create encounter document")
        return f"encounter document {doc_id} {how}"

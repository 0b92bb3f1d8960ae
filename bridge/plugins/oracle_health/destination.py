"""The ``oracle_health`` destination profile: Oracle Health (Cerner Millennium) FHIR R4.

What each record becomes there (every body is built in :mod:`.bodies`, which cites the page):

- an Encounter → ``POST Encounter`` with the tenant's encounter **type** from code set 71 for the
  visit's modality (``class`` cannot be written), a typed visit-number identifier, and the
  configured ``serviceProvider`` or ``location``; a later change is a JSON Patch with only the
  documented operations (``replace`` on ``/period/start``, ``/period/end``, ``/type``,
  ``/extension``; ``add`` on ``/extension/-``) under ``If-Match``. Status cannot be patched: a
  finished visit is its ``period.end``;
- a ClinicalNote → ``POST DocumentReference`` against the Oracle encounter, with ``context.period``;
- a Prescription → ``POST MedicationRequest`` that *documents* the medication (intent ``plan``,
  ``reportedBoolean``). Oracle Health is not an e-prescribing channel.

Idempotency: Millennium keeps an Encounter's identifiers (so the visit is found by its visit number)
but ignores ``identifier`` on DocumentReference and MedicationRequest. A note is found again by
encounter + type + the marker in its attachment title, a medication by patient + the marker
in its note; a create whose answer never came is reconciled by that same search.

Errors as documented (https://fhir.cerner.com/millennium/r4/#client-errors): 403 → configuration
error naming ``options.tenant``; 409 (stale ``If-Match``) → re-read and patch again; 500 whose
OperationOutcome says ``required`` → permanent at once, with the missing field named after our own
re-validation of the body; other 5xx, 429 and timeouts → retried. See ``docs/vendors.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge import (
    MODALITIES,
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
from bridge.plugins.fhir.rest import FhirResponse

from . import bodies, docs

log = logging.getLogger(__name__)

JSON_PATCH = "application/json-patch+json"
TENANT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ATTRIBUTE_ID = re.compile(r"^ENCNTR:\d+$")
WRITES = ("create ", "patch ")
"""How this plugin's write requests are named (``what``): only their 500 ``required`` is our fault."""
MAX_PAGES = 20
"""Pages of a search followed to find our earlier write (at 100 a page: 2,000 resources)."""
DEFAULT_SCOPE = ("system/Patient.read system/Encounter.read system/Encounter.write "
                 "system/DocumentReference.read system/DocumentReference.write "
                 "system/MedicationRequest.read system/MedicationRequest.write")


@dataclass(frozen=True)
class OracleSettings:
    tenant: str
    base: str
    environment: str
    systems: kit.IdentifierSystems
    encounter_types: Mapping[str, str]
    code_set_base: str
    modality_attribute: Mapping[str, Any]
    service_provider: str | None
    location: str | None
    options: Mapping[str, Any]

    def type_system(self) -> str:
        return f"{self.code_set_base}/{self.tenant}/codeSet/71"


def read_settings(opts: kit.Options, url: str = "", writes: bool = True) -> tuple[OracleSettings, dict[str, Any]]:
    tenant = opts.text("tenant", required=True) or ""
    if tenant and not TENANT.match(tenant):
        opts.problem("tenant", f"expected the tenant GUID (8-4-4-4-12 hex digits), got {tenant!r}")
    base = (opts.text("base_url") or (url[len("fhir+"):] if url.lower().startswith("fhir+") else url)
            or f"https://fhir-ehr.cerner.com/r4/{tenant}").rstrip("/")
    if tenant and tenant not in base:
        opts.problem("base_url", f"must be the tenant's base (…/r4/{tenant}), got {base!r}")
    environment, client_id = kit.client_id_for(opts)
    token_url = opts.text("token_url") or (
        f"https://authorization.cerner.com/tenants/{tenant}/protocols/oauth2/profiles/smart-v1/token")
    auth = kit.auth_mapping(opts, client_id, token_url=token_url,
                            scope=opts.text("scope", default=DEFAULT_SCOPE) or DEFAULT_SCOPE,
                            methods=("private_key_jwt", "client_secret_basic"))
    types = read_encounter_types(opts, writes)
    service_provider, location = read_place(opts, writes)
    settings = OracleSettings(
        tenant=tenant, base=base, environment=environment, systems=kit.IdentifierSystems.read(opts, required=writes),
        encounter_types=types, code_set_base=(opts.text("code_set_base") or "https://fhir.cerner.com").rstrip("/"),
        modality_attribute=read_attribute(opts), service_provider=service_provider, location=location,
        options=opts.raw)
    return settings, auth


def read_encounter_types(opts: kit.Options, writes: bool) -> dict[str, str]:
    types = opts.mapping("encounter_types")
    for key, value in types.items():
        if key not in (*MODALITIES, "default"):
            opts.problem(f"encounter_types.{key}", f"unknown modality (one of {', '.join(MODALITIES)}, default)")
        elif not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).isdigit():
            opts.problem(f"encounter_types.{key}", f"expected a code set 71 code value (digits), got {value!r}")
    if writes and not types:
        opts.problem("encounter_types", "is required: the code set 71 encounter type per modality "
                                        "(e.g. {video: '2560523697'}); Oracle derives class from it")
    return {k: str(v) for k, v in types.items()}


def read_place(opts: kit.Options, writes: bool) -> tuple[str | None, str | None]:
    """``service_provider`` (Organization id) or ``location`` (Location id): Encounter create
    requires one and refuses both (op-encounter-post)."""
    service_provider, location = opts.text("service_provider"), opts.text("location")
    if writes and not (service_provider or location):
        opts.problem("service_provider", "Encounter create requires serviceProvider or location: set "
                                         "service_provider (an Organization id) or location (a Location id); "
                                         f"see {docs.ENCOUNTER_CREATE}")
    if service_provider and location:
        opts.problem("location", "Millennium refuses location together with serviceProvider: set only one of "
                                 "service_provider and location")
    return service_provider, location


def read_attribute(opts: kit.Options) -> dict[str, Any]:
    """``modality_attribute: {id: "ENCNTR:<code>", name: "<attribute name>"}`` (optional)."""
    attribute = opts.mapping("modality_attribute")
    if not attribute:
        return {}
    if not ATTRIBUTE_ID.match(str(attribute.get("id") or "")):
        hint = f" (for code {attribute['code']}: id: ENCNTR:{attribute['code']})" if attribute.get("code") else ""
        opts.problem("modality_attribute.id", "is required as ENCNTR:<custom attribute code>, got "
                                              f"{attribute.get('id')!r}{hint}")
    if not attribute.get("name") or not isinstance(attribute.get("name"), str):
        opts.problem("modality_attribute.name", "is required (the custom attribute's name, sent as valueString)")
    return {"id": str(attribute.get("id") or ""), "name": str(attribute.get("name") or "")}


class RequiredFieldMissing(PermanentDeliveryError):
    """HTTP 500 with an OperationOutcome ``required``: Millennium's answer to a missing field
    (https://fhir.cerner.com/millennium/r4/#handling-required-fields). Sending the same body again
    cannot succeed, so it is permanent; the session names the field after re-validating."""


class OracleSession(kit.VendorSession):
    """Judges answers as Millennium documents them: 409 is the stale-version answer (not 412), and a
    500 saying ``required`` to a write is a permanent refusal of our body, not an outage. (A read's
    500 ``required`` means Millennium's own answer lacks a field: that stays transient.)"""

    def judge(self, response: FhirResponse, what: str) -> None:
        if response.status == 409:
            raise kit.VersionConflict(f"{what}: HTTP 409 — {kit.error_text(response) or 'stale version'} "
                                      "(the resource changed since it was read)")
        if response.status == 500 and what.startswith(WRITES) and says_required(response):
            raise RequiredFieldMissing(f"{what}: HTTP 500 — Millennium reports a missing required field "
                                       f"({kit.error_text(response) or 'required'}; {docs.REQUIRED_FIELDS})")
        super().judge(response, what)


def says_required(response: FhirResponse) -> bool:
    doc = response.json()
    issues = doc.get("issue") if isinstance(doc, dict) and doc.get("resourceType") == "OperationOutcome" else None
    return any(isinstance(i, dict) and i.get("code") == "required" for i in issues or [])


def make_session(opts: kit.Options, settings: OracleSettings, auth: Mapping[str, Any],
                 config_dir: str) -> OracleSession:
    http = kit.http_settings(opts, config_dir)
    opts.check()
    tokens = kit.tokens_for(opts, auth, settings.base, config_dir, http)
    errors = kit.VendorErrors(forbidden=f"Tenant not valid or accessible: check {opts.where}.tenant = "
                                        f"{settings.tenant} (and that client_ids.{settings.environment} is "
                                        "authorized for it)")
    return OracleSession(settings.base, tokens, http, errors)


def post_checked(session: OracleSession, rtype: str, body: dict[str, Any]) -> str:
    """Create after checking the documented required fields; a 500 ``required`` answer is re-checked
    so the dead letter names the field when we can see which one it is."""
    missing = bodies.missing_required(body)
    if missing:
        raise PermanentDeliveryError(f"create {rtype}: required field(s) {', '.join(missing)} missing; not sent")
    try:
        response = session.call("POST", rtype, body=kit.json_bytes(body), what=f"create {rtype}")
    except RequiredFieldMissing as exc:
        missing = bodies.missing_required(body)
        raise RequiredFieldMissing(f"{exc} — re-validated: "
                                   + (f"missing {', '.join(missing)}" if missing else
                                      "every documented required field is present; check the tenant's "
                                      "own required fields")) from None
    return kit.created_id(response, rtype, f"create {rtype}")


def titles_text(document: Mapping[str, Any]) -> str:
    """The attachment titles of a DocumentReference (where our note marker is kept)."""
    return "\n".join(str(((c or {}).get("attachment") or {}).get("title") or "") for c in document.get("content") or [])


def notes_text(medication: Mapping[str, Any]) -> str:
    """The note texts of a MedicationRequest (where our order marker is kept)."""
    return "\n".join(str((n or {}).get("text") or "") for n in medication.get("note") or [])


class OracleHealthDestination:
    """Creates and patches encounters, files notes and documents medications in Millennium."""

    def __init__(self, ctx: DestinationContext):
        opts = kit.Options(ctx.options, f"destinations.{ctx.name}.options")
        self.settings, auth = read_settings(opts, ctx.url)
        self.fhir = make_session(opts, self.settings, auth, ctx.config_dir)

    def send(self, delivery: Delivery) -> str:
        return kit.write_records(delivery, "oracle_health", [
            (Encounter, lambda r, out: out.add(self.encounter(r))),
            (Prescription, lambda r, out: out.add(self.medication(r))),
            (ClinicalNote, lambda r, out: out.add(self.note(r)))])

    def close(self) -> None:
        self.fhir.close()

    # -- lookups --

    def patient_id(self, record: Record) -> str:
        """``GET Patient?identifier=system|MRN`` (https://fhir.cerner.com/millennium/r4/base/individuals/patient/)."""
        mrn = self.settings.systems.mrn_of(record, f"{record.kind} for Oracle Health")
        found = kit.find_one(self.fhir, "Patient", [("identifier", kit.token(self.settings.systems.mrn, mrn))],
                             "search Patient by MRN")
        if found is None:
            raise PermanentDeliveryError("search Patient by MRN: no Millennium patient has this MRN in "
                                         f"{self.settings.systems.mrn} (check options.mrn_system)")
        return str(found["id"])

    def find_encounter(self, patient: str, visit_number: str) -> dict[str, Any] | None:
        """``GET Encounter?identifier=system|value``: https://fhir.cerner.com/millennium/r4/base/management/encounter/
        lists ``identifier`` as a search on its own; kept only if it is this patient's."""
        system = self.settings.systems.visit_number
        return kit.find_one(self.fhir, "Encounter", [("identifier", kit.token(system, visit_number))],
                            "search Encounter by visit number",
                            keep=lambda r: kit.has_identifier(r, system, visit_number)
                            and (r.get("subject") or {}).get("reference") == f"Patient/{patient}")

    def visit_number(self, encounter: Encounter | None, kind: str) -> str:
        number = self.settings.systems.visit_number_of(encounter)
        if not number:
            raise PermanentDeliveryError(f"the {kind} carries no visit number (type VN or system "
                                         f"{self.settings.systems.visit_number})")
        return number

    # -- encounters --

    def encounter_type(self, encounter: Encounter) -> dict[str, Any]:
        modality = encounter.modality or "default"
        code = self.settings.encounter_types.get(modality) or self.settings.encounter_types.get("default")
        if not code:
            raise PermanentDeliveryError(f"no Oracle encounter type for modality {modality!r}: set "
                                         f"options.encounter_types.{modality} (a code set 71 value)")
        return {"coding": [{"system": self.settings.type_system(), "code": code, "userSelected": True}]}

    def period(self, encounter: Encounter | None) -> dict[str, str]:
        period = encounter.period if encounter else None
        if not period:
            return {}
        out = {k: kit.record_date(v, f"Encounter.period.{k}", self.settings.options)
               for k, v in (("start", period.start), ("end", period.end))}
        return {k: v for k, v in out.items() if v}

    def encounter(self, encounter: Encounter) -> str:
        visit_number = self.visit_number(encounter, "Encounter")
        patient = self.patient_id(encounter)
        found = self.find_encounter(patient, visit_number)
        if found is not None:
            return self.patch_encounter(encounter, found)
        if encounter.status in ("cancelled", "entered-in-error"):
            return f"visit {encounter.status} and never created: nothing to write"
        body = bodies.encounter_body(self.settings, encounter, patient, visit_number,
                                     self.encounter_type(encounter), self.period(encounter))
        how, new_id = kit.create_reconciled(
            lambda: post_checked(self.fhir, "Encounter", body),
            lambda: (self.find_encounter(patient, visit_number) or {}).get("id"), "create Encounter")
        return f"Encounter/{new_id} {how}"

    def patch_encounter(self, encounter: Encounter, found: dict[str, Any]) -> str:
        """JSON Patch under ``If-Match``
        (https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap/op-encounter-id-patch.html);
        a 409 (https://fhir.cerner.com/millennium/r4/#client-errors) re-reads and patches once more."""
        enc_id = str(found["id"])
        if encounter.status in ("cancelled", "entered-in-error"):
            return (f"Encounter/{enc_id}: status {encounter.status} cannot be patched in Millennium "
                    "(only period, type and extensions); left as is")

        def ops_for(current: Mapping[str, Any]) -> list[dict[str, Any]]:
            return bodies.encounter_patch_ops(self.settings, encounter, current, self.encounter_type(encounter),
                                              self.period(encounter))

        def attempt(current: dict[str, Any], etag: str | None) -> str:
            ops = ops_for(current)
            if ops and not etag:  # If-Match is required on PATCH: read the version first
                current, etag = kit.read_resource(self.fhir, "Encounter", enc_id)
                if not etag:
                    raise TransientDeliveryError(f"read Encounter/{enc_id}: no ETag or meta.versionId to patch "
                                                 "against")
                ops = ops_for(current)
            if not ops:
                return f"Encounter/{enc_id} unchanged"
            self.fhir.call("PATCH", f"Encounter/{enc_id}", body=kit.json_bytes(ops), content_type=JSON_PATCH,
                           headers={"If-Match": etag}, what="patch Encounter")
            return f"Encounter/{enc_id} patched ({', '.join(op['op'] + ' ' + op['path'] for op in ops)})"

        return kit.with_conflict_retry(attempt, found, kit.etag_from_resource(found),
                                       lambda: kit.read_resource(self.fhir, "Encounter", enc_id), "patch Encounter")

    def encounter_of(self, encounter: Encounter | None, patient: str, kind: str,
                     required: bool) -> dict[str, Any] | None:
        number = self.settings.systems.visit_number_of(encounter)
        found = self.find_encounter(patient, number) if number else None
        if found is None and required:
            raise TransientDeliveryError(f"the {kind}'s visit is not in Millennium yet (no encounter with its visit "
                                         "number); will try again after the visit is written")
        return found

    # -- notes and medications --

    def note(self, note: ClinicalNote) -> str:
        note_key = note.id or (note.identifiers[0].value if note.identifiers else None)
        if not note_key:
            raise PermanentDeliveryError("the ClinicalNote has no id or identifier: Millennium ignores identifiers "
                                         "on DocumentReference, so it could not be found again after a redelivery")
        patient = self.patient_id(note)
        encounter = self.encounter_of(note.encounter, patient, "ClinicalNote", required=True) or {}
        authored = kit.record_date(note.authored, "ClinicalNote.authored", self.settings.options)
        period = self.note_period(note, encounter, authored)
        body = bodies.note_body(note, note_key, patient, str(encounter["id"]), period, authored)
        tag = bodies.marker(bodies.NOTE_MARKER, note_key)
        code = body["type"]["coding"][0]

        def find() -> str | None:
            params = [("patient", kit.plain(patient)), ("encounter", kit.plain(str(encounter["id"]))),
                      ("type", kit.token(code["system"], code["code"])), ("_count", "100")]
            match = self.find_marked("DocumentReference", params, lambda r: tag in titles_text(r))
            return str(match["id"]) if match else None

        return self.create_once("DocumentReference", body, find)

    def note_period(self, note: ClinicalNote, oracle_encounter: Mapping[str, Any],
                    authored: str | None) -> dict[str, str]:
        """``context.period`` needs ``end``: the visit's end as we know it, else Millennium's, else
        the note's authored time."""
        ours = self.period(note.encounter)
        theirs = oracle_encounter.get("period") or {}
        end = ours.get("end") or theirs.get("end") or authored
        if not end:
            raise PermanentDeliveryError("the ClinicalNote has no visit end or authored time: DocumentReference "
                                         f"create requires context.period.end ({docs.DOCUMENT_CREATE})")
        start = ours.get("start") or theirs.get("start")
        return {**({"start": start} if start else {}), "end": end}

    def medication(self, rx: Prescription) -> str:
        order = kit.prescription_key(rx)
        patient = self.patient_id(rx)
        encounter = self.encounter_of(rx.encounter, patient, "Prescription", required=False)
        body = bodies.medication_body(rx, order, patient, str(encounter["id"]) if encounter else None)
        tag = bodies.marker(bodies.RX_MARKER, order)

        def find() -> str | None:
            match = self.find_marked("MedicationRequest", [("patient", kit.plain(patient)), ("_count", "100")],
                                     lambda r: tag in notes_text(r))
            return str(match["id"]) if match else None

        return self.create_once("MedicationRequest", body, find)

    def find_marked(self, rtype: str, params: list[tuple[str, str]],
                    keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """Our earlier write among a search's results, following ``Bundle.link[next]`` on the tenant's
        base (a patient's medication list can run to many pages); several are a permanent error.
        Searches: https://fhir.cerner.com/millennium/r4/foundation/documents/document-reference/ (patient,
        encounter, type, ``_count`` up to 100) and
        https://fhir.cerner.com/millennium/r4/clinical/medications/medication-request/ (patient, ``_count``)."""
        what, found = f"search {rtype}", []
        path: str | None = f"{rtype}?{kit.query(params)}"
        for _ in range(MAX_PAGES):
            doc = self.fhir.get_json(path, what) if path else None
            if doc is None:
                break
            found += [r for r in kit.matches(doc, rtype, what) if keep(r)]
            path = next((link.get("url") for link in doc.get("link") or []
                         if isinstance(link, dict) and link.get("relation") == "next"), None)
            if path and not str(path).startswith(self.settings.base + "/"):
                raise TransientDeliveryError(f"{what}: a next link off the tenant's base; not followed")
        if len(found) > 1:
            raise PermanentDeliveryError(f"{what}: {len(found)} {rtype} resources carry our marker; resolve the "
                                         "duplicates in the EHR")
        return found[0] if found else None

    def create_once(self, rtype: str, body: dict[str, Any], find: Any) -> str:
        """Search for our earlier write (by what Millennium keeps); create only if absent; reconcile
        a create whose answer never came with the same search."""
        existing = find()
        if existing:
            return f"{rtype}/{existing} exists"
        how, new_id = kit.create_reconciled(lambda: post_checked(self.fhir, rtype, body), find, f"create {rtype}")
        return f"{rtype}/{new_id} {how}"

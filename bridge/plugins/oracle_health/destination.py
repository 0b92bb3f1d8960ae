"""The ``oracle_health`` destination profile: Oracle Health (Cerner Millennium) FHIR R4.

What each record becomes there:

- an Encounter → ``POST Encounter`` with the tenant's encounter **type** from code set 71 for the
  visit's modality (``class`` cannot be written: Millennium infers it from the type), the
  custom-attribute extension carrying the modality when configured; a later change of status or
  period is a JSON Patch (``application/json-patch+json``) on the allowed paths ``/status``,
  ``/period/start`` and ``/period/end`` under ``If-Match`` (412 → re-read, patch again once);
- a ClinicalNote → ``POST DocumentReference`` (base64 ``text/plain``) against the Oracle encounter;
- a Prescription → ``POST MedicationRequest`` that *documents* the medication the telemedicine
  platform prescribed (intent ``plan``, ``reportedBoolean``). Oracle Health is not an e-prescribing
  channel: the prescription itself travels to the pharmacy over NCPDP SCRIPT.

The tenant GUID is part of the base URL; a wrong tenant answers 403 "Tenant not valid or
accessible", reported as a configuration error naming ``options.tenant``. Millennium has no
conditional create: every create searches on our identifiers first and a create whose answer never
came is reconciled by searching again. See ``docs/vendors.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
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

log = logging.getLogger(__name__)

JSON_PATCH = "application/json-patch+json"
CUSTOM_ATTRIBUTE = "https://fhir-ehr.cerner.com/r4/StructureDefinition/custom-attribute"
PATCHABLE = ("/status", "/period/start", "/period/end")
TENANT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_SCOPE = ("system/Patient.read system/Encounter.read system/Encounter.write "
                 "system/DocumentReference.read system/DocumentReference.write "
                 "system/MedicationRequest.read system/MedicationRequest.write")
MED_CATEGORY = {"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "community",
                "display": "Community"}
NOTE_TYPE = {"system": kit.LOINC, "code": "11506-3", "display": "Progress note"}


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
    types = opts.mapping("encounter_types")
    for key, value in types.items():
        if key not in (*MODALITIES, "default"):
            opts.problem(f"encounter_types.{key}", f"unknown modality (one of {', '.join(MODALITIES)}, default)")
        elif not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).isdigit():
            opts.problem(f"encounter_types.{key}", f"expected a code set 71 code value (digits), got {value!r}")
    if writes and not types:
        opts.problem("encounter_types", "is required: the code set 71 encounter type per modality "
                                        "(e.g. {video: '2560523697'}); Oracle derives class from it")
    attribute = opts.mapping("modality_attribute")
    if attribute and not attribute.get("code"):
        opts.problem("modality_attribute.code", "is required (the custom attribute's code value)")
    settings = OracleSettings(
        tenant=tenant, base=base, environment=environment, systems=kit.IdentifierSystems.read(opts, required=writes),
        encounter_types={k: str(v) for k, v in types.items()},
        code_set_base=(opts.text("code_set_base") or "https://fhir.cerner.com").rstrip("/"),
        modality_attribute=attribute, service_provider=opts.text("service_provider"), options=opts.raw)
    return settings, auth


def make_session(opts: kit.Options, settings: OracleSettings, auth: Mapping[str, Any],
                 config_dir: str) -> kit.VendorSession:
    http = kit.http_settings(opts, config_dir)
    opts.check()
    tokens = kit.tokens_for(opts, auth, settings.base, config_dir, http)
    errors = kit.VendorErrors(forbidden=f"Tenant not valid or accessible: check {opts.where}.tenant = "
                                        f"{settings.tenant} (and that client_ids.{settings.environment} is "
                                        "authorized for it)")
    return kit.VendorSession(settings.base, tokens, http, errors)


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
        mrn = self.settings.systems.mrn_of(record, f"{record.kind} for Oracle Health")
        found = kit.find_one(self.fhir, "Patient", [("identifier", kit.token(self.settings.systems.mrn, mrn))],
                             "search Patient by MRN")
        if found is None:
            raise PermanentDeliveryError("search Patient by MRN: no Millennium patient has this MRN in "
                                         f"{self.settings.systems.mrn} (check options.mrn_system)")
        return str(found["id"])

    def find_encounter(self, patient: str, visit_number: str) -> dict[str, Any] | None:
        system = self.settings.systems.visit_number
        return kit.find_one(self.fhir, "Encounter",
                            [("patient", kit.plain(patient)), ("identifier", kit.token(system, visit_number))],
                            "search Encounter by visit number",
                            keep=lambda r: kit.has_identifier(r, system, visit_number))

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

    def modality_extension(self, encounter: Encounter) -> list[dict[str, Any]]:
        attribute = self.settings.modality_attribute
        if not attribute or not encounter.modality:
            return []
        code_set = attribute.get("code_set", 100026)
        name = {"coding": [{"system": f"{self.settings.code_set_base}/{self.settings.tenant}/codeSet/{code_set}",
                            "code": str(attribute["code"])}]}
        return [{"url": CUSTOM_ATTRIBUTE, "extension": [
            {"url": "custom-attribute-name", "valueCodeableConcept": name},
            {"url": "custom-attribute-value", "valueString": encounter.modality}]}]

    def period(self, encounter: Encounter) -> dict[str, str]:
        period = encounter.period
        if not period:
            return {}
        out = {k: kit.record_date(v, f"Encounter.period.{k}", self.settings.options)
               for k, v in (("start", period.start), ("end", period.end))}
        return {k: v for k, v in out.items() if v}

    def encounter_body(self, encounter: Encounter, patient: str, visit_number: str) -> dict[str, Any]:
        body: dict[str, Any] = {"resourceType": "Encounter"}
        extension = self.modality_extension(encounter)
        if extension:
            body["extension"] = extension
        body.update({
            "identifier": [{"system": self.settings.systems.visit_number, "value": visit_number}],
            "status": encounter.status or "in-progress",
            "type": [self.encounter_type(encounter)],
            "subject": {"reference": f"Patient/{patient}"},
        })
        period = self.period(encounter)
        if period:
            body["period"] = period
        if self.settings.service_provider:
            body["serviceProvider"] = {"reference": f"Organization/{self.settings.service_provider}"}
        return body

    def encounter(self, encounter: Encounter) -> str:
        visit_number = self.visit_number(encounter, "Encounter")
        patient = self.patient_id(encounter)
        found = self.find_encounter(patient, visit_number)
        if found is None:
            if encounter.status in ("cancelled", "entered-in-error"):
                return f"visit {encounter.status} and never created: nothing to write"
            body = self.encounter_body(encounter, patient, visit_number)

            def create() -> str:
                response = self.fhir.call("POST", "Encounter", body=kit.json_bytes(body), what="create Encounter")
                return kit.created_id(response, "Encounter", "create Encounter")

            how, new_id = kit.create_reconciled(
                create, lambda: (self.find_encounter(patient, visit_number) or {}).get("id"), "create Encounter")
            return f"Encounter/{new_id} {how}"
        return self.patch_encounter(encounter, found)

    def patch_ops(self, encounter: Encounter, current: Mapping[str, Any]) -> list[dict[str, Any]]:
        """JSON Patch operations on the allowed paths that bring ``current`` to the record."""
        wanted = {"/status": encounter.status}
        period = self.period(encounter)
        wanted.update({"/period/start": period.get("start"), "/period/end": period.get("end")})
        have = {"/status": current.get("status"),
                "/period/start": (current.get("period") or {}).get("start"),
                "/period/end": (current.get("period") or {}).get("end")}
        ops = []
        if (wanted["/period/start"] or wanted["/period/end"]) and not current.get("period"):
            ops.append({"op": "add", "path": "/period", "value": {k[len('/period/'):]: v for k, v in wanted.items()
                                                                  if k.startswith("/period/") and v}})
            wanted = {"/status": wanted["/status"]}
        for path in PATCHABLE:
            if path in wanted and wanted[path] and wanted[path] != have[path]:
                ops.append({"op": "replace" if have[path] else "add", "path": path, "value": wanted[path]})
        return ops

    def patch_encounter(self, encounter: Encounter, found: dict[str, Any]) -> str:
        enc_id = str(found["id"])

        def attempt(current: dict[str, Any], etag: str | None) -> str:
            ops = self.patch_ops(encounter, current)
            if not ops:
                return f"Encounter/{enc_id} unchanged"
            if not etag:  # Millennium requires If-Match on PATCH: read the version first
                current, etag = kit.read_resource(self.fhir, "Encounter", enc_id)
                ops = self.patch_ops(encounter, current)
            self.fhir.call("PATCH", f"Encounter/{enc_id}", body=kit.json_bytes(ops), content_type=JSON_PATCH,
                           headers={"If-Match": etag} if etag else {}, what="patch Encounter")
            return f"Encounter/{enc_id} patched ({', '.join(op['path'] for op in ops)})"

        return kit.with_conflict_retry(attempt, found, kit.etag_from_resource(found),
                                       lambda: kit.read_resource(self.fhir, "Encounter", enc_id), "patch Encounter")

    def encounter_ref(self, encounter: Encounter | None, patient: str, kind: str,
                      required: bool) -> dict[str, str] | None:
        number = self.settings.systems.visit_number_of(encounter)
        found = self.find_encounter(patient, number) if number else None
        if found is None and required:
            raise TransientDeliveryError(f"the {kind}'s visit is not in Millennium yet (no encounter with its visit "
                                         "number); will try again after the visit is written")
        return {"reference": f"Encounter/{found['id']}"} if found else None

    # -- notes and medications --

    def note(self, note: ClinicalNote) -> str:
        note_id = note.id or (note.identifiers[0].value if note.identifiers else None)
        if not note_id:
            raise PermanentDeliveryError("the ClinicalNote has no id or identifier: Millennium has no conditional "
                                         "create, so it could not be written idempotently")
        patient = self.patient_id(note)
        encounter = self.encounter_ref(note.encounter, patient, "ClinicalNote", required=True)
        note_type = note.note_type if note.note_type and note.note_type.system == kit.LOINC else None
        coding = {"system": kit.LOINC, "code": note_type.code} if note_type else dict(NOTE_TYPE)
        body: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "identifier": [{"system": kit.NOTE_ID_SYSTEM, "value": note_id}],
            "status": "current", "docStatus": "final" if note.status in (None, "final") else "preliminary",
            "type": {"coding": [coding]},
            "subject": {"reference": f"Patient/{patient}"},
        }
        date = kit.record_date(note.authored, "ClinicalNote.authored", self.settings.options)
        if date:
            body["date"] = date
        body["content"] = [{"attachment": {"contentType": note.content_type or "text/plain",
                                           "data": kit.b64_text(note.text or ""),
                                           **({"title": note.title} if note.title else {})}}]
        body["context"] = {"encounter": [encounter]}
        return self.create_once("DocumentReference", body, patient, kit.NOTE_ID_SYSTEM, note_id)

    def medication(self, rx: Prescription) -> str:
        order = kit.prescription_key(rx)
        patient = self.patient_id(rx)
        encounter = self.encounter_ref(rx.encounter, patient, "Prescription", required=False)
        med = rx.medication
        concept: dict[str, Any] = {"text": (med.description if med else None) or "unnamed medication"}
        if med and med.rxnorm:
            concept["coding"] = [{"system": kit.RXNORM, "code": med.rxnorm,
                                  **({"display": med.description} if med.description else {})}]
        body: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "identifier": [{"system": kit.ORDER_NUMBER_SYSTEM, "value": order}],
            "status": "active", "intent": "plan",
            "category": [{"coding": [MED_CATEGORY]}],
            "reportedBoolean": True,
            "medicationCodeableConcept": concept,
            "subject": {"reference": f"Patient/{patient}"},
        }
        if encounter:
            body["encounter"] = encounter
        authored = kit.record_date(rx.written_date, "Prescription.written_date", self.settings.options)
        if authored:
            body["authoredOn"] = authored
        if rx.sig:
            body["dosageInstruction"] = [{"text": rx.sig}]
        dispense: dict[str, Any] = {}
        if rx.quantity:
            dispense["quantity"] = {"value": rx.quantity.value, **({"unit": rx.quantity.unit}
                                                                    if rx.quantity.unit else {})}
        if rx.refills is not None:
            dispense["numberOfRepeatsAllowed"] = rx.refills
        if dispense:
            body["dispenseRequest"] = dispense
        body["note"] = [{"text": f"Prescribed on the telemedicine platform (order {order}) and sent to the "
                                 "pharmacy by it; documented here, not e-prescribed from Millennium."}]
        return self.create_once("MedicationRequest", body, patient, kit.ORDER_NUMBER_SYSTEM, order)

    def create_once(self, rtype: str, body: dict[str, Any], patient: str, system: str, value: str) -> str:
        """Search the patient's resources for our identifier; create only if absent (reconciled)."""
        def find() -> str | None:
            match = kit.find_one(self.fhir, rtype, [("patient", kit.plain(patient))], f"search {rtype}",
                                 keep=lambda r: kit.has_identifier(r, system, value))
            return str(match["id"]) if match else None

        existing = find()
        if existing:
            return f"{rtype}/{existing} exists"

        def create() -> str:
            response = self.fhir.call("POST", rtype, body=kit.json_bytes(body), what=f"create {rtype}")
            return kit.created_id(response, rtype, f"create {rtype}")

        how, new_id = kit.create_reconciled(create, find, f"create {rtype}")
        return f"{rtype}/{new_id} {how}"

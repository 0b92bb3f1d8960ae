"""Each canonical record as one FHIR R4 resource, and back.

``*_out`` functions build a resource from a record; nested records become references through the
writer (``w.ref``), which adds them to the Bundle. ``*_in`` functions read a resource through a
:class:`~.reader.Node`; references are resolved through the reader (``r.follow``). The mapping
tables are in ``docs/fhir.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import binascii
import json
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from bridge import (
    MODALITIES,
    REMOTE_MODALITIES,
    AllergyIntolerance,
    Appointment,
    ClinicalNote,
    Coding,
    Condition,
    Coverage,
    DecodeError,
    DEARegistration,
    DiagnosticReport,
    Identifier,
    EncodeError,
    Encounter,
    HumanName,
    Immunization,
    Location,
    Medication,
    MedicationAdministration,
    Observation,
    Organization,
    Patient,
    PatientLink,
    PatientLocation,
    Pharmacy,
    Practitioner,
    Prescription,
    PrescriptionEvent,
    PractitionerRole,
    Record,
    RelatedPerson,
    ServiceRequest,
    SignatureEvidence,
    Specimen,
    StateLicense,
    keys_of,
)
from bridge import (
    ALLERGY_CATEGORIES,
    ALLERGY_CLINICAL_STATUSES,
    ALLERGY_VERIFICATION_STATUSES,
    CONDITION_CATEGORIES,
    CONDITION_CLINICAL_STATUSES,
    CONDITION_VERIFICATION_STATUSES,
    COVERAGE_STATUSES,
    PATIENT_LINK_TYPES,
    SUBSCRIBER_RELATIONSHIPS,
)

from . import constants as C
from .datatypes import (
    address_in,
    address_out,
    code_out,
    coding_in,
    coding_out,
    compact,
    complex_ext,
    concept_in,
    concept_out,
    concepts_in,
    ext,
    ext_nodes,
    ext_value,
    fhir_datetime,
    identifier_in,
    identifier_out,
    name_in,
    name_out,
    period_in,
    period_out,
    quantity_in,
    quantity_out,
    telecom_in,
    telecom_out,
)
from .keep import FHIR
from .reader import Node
from .systems import system_name, system_uri
from .results import observation_in, observation_out, report_in, report_out

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

DEA_SCHEDULE_CODES = ("CI", "CII", "CIII", "CIV", "CV", "none")
ENCOUNTER_STATUSES = ("planned", "arrived", "in-progress", "finished", "cancelled", "entered-in-error")
DOC_STATUSES = ("preliminary", "final", "amended", "entered-in-error")
FILL_TO_STATUS = {"Dispensed": "completed", "PartiallyDispensed": "in-progress",
                  "NotDispensed": "declined", "Transferred": "stopped"}
STATUS_TO_FILL = {v: k for k, v in FILL_TO_STATUS.items()}
PRIMARY_PERFORMER = {"coding": [{"system": C.PARTICIPATION_TYPE, "code": "PPRF"}]}
DEFAULT_NOTE_TYPE = "text/plain"


# --- shared parts ------------------------------------------------------------------------------


def order_system(options: Any) -> str:
    """Identifier system of the prescriber order number (per channel: EHRs have their own)."""
    return str(options.get("order_number_system") or C.SID_ORDER_NUMBER)


def identifiers_out(rec: Any, *specific: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Our record id first (as an identifier, so conditional writes can match on it), then the
    type-specific identifiers (NPI, NCPDP, order number), then the record's own."""
    ids = [{"system": C.SID_RECORD_ID, "value": rec.id}] if getattr(rec, "id", None) else []
    ids += [s for s in specific if s]
    ids += [identifier_out(i) for i in getattr(rec, "identifiers", [])]
    return ids


def common_extensions(rec: Record, *exts: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The record's own extensions plus ``record-extra``: what other formats left in ``extra``."""
    found = [e for e in exts if e]
    others = {k: v for k, v in getattr(rec, "extra", {}).items() if k != FHIR}
    if others:
        found.append(ext(C.EXT_RECORD_EXTRA, "String",
                         json.dumps(others, sort_keys=True, ensure_ascii=False, separators=(",", ":"))))
    return found


def record_extra_in(node: Node) -> dict[str, Any]:
    text = ext_value(node, C.EXT_RECORD_EXTRA, "String")
    if text is None:
        return {}
    try:
        extra = json.loads(text)
    except json.JSONDecodeError:
        raise DecodeError("record-extra extension is not JSON", node.at("extension")) from None
    if not isinstance(extra, dict):
        raise DecodeError("record-extra extension must hold a JSON object", node.at("extension"))
    return extra


def split_identifiers(node: Node, *systems: str) -> tuple[dict[str, str], list[Any]]:
    """Pull the first identifier of each given system out of the list; return the rest as records'."""
    found: dict[str, str] = {}
    rest = []
    for item in node.list("identifier"):
        system = item.str("system")
        if system in systems and system not in found and item.str("value"):
            found[system] = item.str("value")  # type: ignore[assignment]
        else:
            rest.append(identifier_in(item))
    return found, rest


def record_id(node: Node, found: dict[str, str]) -> str | None:
    """Our record id, else the resource's logical id (e.g. a server's id in a searchset)."""
    return found.get(C.SID_RECORD_ID) or node.str("id")


def choice(value: str | None, allowed: tuple[str, ...], path: str) -> str | None:
    if value is not None and value not in allowed:
        raise DecodeError(f"expected one of {', '.join(allowed)}, got {value!r}", path)
    return value


def reference_ids(node: Node | None) -> str | None:
    """The value of a logical reference (``{"identifier": {…}}``) or the id of a literal one."""
    if node is None:
        return None
    ident = node.obj("identifier")
    if ident is not None:
        return ident.str("value")
    ref = node.str("reference") or ""
    return ref.rsplit("/", 1)[-1] or None


# --- Patient, Practitioner, Organization ---------------------------------------------------------


def patient_out(rec: Patient, w: Writer) -> dict[str, Any]:
    return compact({
        "resourceType": "Patient",
        "extension": common_extensions(rec),
        "identifier": identifiers_out(rec),
        "name": name_out(rec.name),
        "telecom": [telecom_out(t) for t in rec.telecom],
        "gender": rec.gender,
        **birth_out(rec.birth_date, w),
        "address": [address_out(a) for a in rec.addresses],
        "link": links_out(rec),
    })


def birth_out(value: str | None, w: Writer) -> dict[str, Any]:
    """A birth date; a birth *time* (common in HL7v2 PID-7) goes in FHIR's patient-birthTime."""
    if value is None or "T" not in value:
        return {"birthDate": fhir_datetime(value, "Patient.birth_date", w.options, date_only=True)}
    moment = fhir_datetime(value, "Patient.birth_date", w.options)
    return {"birthDate": value[:10], "_birthDate": {"extension": [ext(C.BIRTH_TIME, "DateTime", moment)]}}


def birth_in(node: Node) -> str | None:
    date = node.datetime("birthDate", date_only=True)
    primitive = node.obj("_birthDate")
    moment = ext_value(primitive, C.BIRTH_TIME, "DateTime") if primitive else None
    return moment if moment and date and moment.startswith(date) else date


def patient_in(node: Node, r: Reader) -> Patient:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID)
    return Patient(
        id=record_id(node, found), identifiers=identifiers, name=name_in(node.list("name")),
        birth_date=birth_in(node),
        gender=choice(node.str("gender"), ("male", "female", "other", "unknown"), node.at("gender")),
        addresses=[address_in(a) for a in node.list("address")],
        telecom=[telecom_in(t) for t in node.list("telecom")], links=links_in(node),
        extra=record_extra_in(node))


def qualification_out(code: str, system: str, number: str | None, state: str | None,
                      expires: str | None, schedules: list[str], w: Writer) -> dict[str, Any]:
    return compact({
        "extension": [e for e in [ext(C.EXT_STATE, "String", state)]
                      + [ext(C.EXT_DEA_SCHEDULE, "Code", s) for s in schedules] if e],
        "identifier": [{"system": system, "value": number}] if number else [],
        "code": {"coding": [{"system": C.CS_QUALIFICATION, "code": code}]},
        "period": compact({"end": fhir_datetime(expires, f"Practitioner.{code}.expires", w.options)}),
    })


def practitioner_out(rec: Practitioner, w: Writer) -> dict[str, Any]:
    quals = [qualification_out("dea-registration", C.SID_DEA, d.number, d.state, d.expires,
                               d.schedules, w) for d in rec.dea_registrations]
    quals += [qualification_out("state-license", C.SID_STATE_LICENSE, lic.number, lic.state,
                                lic.expires, [], w) for lic in rec.licenses]
    return compact({
        "resourceType": "Practitioner",
        "extension": common_extensions(rec),
        "identifier": identifiers_out(rec, {"system": C.NPI, "value": rec.npi} if rec.npi else None),
        "name": name_out(rec.name),
        "telecom": [telecom_out(t) for t in rec.telecom],
        "address": [address_out(a) for a in rec.addresses],
        "qualification": quals,
    })


def _qualification_code(node: Node) -> str | None:
    code = node.obj("code")
    for coding in code.list("coding") if code else []:
        if coding.str("system") == C.CS_QUALIFICATION:
            return coding.str("code")
    return None


def practitioner_in(node: Node, r: Reader) -> Practitioner:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, C.NPI)
    deas, licenses = [], []
    for qual in node.list("qualification"):
        code = _qualification_code(qual)
        if code not in ("dea-registration", "state-license"):
            continue
        idents = qual.list("identifier")
        number = idents[0].str("value") if idents else None
        state = ext_value(qual, C.EXT_STATE, "String")
        period = qual.obj("period")
        expires = period.datetime("end") if period else None
        if code == "dea-registration":
            schedules = [s.str("valueCode") or "" for s in ext_nodes(qual, C.EXT_DEA_SCHEDULE)]
            deas.append(DEARegistration(number=number or "", state=state, schedules=schedules,
                                        expires=expires))
        else:
            licenses.append(StateLicense(state=state or "", number=number, expires=expires))
    return Practitioner(
        id=record_id(node, found), npi=found.get(C.NPI), identifiers=identifiers,
        name=name_in(node.list("name")), dea_registrations=deas, licenses=licenses,
        addresses=[address_in(a) for a in node.list("address")],
        telecom=[telecom_in(t) for t in node.list("telecom")], extra=record_extra_in(node))


def pharmacy_out(rec: Pharmacy, w: Writer) -> dict[str, Any]:
    return compact({
        "resourceType": "Organization",
        "extension": common_extensions(rec, ext(C.EXT_EPCS_CAPABLE, "Boolean", rec.epcs_capable)),
        "identifier": identifiers_out(
            rec, {"system": C.NCPDP, "value": rec.ncpdp_id} if rec.ncpdp_id else None,
            {"system": C.NPI, "value": rec.npi} if rec.npi else None),
        "name": rec.name,
        "telecom": [telecom_out(t) for t in rec.telecom],
        "address": [address_out(rec.address)] if rec.address else [],
    })


def pharmacy_in(node: Node, r: Reader) -> Pharmacy:
    found, _ = split_identifiers(node, C.SID_RECORD_ID, C.NCPDP, C.NPI)
    addresses = node.list("address")
    return Pharmacy(
        id=record_id(node, found), ncpdp_id=found.get(C.NCPDP), npi=found.get(C.NPI),
        name=node.str("name"), address=address_in(addresses[0]) if addresses else None,
        telecom=[telecom_in(t) for t in node.list("telecom")],
        epcs_capable=ext_value(node, C.EXT_EPCS_CAPABLE, "Boolean"), extra=record_extra_in(node))


# --- Medication --------------------------------------------------------------------------------


def medication_codings(rec: Medication) -> list[dict[str, Any]]:
    codings = [{"system": C.RXNORM, "code": rec.rxnorm}] if rec.rxnorm else []
    codings += [{"system": C.NDC, "code": rec.ndc}] if rec.ndc else []
    return codings + [coding_out(c) for c in rec.codings]


def medication_out(rec: Medication, w: Writer) -> dict[str, Any]:
    return compact({
        "resourceType": "Medication",
        "extension": common_extensions(rec, ext(C.EXT_DEA_SCHEDULE, "Code", rec.dea_schedule),
                                       ext(C.EXT_STRENGTH, "String", rec.strength)),
        "code": compact({"coding": medication_codings(rec), "text": rec.description}),
        "form": {"text": rec.form} if rec.form else None,
        "ingredient": [{"itemCodeableConcept": {"coding": [coding_out(c)]}} for c in rec.ingredients],
    })


def medication_in(node: Node, r: Reader) -> Medication:
    rxnorm = ndc = None
    codings = []
    code = node.obj("code")
    for coding in code.list("coding") if code else []:
        system, value = coding.str("system"), coding.str("code")
        if system == C.RXNORM and rxnorm is None and value:
            rxnorm = value
        elif system == C.NDC and ndc is None and value:
            ndc = value
        else:
            codings.append(coding_in(coding))
    description = code.str("text") if code else None
    if description is None and code is not None:
        description = next((c.str("display") for c in code.list("coding") if c.str("display")), None)
    form = concept_in(node.obj("form"))
    schedule = ext_value(node, C.EXT_DEA_SCHEDULE, "Code")
    return Medication(
        description=description, rxnorm=rxnorm, ndc=ndc, codings=codings,
        ingredients=ingredients_in(node),
        dea_schedule=choice(schedule, DEA_SCHEDULE_CODES, node.at("extension(dea-schedule)")),
        strength=ext_value(node, C.EXT_STRENGTH, "String"),
        form=(form.display or form.code or None) if form else None, extra=record_extra_in(node))


def ingredients_in(node: Node) -> list[Coding]:
    """Medication.ingredient codings (itemCodeableConcept, first coding each; a referenced
    Substance or Medication is not followed): the gate matches the schedule table by them."""
    out = []
    for part in node.list("ingredient"):
        concept = part.obj("itemCodeableConcept")
        codings = concept.list("coding") if concept else []
        if codings:
            out.append(coding_in(codings[0]))
    return out


# --- Encounter and Appointment -------------------------------------------------------------------


def derived_class(modality: str | None) -> str:
    """The class a modality implies: VR for remote care, AMB for in-person or unknown."""
    return "VR" if modality in REMOTE_MODALITIES else "AMB"


def location_ext(location: PatientLocation | None) -> dict[str, Any] | None:
    if location is None:
        return None
    return complex_ext(C.EXT_PATIENT_LOCATION, [
        ext("country", "String", location.country), ext("state", "String", location.state),
        ext("atHome", "Boolean", location.at_home), ext("source", "String", location.source)])


def location_in(node: Node) -> PatientLocation | None:
    for found in ext_nodes(node, C.EXT_PATIENT_LOCATION):
        return PatientLocation(country=ext_value(found, "country", "String"),
                               state=ext_value(found, "state", "String"),
                               at_home=ext_value(found, "atHome", "Boolean"),
                               source=ext_value(found, "source", "String"))
    return None


IN_PERSON_CLASSES = ("IMP", "EMER", "ACUTE", "OBSENC")
"""Encounter classes whose patient is certainly on site (a hospital stay or emergency visit); AMB is
not among them, since vendors send AMB for video visits too."""


def facility_location(node: Node, r: Reader, modality: str | None) -> PatientLocation | None:
    """Where an in-person patient was: the state of the first ``Encounter.location`` whose Location
    (held in the document) has one in its address. Used only for modality in_person or a stay or
    emergency class, never for a visit that may be virtual; ``source`` says where it came from."""
    klass = node.obj("class")
    on_site = modality == "in_person" or (modality is None and klass is not None
                                           and klass.str("code") in IN_PERSON_CLASSES)
    if not on_site:
        return None
    for part in node.list("location"):
        target = r.target(part.obj("location"))
        address = target.obj("address") if target is not None and target.str("resourceType") == "Location" else None
        if address is not None and address.str("state"):
            return PatientLocation(country=address.str("country"), state=address.str("state"), at_home=False,
                                   source="encounter-location")
    return None


def encounter_out(rec: Encounter, w: Writer) -> dict[str, Any]:
    code = rec.encounter_class or derived_class(rec.modality)
    source_class = None
    if rec.modality in REMOTE_MODALITIES and code != "VR":
        # A remote visit is class VR in FHIR whatever the sender's patient class (HL7 PV1-2 "O" gives
        # AMB): the sender's class is kept in an extension so a round trip gives it back.
        code, source_class = "VR", code
    system = C.ACT_CODE if code in C.ENCOUNTER_CLASS_CODES else C.V2_0004
    participant = [{"type": [PRIMARY_PERFORMER], "individual": w.ref(rec.practitioner)}] \
        if rec.practitioner else []
    appointment = [{"type": "Appointment", "identifier": {"system": C.SID_RECORD_ID,
                                                          "value": rec.appointment_id}}] \
        if rec.appointment_id else []
    return compact({
        "resourceType": "Encounter",
        "extension": common_extensions(
            rec, ext(C.EXT_MODALITY, "Code", rec.modality), location_ext(rec.patient_location),
            ext(C.EXT_PRACTITIONER_STATE, "String", rec.practitioner_state),
            ext(C.EXT_SOURCE_CLASS, "String", source_class),
            ext(C.EXT_CONSENT, "Boolean", rec.consent_captured),
            ext(C.EXT_LAST_IN_PERSON, "DateTime", fhir_datetime(
                rec.last_in_person_visit, "Encounter.last_in_person_visit", w.options))),
        "identifier": identifiers_out(rec),
        "status": rec.status or "unknown",
        "class": {"system": system, "code": code},
        "type": [concept_out(t) for t in rec.types],
        "subject": w.ref(rec.patient) if rec.patient else None,
        "participant": participant,
        "appointment": appointment,
        "period": period_out(rec.period, "Encounter.period", w.options),
        "reasonCode": [concept_out(c) for c in rec.reason],
        **encounter_places_out(rec, w),
    })


def encounter_in(node: Node, r: Reader) -> Encounter:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID)
    modality = choice(ext_value(node, C.EXT_MODALITY, "Code"), MODALITIES, node.at("extension(modality)"))
    status = node.str("status")
    klass = node.obj("class")
    code = klass.str("code") if klass else None
    if klass is not None and klass.str("system") == C.ACT_CODE and code == derived_class(modality):
        code = None
    source_class = ext_value(node, C.EXT_SOURCE_CLASS, "String")
    if source_class:
        code = source_class
    practitioner = None
    for part in node.list("participant"):
        target = r.follow(part.obj("individual"), Practitioner)
        if target is not None:
            practitioner = target
            break
    appointments = node.list("appointment")
    return Encounter(
        id=record_id(node, found), identifiers=identifiers,
        status=status if status in ENCOUNTER_STATUSES else None, modality=modality,
        encounter_class=code, period=period_in(node.obj("period")),
        patient=r.follow(node.obj("subject"), Patient), practitioner=practitioner,
        patient_location=location_in(node) or facility_location(node, r, modality),
        practitioner_state=ext_value(node, C.EXT_PRACTITIONER_STATE, "String"),
        reason=concepts_in(node.list("reasonCode")), types=concepts_in(node.list("type")),
        appointment_id=reference_ids(appointments[0]) if appointments else None,
        consent_captured=ext_value(node, C.EXT_CONSENT, "Boolean"),
        last_in_person_visit=ext_value(node, C.EXT_LAST_IN_PERSON, "DateTime"),
        **encounter_places_in(node, r), extra=record_extra_in(node))


def appointment_out(rec: Appointment, w: Writer) -> dict[str, Any]:
    if not rec.status:
        raise EncodeError("Appointment.status is required by FHIR (proposed, booked, arrived…)")
    actors = [p for p in (rec.patient, rec.practitioner) if p is not None]
    return compact({
        "resourceType": "Appointment",
        "extension": common_extensions(rec, ext(C.EXT_MODALITY, "Code", rec.modality),
                                       location_ext(rec.patient_location)),
        "identifier": identifiers_out(rec),
        "status": rec.status,
        "appointmentType": concept_out(rec.appointment_type),
        "reasonCode": [concept_out(c) for c in rec.reason],
        "start": fhir_datetime(rec.start, "Appointment.start", w.options, instant=True),
        "end": fhir_datetime(rec.end, "Appointment.end", w.options, instant=True),
        "minutesDuration": rec.duration_minutes,
        "participant": [{"actor": w.ref(a), "status": "accepted"} for a in [*actors, *rec.locations]],
    })


def appointment_in(node: Node, r: Reader) -> Appointment:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID)
    patient = practitioner = None
    places = []
    for part in node.list("participant"):
        actor = part.obj("actor")
        patient = patient or r.follow(actor, Patient)
        practitioner = practitioner or r.follow(actor, Practitioner)
        place = r.follow(actor, Location)
        if place is not None:
            places.append(place)
    return Appointment(
        id=record_id(node, found), identifiers=identifiers, status=node.str("status"),
        start=node.datetime("start"), end=node.datetime("end"),
        duration_minutes=node.int("minutesDuration"),
        modality=choice(ext_value(node, C.EXT_MODALITY, "Code"), MODALITIES, node.at("extension(modality)")),
        reason=concepts_in(node.list("reasonCode")),
        appointment_type=concept_in(node.obj("appointmentType")),
        patient=patient, practitioner=practitioner, patient_location=location_in(node), locations=places,
        extra=record_extra_in(node))


# --- MedicationRequest -------------------------------------------------------------------------

MEDICATION_REQUEST_STATUSES = ("active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped",
                               "draft", "unknown")
"""The R4 value set medicationrequest-status (a required binding)."""
_STATUS_ALIASES = {"revoked": "cancelled", "cancel-requested": "active"}
"""Statuses records may carry that R4 spells otherwise: ``revoked`` (HL7v2 CA/DC as decoded before R4 codes
were used) and ``cancel-requested`` (a CancelRx is on its way; the order stands until it is answered)."""


def medication_request_status(status: str | None) -> str:
    """Prescription.status as an R4 MedicationRequest.status code; anything else is refused, named."""
    code = _STATUS_ALIASES.get(status or "", status) or "unknown"
    if code not in MEDICATION_REQUEST_STATUSES:
        raise EncodeError(f"Prescription.status {status!r} is not an R4 MedicationRequest status "
                          f"({', '.join(MEDICATION_REQUEST_STATUSES)})")
    return code



def signature_ext(sig: SignatureEvidence | None, w: Writer) -> dict[str, Any] | None:
    if sig is None:
        return None
    return complex_ext(C.EXT_SIGNATURE, [
        ext("value", "String", sig.value), ext("kind", "String", sig.kind),
        ext("signedAt", "DateTime", fhir_datetime(sig.signed_at, "Prescription.signature.signed_at",
                                                  w.options)),
        ext("digest", "String", sig.digest)])


def signature_in(node: Node) -> SignatureEvidence | None:
    for found in ext_nodes(node, C.EXT_SIGNATURE):
        return SignatureEvidence(value=ext_value(found, "value", "String") or "",
                                 kind=ext_value(found, "kind", "String"),
                                 signed_at=ext_value(found, "signedAt", "DateTime"),
                                 digest=ext_value(found, "digest", "String"))
    return None


def pdmp_in(node: Node) -> list[dict[str, Any]]:
    checks = []
    for found in ext_nodes(node, C.EXT_PDMP_CHECK):
        try:
            check = json.loads(found.str("valueString") or "")
        except json.JSONDecodeError:
            check = None
        if not isinstance(check, dict):
            raise DecodeError("pdmp-check extension must hold a JSON object", found.path)
        checks.append(check)
    return checks


def prescription_out(rec: Prescription, w: Writer) -> dict[str, Any]:
    if rec.medication is None:
        # FHIR requires medication[x]; an order without a drug (an HL7v2 RDE with ORC and no RXE)
        # is refused here by name rather than sent with an invented medication.
        raise EncodeError("Prescription has no medication: a FHIR MedicationRequest requires one "
                          "(an HL7v2 order must carry its drug, RXE-2 or RXO-1)")
    contained: list[dict[str, Any]] = []
    medication = w.medication_ref(rec.medication, contained) if rec.medication else None
    days = {"value": rec.days_supply, "unit": "days", "system": C.UCUM, "code": "d"} \
        if rec.days_supply is not None else None
    pon = {"type": {"coding": [{"system": C.V2_0203, "code": "PLAC"}]},
           "system": order_system(w.options), "value": rec.prescriber_order_number} \
        if rec.prescriber_order_number else None
    return compact({
        "resourceType": "MedicationRequest",
        "contained": contained,
        "extension": common_extensions(
            rec, signature_ext(rec.signature, w),
            *[ext(C.EXT_PDMP_CHECK, "String", json.dumps(c, sort_keys=True, separators=(",", ":")))
              for c in rec.pdmp_checks]),
        "identifier": identifiers_out(rec, pon),
        "status": medication_request_status(rec.status),
        "intent": rec.intent or "order",
        "category": [{"coding": [{"system": C.MEDREQ_CATEGORY, "code": rec.category}]}] if rec.category else [],
        "medicationReference": medication,
        "subject": w.ref(rec.patient) if rec.patient else None,
        "encounter": w.ref(rec.encounter) if rec.encounter else None,
        "authoredOn": fhir_datetime(rec.written_date, "Prescription.written_date", w.options),
        "requester": w.ref(rec.prescriber) if rec.prescriber else None,
        "reasonCode": [concept_out(c) for c in rec.diagnosis],
        "note": [{"text": rec.note}] if rec.note else [],
        "dosageInstruction": [{"text": rec.sig}] if rec.sig else [],
        "dispenseRequest": compact({
            "numberOfRepeatsAllowed": rec.refills,
            "quantity": quantity_out(rec.quantity),
            "expectedSupplyDuration": days,
            "performer": w.ref(rec.pharmacy) if rec.pharmacy else None,
        }),
        "substitution": {"allowedBoolean": rec.substitution_allowed}
        if rec.substitution_allowed is not None else None,
    })


def days_in(node: Node | None) -> int | None:
    """Days supply from a Duration: whole days only (other units stay in extra["fhir"])."""
    if node is None:
        return None
    value = node.num("value")
    unit = node.str("code") or node.str("unit")
    if value is None or unit not in ("d", "day", "days") or value != int(value):
        return None
    return int(value)


def prescription_in(node: Node, r: Reader) -> Prescription:
    system = order_system(r.options)
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, system)
    dispense = node.obj("dispenseRequest")
    substitution = node.obj("substitution")
    dosage = node.list("dosageInstruction")
    notes = [n.str("text") for n in node.list("note")]
    status = node.str("status")
    return Prescription(
        id=record_id(node, found), prescriber_order_number=found.get(system),
        identifiers=identifiers, status=None if status == "unknown" else status,
        intent=node.str("intent"), category=category_in(node), medication=medication_of(node, r),
        quantity=quantity_in(dispense.obj("quantity")) if dispense else None,
        days_supply=days_in(dispense.obj("expectedSupplyDuration")) if dispense else None,
        refills=dispense.int("numberOfRepeatsAllowed") if dispense else None,
        sig=dosage[0].str("text") if dosage else None,
        substitution_allowed=substitution.bool("allowedBoolean") if substitution else None,
        written_date=node.datetime("authoredOn"),
        patient=r.follow(node.obj("subject"), Patient),
        prescriber=r.follow(node.obj("requester"), Practitioner),
        pharmacy=r.follow(dispense.obj("performer"), Pharmacy) if dispense else None,
        encounter=r.follow(node.obj("encounter"), Encounter),
        diagnosis=concepts_in(node.list("reasonCode")),
        note=notes[0] if notes else None, signature=signature_in(node), pdmp_checks=pdmp_in(node),
        extra=record_extra_in(node))


def category_in(node: Node, system: str = C.MEDREQ_CATEGORY,
                allowed: Collection[str] = C.MEDREQ_CATEGORIES) -> str | None:
    """The first ``category`` code of ``system`` that is one of ``allowed`` (by default
    MedicationRequest.category from the HL7 medicationrequest-category system: inpatient, outpatient,
    community, discharge); other category codings are not ours to read."""
    for concept in node.list("category"):
        for coding in concept.list("coding"):
            if coding.str("system") == system and coding.str("code") in allowed:
                return coding.str("code")
    return None


def medication_of(node: Node, r: Reader) -> Medication | None:
    """medicationReference (bundle entry or contained) or an inline medicationCodeableConcept."""
    if node.has("medicationReference"):
        return r.follow(node.obj("medicationReference"), Medication, container=node)
    concept = node.obj("medicationCodeableConcept")
    if concept is None:
        return None
    return medication_in(Node({"resourceType": "Medication", "code": concept.data}, concept.path), r)


# --- MedicationDispense (RxFill) -----------------------------------------------------------------


def dispense_out(rec: PrescriptionEvent, w: Writer) -> dict[str, Any]:
    if rec.event_type != "RxFill":
        raise EncodeError(
            f"PrescriptionEvent of event_type {rec.event_type!r} has no FHIR mapping "
            "(only RxFill, as MedicationDispense)")
    contained: list[dict[str, Any]] = []
    medication = w.medication_ref(rec.medication, contained) if rec.medication else None
    authorizing = [{"type": "MedicationRequest", "identifier": {"system": system, "value": value}}
                   for system, value in ((order_system(w.options), rec.prescriber_order_number),
                                         (C.SID_RECORD_ID, rec.prescription_id)) if value]
    unmapped_fill = rec.fill_status if rec.fill_status not in FILL_TO_STATUS else None
    return compact({
        "resourceType": "MedicationDispense",
        "contained": contained,
        "extension": common_extensions(
            rec, ext(C.EXT_RELATES_TO, "String", rec.relates_to_message_id),
            ext(C.EXT_EVENT_CODE, "String", rec.code), ext(C.EXT_FILL_STATUS, "String", unmapped_fill)),
        "identifier": identifiers_out(
            rec, {"system": C.SID_NCPDP_MESSAGE_ID, "value": rec.message_id} if rec.message_id else None,
            dispense_key(rec)),
        "status": FILL_TO_STATUS.get(rec.fill_status or "", "unknown"),
        "medicationReference": medication,
        "subject": w.ref(rec.patient) if rec.patient else None,
        "performer": [{"actor": w.ref(who)} for who in (rec.pharmacy, rec.dispenser) if who is not None],
        "authorizingPrescription": authorizing,
        "quantity": quantity_out(rec.quantity),
        "whenHandedOver": fhir_datetime(rec.occurred_at, "PrescriptionEvent.occurred_at", w.options),
        "destination": w.ref(rec.destination) if rec.destination else None,
        "note": [{"text": rec.description}] if rec.description else [],
    })


def dispense_in(node: Node, r: Reader) -> PrescriptionEvent:
    found, _ = split_identifiers(node, C.SID_RECORD_ID, C.SID_NCPDP_MESSAGE_ID)
    system = order_system(r.options)
    pon = prescription_id = None
    for auth in node.list("authorizingPrescription"):
        ident = auth.obj("identifier")
        if ident is not None and ident.str("system") == system:
            pon = pon or ident.str("value")
        elif ident is not None and ident.str("system") == C.SID_RECORD_ID:
            prescription_id = prescription_id or ident.str("value")
    pharmacy = dispenser = None
    for performer in node.list("performer"):
        pharmacy = pharmacy or r.follow(performer.obj("actor"), Pharmacy)
        dispenser = dispenser or r.follow(performer.obj("actor"), Practitioner)
    notes = [n.str("text") for n in node.list("note")]
    fill = ext_value(node, C.EXT_FILL_STATUS, "String") or STATUS_TO_FILL.get(node.str("status") or "")
    return PrescriptionEvent(
        event_type="RxFill", id=record_id(node, found), message_id=found.get(C.SID_NCPDP_MESSAGE_ID),
        relates_to_message_id=ext_value(node, C.EXT_RELATES_TO, "String"),
        prescriber_order_number=pon, prescription_id=prescription_id,
        code=ext_value(node, C.EXT_EVENT_CODE, "String"), description=notes[0] if notes else None,
        occurred_at=node.datetime("whenHandedOver"), fill_status=fill,
        quantity=quantity_in(node.obj("quantity")), medication=medication_of(node, r),
        patient=r.follow(node.obj("subject"), Patient), pharmacy=pharmacy, dispenser=dispenser,
        destination=r.follow(node.obj("destination"), Location), extra=record_extra_in(node))


# --- DocumentReference (ClinicalNote) ------------------------------------------------------------


def note_out(rec: ClinicalNote, w: Writer) -> dict[str, Any]:
    data = base64.b64encode(rec.text.encode("utf-8")).decode("ascii") if rec.text is not None else None
    doc_status = rec.status if rec.status in DOC_STATUSES else None
    other_status = rec.status if rec.status and doc_status is None else None
    cancelled = rec.status == "entered-in-error" or rec.document_event == "cancel"
    relation = RELATES_TO.get(rec.document_event or "")
    return compact({
        "resourceType": "DocumentReference",
        "extension": common_extensions(rec, ext(C.EXT_NOTE_STATUS, "String", other_status)),
        "identifier": identifiers_out(rec),
        "status": "entered-in-error" if cancelled else "current",
        "relatesTo": [{"code": relation, "target": {"identifier": identifier_out(rec.parent_document)}}]
        if relation and rec.parent_document else [],
        "docStatus": doc_status,
        "type": concept_out(rec.note_type),
        "subject": w.ref(rec.patient) if rec.patient else None,
        "date": fhir_datetime(rec.authored, "ClinicalNote.authored", w.options, instant=True),
        "author": [w.ref(rec.author)] if rec.author else [],
        "content": [{"attachment": compact({
            "contentType": rec.content_type or DEFAULT_NOTE_TYPE, "data": data, "title": rec.title})}],
        "context": {"encounter": [w.ref(rec.encounter)]} if rec.encounter else None,
    })


RELATES_TO = {"addendum": "appends", "replacement": "replaces", "edit": "transforms"}
"""ClinicalNote.document_event with a parent document → DocumentReference.relatesTo.code (R4
document-relationship-type, a required binding); a cancelled document is status entered-in-error."""


def note_relation(node: Node) -> tuple[str | None, Identifier | None]:
    """(document_event, parent_document) from the first relatesTo that names its target by identifier."""
    for item in node.list("relatesTo"):
        target = item.obj("target")
        ident = target.obj("identifier") if target else None
        event = {code: name for name, code in RELATES_TO.items()}.get(item.str("code") or "")
        if event and ident is not None:
            return event, identifier_in(ident)
    return None, None


def note_text(attachment: Node) -> str | None:
    data = attachment.str("data")
    if data is None:
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("not valid base64", attachment.at("data")) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None  # binary content (a PDF…): kept whole in extra["fhir"]


def note_in(node: Node, r: Reader) -> ClinicalNote:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID)
    contents = node.list("content")
    attachment = contents[0].obj("attachment") if contents else None
    context = node.obj("context")
    encounters = context.list("encounter") if context else []
    authors = node.list("author")
    status = ext_value(node, C.EXT_NOTE_STATUS, "String") or node.str("docStatus")
    if status is None and node.str("status") == "entered-in-error":
        status = "entered-in-error"
    author = None
    for item in authors:
        author = author or r.follow(item, Practitioner)
    document_event, parent = note_relation(node)
    return ClinicalNote(
        id=record_id(node, found), identifiers=identifiers, status=status,
        note_type=concept_in(node.obj("type")),
        title=(attachment.str("title") if attachment else None) or node.str("description"),
        text=note_text(attachment) if attachment else None,
        content_type=attachment.str("contentType") if attachment else None,
        authored=node.datetime("date"), author=author,
        patient=r.follow(node.obj("subject"), Patient),
        encounter=r.follow(encounters[0], Encounter) if encounters else None,
        document_event=document_event, parent_document=parent,
        extra=record_extra_in(node))


# --- AllergyIntolerance, Condition, Coverage, Patient links (HL7v2 AL1, DG1, IN1, MRG) ---------

absolute_system = system_uri
"""A code or identifier system as an absolute URI (see :mod:`.systems`)."""


def local_system(uri: str | None) -> str | None:
    """:func:`.systems.system_name` with HL7 table names back (the ADT decoder writes ``HL7nnnn``)."""
    return system_name(uri, tables=True)


def coded_out(coding: Coding | None) -> dict[str, Any] | None:
    """A CodeableConcept whose coding system is an absolute URI; a text-only Coding is text."""
    if coding is None:
        return None
    if not coding.code:
        return {"text": coding.display} if coding.display else None
    return {"coding": [compact({"system": absolute_system(coding.system), "code": code_out(coding.code),
                                "display": coding.display})]}


def coding_ext(url: str, coding: Coding | None) -> dict[str, Any] | None:
    """A sender's own code for something FHIR has a fixed value set for (allergen type, diagnosis
    type), kept beside the mapped element as a Coding extension."""
    concept = coded_out(coding)
    return ext(url, "Coding", concept["coding"][0]) if concept and "coding" in concept else None


def coding_ext_in(node: Node, url: str) -> Coding | None:
    for found in ext_nodes(node, url):
        value = found.obj("valueCoding")
        if value is not None:
            coding = coding_in(value)
            coding.system = local_system(coding.system)
            return coding
    return None


def coded_in(node: Node | None) -> Coding | None:
    found = concept_in(node)
    if found is not None:
        found.system = local_system(found.system)
    return found


def absolute_identifiers(rec: Any, *specific: dict[str, Any] | None) -> list[dict[str, Any]]:
    """identifiers_out with every system an absolute URI (HL7v2 senders write bare OIDs)."""
    out = identifiers_out(rec, *specific)
    for ident in out:
        if ident.get("system"):
            ident["system"] = absolute_system(ident["system"])
    return out


def derived_key(system: str, rec: Any, *parts: Any) -> dict[str, str] | None:
    """An identifier for a record that has none (an AL1, a DG1): the same patient and code give the
    same value, so a re-delivered message updates the resource it created instead of adding one."""
    if rec.id or rec.identifiers or rec.patient is None:
        return None
    patient = keys_of([rec.patient]).patient_id
    if not patient or not any(parts):
        return None
    seed = "|".join(str(p or "") for p in (patient, *parts))
    return {"system": system, "value": str(uuid.uuid5(uuid.NAMESPACE_URL, system + "#" + seed))}


def status_concept(system: str, code: str | None) -> dict[str, Any] | None:
    return {"coding": [{"system": system, "code": code}]} if code else None


def status_in(node: Node, name: str, allowed: tuple[str, ...]) -> str | None:
    concept = node.obj(name)
    for coding in concept.list("coding") if concept else []:
        if coding.str("code") in allowed:
            return coding.str("code")
    return None


def allergy_out(rec: AllergyIntolerance, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("AllergyIntolerance.patient is required by FHIR")
    clinical = rec.clinical_status
    if clinical is None and rec.verification_status != "entered-in-error":
        raise EncodeError("AllergyIntolerance.clinical_status is required by FHIR unless the record is "
                          "entered-in-error (active, inactive or resolved)")
    if rec.verification_status == "entered-in-error":
        clinical = None  # FHIR ait-2: no clinical status on an entered-in-error record
    reaction = compact({
        "manifestation": [{"text": r} for r in rec.reactions],
        "severity": rec.severity,
    }) if rec.reactions else None
    code = rec.code
    key = derived_key(C.SID_ALLERGY_KEY, rec, code.system if code else None,
                      (code.code or code.display) if code else None)
    return compact({
        "resourceType": "AllergyIntolerance",
        "extension": common_extensions(
            rec, ext(C.EXT_ALLERGY_SEVERITY, "Code", rec.severity if not rec.reactions else None),
            coding_ext(C.EXT_ALLERGEN_TYPE, rec.allergen_type)),
        "identifier": absolute_identifiers(rec, key),
        "clinicalStatus": status_concept(C.ALLERGY_CLINICAL, clinical),
        "verificationStatus": status_concept(C.ALLERGY_VERIFICATION, rec.verification_status),
        "category": [rec.category] if rec.category else [],
        "code": coded_out(rec.code),
        "patient": w.ref(rec.patient),
        "onsetDateTime": fhir_datetime(rec.identified_at, "AllergyIntolerance.identified_at", w.options),
        "asserter": reporter_ref(rec.reported_by, w) if rec.reported_by else None,
        "reaction": [reaction] if reaction else [],
    })


def reporter_ref(person: RelatedPerson, w: Writer) -> dict[str, str]:
    """The person who reported an allergy (IAM-14/15): a name and a relationship only, so created
    if absent (``ifNoneExist``) rather than updated: the same person's fuller record (an NK1 with
    address and phone) that a server already holds is never cut down to a name."""
    from .create_once import created_once

    return created_once(w, w.resource(person))


def allergy_in(node: Node, r: Reader) -> AllergyIntolerance:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, C.SID_ALLERGY_KEY)
    reactions = node.list("reaction")
    manifestations = [m for part in reactions for m in part.list("manifestation")]
    severity = reactions[0].str("severity") if reactions else ext_value(node, C.EXT_ALLERGY_SEVERITY, "Code")
    categories = [c for c in node.data.get("category", []) if c in ALLERGY_CATEGORIES]
    return AllergyIntolerance(
        id=record_id(node, found), identifiers=identifiers,
        clinical_status=status_in(node, "clinicalStatus", ALLERGY_CLINICAL_STATUSES),
        verification_status=status_in(node, "verificationStatus", ALLERGY_VERIFICATION_STATUSES),
        allergen_type=coding_ext_in(node, C.EXT_ALLERGEN_TYPE),
        category=categories[0] if categories else None, code=coded_in(node.obj("code")),
        severity=choice(severity, ("mild", "moderate", "severe"), node.at("reaction")),
        reactions=[t for t in (m.str("text") or next((c.str("display") or c.str("code") for c in m.list("coding")),
                                                     None) for m in manifestations) if t],
        identified_at=node.datetime("onsetDateTime"),
        reported_by=r.follow(node.obj("asserter"), RelatedPerson),
        patient=r.follow(node.obj("patient"), Patient), extra=record_extra_in(node))


def condition_out(rec: Condition, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("Condition.patient is required by FHIR (Condition.subject)")
    clinical = None if rec.verification_status == "entered-in-error" else rec.clinical_status
    code = rec.code
    key = derived_key(C.SID_CONDITION_KEY, rec, keys_of([rec.encounter]).encounter_id if rec.encounter else None,
                      code.system if code else None, code.code if code else rec.description)
    concept = coded_out(rec.code)
    if rec.description:
        concept = {**(concept or {}), "text": rec.description}
    return compact({
        "resourceType": "Condition",
        "extension": common_extensions(rec, coding_ext(C.EXT_DIAGNOSIS_TYPE, rec.diagnosis_type)),
        "identifier": absolute_identifiers(rec, key),
        "clinicalStatus": status_concept(C.CONDITION_CLINICAL, clinical),
        "verificationStatus": status_concept(C.CONDITION_VERIFICATION, rec.verification_status),
        "category": [{"coding": [{"system": C.CONDITION_CATEGORY, "code": rec.category}]}] if rec.category else [],
        "code": concept,
        "subject": w.ref(rec.patient),
        "encounter": w.ref(rec.encounter) if rec.encounter else None,
        "onsetDateTime": fhir_datetime(rec.onset, "Condition.onset", w.options),
        "recordedDate": fhir_datetime(rec.recorded, "Condition.recorded", w.options),
        "asserter": w.ref(rec.asserter) if rec.asserter else None,
    })


def condition_in(node: Node, r: Reader) -> Condition:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, C.SID_CONDITION_KEY)
    category = category_in(node, C.CONDITION_CATEGORY, CONDITION_CATEGORIES)
    code_node = node.obj("code")
    code = coded_in(Node({k: v for k, v in code_node.data.items() if k != "text"}, code_node.path)) \
        if code_node is not None and code_node.list("coding") else None
    return Condition(
        id=record_id(node, found), identifiers=identifiers,
        clinical_status=status_in(node, "clinicalStatus", CONDITION_CLINICAL_STATUSES),
        verification_status=status_in(node, "verificationStatus", CONDITION_VERIFICATION_STATUSES),
        category=category,
        diagnosis_type=coding_ext_in(node, C.EXT_DIAGNOSIS_TYPE),
        code=code, description=code_node.str("text") if code_node is not None else None,
        onset=node.datetime("onsetDateTime"), recorded=node.datetime("recordedDate"),
        asserter=r.follow(node.obj("asserter"), Practitioner),
        patient=r.follow(node.obj("subject"), Patient), encounter=r.follow(node.obj("encounter"), Encounter),
        extra=record_extra_in(node))


def coverage_class(kind: str, value: str | None, name: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    return compact({"type": {"coding": [{"system": C.COVERAGE_CLASS, "code": kind}]}, "value": value, "name": name})


def coverage_out(rec: Coverage, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("Coverage.patient is required by FHIR (Coverage.beneficiary)")
    if not rec.status:
        raise EncodeError("Coverage.status is required by FHIR (active, cancelled, draft or entered-in-error)")
    payer = compact({"identifier": identifier_out(rec.payer_identifiers[0]) if rec.payer_identifiers else None,
                     "display": rec.payer_name})
    if not payer:
        raise EncodeError("Coverage needs a payer (payer_name or payer_identifiers): FHIR requires Coverage.payor")
    if payer.get("identifier", {}).get("system"):
        payer["identifier"]["system"] = absolute_system(payer["identifier"]["system"])
    payer = {"reference": w.add(payer_organization(rec)), **payer}
    member = {"type": {"coding": [{"system": C.V2_0203, "code": "MB"}]}, "value": rec.member_id} \
        if rec.member_id else None
    plan = rec.plan
    subscriber = subscriber_out(rec, w)
    return compact({
        "resourceType": "Coverage",
        "contained": subscriber.get("contained"),
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, member),
        "status": rec.status,
        "type": coded_out(rec.plan_type),
        "subscriber": subscriber.get("subscriber"),
        "subscriberId": rec.subscriber_id,
        "beneficiary": w.ref(rec.patient),
        "relationship": status_concept(C.SUBSCRIBER_RELATIONSHIP, rec.relationship),
        "period": period_out(rec.period, "Coverage.period", w.options),
        "payor": [payer],
        "class": [c for c in (coverage_class("group", rec.group_number, rec.group_name),
                              coverage_class("plan", plan.code if plan else None, plan.display if plan else None))
                  if c],
    })


PAYER_TYPE = Coding(code="pay", system="http://terminology.hl7.org/CodeSystem/organization-type", display="Payer")


def payer_organization(rec: Coverage) -> Organization:
    """The payer (HL7v2 IN1-3/IN1-4) as an Organization entry that Coverage.payor references, as
    Microsoft's converter and US Core do; the reference keeps its identifier and display too."""
    return Organization(name=rec.payer_name, identifiers=[dataclasses.replace(i) for i in rec.payer_identifiers],
                        types=[dataclasses.replace(PAYER_TYPE)])


def subscriber_out(rec: Coverage, w: Writer) -> dict[str, Any]:
    """The subscriber: the insured person (``subscriber``) as a RelatedPerson entry of the bundle, like
    any relative the sender names; else, when only named, a contained RelatedPerson (FHIR names a
    subscriber only by reference, and a name alone is no person a server could match)."""
    if rec.subscriber is not None:
        return {"subscriber": w.ref(rec.subscriber)}
    if rec.subscriber_name is None:
        return {}
    person = {"resourceType": "RelatedPerson", "id": "subscriber", "patient": w.ref(rec.patient),
              "name": name_out(rec.subscriber_name)}
    return {"contained": [person], "subscriber": {"reference": "#subscriber"}}


def subscriber_in(node: Node) -> HumanName | None:
    for item in node.list("contained"):
        if item.str("resourceType") == "RelatedPerson" and item.str("id") == "subscriber":
            return name_in(item.list("name"))
    return None


def coverage_in(node: Node, r: Reader) -> Coverage:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID)
    member = None
    rest = []
    for ident in identifiers:
        if ident.type == "MB" and member is None and not ident.system:
            member = ident.value
        else:
            rest.append(ident)
    classes = {c.obj("type").list("coding")[0].str("code"): c for c in node.list("class")
               if c.obj("type") is not None and c.obj("type").list("coding")}
    payors = node.list("payor")
    payer = payors[0] if payors else None
    payer_ident = payer.obj("identifier") if payer is not None else None
    payer_org = follow_organization(r, payer) if payer is not None else None
    plan = classes.get("plan")
    group = classes.get("group")
    status = node.str("status")
    reference = node.obj("subscriber")
    contained = reference is not None and (reference.str("reference") or "").startswith("#")
    insured = None if contained else r.follow(reference, RelatedPerson)  # a contained one is only a name
    return Coverage(
        id=record_id(node, found), identifiers=rest,
        status=choice(status, COVERAGE_STATUSES, node.at("status")),
        plan=Coding(code=plan.str("value") or "", display=plan.str("name")) if plan is not None else None,
        plan_type=coded_in(node.obj("type")),
        payer_name=(payer.str("display") if payer is not None else None) or (payer_org.name if payer_org else None),
        payer_identifiers=[identifier_in(payer_ident)] if payer_ident is not None else
        (payer_org.identifiers[:1] if payer_org else []),
        member_id=member, group_number=group.str("value") if group is not None else None,
        group_name=group.str("name") if group is not None else None,
        subscriber_id=node.str("subscriberId"), subscriber_name=subscriber_in(node) or (insured.name if insured else None),
        subscriber=insured,
        relationship=status_in(node, "relationship", SUBSCRIBER_RELATIONSHIPS),
        period=period_in(node.obj("period")),
        patient=r.follow(node.obj("beneficiary"), Patient), extra=record_extra_in(node))


def links_out(rec: Patient) -> list[dict[str, Any]]:
    """Patient.link as logical references: the other record is named by its identifier (after a
    merge the retired id may exist on the server or not; a logical reference needs neither)."""
    out = []
    for link in rec.links:
        ident = identifier_out(link.other)
        if ident.get("system"):
            ident["system"] = absolute_system(ident["system"])
        out.append({"other": {"type": "Patient", "identifier": ident}, "type": link.type})
    return out


def links_in(node: Node) -> list[PatientLink]:
    out = []
    for link in node.list("link"):
        other = link.obj("other")
        ident = other.obj("identifier") if other is not None else None
        kind = link.str("type")
        if ident is not None and kind in PATIENT_LINK_TYPES:
            found = identifier_in(ident)
            out.append(PatientLink(other=found, type=kind))
    return out


# --- dispatch ----------------------------------------------------------------------------------

OUT = {
    Patient: patient_out, Practitioner: practitioner_out, Pharmacy: pharmacy_out,
    Medication: medication_out, Encounter: encounter_out, Appointment: appointment_out,
    Prescription: prescription_out, PrescriptionEvent: dispense_out, ClinicalNote: note_out,
    Observation: observation_out, DiagnosticReport: report_out,
    AllergyIntolerance: allergy_out, Condition: condition_out, Coverage: coverage_out,
}
IN = {
    "Patient": (Patient, patient_in), "Practitioner": (Practitioner, practitioner_in),
    "Organization": (Pharmacy, pharmacy_in), "Medication": (Medication, medication_in),
    "Encounter": (Encounter, encounter_in), "Appointment": (Appointment, appointment_in),
    "MedicationRequest": (Prescription, prescription_in),
    "MedicationDispense": (PrescriptionEvent, dispense_in),
    "DocumentReference": (ClinicalNote, note_in),
    "Observation": (Observation, observation_in), "DiagnosticReport": (DiagnosticReport, report_in),
    "AllergyIntolerance": (AllergyIntolerance, allergy_in), "Condition": (Condition, condition_in),
    "Coverage": (Coverage, coverage_in),
}
"""Resource type → (record class, decoder)."""

from .immunization import immunization_in, immunization_out  # noqa: E402  (they use the helpers above)
from .orders import service_request_in, service_request_out  # noqa: E402
from .pharmacy import administration_in, administration_out, dispense_key  # noqa: E402
from .places import encounter_places_in, encounter_places_out, location_out  # noqa: E402
from .places import location_in as place_in  # noqa: E402  (location_in above reads PatientLocation)
from .places import follow_organization, organization_out  # noqa: E402
from .related_person import related_person_in, related_person_out  # noqa: E402
from .specimen import specimen_in, specimen_out  # noqa: E402

OUT.update({ServiceRequest: service_request_out, MedicationAdministration: administration_out,
            Immunization: immunization_out, RelatedPerson: related_person_out,
            Location: location_out, Organization: organization_out, Specimen: specimen_out})
IN.update({"ServiceRequest": (ServiceRequest, service_request_in),
           "MedicationAdministration": (MedicationAdministration, administration_in),
           "Immunization": (Immunization, immunization_in),
           "RelatedPerson": (RelatedPerson, related_person_in),
           "Location": (Location, place_in), "Specimen": (Specimen, specimen_in)})
from .people import role_in, role_out  # noqa: E402

OUT[PractitionerRole] = role_out
IN["PractitionerRole"] = (PractitionerRole, role_in)
RESOURCE_TYPE = {cls: rtype for rtype, (cls, _) in IN.items()}
RESOURCE_TYPE[Organization] = "Organization"
"""Organization resources decode as Pharmacy records unless a reference wants an Organization
(Encounter.serviceProvider, Location.managingOrganization: see places.follow_organization)."""

from bridge import Procedure  # noqa: E402
from .procedure import procedure_in, procedure_out  # noqa: E402

from bridge import Account, EpisodeOfCare  # noqa: E402
from .accounts import account_in, account_out, episode_in, episode_out  # noqa: E402

OUT.update({Procedure: procedure_out, Account: account_out, EpisodeOfCare: episode_out})
IN.update({"Procedure": (Procedure, procedure_in), "Account": (Account, account_in),
           "EpisodeOfCare": (EpisodeOfCare, episode_in)})
RESOURCE_TYPE.update({Procedure: "Procedure", Account: "Account", EpisodeOfCare: "EpisodeOfCare"})

from bridge import ChargeItem  # noqa: E402
from .charge_item import charge_item_in, charge_item_out  # noqa: E402

OUT.update({ChargeItem: charge_item_out})
IN.update({"ChargeItem": (ChargeItem, charge_item_in)})
RESOURCE_TYPE.update({ChargeItem: "ChargeItem"})

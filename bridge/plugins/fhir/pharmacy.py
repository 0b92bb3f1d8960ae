"""MedicationAdministration records as FHIR R4 MedicationAdministration resources, and back.

FHIR requires a status (medication-admin-status, a required binding: the record holds its codes; a
record without one is written ``unknown``), the medication, the patient and a time. The order a
dose fulfils is a logical reference to the MedicationRequest by its prescriber order number, the
identifier prescriptions carry. A record without an identifier gets one derived from the patient,
the drug and the time (system ``…/sid/administration-key``), so a re-delivered RAS updates the
resource it created. (Dispenses are PrescriptionEvents: see resources.dispense_out.)
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from bridge import (
    ADMINISTRATION_STATUSES,
    EncodeError,
    Encounter,
    MedicationAdministration,
    Patient,
    Practitioner,
    PrescriptionEvent,
    keys_of,
)

from . import constants as C
from .datatypes import compact, fhir_datetime
from .reader import Node
from .resources import (
    absolute_identifiers,
    choice,
    coded_in,
    coded_out,
    common_extensions,
    derived_key,
    medication_of,
    order_system,
    record_extra_in,
    record_id,
    split_identifiers,
)
from .results import quantity_in, quantity_out

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

SID_ADMINISTRATION_KEY = f"{C.BASE}/sid/administration-key"
SID_DISPENSE_KEY = f"{C.BASE}/sid/dispense-key"


def dispense_key(rec: PrescriptionEvent) -> dict[str, str] | None:
    """A key for a dispense without NCPDP message id or record id (an HL7v2 RDS): the patient, the
    order, the drug and the time, so a re-delivered RDS updates the MedicationDispense it created."""
    if rec.message_id or rec.id or rec.patient is None:
        return None
    patient = keys_of([rec.patient]).patient_id
    med = rec.medication
    drug = (med.rxnorm or med.ndc or next((c.code for c in med.codings if c.code), None)) if med else None
    if not patient or not (drug or rec.prescriber_order_number) or not rec.occurred_at:
        return None
    seed = "|".join(str(p or "") for p in (patient, rec.prescriber_order_number, drug, rec.occurred_at))
    return {"system": SID_DISPENSE_KEY, "value": str(uuid.uuid5(uuid.NAMESPACE_URL, SID_DISPENSE_KEY + "#" + seed))}


def first_code(rec: MedicationAdministration) -> str | None:
    med = rec.medication
    if med is None:
        return None
    return med.rxnorm or med.ndc or next((c.code for c in med.codings if c.code), None) or med.description


def administration_out(rec: MedicationAdministration, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("MedicationAdministration.patient is required by FHIR (MedicationAdministration.subject)")
    if rec.medication is None:
        raise EncodeError("MedicationAdministration.medication is required by FHIR")
    if rec.start is None:
        raise EncodeError("MedicationAdministration.start is required by FHIR (effective[x]): when was it given?")
    contained: list[dict[str, Any]] = []
    medication = w.medication_ref(rec.medication, contained)
    start = fhir_datetime(rec.start, "MedicationAdministration.start", w.options)
    end = fhir_datetime(rec.end, "MedicationAdministration.end", w.options)
    dosage = compact({"site": coded_out(rec.site), "route": coded_out(rec.route), "dose": quantity_out(rec.dose, True)})
    key = derived_key(SID_ADMINISTRATION_KEY, rec, first_code(rec), rec.start)
    return compact({
        "resourceType": "MedicationAdministration",
        "contained": contained,
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, key),
        "status": rec.status or "unknown",
        "statusReason": [c for c in (coded_out(rec.status_reason),) if c],
        "medicationReference": medication,
        "subject": w.ref(rec.patient),
        "context": w.ref(rec.encounter) if rec.encounter else None,
        "effectivePeriod": {"start": start, "end": end} if end else None,
        "effectiveDateTime": None if end else start,
        "performer": [{"actor": w.ref(rec.performer)}] if rec.performer else [],
        "request": {"type": "MedicationRequest", "identifier": {"system": order_system(w.options),
                                                                 "value": rec.prescriber_order_number}}
        if rec.prescriber_order_number else None,
        "dosage": dosage or None,
    })


def administration_in(node: Node, r: Reader) -> MedicationAdministration:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_ADMINISTRATION_KEY)
    period = node.obj("effectivePeriod")
    dosage = node.obj("dosage")
    request = node.obj("request")
    ident = request.obj("identifier") if request is not None else None
    reasons = node.list("statusReason")
    performer = next((r.follow(p.obj("actor"), Practitioner) for p in node.list("performer")), None)
    return MedicationAdministration(
        id=record_id(node, found), identifiers=identifiers,
        status=choice(node.str("status"), ADMINISTRATION_STATUSES, node.at("status")),
        medication=medication_of(node, r),
        dose=quantity_in(dosage.obj("dose")) if dosage is not None else None,
        route=coded_in(dosage.obj("route")) if dosage is not None else None,
        site=coded_in(dosage.obj("site")) if dosage is not None else None,
        start=period.datetime("start") if period is not None else node.datetime("effectiveDateTime"),
        end=period.datetime("end") if period is not None else None,
        performer=performer,
        prescriber_order_number=ident.str("value") if ident is not None else None,
        status_reason=coded_in(reasons[0]) if reasons else None,
        patient=r.follow(node.obj("subject"), Patient),
        encounter=r.follow(node.obj("context"), Encounter),
        extra=record_extra_in(node),
    )

"""Immunization records as FHIR R4 Immunization resources, and back.

status has a required binding (immunization-status: completed, entered-in-error, not-done), held
as such by the record. FHIR requires the vaccine, the patient and the occurrence. The manufacturer
is an Organization entry keyed by its MVX code (an IIS feed names the maker only so), referenced
with that code and name as a logical reference too. A record without an identifier gets one derived
from the patient, the vaccine and the time (system ``…/sid/immunization-key``), so a re-sent VXU
updates the resource it created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge import (
    IMMUNIZATION_STATUSES,
    Coding,
    EncodeError,
    Encounter,
    Identifier,
    Immunization,
    Observation,
    Organization,
    Patient,
    Practitioner,
)

from . import constants as C
from .datatypes import compact, fhir_datetime
from .keep import FHIR as FHIR_KEPT
from .orders import concept_in, concept_out
from .places import follow_organization
from .reader import Node
from .resources import (
    absolute_identifiers,
    absolute_system,
    choice,
    coded_in,
    coded_out,
    common_extensions,
    derived_key,
    local_system,
    record_extra_in,
    record_id,
    split_identifiers,
)
from .results import quantity_in, quantity_out

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

SID_IMMUNIZATION_KEY = f"{C.BASE}/sid/immunization-key"


def manufacturer_out(coding: Coding | None, w: Writer) -> dict[str, Any] | None:
    """The maker as a reference to an Organization entry (a conditional create keyed by its MVX
    code, so each maker is one resource on the server), keeping the logical identifier and display."""
    if coding is None:
        return None
    ident = compact({"system": absolute_system(coding.system), "value": coding.code or None})
    logical = compact({"identifier": ident if ident.get("value") else None, "display": coding.display})
    if not logical:
        return None
    maker = Organization(name=coding.display or None,
                         identifiers=[Identifier(value=coding.code, system=coding.system)] if coding.code else [])
    return {**w.ref(maker), **logical}


def manufacturer_in(node: Node | None) -> Coding | None:
    if node is None:
        return None
    ident = node.obj("identifier")
    code = ident.str("value") if ident is not None else None
    display = node.str("display")
    if not code and not display:
        return None
    return Coding(code=code or "", system=local_system(ident.str("system")) if ident is not None else None,
                  display=display)


def immunization_out(rec: Immunization, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("Immunization.patient is required by FHIR")
    if not rec.status:
        raise EncodeError("Immunization.status is required by FHIR (completed, entered-in-error or not-done)")
    vaccine = concept_out(rec.vaccine)
    if vaccine is None:
        raise EncodeError("Immunization.vaccine is required by FHIR (Immunization.vaccineCode)")
    if rec.occurrence is None:
        raise EncodeError("Immunization.occurrence is required by FHIR: when was it given?")
    first = next((c for c in rec.vaccine if c.code), None)
    key = derived_key(SID_IMMUNIZATION_KEY, rec, first.code if first else None, rec.occurrence)
    return compact({
        "resourceType": "Immunization",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, key),
        "status": rec.status,
        "statusReason": coded_out(rec.status_reason),
        "vaccineCode": vaccine,
        "patient": w.ref(rec.patient),
        "encounter": w.ref(rec.encounter) if rec.encounter else None,
        "occurrenceDateTime": fhir_datetime(rec.occurrence, "Immunization.occurrence", w.options),
        "primarySource": rec.primary_source,
        "manufacturer": manufacturer_out(rec.manufacturer, w),
        "lotNumber": rec.lot_number,
        "expirationDate": fhir_datetime(rec.expiration_date[:10] if rec.expiration_date else None,
                                        "Immunization.expiration_date", w.options, date_only=True),
        "site": coded_out(rec.site),
        "route": coded_out(rec.route),
        "doseQuantity": quantity_out(rec.dose, True),
        "performer": [{"actor": w.ref(rec.performer)}] if rec.performer else [],
        "programEligibility": [c for c in (coded_out(p) for p in rec.program_eligibility) if c],
        "fundingSource": coded_out(rec.funding_source),
    })


def parts_in(node: Node, r: Reader) -> list[Observation]:
    """The Observations of the document whose ``partOf`` names this Immunization (what our encoder
    writes for ``Immunization.observations``), in document order; the link is the field, so it is
    not kept again in the Observation's extra."""
    found: list[Observation] = []
    seen: set[int] = set()
    for other in list(r.by_url.values()):
        if id(other.data) in seen or other.str("resourceType") != "Observation":
            continue
        seen.add(id(other.data))
        if not any(r.target(ref) is not None and r.target(ref).data is node.data  # type: ignore[union-attr]
                   for ref in other.list("partOf")):
            continue
        part = r.record(other)
        if isinstance(part, Observation):
            r.referenced.add(id(other.data))
            elements = part.extra.get(FHIR_KEPT, {}).get("elements", {})
            elements.pop("partOf", None)
            if FHIR_KEPT in part.extra and not elements:
                part.extra[FHIR_KEPT].pop("elements", None)
                if not part.extra[FHIR_KEPT]:
                    del part.extra[FHIR_KEPT]
            found.append(part)
    return found


def immunization_in(node: Node, r: Reader) -> Immunization:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_IMMUNIZATION_KEY)
    performer = next((r.follow(p.obj("actor"), Practitioner) for p in node.list("performer")), None)
    follow_organization(r, node.obj("manufacturer"))  # the maker's entry is no record of its own
    return Immunization(
        id=record_id(node, found), identifiers=identifiers,
        status=choice(node.str("status"), IMMUNIZATION_STATUSES, node.at("status")),
        status_reason=coded_in(node.obj("statusReason")),
        vaccine=concept_in(node.obj("vaccineCode")),
        occurrence=node.datetime("occurrenceDateTime"),
        primary_source=node.data.get("primarySource") if isinstance(node.data.get("primarySource"), bool) else None,
        lot_number=node.str("lotNumber"),
        expiration_date=node.datetime("expirationDate"),
        manufacturer=manufacturer_in(node.obj("manufacturer")),
        dose=quantity_in(node.obj("doseQuantity")),
        route=coded_in(node.obj("route")), site=coded_in(node.obj("site")),
        performer=performer,
        funding_source=coded_in(node.obj("fundingSource")),
        program_eligibility=[c for c in (coded_in(n) for n in node.list("programEligibility")) if c],
        observations=parts_in(node, r),
        patient=r.follow(node.obj("patient"), Patient),
        encounter=r.follow(node.obj("encounter"), Encounter),
        extra=record_extra_in(node),
    )

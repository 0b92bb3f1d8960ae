"""Location and Organization records as FHIR R4 resources, and an Encounter's places.

A Location is reference data, like a Practitioner: written as a conditional create, never
overwriting what the EHR's master files hold. HL7v2 names places only by name (PV1-3: point of
care, room, bed, facility…), so a Location without an identifier a server could match gets one
derived from its whole chain of places (``…/sid/location-key``): the same bed of the same room is
one resource however many messages name it, and a bed of another ward is another. An Organization
without one gets a key derived from its identifier values or name (``…/sid/organization-key``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from bridge import (
    ENCOUNTER_LOCATION_STATUSES,
    LOCATION_MODES,
    LOCATION_PHYSICAL_TYPES,
    LOCATION_STATUSES,
    Encounter,
    EncounterLocation,
    Location,
    Organization,
)

from . import constants as C
from .datatypes import (
    address_in,
    address_out,
    compact,
    concept_out,
    concepts_in,
    ext,
    ext_value,
    period_in,
    period_out,
    telecom_in,
    telecom_out,
)
from .reader import Node
from .resources import absolute_identifiers, choice, common_extensions, record_extra_in, record_id, split_identifiers

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer


def _has_system(rec: Location | Organization) -> bool:
    return bool(rec.id) or any(i.system for i in rec.identifiers)


def _uuid_key(system: str, parts: list[str]) -> dict[str, str]:
    return {"system": system, "value": str(uuid.uuid5(uuid.NAMESPACE_URL, system + "#" + "|".join(parts)))}


def location_chain(rec: Location) -> list[str]:
    """Type and name (or identifiers) of the place and of each place it is part of, site first."""
    parts: list[str] = []
    seen = 0
    place: Location | None = rec
    while place is not None and seen < 32:  # a chain longer than a site's levels is bad data
        label = place.name or ",".join(i.value for i in place.identifiers)
        parts.insert(0, f"{place.physical_type or ''}:{label}")
        place, seen = place.part_of, seen + 1
    return parts


URI_SYSTEM = "urn:ietf:rfc:3986"
"""The system of an identifier that is itself a URI (an HL7v2 HD universal id: ``urn:oid:…``)."""


def location_key(rec: Location) -> dict[str, str] | None:
    """The chain key, unless the place has an id or an identifier of a real system. An HD's universal
    id (system ``urn:ietf:rfc:3986``) does not key the write: senders reuse one OID for a whole
    namespace of rooms (Microsoft's ADT-A06 samples name ROOM1 and ROOM2 with one OID)."""
    if rec.id or any(i.system and i.system != URI_SYSTEM for i in rec.identifiers):
        return None
    chain = location_chain(rec)
    return _uuid_key(C.SID_LOCATION_KEY, chain) if any(p.split(":", 1)[1] for p in chain) else None


def organization_key(rec: Organization) -> dict[str, str] | None:
    if _has_system(rec):
        return None
    values = [f"{i.type or ''}:{i.value}" for i in rec.identifiers] or ([f"name:{rec.name}"] if rec.name else [])
    return _uuid_key(C.SID_ORGANIZATION_KEY, values) if values else None


def location_out(rec: Location, w: Writer) -> dict[str, Any]:
    physical = {"coding": [{"system": C.LOCATION_PHYSICAL_TYPE, "code": rec.physical_type}]} \
        if rec.physical_type else None
    return compact({
        "resourceType": "Location",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, location_key(rec)),
        "status": rec.status,
        "name": rec.name,
        "description": rec.description,
        "mode": rec.mode,
        "physicalType": physical,
        "address": address_out(rec.address) if rec.address else None,
        "managingOrganization": w.ref(rec.managing_organization) if rec.managing_organization else None,
        "partOf": w.ref(rec.part_of) if rec.part_of else None,
    })


def physical_type_in(node: Node) -> str | None:
    concept = node.obj("physicalType")
    for coding in concept.list("coding") if concept else []:
        if coding.str("system") == C.LOCATION_PHYSICAL_TYPE and coding.str("code") in LOCATION_PHYSICAL_TYPES:
            return coding.str("code")
    return None


def location_in(node: Node, r: Reader) -> Location:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, C.SID_LOCATION_KEY)
    address = node.obj("address")
    return Location(
        id=record_id(node, found), identifiers=identifiers, name=node.str("name"),
        description=node.str("description"),
        status=choice(node.str("status"), LOCATION_STATUSES, node.at("status")),
        mode=choice(node.str("mode"), LOCATION_MODES, node.at("mode")),
        physical_type=physical_type_in(node),
        address=address_in(address) if address is not None else None,
        part_of=r.follow(node.obj("partOf"), Location),
        managing_organization=follow_organization(r, node.obj("managingOrganization")),
        extra=record_extra_in(node))


def organization_out(rec: Organization, w: Writer) -> dict[str, Any]:
    return compact({
        "resourceType": "Organization",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, organization_key(rec)),
        "type": [concept_out(t) for t in rec.types],
        "name": rec.name,
        "telecom": [telecom_out(t) for t in rec.telecom],
        "address": [address_out(a) for a in rec.addresses],
        "partOf": w.ref(rec.part_of) if rec.part_of else None,
    })


def organization_in(node: Node, r: Reader) -> Organization:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, C.SID_ORGANIZATION_KEY)
    return Organization(
        id=record_id(node, found), identifiers=identifiers, name=node.str("name"),
        types=concepts_in(node.list("type")),
        addresses=[address_in(a) for a in node.list("address")],
        telecom=[telecom_in(t) for t in node.list("telecom")],
        part_of=follow_organization(r, node.obj("partOf")), extra=record_extra_in(node))


def follow_organization(r: Reader, ref: Node | None) -> Organization | None:
    """An Organization reference read as an Organization (a Bundle's own Organization entries are
    read as Pharmacy records, which is what a prescription's performer is)."""
    return r.follow_as(ref, "Organization", Organization, organization_in)


# --- Encounter.location and Encounter.serviceProvider ------------------------------------------------


def encounter_places_out(rec: Encounter, w: Writer) -> dict[str, Any]:
    locations = [compact({
        "extension": [ext(C.EXT_TEMPORARY_LOCATION, "Boolean", part.temporary)] if part.temporary is not None else [],
        "location": w.ref(part.location),
        "status": part.status,
        "period": period_out(part.period, "Encounter.location.period", w.options),
    }) for part in rec.locations]
    return compact({"location": locations,
                    "serviceProvider": w.ref(rec.service_provider) if rec.service_provider else None,
                    "hospitalization": {"destination": w.ref(rec.destination)} if rec.destination else None})


def encounter_places_in(node: Node, r: Reader) -> dict[str, Any]:
    locations = []
    for part in node.list("location"):
        target = r.follow(part.obj("location"), Location)
        if target is None:
            continue  # a reference outside the document: kept by the FHIR keep mechanism
        locations.append(EncounterLocation(
            location=target,
            status=choice(part.str("status"), ENCOUNTER_LOCATION_STATUSES, part.at("status")),
            temporary=ext_value(part, C.EXT_TEMPORARY_LOCATION, "Boolean"),
            period=period_in(part.obj("period"))))
    stay = node.obj("hospitalization")
    return {"locations": locations, "service_provider": follow_organization(r, node.obj("serviceProvider")),
            "destination": r.follow(stay.obj("destination"), Location) if stay is not None else None}

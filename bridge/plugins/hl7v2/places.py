"""An HL7v2 visit's places as Location records, and its servicing facility as an Organization.

PV1-3 (assigned patient location), PV1-6 (prior), PV1-11 (temporary), PV1-42 (pending) and PV1-43
(prior temporary) are PL values: point of care ^ room ^ bed ^ facility ^ status ^ person location
type ^ building ^ floor ^ description ^ comprehensive location identifier ^ assigning authority.
Each named part becomes a Location, chained through ``part_of`` from the bed up to the facility
(site ← building ← floor ← point of care ← room ← bed), as a hospital's bed board reads it. PV2-1
(prior pending location: where a pending transfer was to take the patient) is a ``planned`` place
that is explicitly not temporary, as HL7's V2-to-FHIR mapping has it; that pair (planned, not
temporary) is how it is told apart from PV1-42. PV1-39 (servicing facility) becomes the visit's
``service_provider``.

These fields stay unmapped for the HL7v2 encoder: they are kept as read and written back exactly,
and the records built here are derived from them (nested in the Encounter, never written twice).
Time stays clinical data: these places carry no period, since PV1 gives none of its own.
"""

from __future__ import annotations

import dataclasses
import re

from bridge import Encounter, EncounterLocation, Identifier, Location, Organization

from .header import Separators
from .reader import NULL, Segment, text

OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")

PL_LEVELS = ((4, "si"), (7, "bu"), (8, "lvl"), (1, None), (2, "ro"), (3, "bd"))
"""PL components from the most general place to the most specific, with their FHIR physical type.
The point of care (PL.1: a nursing unit, a department or a clinic) has none: no R4 code says which."""

VISIT_PLACES = ((3, "active", None), (6, "completed", None), (11, "active", True), (42, "planned", None),
                (43, "completed", True))
"""PV1 field, FHIR encounter-location status, temporary: assigned, prior, temporary, pending, prior
temporary. The assigned place of a finished or planned visit takes the visit's tense (see read)."""


def _hd(value: str, seps: Separators) -> tuple[str, list[Identifier]]:
    """HD (namespace & universal id & type) → name, and the universal id as an identifier when it is
    an OID or a URI (anything else names no system a server could match)."""
    subs = [text(s, seps) for s in value.split(seps.subcomponent)] + ["", ""]
    universal = subs[1]
    if OID.fullmatch(universal):
        return subs[0], [Identifier(value=f"urn:oid:{universal}", system="urn:ietf:rfc:3986")]
    if universal.startswith(("urn:", "http://", "https://")):
        return subs[0], [Identifier(value=universal, system="urn:ietf:rfc:3986")]
    return subs[0] or universal, []


def read_place(value: str, seps: Separators) -> Location | None:
    """One PL value → its most specific Location, each broader place linked through ``part_of``."""
    parts = value.split(seps.component) + [""] * 11
    place: Location | None = None
    for number, physical in PL_LEVELS:
        name, ids = _hd(parts[number - 1], seps)
        if name or ids:
            place = Location(name=name or None, identifiers=ids, mode="instance", physical_type=physical,
                             part_of=place)
    if place is None:
        return None
    description = text(parts[8], seps)
    comprehensive = text(parts[9].split(seps.subcomponent)[0], seps)
    place.description = description or None
    if comprehensive:
        _, authority = _hd(parts[10], seps)
        system = authority[0].value if authority else None
        place.identifiers.append(Identifier(value=comprehensive, system=system))
    return place


def read(pv1: Segment | None, seps: Separators, visit_status: str | None,
         pv2: Segment | None = None) -> list[EncounterLocation]:
    """The visit's places, assigned first. A finished visit's assigned place is ``completed`` and a
    planned visit's ``planned``: the place is where the visit was or will be, as its status says."""
    if pv1 is None:
        return []
    out = []
    for number, status, temporary in VISIT_PLACES:
        raw = pv1.get(number)
        if not raw or raw == NULL:
            continue
        place = read_place(raw.split(seps.repetition)[0], seps)
        if place is None:
            continue
        if number == 3 and visit_status in ("finished", "planned"):
            status = "completed" if visit_status == "finished" else "planned"
        out.append(EncounterLocation(location=place, status=status, temporary=temporary))
    pending = prior_pending(pv2, seps)
    return out + ([pending] if pending is not None else [])


def prior_pending(pv2: Segment | None, seps: Separators) -> EncounterLocation | None:
    """PV2-1 prior pending location (PL): the place a pending transfer was to take the patient to
    (required when the transfer is cancelled, A27). ``planned`` and ``temporary`` False: the pair
    PV1 never gives, so it is not written back as PV1-42."""
    raw = pv2.get(1) if pv2 is not None else ""
    place = read_place(raw.split(seps.repetition)[0], seps) if raw and raw != NULL else None
    return EncounterLocation(location=place, status="planned", temporary=False) if place is not None else None


def is_prior_pending(part: EncounterLocation) -> bool:
    """Whether a visit place is PV2-1's (see :func:`prior_pending`)."""
    return part.status == "planned" and part.temporary is False


def service_provider(pv1: Segment | None, seps: Separators) -> Organization | None:
    """PV1-39 servicing facility (IS, a code of user table 0115; CWE from v2.7: code ^ text)."""
    raw = pv1.get(39) if pv1 is not None else ""
    if not raw or raw == NULL:
        return None
    parts = [text(p, seps) for p in raw.split(seps.repetition)[0].split(seps.component)] + ["", ""]
    if not parts[0] and not parts[1]:
        return None
    ids = [Identifier(value=parts[0], type="FI")] if parts[0] else []
    return Organization(identifiers=ids, name=parts[1] or parts[0])


def appointment_places(segments: list[Segment], seps: Separators) -> list[Location]:
    """AIL-3 (location resource, PL) of each AIL of an SIU: where the appointment takes place. The
    AIL segments stay kept as read; these records are derived from them."""
    out = []
    for seg in segments:
        if seg.name == "AIL":
            raw = seg.get(3)
            place = read_place(raw.split(seps.repetition)[0], seps) if raw and raw != NULL else None
            if place is not None:
                out.append(place)
    return out


CLIA_OID = "2.16.840.1.113883.4.7"
"""The OID of CLIA numbers (US laboratory certificates), as OBX-23.6 names their assigning authority."""


def performing_organization(obx: Segment, seps: Separators) -> Organization | None:
    """OBX-23 performing organization (XON: name ^ … ^ XON.3 id (v2.5 deprecated) ^ … ^ XON.6
    assigning authority (HD) ^ XON.7 identifier type ^ … ^ XON.10 organization identifier) and OBX-24
    its address: the lab that produced the result, which US lab reporting (CLIA) requires. Derived:
    both fields stay kept as read."""
    from . import datatypes as dt

    raw = obx.get(23)
    if not raw or raw == NULL:
        return None
    parts = [p for p in raw.split(seps.repetition)[0].split(seps.component)] + [""] * 10
    name = text(parts[0], seps)
    value = text(parts[9], seps) or text(parts[2], seps)
    ids = []
    if value:
        assigner, system = dt.read_hd(parts[5], seps) if parts[5] else (None, None)
        ids.append(Identifier(value=value, system=system, type=text(parts[6], seps) or None, assigner=assigner))
    address_raw = obx.get(24)
    address = dt.read_address(address_raw.split(seps.repetition)[0], seps) \
        if address_raw and address_raw != NULL else None
    if not name and not ids:
        return None
    return Organization(name=name or None, identifiers=ids, addresses=[address] if address else [])


def destination(pv1: Segment | None, seps: Separators) -> Location | None:
    """PV1-37 discharged to location (DLD: location ^ effective date; the location is a code of user
    table 0113, a CWE from v2.7 written as code & text & system): the kind of place the patient left
    for (home, a nursing home…), FHIR Encounter.hospitalization.destination."""
    raw = pv1.get(37) if pv1 is not None else ""
    if not raw or raw == NULL:
        return None
    subs = [text(s, seps) for s in raw.split(seps.repetition)[0].split(seps.component)[0].split(seps.subcomponent)]
    code, label, system = (subs + ["", "", ""])[:3]
    if not code and not label:
        return None
    ids = [Identifier(value=code, system=system or "HL70113")] if code else []
    return Location(name=label or code, identifiers=ids, mode="kind")


def attach(encounter: Encounter, pv1: Segment | None, seps: Separators, pv2: Segment | None = None) -> None:
    """Give the visit its places, servicing facility and discharge destination (derived: PV1 and
    PV2 keep them as read)."""
    encounter.locations = read(pv1, seps, encounter.status, pv2)
    encounter.service_provider = service_provider(pv1, seps)
    encounter.destination = destination(pv1, seps)


def says_nothing(encounter: Encounter) -> bool:
    """A visit whose PV1 says nothing but where it was (the bare PV1 of an ORU or an MDM): treated
    as before places were read, so the message decodes, and round-trips, as it always did."""
    return dataclasses.replace(encounter, locations=[], service_provider=None, participants=[],
                               destination=None) == Encounter()


# --- writing: an Encounter from another format (FHIR) whose PV1 was not kept ------------------------

PL_COMPONENT = {"bd": 3, "ro": 2, None: 1, "wa": 1, "lvl": 8, "bu": 7, "si": 4}
"""Physical type → PL component (the inverse of PL_LEVELS; a ward is a point of care)."""
PLACE_FIELDS = (3, 6, 11, 37, 39, 42, 43)
TENSE_FIELDS = {("active", None): 3, ("completed", None): 6, ("active", True): 11, ("planned", None): 42,
                ("completed", True): 43, ("reserved", None): 42}
"""(status, temporary) → PV1 field, for places read from another format. The assigned place of a
finished visit (``completed``) is PV1-3 when the visit has no ``active`` place."""


def _hd_out(place: Location) -> str:
    from .reader import esc, sub

    oid = next((i.value[8:] for i in place.identifiers
                if i.system == "urn:ietf:rfc:3986" and i.value.startswith("urn:oid:")), None)
    return sub(esc(place.name), esc(oid), "ISO") if oid else esc(place.name)


def write_place(place: Location) -> str:
    """A Location chain → PL; a level the chain does not name stays empty."""
    from .reader import comp, esc

    parts = [""] * 9
    current: Location | None = place
    depth = 0
    while current is not None and depth < 32:
        index = PL_COMPONENT.get(current.physical_type)
        if index is not None and not parts[index - 1]:
            parts[index - 1] = _hd_out(current)
        current, depth = current.part_of, depth + 1
    parts[8] = esc(place.description)
    return comp(*parts)


def written(encounter: Encounter) -> dict[int, str]:
    """PV1 place fields of an Encounter's locations and service provider (first place per field)."""
    from .reader import esc

    out: dict[int, str] = {}
    parts = encounter.locations
    has_active = any(p.status == "active" and not p.temporary for p in parts)
    for part in parts:
        if is_prior_pending(part):
            continue  # PV2-1, not a PV1 field
        number = TENSE_FIELDS.get((part.status or "active", part.temporary or None))
        if part.status == "completed" and not part.temporary and not has_active and 3 not in out:
            number = 3
        if number is not None and number not in out:
            out[number] = write_place(part.location)
    if encounter.destination is not None:
        out[37] = _destination_out(encounter.destination)
    provider = encounter.service_provider
    if provider is not None:
        code = next((i.value for i in provider.identifiers if i.type == "FI"), None)
        out[39] = esc(code or provider.name)
    return out


def _destination_out(place: Location) -> str:
    """PV1-37.1: the table 0113 code (with its text and system when they say more), else the name."""
    from .reader import esc, sub

    ident = next((i for i in place.identifiers if i.value), None)
    if ident is None:
        return esc(place.name)
    if ident.system in (None, "HL70113") and place.name in (None, ident.value):
        return esc(ident.value)
    return sub(esc(ident.value), esc(place.name), esc(ident.system))


def performing_organization_written(lab: Organization | None) -> dict[int, str]:
    """OBX-23 (XON: name ^^^^^ assigning authority HD ^ identifier type ^^^ organization identifier)
    and OBX-24 (address) of a result's performing laboratory."""
    from . import datatypes as dt
    from .reader import comp, esc

    if lab is None:
        return {}
    ident = lab.identifiers[0] if lab.identifiers else None
    xon = comp(esc(lab.name), "", "", "", "", dt.write_hd(ident.assigner, ident.system) if ident else "",
               esc(ident.type) if ident else "", "", "", esc(ident.value) if ident else "")
    return {23: xon, 24: dt.write_address(lab.addresses[0]) if lab.addresses else ""}

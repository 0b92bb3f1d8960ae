"""Participants as the FHIR elements each resource has for them, and PractitionerRole.

A record's :class:`~bridge.Participant` list (the people an HL7v2 message names beyond the one
field each record always had) is written where FHIR R4 puts that kind of person: an Encounter's
participants with their v3-ParticipationType, a Patient's generalPractitioner, an Observation's
performer, a DiagnosticReport's resultsInterpreter or performer, a ServiceRequest's requester,
performer or supportingInfo, a MedicationRequest's requester and recorder, a DocumentReference's
author and authenticator, an Appointment's participants, an Immunization's performer with its
function (OP ordering, AP administering), a Procedure's performer. A participant in a stated role
is a PractitionerRole; it replaces the plain reference to its own practitioner where the resource
already had one (an Observation's performer, a ServiceRequest's requester), so a person is named
once per element.

The encoder calls :func:`merge` after a record's own mapping; the decoder calls :func:`read`
after the resource's own reader, so both directions agree. Practitioner and PractitionerRole are
reference data (conditional creates): one without an identifier a server could match gets a key
derived from what names it (``…/sid/practitioner-key``, ``…/sid/practitioner-role-key``), so the
same person in the same role is one resource however many messages name them.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from bridge import (
    PARTICIPATION_TYPES,
    ROLE_FUNCTIONS,
    Location,
    Participant,
    Practitioner,
    PractitionerRole,
    Record,
)

from . import constants as C
from .datatypes import compact, period_in, period_out, telecom_in, telecom_out
from .reader import Node

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

SID_PRACTITIONER_KEY = f"{C.BASE}/sid/practitioner-key"
SID_ROLE_KEY = f"{C.BASE}/sid/practitioner-role-key"
DERIVED_KEYS = (SID_PRACTITIONER_KEY, SID_ROLE_KEY)
IMMUNIZATION_FUNCTION = "http://terminology.hl7.org/CodeSystem/v2-0443"
"""Immunization.performer.function codes (R4 immunization-function: OP ordering, AP administering)."""

LIST, SINGLE, PARTICIPANT, ACTOR, IMMUNIZATION = "list", "single", "participant", "actor", "immunization"
PERFORMER = "performer"
"""Procedure.performer: ``{"actor": …}`` (its function is the SNOMED CT role a PR1 field implies;
a participant's role is in its PractitionerRole)."""
ANY = "*"
ELEMENTS: dict[str, tuple[tuple[tuple[str, ...], str, str], ...]] = {
    "Patient": (((ANY,), "generalPractitioner", LIST),),
    "Encounter": (((ANY,), "participant", PARTICIPANT),),
    "Appointment": ((("CALLBCK", "ENT"), "supportingInformation", LIST), ((ANY,), "participant", ACTOR)),
    "Observation": (((ANY,), "performer", LIST),),
    "DiagnosticReport": ((("RESP", "SPRF", "VRF"), "resultsInterpreter", LIST), ((ANY,), "performer", LIST)),
    "ServiceRequest": ((("AUT", "REF"), "requester", SINGLE), (("PRF", "SPRF", "CON", "ATND"), "performer", LIST),
                       ((ANY,), "supportingInfo", LIST)),
    "MedicationRequest": ((("AUT",), "requester", SINGLE), (("ENT",), "recorder", SINGLE),
                          ((ANY,), "supportingInformation", LIST)),
    "DocumentReference": ((("AUTHEN",), "authenticator", SINGLE), (("AUT", ANY), "author", LIST)),
    "Immunization": (((ANY,), "performer", IMMUNIZATION),),
    "Procedure": (((ANY,), "performer", PERFORMER),),
}
"""Resource type → (participant functions, element, shape), first match wins."""

FIELD = {"Patient": "general_practitioners"}
"""The record field holding a resource's participants (``participants`` unless named here)."""


def element_for(rtype: str, function: str | None, taken: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """Where a participant of this function goes; a single element already naming someone else
    (``taken``) passes it on to the next element that takes it (requester → supportingInfo)."""
    for functions, element, shape in ELEMENTS.get(rtype, ()):
        if (ANY in functions or function in functions) and element not in taken:
            return element, shape
    return None


def participants_of(record: Record, rtype: str) -> list[Participant]:
    return list(getattr(record, FIELD.get(rtype, "participants"), None) or [])


# --- writing ---------------------------------------------------------------------------------------


def _uuid_key(system: str, seed: Any) -> dict[str, str]:
    text = json.dumps(seed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"system": system, "value": str(uuid.uuid5(uuid.NAMESPACE_URL, system + "#" + text))}


def practitioner_key(resource: dict[str, Any]) -> dict[str, str] | None:
    """A key for a Practitioner no server could match: its identifiers (value, type, assigner), else
    its name. A bare value (no type, no assigning authority) does not say whose number it is, so
    its name goes into the key too: one number with two names is two people, not one resource
    created twice. None when it has an NPI or an identifier with a system."""
    idents = resource.get("identifier") or []
    if any(i.get("system") and i.get("value") for i in idents):
        return None
    seed: Any = [[i.get("value"), i.get("type"), i.get("assigner")] for i in idents]
    if not any(i.get("type") or i.get("assigner") for i in idents):
        seed = [seed, resource.get("name")] if seed else resource.get("name")
    return _uuid_key(SID_PRACTITIONER_KEY, seed) if seed else None


def role_out(rec: PractitionerRole, w: Writer) -> dict[str, Any]:
    from .resources import absolute_identifiers, coded_out, common_extensions

    body = compact({
        "practitioner": w.ref(rec.practitioner) if rec.practitioner else None,
        "organization": w.ref(rec.organization) if rec.organization else None,
        "code": [c for c in (coded_out(code) for code in rec.code) if c],
        "specialty": [c for c in (coded_out(s) for s in rec.specialty) if c],
        "location": [w.ref(place) for place in rec.locations],
        "telecom": [telecom_out(t) for t in rec.telecom],
        "period": period_out(rec.period, "PractitionerRole.period", w.options),
    })
    key = None if rec.id or any(i.system for i in rec.identifiers) else _uuid_key(SID_ROLE_KEY, body)
    return compact({"resourceType": "PractitionerRole", "extension": common_extensions(rec),
                    "identifier": absolute_identifiers(rec, key), **body})


def role_in(node: Node, r: Reader) -> PractitionerRole:
    from .places import follow_organization
    from .resources import coded_in, record_extra_in, record_id, split_identifiers

    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_ROLE_KEY)
    return PractitionerRole(
        id=record_id(node, found), identifiers=identifiers,
        practitioner=r.follow(node.obj("practitioner"), Practitioner),
        organization=follow_organization(r, node.obj("organization")),
        code=[c for c in (coded_in(n) for n in node.list("code")) if c],
        specialty=[c for c in (coded_in(n) for n in node.list("specialty")) if c],
        locations=[p for p in (r.follow(n, Location) for n in node.list("location")) if p],
        telecom=[telecom_in(t) for t in node.list("telecom")], period=period_in(node.obj("period")),
        extra=record_extra_in(node))


def _function_concept(function: str | None) -> list[dict[str, Any]]:
    return [{"coding": [{"system": C.PARTICIPATION_TYPE, "code": function}]}] if function else []


def _entry(shape: str, ref: dict[str, str], function: str | None) -> dict[str, Any]:
    if shape == PARTICIPANT:
        return compact({"type": _function_concept(function), "individual": ref})
    if shape == ACTOR:
        return compact({"type": _function_concept(function), "actor": ref, "status": "accepted"})
    if shape == IMMUNIZATION:
        code = {"AUT": "OP", "PRF": "AP"}.get(function or "")
        return compact({"function": {"coding": [{"system": IMMUNIZATION_FUNCTION, "code": code}]} if code else None,
                        "actor": ref})
    if shape == PERFORMER:
        return {"actor": ref}
    return ref


def merge(record: Record, resource: dict[str, Any], w: Writer) -> dict[str, Any]:
    """The resource with the record's participants added where FHIR puts them (see ELEMENTS)."""
    rtype = resource.get("resourceType", "")
    if rtype == "Practitioner":
        key = practitioner_key(resource)
        if key is not None:
            resource["identifier"] = [*resource.get("identifier", []), key]
        return resource
    for part in participants_of(record, rtype):
        target = part.role or part.practitioner
        if target is None:
            continue
        plain = w.ref(part.role.practitioner)["reference"] if part.role and part.role.practitioner else None
        found = _free_element(resource, rtype, part.function, plain)
        if found is None:
            continue
        element, shape = found
        entry = _entry(shape, w.ref(target), part.function)
        if shape == SINGLE:
            resource[element] = entry
            continue
        items = list(resource.get(element) or [])
        at = next((i for i, item in enumerate(items) if plain and item.get("reference") == plain), None)
        if at is not None and shape == LIST:
            items[at] = entry  # the role names its practitioner: one reference, not two
        elif entry not in items:
            items.append(entry)
        resource[element] = items
    return resource


def _free_element(resource: dict[str, Any], rtype: str, function: str | None,
                  plain: str | None) -> tuple[str, str] | None:
    """The element for the function, passing over a single element that names someone else."""
    taken: tuple[str, ...] = ()
    while (found := element_for(rtype, function, taken)) is not None:
        element, shape = found
        current = resource.get(element)
        if shape != SINGLE or current is None or (plain and current.get("reference") == plain):
            return found
        taken += (element,)
    return None


# --- reading ---------------------------------------------------------------------------------------


def _target(ref: Node | None, r: Reader) -> tuple[Practitioner | None, PractitionerRole | None]:
    role = r.follow(ref, PractitionerRole)
    return (None, role) if role is not None else (r.follow(ref, Practitioner), None)


def _function_in(item: Node, key: str) -> str | None:
    for concept in item.list(key):
        for coding in concept.list("coding"):
            if coding.str("system") == C.PARTICIPATION_TYPE and coding.str("code") in PARTICIPATION_TYPES:
                return coding.str("code")
    return None


BASE_FIELDS = {("Observation", "performer"): "performer", ("ServiceRequest", "requester"): "requester",
               ("MedicationRequest", "requester"): "prescriber", ("DocumentReference", "author"): "author",
               ("Immunization", "performer"): "performer", ("Appointment", "participant"): "practitioner",
               ("Encounter", "participant"): "practitioner", ("ServiceRequest", "performer"): "performers",
               ("Procedure", "performer"): "performers"}
"""Elements where the record already has a field of its own: its practitioner is not a participant
(a Procedure's performers hold theirs in a ProcedurePerformer)."""


def _refs(node: Node, element: str, shape: str) -> list[tuple[Node | None, str | None]]:
    """(reference, stated function) of each item of an element."""
    if shape == SINGLE:
        item = node.obj(element)
        return [(item, None)] if item is not None else []
    out: list[tuple[Node | None, str | None]] = []
    for item in node.list(element):
        if shape == PARTICIPANT:
            out.append((item.obj("individual"), _function_in(item, "type")))
        elif shape == PERFORMER:
            out.append((item.obj("actor"), None))
        elif shape in (ACTOR, IMMUNIZATION):
            function = _function_in(item, "type") if shape == ACTOR else None
            if shape == IMMUNIZATION:
                codes = [c.str("code") for f in [item.obj("function")] if f for c in f.list("coding")]
                function = {"OP": "AUT", "AP": "PRF"}.get(next((c for c in codes if c), ""))
            out.append((item.obj("actor"), function))
        else:
            out.append((item, None))
    return out


ROLE_STANDS_FOR_BASE = {("Observation", "performer"): ("RO",), ("ServiceRequest", "requester"): (),
                        ("MedicationRequest", "requester"): (), ("ServiceRequest", "performer"): ("RT",)}
"""Elements where a role stands for the record's own person (merge replaced the plain reference):
read back into the record's field when it is empty, if the role's code is one of those given (any
code for a single element: whoever requests is the requester). A result's performer is its
responsible observer (RO), not its lab's medical director; a referral's performers are its
referred-to providers (RT)."""


def read(node: Node, record: Record, r: Reader) -> None:
    """Fill the record's participants from the elements :func:`merge` writes (the record's own
    field keeps its one person; a role standing for that person gives it back when it is empty)."""
    rtype = node.str("resourceType") or ""
    name = FIELD.get(rtype, "participants")
    if rtype == "Practitioner":
        kept = [i for i in record.identifiers if i.system not in DERIVED_KEYS]  # type: ignore[attr-defined]
        record.identifiers = kept  # type: ignore[attr-defined]
        return
    if rtype not in ELEMENTS or not hasattr(record, name):
        return
    found: list[Participant] = []
    for functions, element, shape in ELEMENTS[rtype]:
        base = BASE_FIELDS.get((rtype, element))
        for ref, stated in _refs(node, element, shape):
            person, role = _target(ref, r)
            own = getattr(record, base, None) if base else None
            owned = [getattr(o, "practitioner", o) for o in (own if isinstance(own, list) else [own])]
            if (person is None and role is None) or (person is not None and any(person is o for o in owned)):
                continue  # nothing we read, or the record's own field
            if role is not None and role.practitioner is not None and (rtype, element) in ROLE_STANDS_FOR_BASE:
                _stand_in(record, base, own, role, ROLE_STANDS_FOR_BASE[(rtype, element)])
            found.append(Participant(function=_function(functions, stated, role), practitioner=person, role=role))
    setattr(record, name, found)


def _stand_in(record: Record, base: str | None, own: Any, role: PractitionerRole, codes: tuple[str, ...]) -> None:
    """Give the record's own field the role's practitioner (see ROLE_STANDS_FOR_BASE)."""
    if base is None:
        return
    matches = not codes or any(c.code.upper() in codes for c in role.code if c.code)
    if not matches:
        return
    if isinstance(own, list):
        if not any(role.practitioner is o for o in own):
            own.append(role.practitioner)
    elif own is None:
        setattr(record, base, role.practitioner)


def _function(functions: tuple[str, ...], stated: str | None, role: PractitionerRole | None) -> str | None:
    """What the person did: as the element states it (Encounter.participant.type), else as the
    role's code implies (RO → RESP…), else as the element implies (requester → AUT…)."""
    if stated:
        return stated
    implied = next((f for f in functions if f != ANY), None)
    if role is not None:
        codes = [c.code.upper() for c in role.code if c.code]
        return next((ROLE_FUNCTIONS[c] for c in codes if c in ROLE_FUNCTIONS), implied or "PART")
    return implied

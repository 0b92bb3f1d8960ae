"""Procedure records as FHIR R4 Procedure resources, and back.

FHIR requires the status (event-status, a required binding) and the subject. Performers keep their
function (the HL7v2 decoder's SNOMED CT occupation codes); the record's participants (people in a
stated role) are performers too, each as its PractitionerRole (people.py). The location is where it
was done. The parent procedure (HL7v2 PR1-25) is named by its id alone: it is written as a Procedure
of that identifier, status ``unknown`` and the patient, created only if absent (``ifNoneExist``), so
``partOf`` resolves and a full parent a server already holds is never overwritten by the stub. A
parent id without a system is keyed by the patient and the id (``…/sid/procedure-key``); with no
patient key either, ``partOf`` stays a logical reference (``{"identifier": …}``).
A procedure without an identifier a server could match (PR1-19 rarely names a system) gets one
derived from the patient, visit, code and date (system ``…/sid/procedure-key``), so a re-sent
message updates the resource it created.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from bridge import (
    PROCEDURE_STATUSES,
    Encounter,
    EncodeError,
    Identifier,
    Location,
    Patient,
    Practitioner,
    Procedure,
    ProcedurePerformer,
)
from bridge import keys_of

from . import constants as C
from .datatypes import compact, fhir_datetime, identifier_in, identifier_out
from .reader import Node
from .resources import (
    absolute_identifiers,
    absolute_system,
    choice,
    coded_in,
    coded_out,
    common_extensions,
    derived_key,
    record_extra_in,
    record_id,
    split_identifiers,
)

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

SID_PROCEDURE_KEY = f"{C.BASE}/sid/procedure-key"


def procedure_out(rec: Procedure, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("Procedure.patient is required by FHIR (Procedure.subject)")
    if rec.status is None:
        raise EncodeError(f"Procedure.status is required by FHIR (one of {', '.join(PROCEDURE_STATUSES)})")
    code = rec.code
    performed = fhir_datetime(rec.performed, "Procedure.performed", w.options)  # one spelling for the key too
    keyed = rec if any(i.system for i in rec.identifiers) else dataclasses.replace(rec, identifiers=[])
    key = derived_key(SID_PROCEDURE_KEY, keyed, keys_of([rec.encounter]).encounter_id if rec.encounter else None,
                      code.system if code else None, code.code if code else rec.description, performed,
                      rec.identifiers[0].value if rec.identifiers else None)
    concept = coded_out(code)
    if rec.description:
        concept = {**(concept or {}), "text": rec.description}
    return compact({
        "resourceType": "Procedure",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, key),
        "partOf": [parent_ref(rec, w)] if rec.part_of else [],
        "status": rec.status,
        "category": coded_out(rec.category),
        "code": concept,
        "subject": w.ref(rec.patient),
        "encounter": w.ref(rec.encounter) if rec.encounter else None,
        **performed_out(performed, rec, w),
        "performer": [compact({"function": coded_out(p.function), "actor": w.ref(p.practitioner)})
                      for p in rec.performers],
        "location": w.ref(rec.location) if rec.location else None,
        "reasonCode": [c for c in (coded_out(r) for r in rec.reason) if c],
    })  # the participants (ROL after PR1) join performer in people.merge


def performed_out(start: str | None, rec: Procedure, w: Writer) -> dict[str, Any]:
    """performedDateTime, or performedPeriod when the record says when it ended too (an autopsy's
    PDA-7 range): the one element FHIR has for either."""
    if rec.performed_end is None:
        return {"performedDateTime": start}
    end = fhir_datetime(rec.performed_end, "Procedure.performed_end", w.options)
    return {"performedPeriod": compact({"start": start, "end": end})}


def parent_ref(rec: Procedure, w: Writer) -> dict[str, Any]:
    """The procedure this one is part of: a Procedure created if absent, else a logical reference."""
    from .create_once import created_once

    assert rec.part_of is not None and rec.patient is not None
    ident = _absolute(identifier_out(rec.part_of))
    idents = [ident]
    if not ident.get("system"):
        patient = keys_of([rec.patient]).patient_id
        if not patient:
            return {"identifier": ident}
        seed = f"{SID_PROCEDURE_KEY}#parent|{patient}|{rec.part_of.value}"
        idents.insert(0, {"system": SID_PROCEDURE_KEY, "value": str(uuid.uuid5(uuid.NAMESPACE_URL, seed))})
    return created_once(w, {"resourceType": "Procedure", "identifier": idents, "status": "unknown",
                            "subject": w.ref(rec.patient)})


def _parent_in(part: Node, r: Reader) -> Identifier | None:
    """A partOf: the logical reference's identifier, or the referenced Procedure's (our key left out)."""
    logical = part.obj("identifier")
    if logical is not None:
        return identifier_in(logical)
    node = r.target(part, r.stack[-1] if r.stack else None)
    if node is None or node.str("resourceType") != "Procedure":
        return None
    r.referenced.add(id(node.data))  # the stub is this procedure's parent, not a record of its own
    found = [i for i in node.list("identifier") if i.str("system") != SID_PROCEDURE_KEY]
    return identifier_in(found[0]) if found else None


def _period(node: Node, edge: str) -> str | None:
    """One edge of performedPeriod (a start alone reads as the performed time)."""
    period = node.obj("performedPeriod")
    return period.datetime(edge) if period is not None else None


def _absolute(ident: dict[str, Any]) -> dict[str, Any]:
    if ident.get("system"):
        ident["system"] = absolute_system(ident["system"])
    return ident


def procedure_in(node: Node, r: Reader) -> Procedure:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_PROCEDURE_KEY)
    code_node = node.obj("code")
    code = coded_in(Node({k: v for k, v in code_node.data.items() if k != "text"}, code_node.path)) \
        if code_node is not None and code_node.list("coding") else None
    parents = [_parent_in(p, r) for p in node.list("partOf")]
    performers = []
    for item in node.list("performer"):
        who = r.follow(item.obj("actor"), Practitioner)
        if who is not None:
            performers.append(ProcedurePerformer(practitioner=who, function=coded_in(item.obj("function"))))
    return Procedure(
        id=record_id(node, found), identifiers=identifiers,
        status=choice(node.str("status"), PROCEDURE_STATUSES, node.at("status")),
        code=code, description=code_node.str("text") if code_node is not None else None,
        category=coded_in(node.obj("category")),
        performed=node.datetime("performedDateTime") or _period(node, "start"),
        performed_end=_period(node, "end"),
        performers=performers,
        reason=[c for c in (coded_in(n) for n in node.list("reasonCode")) if c],
        part_of=next((p for p in parents if p is not None), None),
        location=r.follow(node.obj("location"), Location),
        patient=r.follow(node.obj("subject"), Patient), encounter=r.follow(node.obj("encounter"), Encounter),
        extra=record_extra_in(node),
    )

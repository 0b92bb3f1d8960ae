"""RelatedPerson records as FHIR R4 RelatedPerson resources, and back.

FHIR requires the patient. Relationship codes keep their system as absolute URIs (HL7 table 0063
and 0131 codes are in R4's extensible patient-contactrelationship value set as v2 tables). A person
without an identifier a server could match (one with a system) gets one derived from the patient, the name and the relationship (system
``…/sid/related-person-key``), so a re-sent message updates the resource it created.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bridge import EncodeError, Patient, RelatedPerson

from . import constants as C
from .datatypes import address_in, address_out, compact, name_in, name_out, telecom_in, telecom_out
from .reader import Node
from .resources import (
    absolute_identifiers,
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

SID_RELATED_PERSON_KEY = f"{C.BASE}/sid/related-person-key"


def related_person_out(rec: RelatedPerson, w: Writer) -> dict[str, Any]:
    if rec.patient is None:
        raise EncodeError("RelatedPerson.patient is required by FHIR")
    name = rec.name
    first = rec.relationship[0].code if rec.relationship else None
    # NK1-33 ids rarely name a system, and a server cannot match an id without one: then the derived key.
    keyed = rec if any(i.system for i in rec.identifiers) else dataclasses.replace(rec, identifiers=[])
    key = derived_key(SID_RELATED_PERSON_KEY, keyed, name.family if name else None,
                      " ".join(name.given) if name else None, first)
    return compact({
        "resourceType": "RelatedPerson",
        "extension": common_extensions(rec),
        "identifier": absolute_identifiers(rec, key),
        "patient": w.ref(rec.patient),
        "relationship": [c for c in (coded_out(r) for r in rec.relationship) if c],
        "name": name_out(rec.name),
        "telecom": [telecom_out(t) for t in rec.telecom],
        "address": [address_out(a) for a in rec.addresses],
    })


def related_person_in(node: Node, r: Reader) -> RelatedPerson:
    found, identifiers = split_identifiers(node, C.SID_RECORD_ID, SID_RELATED_PERSON_KEY)
    return RelatedPerson(
        id=record_id(node, found), identifiers=identifiers,
        name=name_in(node.list("name")),
        relationship=[c for c in (coded_in(n) for n in node.list("relationship")) if c],
        telecom=[telecom_in(t) for t in node.list("telecom")],
        addresses=[address_in(a) for a in node.list("address")],
        patient=r.follow(node.obj("patient"), Patient),
        extra=record_extra_in(node),
    )

"""GT1: the person who guarantees the patient's bill, as a RelatedPerson of the patient.

A guarantor other than the patient (GT1-11 relationship not ``SEL``) is someone related to the
patient whom the hospital knows by name, number, address and phones: FHIR keeps such a person as a
RelatedPerson (the party of ``Account.guarantor``), as Microsoft's converter and the HL7
v2-to-FHIR IG's GT1 map do. A guarantor who is the patient is the Patient itself, and a guarantor
organization (GT1-21, no person named) is no RelatedPerson: neither gives one. The segment stays
kept where its message keeps it, so the record is carried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Patient, RelatedPerson

from . import datatypes as dt
from .reader import Segment

if TYPE_CHECKING:
    from .decode import Decoder

SELF = "SEL"
"""Table 0063 "self": the guarantor is the patient."""


def guarantor(dec: Decoder, gt1: Segment, patient: Patient) -> RelatedPerson | None:
    """GT1: number (2, CX), name (3), address (5), home and business phones (6, 7), relationship
    (11, table 0063). None for the patient's own guarantee or a GT1 that names nobody."""
    relationship_reps = dec.reps(gt1, 11)
    relationship = dt.read_coding(relationship_reps[0], dec.seps) if relationship_reps else None
    if relationship is not None and relationship.code.upper() == SELF:
        return None
    if relationship is not None:
        relationship.system = relationship.system or "HL70063"
    names = [n for n in (dt.read_name(r, dec.seps) for r in dec.reps(gt1, 3)) if n]
    person = RelatedPerson(
        identifiers=[i for i in (dt.read_identifier(r, dec.seps) for r in dec.reps(gt1, 2)) if i],
        name=names[0] if names else None,
        relationship=[relationship] if relationship is not None else [],
        telecom=[c for n in (6, 7) for c in (dt.read_telecom(r, dec.seps) for r in dec.reps(gt1, n)) if c],
        addresses=[a for a in (dt.read_address(r, dec.seps) for r in dec.reps(gt1, 5)) if a],
        patient=patient,
    )
    return person if person.name else None


def guarantors(dec: Decoder, segments: list[Segment], patient: Patient | None) -> list[RelatedPerson]:
    """Each GT1 in ``segments`` that names a guarantor other than the patient."""
    if patient is None:
        return []
    found = (guarantor(dec, s, patient) for s in segments if s.name == "GT1")
    return [p for p in found if p is not None]

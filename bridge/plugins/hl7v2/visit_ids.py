"""The other numbers a visit is known by: PV1-5 preadmit number and PV1-50 alternate visit id.

======  =================================  ===============================================
Field   Record                             Notes
======  =================================  ===============================================
PV1-19  ``Encounter.identifiers[0]``       the visit number (type ``VN``), read by decode.py
PV1-5   ``Encounter.identifiers`` (next)   CX; the number the visit had before admission
PV1-50  ``Encounter.identifiers`` (next)   CX; another system's number for the same visit
======  =================================  ===============================================

A registration system books a visit under a preadmit number and a billing or departmental system
may know it by another id; a FHIR server that has either must find the same Encounter, so both are
identifiers of the visit, with their assigning authority (CX.4), which the FHIR encoder makes an
Organization. CX.5 says the type as sent.

They are read only beside a visit number (PV1-19): the visit number is what the HL7v2 encoder
writes back as PV1-19 and what keys the visit, and a visit without one would otherwise be keyed and
written back by its preadmit number. The fields are derived, not mapped: PV1 keeps them as read, so
an HL7v2 round trip writes them exactly as sent; an Encounter from another format (no kept PV1-5 or
PV1-50) writes the first identifier after the visit number as PV1-50.
"""

from __future__ import annotations

from bridge import Encounter, Identifier

from . import datatypes as dt
from .header import Separators
from .reader import NULL, Segment

FIELDS = (5, 50)
"""PV1 fields read here, in the order their identifiers follow the visit number."""


def attach(encounter: Encounter, pv1: Segment | None, seps: Separators) -> None:
    """Append PV1-5 and PV1-50 to a visit's identifiers (once each; not when PV1-19 is empty)."""
    if pv1 is None or not any(i.type == "VN" for i in encounter.identifiers):
        return
    for number in FIELDS:
        ident = _first(pv1, number, seps)
        if ident is not None and not _known(encounter.identifiers, ident):
            encounter.identifiers.append(ident)


def written(encounter: Encounter | None) -> dict[int, str]:
    """PV1-50 for an Encounter from another format: its first identifier after the visit number."""
    if encounter is None:
        return {}
    visit = next((i for i in encounter.identifiers if i.type == "VN"), None) or \
        (encounter.identifiers[0] if encounter.identifiers else None)
    others = [i for i in encounter.identifiers if i is not visit]
    return {50: dt.write_identifier(others[0])} if others else {}


def kept_wins(values: dict[int, str], kept: set[str]) -> None:
    """The sender's own PV1-5/PV1-50 (``kept`` names the kept fields) go back as read: an HL7v2
    visit's extra identifiers are those fields, so they are not written again as PV1-50."""
    if any(f"PV1-{number}" in kept for number in FIELDS):
        values.pop(50, None)


def _first(pv1: Segment, number: int, seps: Separators) -> Identifier | None:
    raw = pv1.get(number)
    if not raw or raw == NULL:
        return None
    first = raw.split(seps.repetition)[0]
    return dt.read_identifier(first, seps) if first and first != NULL else None


def _known(identifiers: list[Identifier], ident: Identifier) -> bool:
    return any((i.value, i.system, i.assigner) == (ident.value, ident.system, ident.assigner) for i in identifiers)

"""Organizations an HL7v2 message names in XON fields, as Organization records.

XON is name ^ type code ^ id (XON.3, deprecated from v2.5) ^ check digit ^ scheme ^ assigning
authority (HD) ^ identifier type ^ assigning facility ^ name representation ^ organization
identifier (XON.10, which replaces XON.3). Read here:

- PD1-3 patient primary facility: the patient's primary care organization
  (``Patient.primary_facility``, FHIR ``Patient.generalPractitioner``);
- IN1-11 insured's group employer name with IN1-44 the employer's address: the organization that
  holds a group policy (``Coverage.policy_holder``, FHIR ``Coverage.policyHolder``).

Like the places of a visit these records are derived: PD1 and IN1 stay kept as read and are written
back exactly, so an HL7v2 round trip is unchanged; a Coverage from another format (no kept IN1) gets
IN1-11/IN1-44 from the record. Identifier assigning authorities (CX.4, XON.6)
are not records: the FHIR encoder makes them Organization entries (``fhir/assigners.py``).
"""

from __future__ import annotations

from bridge import Identifier, Organization

from . import datatypes as dt
from .header import Separators
from .reader import NULL, Segment, comp, esc, text


def read_organization(value: str, seps: Separators) -> Organization | None:
    """One XON repetition → Organization (name, and an identifier from XON.10 or XON.3 with its
    assigning authority XON.6 and type XON.7); None when it names nothing."""
    if not value or value == NULL:
        return None
    parts = value.split(seps.component) + [""] * 10
    name = text(parts[0], seps)
    code = text(parts[9], seps) or text(parts[2], seps)
    ids = []
    if code:
        assigner, system = dt.read_hd(parts[5], seps) if parts[5] else (None, None)
        ids.append(Identifier(value=code, system=system, type=text(parts[6], seps) or None, assigner=assigner))
    if not name and not ids:
        return None
    return Organization(name=name or None, identifiers=ids)


def first_organization(seg: Segment | None, number: int, seps: Separators) -> Organization | None:
    """The first repetition of an XON field of a segment, as an Organization."""
    raw = seg.get(number) if seg is not None else ""
    return read_organization(raw.split(seps.repetition)[0], seps) if raw else None


def primary_facility(segments: list[Segment], pid: Segment, seps: Separators) -> Organization | None:
    """PD1-3 of the PD1 that belongs to this PID (the one after it, before any other PID)."""
    start = next((i for i, seg in enumerate(segments) if seg is pid), None)
    if start is None:
        return None
    for seg in segments[start + 1:]:
        if seg.name in ("PID", "MSH"):
            return None
        if seg.name == "PD1":
            return first_organization(seg, 3, seps)
    return None


def policy_holder(in1: Segment, seps: Separators) -> Organization | None:
    """IN1-11 insured's group employer name, with IN1-44 insured's employer address."""
    org = first_organization(in1, 11, seps)
    if org is None:
        return None
    raw = in1.get(44)
    address = dt.read_address(raw.split(seps.repetition)[0], seps) if raw and raw != NULL else None
    if address is not None:
        org.addresses.append(address)
    return org


def write_organization(org: Organization | None) -> str:
    """Organization → XON (name ^^^^^ assigning authority HD ^ identifier type ^^^ identifier), the
    inverse of :func:`read_organization` for a record from another format (no kept segment)."""
    if org is None:
        return ""
    ident = org.identifiers[0] if org.identifiers else None
    return comp(esc(org.name), "", "", "", "", dt.write_hd(ident.assigner, ident.system) if ident else "",
                esc(ident.type) if ident else "", "", "", esc(ident.value) if ident else "")


def policy_holder_written(org: Organization | None) -> dict[int, str]:
    """IN1-11 and IN1-44 of a Coverage's policy holder."""
    if org is None:
        return {}
    return {11: write_organization(org), 44: dt.write_address(org.addresses[0]) if org.addresses else ""}

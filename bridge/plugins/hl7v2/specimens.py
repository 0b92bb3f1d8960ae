"""HL7v2 SPM (specimen) of a result report as Specimen records.

The SPM segment stays kept as read in the report's ``extra["hl7v2"]`` (after its results, where it
came), so an HL7v2 round trip writes it back unchanged; the Specimen records are derived from it and
nested in the DiagnosticReport (``specimens``), never written twice. Times are read as sent (the
channel's zone is applied later, as for every other time).
"""

from __future__ import annotations

from bridge import Coding, Identifier, Patient, Period, Specimen

from . import datatypes as dt
from .header import Separators
from .reader import NULL, Segment, text


def _first(seg: Segment, number: int, seps: Separators) -> str:
    raw = seg.get(number)
    return "" if not raw or raw == NULL else raw.split(seps.repetition)[0]


def _coding(seg: Segment, number: int, seps: Separators, table: str) -> Coding | None:
    value = _first(seg, number, seps)
    coding = dt.read_coding(value, seps) if value else None
    if coding is not None and not coding.system:
        coding.system = table
    return coding


def read_eip(value: str, seps: Separators) -> list[Identifier]:
    """An EIP (SPM-2, one SPM-3 repetition, an ORC-8 or OBR-29 parent order): placer (PLAC) ^ filler
    (FILL) ids, each EI id & namespace & universal id."""
    out = []
    for part, kind in zip(value.split(seps.component), ("PLAC", "FILL")):
        subs = [text(s, seps) for s in part.split(seps.subcomponent)] + ["", "", ""]
        if subs[0]:
            system = None
            if subs[2]:
                system = f"urn:oid:{subs[2]}" if subs[3].upper() == "ISO" else subs[2]
            out.append(Identifier(value=subs[0], system=system, type=kind, assigner=subs[1] or None))
    return out


def _when(value: str, seps: Separators) -> str | None:
    raw = text(value.split(seps.subcomponent)[0], seps)
    return dt.read_datetime(raw) if raw else None


def _parents(seg: Segment, seps: Separators, patient: Patient | None) -> list[Specimen]:
    """SPM-3 (EIP, repeating): the specimens this one was taken from, by their ids alone. The message
    says no more of them (type, collection), so a parent is only its ids and whose sample it is."""
    raw = seg.get(3)
    if not raw or raw == NULL:
        return []
    found = [Specimen(identifiers=ids, patient=patient)
             for ids in (read_eip(rep, seps) for rep in raw.split(seps.repetition)) if ids]
    return found


def read(seg: Segment, seps: Separators, patient: Patient | None) -> Specimen:
    """SPM-2 ids, SPM-3 parent specimens, SPM-4 type (table 0487), SPM-7 collection method (0488),
    SPM-8 source site, SPM-17 collection date/time range, SPM-18 received date/time."""
    collected = (_first(seg, 17, seps).split(seps.component) + [""])[:2]
    start, end = _when(collected[0], seps), _when(collected[1], seps)
    return Specimen(
        identifiers=read_eip(_first(seg, 2, seps), seps),
        parents=_parents(seg, seps, patient),
        specimen_type=_coding(seg, 4, seps, "HL70487"),
        collection_method=_coding(seg, 7, seps, "HL70488"),
        body_site=dt.read_coding(_first(seg, 8, seps), seps) if _first(seg, 8, seps) else None,
        collected=Period(start=start, end=end) if start or end else None,
        received=_when(_first(seg, 18, seps), seps),
        patient=patient,
    )

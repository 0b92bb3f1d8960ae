"""HL7v2 SPM (specimen) of a result report as Specimen records; the OBR's specimen fields when no SPM
names the sample (:func:`from_obr`).

The SPM segment stays kept as read in the report's ``extra["hl7v2"]`` (after its results, where it
came), so an HL7v2 round trip writes it back unchanged; the Specimen records are derived from it and
nested in the DiagnosticReport (``specimens``), never written twice. Times are read as sent (the
channel's zone is applied later, as for every other time).
"""

from __future__ import annotations

from bridge import Coding, Identifier, Patient, Period, Quantity, Specimen

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


NOT_SPECIMEN_SECTIONS = frozenset((
    "AU", "CT", "CTH", "CUS", "EC", "EN", "ICU", "NMR", "NMS", "NRS", "OT", "OUS", "PF", "PHR", "PHY", "PT",
    "RAD", "RC", "RT", "RUS", "RX", "VUS", "XRC"))
"""OBR-24 diagnostic service sections (HL7 table 0074) that examine the patient, not a sample:
imaging, cardiology, audiology, neurophysiology, pulmonary function, nursing, therapy, pharmacy. An
OBR of these has no specimen, whatever its OBR-7 (the time of the examination) says."""


def _sub_coding(value: str, seps: Separators, table: str | None = None) -> Coding | None:
    """A CWE sent as subcomponents of one component (SPS-1, SPS-4; CQ-2 units)."""
    coding = dt.read_coding(value.replace(seps.subcomponent, seps.component), seps) if value else None
    if coding is not None and not coding.system and table:
        coding.system = table
    return coding


def _volume(value: str, seps: Separators) -> Quantity | None:
    """OBR-9 (CQ): a number ^ its units (CWE in subcomponents)."""
    parts = value.split(seps.component) + [""]
    try:
        number = float(text(parts[0], seps))
    except ValueError:
        return None
    unit = _sub_coding(parts[1], seps)
    return Quantity(value=number, unit=(unit.display or unit.code) if unit else None,
                    code=unit.code or None if unit and unit.system else None, system=unit.system if unit else None)


def from_obr(seg: Segment, seps: Separators, patient: Patient | None) -> Specimen | None:
    """The sample an OBR describes when no SPM does (HL7 v2-to-FHIR IG, *Segment OBR to Specimen*,
    which its ORU^R01 and OML^O21 maps apply to each OBR): OBR-7 collection time (to OBR-8 when
    valued), OBR-9 collection volume, OBR-10 collector, OBR-14 received, OBR-15 specimen source
    (SPS-1 type, SPS-4 body site). None when the OBR states none of them. OBR-2/3 are not taken as
    the sample's id: the IG does so only when the order number *is* the accession number, which the
    message does not say. The OBR stays kept as read; this record is derived from it."""
    start, end = _when(_first(seg, 7, seps), seps), _when(_first(seg, 8, seps), seps)
    volume = _volume(_first(seg, 9, seps), seps) if _first(seg, 9, seps) else None
    collector = dt.read_practitioner(_first(seg, 10, seps), seps) if _first(seg, 10, seps) else None
    received = _when(_first(seg, 14, seps), seps)
    source = (_first(seg, 15, seps).split(seps.component) + [""] * 4)
    kind, site = _sub_coding(source[0], seps), _sub_coding(source[3], seps)  # table 0070 or 0487: as sent
    if not (start or end or volume or collector or received or kind or site):
        return None
    return Specimen(
        specimen_type=kind, body_site=site,
        collected=Period(start=start, end=end) if start or end else None,
        received=received, quantity=volume, collector=collector, patient=patient,
    )


def names_no_sample(obr: Segment, seps: Separators) -> bool:
    """The OBR's section (OBR-24) examines the patient, not a sample (imaging, cardiology…)."""
    return text(_first(obr, 24, seps), seps).upper() in NOT_SPECIMEN_SECTIONS


SAMPLE_SECTIONS = frozenset((
    "BG", "BLB", "CG", "CH", "CP", "HLA", "HM", "IMM", "LAB", "MB", "MCB", "MYC", "PAT", "SP", "SR", "TX",
    "URN", "VR"))
"""OBR-24 sections (HL7 table 0074) that test a sample: blood gases, blood bank, cytogenetics,
chemistry, cytopathology, HLA, hematology, immunology, laboratory, microbiology, mycobacteriology,
mycology, pathology, surgical pathology, serology, toxicology, urinalysis, virology."""


def says_a_sample(obr: Segment, seps: Separators) -> bool:
    """The OBR itself says a sample was taken: a field only a sample has (OBR-9 collection volume,
    OBR-10 collector, OBR-14 received, OBR-15 specimen source) or a laboratory section in OBR-24.
    OBR-7 alone does not: for an imaging order (a CT of the head) it is the time of the exam."""
    return (any(_first(obr, number, seps) for number in (9, 10, 14, 15))
            or text(_first(obr, 24, seps), seps).upper() in SAMPLE_SECTIONS)


def named_elsewhere(sample: Specimen, segments: list[Segment], seps: Separators) -> bool:
    """An SPM of the message names a sample collected at the same time: the OBR's sample is that
    one (sent once, with its SPM, by a sender whose second OBR lacks its own), not a second."""
    start = sample.collected.start if sample.collected else None
    return start is not None and any(
        seg.name == "SPM" and _when((_first(seg, 17, seps).split(seps.component) + [""])[0], seps) == start
        for seg in segments)

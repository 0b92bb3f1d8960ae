"""PDA (patient death and autopsy): the causes of death, as Conditions of the patient, and the
autopsy, as a Procedure.

PDA-1 names why the patient died (an ICD-10 I21 myocardial infarction): a diagnosis like any other,
which a FHIR server keeps as a Condition of the patient, as Microsoft's converter does. Its recorder
is whoever certified the death (PDA-5), when the certificate was signed (PDA-4).

PDA-6 = ``Y`` says an autopsy was performed: a procedure like any other, which a FHIR server keeps
as a Procedure (SNOMED CT 29240004 *Autopsy examination*), ``completed`` because the field says it
was done, over PDA-7 (DR: start ^ end), by PDA-8 (XCN). A pathology or quality analyst asks which
deaths were examined, when and by whom; before this the answer stayed in a kept segment. Without
``Y`` (``N``, empty, unknown) no Procedure is made: "no autopsy" is not a procedure.
PDA-3/9 (certificate and coroner indicators) are yes/no flags with no code in any terminology, and
stay kept with the segment (written back as sent), as does PDA-2. The death itself is the
Patient's (PID-29/30). The segment is kept by the message's first record, so the Conditions and the
Procedure are carried (derived: an HL7v2 round trip writes the segment as it came).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Coding, Condition, Encounter, Patient, Procedure, ProcedurePerformer

from . import adt
from . import datatypes as dt
from .reader import NULL, Segment, text

if TYPE_CHECKING:
    from .decode import Decoder


def causes_of_death(dec: Decoder, segments: list[Segment], patient: Patient | None,
                    encounter: Encounter | None) -> list[Condition]:
    """One Condition per PDA-1 repetition that names a cause, of the patient and visit."""
    if patient is None:
        return []
    reader = adt.ClinicalReader(dec.seps, dec.t, dec.reps)
    out: list[Condition] = []
    for seg in segments:
        if seg.name != "PDA":
            continue
        certifiers = dec.reps(seg, 5)
        certifier = dt.read_practitioner(certifiers[0], dec.seps) if certifiers else None
        for rep in dec.reps(seg, 1):
            code = dt.read_coding(rep, dec.seps)
            if code is None:
                continue
            out.append(Condition(code=code if code.code else None, description=None if code.code else code.display,
                                 recorded=reader.date(seg, 4), asserter=certifier,
                                 patient=patient, encounter=encounter))
    return out


AUTOPSY = ("29240004", "Autopsy examination")
"""SNOMED CT's procedure code for an autopsy (PDA-6 autopsy indicator)."""


def autopsies(dec: Decoder, segments: list[Segment], patient: Patient | None,
              encounter: Encounter | None) -> list[Procedure]:
    """One completed autopsy Procedure per PDA whose PDA-6 is ``Y``: PDA-7 its start and end,
    PDA-8 who performed it (a performer without a stated function: PDA names none)."""
    if patient is None:
        return []
    out: list[Procedure] = []
    for seg in segments:
        if seg.name != "PDA" or dec.t(seg, 6).strip().upper() != "Y":
            continue
        start, end = _range(seg.get(7), dec)
        doctors = dec.reps(seg, 8)
        doctor = dt.read_practitioner(doctors[0], dec.seps) if doctors else None
        out.append(Procedure(
            status="completed",
            code=Coding(code=AUTOPSY[0], system=dt.CODE_SYSTEMS["SCT"], display=AUTOPSY[1]),
            performed=start, performed_end=end,
            performers=[ProcedurePerformer(practitioner=doctor)] if doctor else [],
            patient=patient, encounter=encounter))
    return out


def _range(raw: str | None, dec: Decoder) -> tuple[str | None, str | None]:
    """A DR (start ^ end, each a DTM) as two ISO date-times; a part that is no date reads as None."""
    if not raw or raw == NULL:
        return None, None
    parts = raw.split(dec.seps.repetition)[0].split(dec.seps.component)
    start = dt.read_datetime(text(parts[0], dec.seps)) if parts[0] else None
    end = dt.read_datetime(text(parts[1], dec.seps)) if len(parts) > 1 and parts[1] else None
    return start, end

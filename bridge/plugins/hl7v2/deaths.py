"""PDA (patient death and autopsy): the causes of death, as Conditions of the patient.

PDA-1 names why the patient died (an ICD-10 I21 myocardial infarction): a diagnosis like any other,
which a FHIR server keeps as a Condition of the patient, as Microsoft's converter does. Its recorder
is whoever certified the death (PDA-5), when the certificate was signed (PDA-4). Nothing else is
implied: PDA-3/6/9 (certificate, autopsy and coroner indicators) are yes/no flags with no code in
any terminology, and stay kept with the segment (written back as sent), as do PDA-2 and PDA-7/8.
The death itself is the Patient's (PID-29/30). The segment is kept by the message's first record,
so the Conditions are carried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Condition, Encounter, Patient

from . import adt
from . import datatypes as dt
from .reader import Segment

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

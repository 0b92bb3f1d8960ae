"""PDA (patient death and autopsy): the causes of death, as Conditions of the patient, and the
certification and the autopsy, as Procedures.

PDA-1 names why the patient died (an ICD-10 I21 myocardial infarction): a diagnosis like any other,
which a FHIR server keeps as a Condition of the patient, as Microsoft's converter does. Its recorder
is whoever certified the death (PDA-5), when the certificate was signed (PDA-4).

PDA-6 = ``Y`` says an autopsy was performed: a procedure like any other, which a FHIR server keeps
as a Procedure (SNOMED CT 29240004 *Autopsy examination*), ``completed`` because the field says it
was done, over PDA-7 (DR: start ^ end), by PDA-8 (XCN). A pathology or quality analyst asks which
deaths were examined, when and by whom; before this the answer stayed in a kept segment. Without
``Y`` (``N``, empty, unknown) no Procedure is made: "no autopsy" is not a procedure.
PDA-3 = ``Y`` says the death was certified: VRDR's Death Certification is a Procedure (SNOMED CT
308646001 *Death certification*), ``completed``, performed when the certificate was signed (PDA-4),
by the certifier (PDA-5, a performer without a stated function: PDA does not say whether a physician
or a medical examiner certified). A registry or a quality analyst asks which deaths were certified,
when and by whom. Without ``Y`` no Procedure is made.
PDA-6 and PDA-9 (autopsy and coroner indicators) are also Observations of the patient, as the US
death reporting guide (HL7 FHIR Vital Records Death Reporting, VRDR) records them: LOINC 85699-7
*Autopsy was performed* (profile Autopsy Performed Indicator) and 74497-9 *Medical examiner or
coroner was contacted [US Standard Certificate of Death]* (profile Examiner Contacted), each valued
with the HL7 table 0136 yes/no code as sent (``Y``/``N``; ``U`` is not one of 0136's and gives
none). ACC-8 (accident description) is VRDR's Injury Incident: LOINC 11374-6 *Injury incident
description Narrative*, the text as value, ACC-1 (accident date/time) as effective. ACC-5 (job related), ACC-6 (death from the accident) and ACC-10 (police
notified) have no such code (VRDR's 69444-8 asks whether a *death* resulted from an injury at work,
not whether an accident was job related) and stay kept as sent, as does PDA-2. The death itself is
the Patient's (PID-29/30). The segments are kept by the message's first record, so the Conditions,
the Procedures and the Observations are carried (derived: an HL7v2 round trip writes the segment as
it came).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Coding, Condition, Encounter, Observation, Patient, Procedure, ProcedurePerformer, Record

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


CERTIFICATION = ("308646001", "Death certification")
"""SNOMED CT's procedure code for certifying a death, VRDR's Death Certification (PDA-3 indicator)."""


def certifications(dec: Decoder, segments: list[Segment], patient: Patient | None,
                   encounter: Encounter | None) -> list[Procedure]:
    """One completed Death Certification Procedure per PDA whose PDA-3 is ``Y``: PDA-4 when the
    certificate was signed, PDA-5 who certified it."""
    if patient is None:
        return []
    reader = adt.ClinicalReader(dec.seps, dec.t, dec.reps)
    out: list[Procedure] = []
    for seg in segments:
        if seg.name != "PDA" or dec.t(seg, 3).strip().upper() != "Y":
            continue
        certifiers = dec.reps(seg, 5)
        certifier = dt.read_practitioner(certifiers[0], dec.seps) if certifiers else None
        out.append(Procedure(
            status="completed",
            code=Coding(code=CERTIFICATION[0], system=dt.CODE_SYSTEMS["SCT"], display=CERTIFICATION[1]),
            performed=reader.date(seg, 4),
            performers=[ProcedurePerformer(practitioner=certifier)] if certifier else [],
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


YES_NO = "http://terminology.hl7.org/CodeSystem/v2-0136"
"""HL7 table 0136 (Yes/no indicator), VRDR's answer coding for its yes/no Observations."""
YES_NO_DISPLAY = {"Y": "Yes", "N": "No"}
FLAGS = (("PDA", 6, "85699-7", "Autopsy was performed"),
         ("PDA", 9, "74497-9", "Medical examiner or coroner was contacted [US Standard Certificate of Death]"))
"""Segment, field, LOINC code and name of the yes/no flags VRDR records as Observations."""
INJURY_INCIDENT = ("11374-6", "Injury incident description Narrative")
"""LOINC code of VRDR's Injury Incident Observation (ACC-8 accident description)."""


def flags(dec: Decoder, segments: list[Segment], patient: Patient | None,
          encounter: Encounter | None) -> list[Observation]:
    """PDA-6 autopsy and PDA-9 coroner indicators as VRDR's yes/no Observations of the patient, and
    ACC-8 as VRDR's Injury Incident (effective ACC-1). A flag neither ``Y`` nor ``N`` gives none."""
    if patient is None:
        return []
    out: list[Observation] = []
    for seg in segments:
        for name, number, code, display in FLAGS:
            answer = dec.t(seg, number).strip().upper() if seg.name == name else ""
            if answer in YES_NO_DISPLAY:
                out.append(Observation(
                    status="final", code=[Coding(code=code, system=dt.CODE_SYSTEMS["LN"], display=display)],
                    value_type="CWE",
                    value_codings=[Coding(code=answer, system=YES_NO, display=YES_NO_DISPLAY[answer])],
                    patient=patient, encounter=encounter))
        description = dec.t(seg, 8).strip() if seg.name == "ACC" else ""
        if description and description != NULL:
            when = dec.t(seg, 1)
            out.append(Observation(
                status="final",
                code=[Coding(code=INJURY_INCIDENT[0], system=dt.CODE_SYSTEMS["LN"], display=INJURY_INCIDENT[1])],
                value_type="TX", value_text=description,
                effective=dt.read_datetime(when) if when and when != NULL else None,
                patient=patient, encounter=encounter))
    return out


BESIDE = frozenset(("BAR", "DFT", "REF"))
"""Message types that carry an ACC or PDA outside an ADT patient group (ADT reads them per group)."""


def beside(dec: Decoder, records: list[Record]) -> list[Record]:
    """A BAR, DFT or REF's PDA and ACC flags (as :func:`flags`), of the message's first patient, with
    no visit (a BAR's ACC sits in one of several visit groups), carried."""
    if dec.type not in BESIDE:
        return []
    patient = next((r if isinstance(r, Patient) else getattr(r, "patient", None) for r in records
                    if isinstance(r, Patient) or getattr(r, "patient", None) is not None), None)
    return [adt.carried(o) for o in flags(dec, dec.message.segments, patient, None)]


def _range(raw: str | None, dec: Decoder) -> tuple[str | None, str | None]:
    """A DR (start ^ end, each a DTM) as two ISO date-times; a part that is no date reads as None."""
    if not raw or raw == NULL:
        return None, None
    parts = raw.split(dec.seps.repetition)[0].split(dec.seps.component)
    start = dt.read_datetime(text(parts[0], dec.seps)) if parts[0] else None
    end = dt.read_datetime(text(parts[1], dec.seps)) if len(parts) > 1 and parts[1] else None
    return start, end

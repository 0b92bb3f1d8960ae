"""PR1 segments to Procedure records, and Procedure records back to PR1 (ADT, BAR, DFT).

PR1 states no status, so a procedure is ``unknown`` (FHIR's event-status has no "reported" code, and
``completed`` would be a guess even for a date in the past). The three practitioner fields become
performers whose function is a SNOMED CT occupation code, so the role survives into FHIR and back:

=========  =======================  ==================================
PR1 field  meaning                  ProcedurePerformer.function
=========  =======================  ==================================
PR1-8      anesthesiologist         SNOMED CT 88189002 Anesthesiologist
PR1-11     surgeon                  SNOMED CT 304292004 Surgeon
PR1-12     procedure practitioner   (none: a performer without a stated role)
=========  =======================  ==================================

PR1-3 code, PR1-4 description, PR1-5 date, PR1-6 functional type (HL7 table 0230), PR1-15
associated diagnosis, PR1-19 procedure identifier and PR1-25 parent procedure are read; every other
field stays on the segment, which the message's first record keeps whole (the record is *carried*).
PR1-23 (the treating organizational unit, a PL) is where the procedure was done, and the ROL/PRT
segments of the PR1's group name who else took part, in what role: both are *derived* (the segments
stay kept as read), as a visit's places and people are (places.py, people.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import takewhile
from typing import TYPE_CHECKING, Any

from bridge import Coding, Encounter, Location, Participant, Patient, Procedure, ProcedurePerformer, Record

from . import datatypes as dt
from . import people, places
from .reader import NULL, Segment

if TYPE_CHECKING:
    from .adt import ClinicalReader

SNOMED = dt.CODE_SYSTEMS["SCT"]
ANESTHESIOLOGIST = Coding(code="88189002", system=SNOMED, display="Anesthesiologist")
SURGEON = Coding(code="304292004", system=SNOMED, display="Surgeon")
PERFORMER_FIELDS = ((8, ANESTHESIOLOGIST), (11, SURGEON), (12, None))
"""PR1 practitioner fields and the function each gives its performers (None: no stated role)."""
FUNCTIONAL_TYPES = "HL70230"


def read(reader: ClinicalReader, seg: Segment, patient: Patient, encounter: Encounter | None,
         following: Sequence[Segment] = ()) -> Procedure | None:
    """One PR1 as a Procedure; a PR1 that names no procedure (no code, no description) gives none.
    ``following`` are the segments after the PR1: the ROL/PRT among them that directly follow it
    belong to its group (HL7's PROCEDURE group is PR1 then ROL)."""
    code = reader.coding(seg, 3)
    description = reader.t(seg, 4) or None
    if code is None and description is None:
        return None
    performers = [ProcedurePerformer(practitioner=who, function=_copy(function))
                  for number, function in PERFORMER_FIELDS
                  for who in (dt.read_practitioner(rep, reader.seps) for rep in reader.reps(seg, number)) if who]
    parent = reader.entity_id(seg, 25)
    return Procedure(
        identifiers=reader.entity_id(seg, 19),
        status="unknown",
        code=code,
        description=description,
        category=reader.coding(seg, 6, FUNCTIONAL_TYPES),
        performed=reader.date(seg, 5),
        performers=performers,
        reason=[c for c in (dt.read_coding(rep, reader.seps) for rep in reader.reps(seg, 15)) if c],
        part_of=parent[0] if parent else None,
        location=treating_unit(seg, reader),
        participants=group_participants(following, reader),
        patient=patient,
        encounter=encounter,
    )


def treating_unit(seg: Segment, reader: ClinicalReader) -> Location | None:
    """PR1-23, the treating organizational unit (PL, as PV1-3 reads it: the most specific place
    named, the larger ones as its ``part_of``): where the procedure was done."""
    raw = seg.get(23)
    if not raw or raw == NULL:
        return None
    return places.read_place(raw.split(reader.seps.repetition)[0], reader.seps)


def group_participants(following: Sequence[Segment], reader: ClinicalReader) -> list[Participant]:
    """The ROL and PRT segments right after the PR1, each a participant in its stated role."""
    return people.segment_participants(takewhile(lambda s: s.name in people.FOLLOWERS, following), reader.seps)


def _copy(coding: Coding | None) -> Coding | None:
    """A fresh Coding per performer: records are mutable, and a shared one would change together."""
    return Coding(code=coding.code, system=coding.system, display=coding.display) if coding else None


def pr1(rec: Procedure, number: int) -> dict[int, str]:
    """The PR1 fields of a Procedure built elsewhere (FHIR, the bridge JSON): the decoder's fields.
    Its participants are not written: a role needs a ROL segment (as for a visit, see people.py)."""
    from .adt_encode import _ei
    from .reader import esc

    by_field: dict[int, list[str]] = {8: [], 11: [], 12: []}
    for performer in rec.performers:
        code = performer.function.code if performer.function else None
        slot = 8 if code == ANESTHESIOLOGIST.code else 11 if code == SURGEON.code else 12
        by_field[slot].append(dt.write_practitioner(performer.practitioner))
    category = dt.write_coding(rec.category) if rec.category else ""
    return {1: str(number), 3: dt.write_coding(rec.code), 4: esc(rec.description),
            5: dt.write_datetime(rec.performed), 6: category,
            **{slot: "~".join(values) for slot, values in by_field.items() if values},
            15: "~".join(dt.write_coding(c) for c in rec.reason),
            19: _ei(rec.identifiers[0] if rec.identifiers else None),
            23: places.write_place(rec.location) if rec.location else "", 25: _ei(rec.part_of)}


def financial(decoder: Any, record: Encounter | Patient) -> list[Record]:
    """The PR1 procedures of a BAR or DFT, then its account (PID-18) and episode (PV1-54), for the
    patient and (first) visit its record names. The segments stay kept whole on that record, so
    these records are carried."""
    from . import accounts
    from .adt import ClinicalReader, carried

    reader = ClinicalReader(decoder.seps, decoder.t, decoder.reps)
    encounter = record if isinstance(record, Encounter) else None
    patient = record.patient if isinstance(record, Encounter) else record
    if patient is None:
        return []  # FHIR requires Procedure.subject: a message without PID keeps its PR1 raw only
    segs = decoder.message.segments
    found = [read(reader, seg, patient, encounter, segs[at + 1:]) for at, seg in enumerate(segs) if seg.name == "PR1"]
    billing = accounts.read(reader, decoder.message.segment("PID"), decoder.message.segment("PV1"), patient,
                            encounter, decoder.event)
    return [*(carried(p) for p in found if p is not None), *billing]  # type: ignore[misc]

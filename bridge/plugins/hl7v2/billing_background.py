"""The clinical segments of a BAR or DFT as records: the patient's next of kin (NK1), guarantors
(GT1), mother (PID-21), allergies (AL1), diagnoses (DG1), insurance (IN1/IN2), observations (OBX)
and the services billed (ORC with OBR).

A billing message repeats what the hospital knows of the patient it bills: the diagnoses that
justify the charges, the insurance that pays them, the guarantor's and the relatives' contacts,
the observations made in the visit. They are the same facts an ADT or an order message carries,
in the same segments, so they are read as those are read (orders.background, companions.observations)
and a FHIR server gets the same Condition, Coverage, RelatedPerson and Observation resources from a
bill as from the admission. Only the first patient's segments are read (a BAR^P02 that purges
several accounts keeps the further PID groups raw, as before). The segments stay kept whole on the
message's record, so these records are carried: the HL7v2 encoder writes nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Encounter, Patient, Record

from . import adt, companions, orders
from .reader import Segment

if TYPE_CHECKING:
    from .decode import Decoder

READ_HERE = ("NK1", "GT1", "AL1", "DG1", "IN1", "IN2", "OBX")
"""The segments read here; PR1 are the procedures' (procedures.financial), FT1 the charges'."""


def first_patients_segments(segments: list[Segment]) -> list[Segment]:
    """The segments from the first PID up to the next PID (the first patient's groups)."""
    start = next((i for i, s in enumerate(segments) if s.name == "PID"), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(segments)) if segments[i].name == "PID"), len(segments))
    return segments[start:end]


ORDER_DETAIL = ("TQ1", "TQ2", "OBR", "NTE", "PRT")
"""What follows an ORC in a charge's common order group and belongs to the order itself."""


def billed_services(dec: Decoder, segments: list[Segment], patient: Patient,
                    encounter: Encounter | None) -> list[Record]:
    """Each ORC with its OBR (a DFT charge's or a BAR visit's common order: the service billed) as a
    ServiceRequest, read as an order message's is (orders.service_request): ORC-5 status, OBR-4 code."""
    groups: list[list[Segment]] = []
    current: list[Segment] | None = None
    for seg in segments:
        if seg.name == "ORC":
            current = [seg]
            groups.append(current)
        elif current is not None and seg.name in ORDER_DETAIL:
            current.append(seg)
        else:
            current = None
    found: list[Record] = []
    for group in groups:
        if not any(s.name == "OBR" for s in group):
            continue  # an ORC alone names no service
        request = orders.service_request(dec, orders.OrderGroup(segments=group), patient, encounter, dec.scope())
        request.extra = {}
        found.append(request)
    return found


def read(dec: Decoder, record: Encounter | Patient) -> list[Record]:
    """The first patient's NK1, GT1, PID-21, AL1, DG1, IN1/IN2, OBX and ORC/OBR as carried records of the patient and visit
    the message's record names. Without a patient nothing is read (FHIR needs their subject)."""
    encounter = record if isinstance(record, Encounter) else None
    patient = record.patient if isinstance(record, Encounter) else record
    if patient is None or patient == Patient():
        return []
    group = first_patients_segments(dec.message.segments)
    segments = [s for s in group if s.name in READ_HERE]
    mother = companions.mother(dec, group[0] if group else None, patient)  # no PID: a visit-only bill
    found = [*orders.background(dec, segments, patient, encounter),
             *billed_services(dec, group, patient, encounter),
             *companions.observations(dec, segments, patient, encounter), *([mother] if mother else [])]
    return [adt.carried(r) for r in found]

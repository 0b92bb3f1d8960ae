"""The further patients and visits of a BAR or DFT, beyond the first (which is the message's record).

A BAR^P01 adds accounts for one patient with several VISIT groups (PV1, PV2…), a BAR^P02 purges the
accounts of several PATIENT groups (PID, PV1…), and a DFT may repeat its visit. The decoder reads
the first patient and visit as the message's record (decode.Decoder.financial); every further PV1
is a visit of the patient whose PID it follows, and every further PID a patient with the account
(PID-18) and episode (PV1-54) its group names. A FHIR server keeps each as a resource of its own,
so they become records; the segments stay kept whole in the message's first record (the round trip
loses nothing), so these records are *carried*, like the PR1 procedures beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge import Encounter, Patient, Record

from . import accounts, adt
from .reader import Segment

if TYPE_CHECKING:
    from .decode import Decoder


@dataclass
class PatientGroup:
    """A PID and the visits (PV1 with the PV2 that follows it) after it, up to the next PID."""

    pid: Segment
    visits: list[tuple[Segment, Segment | None]] = field(default_factory=list)


def visits_in(segments: list[Segment]) -> list[tuple[Segment, Segment | None]]:
    """Each PV1 of ``segments`` with the PV2 right after it, if any."""
    out: list[tuple[Segment, Segment | None]] = []
    for at, seg in enumerate(segments):
        if seg.name == "PV1":
            follower = segments[at + 1] if at + 1 < len(segments) else None
            out.append((seg, follower if follower is not None and follower.name == "PV2" else None))
    return out


def patient_groups(segments: list[Segment]) -> list[PatientGroup]:
    starts = [at for at, seg in enumerate(segments) if seg.name == "PID"]
    ends = [*starts[1:], len(segments)]
    return [PatientGroup(pid=segments[start], visits=visits_in(segments[start:end]))
            for start, end in zip(starts, ends)]


def carried_visits(decoder: Decoder, visits: list[tuple[Segment, Segment | None]],
                   patient: Patient | None) -> list[Encounter]:
    """A carried Encounter of ``patient`` for each PV1 that describes a visit (a bare set id does
    not, as for the first); its fields are the kept segments', so the record keeps none itself."""
    out: list[Encounter] = []
    for pv1, pv2 in visits:
        if adt.says_something(pv1, decoder.t):
            encounter = decoder.encounter(pv1, pv2, decoder.scope(), patient)
            encounter.extra = {}
            out.append(adt.carried(encounter))  # type: ignore[arg-type]
    return out


def further(decoder: Decoder, record: Encounter | Patient) -> list[Record]:
    """Carried records of every patient and visit after the first (see the module docstring)."""
    groups = patient_groups(decoder.message.segments)
    if not groups:
        return []
    first_patient = record.patient if isinstance(record, Encounter) else record
    reader = adt.ClinicalReader(decoder.seps, decoder.t, decoder.reps)
    out: list[Record] = []
    for index, group in enumerate(groups):
        if index == 0:
            encounters = carried_visits(decoder, group.visits, first_patient)
            out += encounters[1:] if isinstance(record, Encounter) else encounters
            continue
        patient = decoder.patient(group.pid, decoder.new_pid_scope())
        if patient is None:
            continue
        encounters = carried_visits(decoder, group.visits, patient)
        out += encounters or [adt.carried(patient)]
        pv1 = group.visits[0][0] if group.visits else None
        out += accounts.read(reader, group.pid, pv1, patient, encounters[0] if encounters else None,
                             decoder.event)
    return out

"""PID-18 and PV1-54 as Account and EpisodeOfCare records (ADT, BAR, DFT).

======  ==================================  ==========================================
Field   Record                              Notes
======  ==================================  ==========================================
PID-18  ``Account.identifiers[0]``          CX; type ``AN`` (account number) unless CX.5 says otherwise
PV1-54  ``EpisodeOfCare.identifiers[0]``    CX (service episode identifier, v2.6+)
======  ==================================  ==========================================

An account is ``active`` (the sender bills the visit to it) except in a BAR^P06 (end account) or
BAR^P02 (purge account), where it is ``inactive``; an episode a visit names is ``active``. Both are
*carried*: the fields stay on the PID and PV1 the message's first record keeps, so an HL7v2 round
trip writes them once.

Every other message type that carries a PID (orders, results, scheduling, pharmacy, immunization,
documents, problems) names the same account, so :func:`beside` reads PID-18 (and PV1-54) there too,
after the message's own records: the fields are not mapped there either, so they stay kept on the
message's first record and an HL7v2 round trip is unchanged.

An order can name the account its charges go to (BLG-3 account id, CX, in ORM, OML, OMG, RDE…):
:func:`billed_orders` makes each account a BLG names that is not already the PID-18 one an Account
of the message's patient (``active``: the sender bills to it), carried the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Account, Encounter, EpisodeOfCare, Identifier, Patient, Record, record_to_dict

from . import datatypes as dt
from .reader import Segment

if TYPE_CHECKING:
    from .adt import ClinicalReader
    from .decode import Decoder

SELF_READ = frozenset(("ADT", "BAR", "DFT"))
"""Message types whose decoders read PID-18 and PV1-54 with each patient group themselves."""

CLOSING_EVENTS = frozenset(("P02", "P06"))
"""BAR triggers that close the account they name (purge, end account)."""


def read(reader: ClinicalReader, pid: Segment | None, pv1: Segment | None, patient: Patient | None,
         encounter: Encounter | None, event: str = "") -> list[Record]:
    """The account (PID-18) and the episode of care (PV1-54) a patient group names, if any. FHIR
    requires the patient of both, so a group without one gives neither."""
    if patient is None:
        return []
    out: list[Record] = []
    account = _identifier(reader, pid, 18, "AN")
    if account is not None:
        status = "inactive" if event in CLOSING_EVENTS else "active"
        out.append(Account(identifiers=[account], status=status, patient=patient))
    episode = _identifier(reader, pv1, 54, None)
    if episode is not None:
        out.append(EpisodeOfCare(identifiers=[episode], status="active", patient=patient))
    from .adt import carried

    return [carried(r) for r in out]


def _identifier(reader: ClinicalReader, seg: Segment | None, number: int,
                default_type: str | None) -> Identifier | None:
    values = reader.reps(seg, number)
    return dt.read_identifier(values[0], reader.seps, default_type) if values else None


def beside(decoder: Decoder, records: list[Record]) -> list[Record]:
    """Accounts and episodes of the PIDs of a message type whose decoder does not read them: the
    n-th PID names the n-th distinct patient of the records (a patient the records name once per
    order or result is one patient). When the two counts differ, the pairing would be a guess, so
    only the first PID is read, for the first patient."""
    if decoder.type in SELF_READ:
        return []
    from .adt import ClinicalReader

    reader = ClinicalReader(decoder.seps, decoder.t, decoder.reps)
    groups = _pid_groups(decoder)
    patients = _distinct_patients(records)
    if len(groups) != len(patients):
        groups, patients = groups[:1], patients[:1]
    out: list[Record] = []
    for (pid, pv1), patient in zip(groups, patients):
        out += read(reader, pid, pv1, patient, encounter_of(records, patient))
    return out


def _pid_groups(decoder: Decoder) -> list[tuple[Segment, Segment | None]]:
    """Each PID with the PV1 that follows it (before the next PID), if any."""
    groups: list[tuple[Segment, Segment | None]] = []
    for seg in decoder.message.segments:
        if seg.name == "PID":
            groups.append((seg, None))
        elif seg.name == "PV1" and groups and groups[-1][1] is None:
            groups[-1] = (groups[-1][0], seg)
    return groups


def _distinct_patients(records: list[Record]) -> list[Patient]:
    """The patients the records name, in order, equal copies counted once."""
    found: list[Patient] = []
    seen: list[dict] = []
    for record in records:
        patient = record if isinstance(record, Patient) else getattr(record, "patient", None)
        if not isinstance(patient, Patient):
            continue
        as_dict = record_to_dict(patient)
        if as_dict not in seen:
            seen.append(as_dict)
            found.append(patient)
    return found


def encounter_of(records: list[Record], patient: Patient) -> Encounter | None:
    """The first visit the records name for ``patient`` (an episode names only the patient)."""
    for record in records:
        encounter = record if isinstance(record, Encounter) else getattr(record, "encounter", None)
        if isinstance(encounter, Encounter) and encounter.patient is patient:
            return encounter
    return None


def billed_orders(decoder: Decoder, records: list[Record]) -> list[Record]:
    """The accounts the BLG segments of a message bill to (BLG-3), each once, after the records;
    none without a patient (FHIR requires Account.subject)."""
    blgs = [seg for seg in decoder.message.segments if seg.name == "BLG"]
    patients = _distinct_patients(records) if blgs else []
    if not patients:
        return []
    from .adt import ClinicalReader, carried

    reader = ClinicalReader(decoder.seps, decoder.t, decoder.reps)
    known = [i for r in records if isinstance(r, Account) for i in r.identifiers]
    out: list[Record] = []
    for seg in blgs:
        ident = _identifier(reader, seg, 3, "AN")
        if ident is None or any((i.value, i.system) == (ident.value, ident.system) for i in known):
            continue
        known.append(ident)
        out.append(carried(Account(identifiers=[ident], status="active", patient=patients[0])))
    return out

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Account, Encounter, EpisodeOfCare, Identifier, Patient, Record

from . import datatypes as dt
from .reader import Segment

if TYPE_CHECKING:
    from .adt import ClinicalReader

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

"""HL7v2 PPR^PC1/PC2/PC3 (problem add, update, delete) → Condition, one per PRB.

A patient's problem list — chronic pain is a problem the Texas rule asks about — travels in PRB
segments: PRB-3 the problem (CWE, an ICD or SNOMED code), PRB-4 its instance id, PRB-2 when the
action was taken, PRB-13 the confirmation status (table 0565 style words: confirmed, provisional,
differential, rule-out), PRB-14 the life-cycle status (active, inactive, resolved…), PRB-16 onset and
PRB-9 the actual resolution date. Each PRB becomes a Condition of category ``problem-list-item``; a
problem deleted (PC3, or PRB-1 ``DE``) is ``entered-in-error`` (FHIR then forbids a clinical status);
one added (PC1) with no life-cycle status and no resolution date is ``active`` (FHIR wants a
clinical status on a problem-list item), one with a resolution date ``resolved``.
What the record does not hold (PRB-9, the goals and roles of the message) stays in the kept message,
which the HL7v2 encoder writes back unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Condition, DecodeError, Record

from . import adt
from .orders import header, keep_message

if TYPE_CHECKING:
    from .decode import Decoder

PROBLEM_EVENTS = ("PC1", "PC2", "PC3")
LIFE_CYCLE = {"ACTIVE": "active", "A": "active", "INACTIVE": "inactive", "I": "inactive", "RESOLVED": "resolved",
              "R": "resolved", "REMISSION": "remission", "RECURRENCE": "recurrence", "RELAPSE": "relapse"}
"""PRB-14 problem life-cycle status (user-defined table 0561: sites send words or their initials) →
FHIR condition-clinical codes; anything else is kept in the message and the status left empty."""
CONFIRMATION = {"CONFIRMED": "confirmed", "C": "confirmed", "PROVISIONAL": "provisional", "P": "provisional",
                "DIFFERENTIAL": "differential", "D": "differential", "RULE OUT": "refuted", "REFUTED": "refuted"}
"""PRB-13 problem confirmation status (user-defined table 0565) → FHIR condition-ver-status codes."""


def decode_problems(dec: Decoder) -> list[Record]:
    """One Condition per PRB, about the message's patient (and visit, when PV1 describes one)."""
    segs = dec.message.segments
    scope = dec.scope()
    patient, encounter = header(dec, segs, scope)
    if patient is None:
        raise DecodeError(f"PPR^{dec.event} names no patient (no PID, or one without identifier or name): "
                          "nothing says whose problem list it is", "PID")
    reader = adt.ClinicalReader(dec.seps, dec.t, dec.reps)
    problems = [_condition(dec, reader, prb, scope) for prb in segs if prb.name == "PRB"]
    if not problems:
        raise DecodeError(f"PPR^{dec.event} has no PRB segment: no problem to record", "PRB")
    for problem in problems:
        problem.patient, problem.encounter = patient, encounter
    return keep_message(dec, list(problems))


def _condition(dec: Decoder, reader: adt.ClinicalReader, prb, scope) -> Condition:
    deleted = dec.event == "PC3" or dec.t(prb, 1).upper() == "DE"
    resolved_on = reader.date(prb, 9)
    clinical = LIFE_CYCLE.get(dec.t(prb, 14).split(dec.seps.component)[0].upper())
    if clinical is None and resolved_on:
        clinical = "resolved"
    elif clinical is None and dec.event == "PC1" and not deleted:
        clinical = "active"  # a problem added to the list, with no life-cycle status, is a current problem
    return Condition(
        identifiers=reader.entity_id(prb, 4),
        clinical_status=None if deleted else clinical,
        verification_status="entered-in-error" if deleted else CONFIRMATION.get(
            dec.t(prb, 13).split(dec.seps.component)[0].upper()),
        category="problem-list-item",
        code=reader.coding(prb, 3),
        onset=reader.date(prb, 16),
        recorded=dec.when(prb, 2, scope),
    )

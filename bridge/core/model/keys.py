"""Business keys of a message, read from its records, for search and correlation.

The store indexes these (patient id, encounter id, prescription number…) so an analyst can find a
patient's messages at 3 a.m., and the pipeline uses them to give one ``trace_id`` to every message of
one journey and to order messages per patient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .records import (
    ClinicalNote,
    DiagnosticReport,
    Encounter,
    Identifier,
    Observation,
    Patient,
    Prescription,
    PrescriptionEvent,
    Record,
)

KEY_NAMES = (
    "control_id",
    "patient_id",
    "encounter_id",
    "prescription_number",
    "ncpdp_message_id",
    "trace_id",
)
"""Searchable business keys, as used by ``bridge messages --key NAME=VALUE``."""
PHI_KEYS = ("patient_id", "encounter_id", "prescription_number")
"""The keys that identify a person: a search by one, or a list showing them, is a view of PHI (audited)."""


@dataclass(frozen=True)
class BusinessKeys:
    patient_id: str | None = None
    encounter_id: str | None = None
    prescription_number: str | None = None
    ncpdp_message_id: str | None = None


def _first(identifiers: Iterable[Identifier], *types: str) -> str | None:
    for wanted in types:
        for ident in identifiers:
            if ident.type == wanted and ident.value:
                return ident.value
    return None


def patient_key(patient: Patient | None) -> str | None:
    """The medical record number when there is one, else the first identifier, else the id."""
    if patient is None:
        return None
    mrn = _first(patient.identifiers, "MR", "PI")
    if mrn:
        return mrn
    if patient.identifiers:
        return patient.identifiers[0].value
    return patient.id


def encounter_key(encounter: Encounter | None) -> str | None:
    """The visit number when there is one: it is what every system of a journey shares (the EHR's
    ADT, the platform's JSON, the pharmacy order), where ``id`` is only the sender's own id."""
    if encounter is None:
        return None
    return _first(encounter.identifiers, "VN") or encounter.id or (
        encounter.identifiers[0].value if encounter.identifiers else None
    )


def keys_of(records: Iterable[Record]) -> BusinessKeys:
    """Collect the keys of a message from its records; the first value found wins."""
    found: dict[str, str | None] = dict.fromkeys(
        ("patient_id", "encounter_id", "prescription_number", "ncpdp_message_id")
    )

    def put(name: str, value: str | None) -> None:
        if value and not found[name]:
            found[name] = value

    for record in records:
        if isinstance(record, Patient):
            put("patient_id", patient_key(record))
        elif isinstance(record, Encounter):
            put("patient_id", patient_key(record.patient))
            put("encounter_id", encounter_key(record))
        elif isinstance(record, Prescription):
            put("prescription_number", record.prescriber_order_number or record.id)
            put("patient_id", patient_key(record.patient))
            put("encounter_id", encounter_key(record.encounter))
        elif isinstance(record, PrescriptionEvent):
            put("prescription_number", record.prescriber_order_number or record.prescription_id)
            put("ncpdp_message_id", record.message_id)
            put("patient_id", patient_key(record.patient))
        elif isinstance(record, (ClinicalNote, Observation, DiagnosticReport)):
            put("patient_id", patient_key(record.patient))
            put("encounter_id", encounter_key(record.encounter))
        else:  # allergies, orders, administrations, immunizations…: whose, in which visit, for which order
            put("prescription_number", getattr(record, "prescriber_order_number", None))
            put("patient_id", patient_key(getattr(record, "patient", None)))
            put("encounter_id", encounter_key(getattr(record, "encounter", None)))
    return BusinessKeys(**found)

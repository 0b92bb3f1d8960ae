"""EPCS signature evidence: carried unchanged, and guarded by a digest of the signed fields.

The ``DigitalSignature`` header element comes from the certified signing application; this engine
can neither produce nor verify it. What it can do is refuse to send a signed prescription whose
content changed after signing. At decode, :func:`signed_fields_digest` hashes the fields a
prescriber signs (drug, quantity, directions, refills, patient, prescriber DEA and NPI, written
date…) into ``SignatureEvidence.digest``; at encode the digest is recomputed from the records and
any difference refuses the send. The digest is ``ncpdp-signed-v1:sha256:<hex>`` over a canonical
JSON document, so other plugins may reproduce it from this description (docs/ncpdp.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from bridge import Prescription

from .codes import format_decimal

DIGEST_PREFIX = "ncpdp-signed-v1:sha256:"
SIGNATURE_KIND = "ncpdp-digital-signature"
_DIGITAL_SIGNATURE = re.compile(r"<(?:[\w.-]+:)?DigitalSignature\b(?:[^>]*/>|.*?</(?:[\w.-]+:)?DigitalSignature\s*>)",
                                re.DOTALL)


def exact_signature(text: str) -> str | None:
    """The ``DigitalSignature`` element exactly as it appears in the document text."""
    match = _DIGITAL_SIGNATURE.search(text)
    return match.group(0) if match else None


def signed_fields(rx: Prescription) -> dict[str, Any]:
    medication = rx.medication
    patient = rx.patient
    prescriber = rx.prescriber
    return {
        "drug": None if medication is None else {
            "description": medication.description, "ndc": medication.ndc, "rxnorm": medication.rxnorm,
            "schedule": medication.dea_schedule, "strength": medication.strength, "form": medication.form},
        "quantity": None if rx.quantity is None else {
            "value": format_decimal(rx.quantity.value), "code": rx.quantity.code, "unit": rx.quantity.unit},
        "days_supply": rx.days_supply,
        "refills": rx.refills,
        "substitution_allowed": rx.substitution_allowed,
        "sig": rx.sig,
        "written_date": rx.written_date,
        "patient": None if patient is None else {
            "family": patient.name.family if patient.name else None,
            "given": list(patient.name.given) if patient.name else [],
            "birth_date": patient.birth_date},
        "prescriber": None if prescriber is None else {
            "npi": prescriber.npi, "dea": [d.number for d in prescriber.dea_registrations]},
        "prescriber_order_number": rx.prescriber_order_number,
    }


def signed_fields_digest(rx: Prescription) -> str:
    canonical = json.dumps(signed_fields(rx), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DIGEST_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def signature_problems(rx: Prescription, controlled: bool) -> list[str]:
    """Why ``rx`` may not be sent as signed (empty when it may)."""
    evidence = rx.signature
    if evidence is None or not evidence.value:
        if controlled:
            schedule = rx.medication.dea_schedule if rx.medication else "?"
            return [f"schedule {schedule} prescription has no signature evidence (DigitalSignature from the "
                    "certified signing application): refused"]
        return []
    if not evidence.digest:
        return ["signature evidence has no digest of the signed fields, so an alteration cannot be ruled out: refused"]
    if evidence.digest != signed_fields_digest(rx):
        return ["signed prescription was altered after signing (the signed fields no longer match the digest "
                "recorded when it was received): refused"]
    return []

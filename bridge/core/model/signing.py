"""The canonical digest of a prescription's signed content, shared by every plugin.

The bridge routes EPCS prescriptions; it never signs them and must never alter one that was signed.
To notice an alteration anywhere between the signing application and the pharmacy, the signing side
(or the adapter that receives its output, e.g. the NCPDP decoder) puts
``signature.digest = signed_digest(prescription)`` on the record; the policy gate (rule R21) and the
NCPDP encoder recompute it and refuse on a difference. One definition in the core, so a digest made
by one plugin is checked identically by another.

Canonical form, version 1 (``sha256:`` + lowercase hex of SHA-256 over UTF-8 JSON):

- the object returned by :func:`signed_fields` — schema tag ``"v": 1``; patient family name, given
  names, birth date; prescriber NPI and DEA numbers (sorted); medication RxNorm, NDC, description, strength, form, DEA
  schedule; quantity value and unit; days supply; refills; sig; substitution allowed; written date;
- keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII kept as UTF-8;
- absent values are ``null``; a whole-number quantity is written as an integer (``30``, not ``30.0``),
  so senders in languages without a float/int distinction compute the same bytes.

These are the fields whose change needs a new signature (drug, quantity, directions, patient,
refills, date, prescriber). Routing fields (pharmacy, ids, status) are deliberately outside it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .records import Prescription, Record
from .times import ORIGINAL_TIMES

DIGEST_PREFIX = "sha256:"


def _number(value: float | int | None) -> float | int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def signed_fields(rx: Prescription) -> dict[str, Any]:
    """The content the digest covers, as a plain mapping (see the module docstring)."""
    patient, med, qty = rx.patient, rx.medication, rx.quantity
    name = patient.name if patient else None
    return {
        "v": 1,
        "patient": {
            "family": name.family if name else None,
            "given": list(name.given) if name else [],
            "birth_date": _as_signed(patient, "birth_date") if patient else None,
        },
        "prescriber_npi": rx.prescriber.npi if rx.prescriber else None,
        "prescriber_dea": sorted(d.number for d in rx.prescriber.dea_registrations) if rx.prescriber else [],
        "medication": {
            "rxnorm": med.rxnorm if med else None,
            "ndc": med.ndc if med else None,
            "description": med.description if med else None,
            "strength": med.strength if med else None,
            "form": med.form if med else None,
            "dea_schedule": med.dea_schedule if med else None,
        },
        "quantity": {"value": _number(qty.value) if qty else None, "unit": qty.unit if qty else None},
        "days_supply": rx.days_supply,
        "refills": rx.refills,
        "sig": rx.sig,
        "substitution_allowed": rx.substitution_allowed,
        "written_date": _as_signed(rx, "written_date"),
    }


_OFFSET = re.compile(r"(Z|[+-]\d{2}:\d{2})")


def _as_signed(record: Record, name: str) -> Any:
    """The value as the sender wrote (and signed) it. A channel's ``timezone`` only appends the
    offset of the sender's zone to a time that had none (the original kept in
    ``extra["original_times"]``); any other difference from the original is a change and counts."""
    value = getattr(record, name)
    original = (record.extra.get(ORIGINAL_TIMES) or {}).get(name) if isinstance(record.extra, dict) else None
    if isinstance(value, str) and isinstance(original, str) and value.startswith(original) \
            and _OFFSET.fullmatch(value[len(original):]):
        return original
    return value


def canonical_bytes(rx: Prescription) -> bytes:
    return json.dumps(signed_fields(rx), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signed_digest(rx: Prescription) -> str:
    """``sha256:<hex>`` over :func:`canonical_bytes`: what ``signature.digest`` must equal."""
    return DIGEST_PREFIX + hashlib.sha256(canonical_bytes(rx)).hexdigest()

"""Prescriptions for the policy tests: one valid baseline and dotted-path changes to it.

The baseline is a video oxycodone prescription for a patient in Iowa (no state rows there), written
inside the DEA flexibility window, signed with a digest over the final content, to an EPCS-capable
pharmacy: the gate ALLOWs it under R5. Each scenario changes a few fields and says what must fire.
"""

from __future__ import annotations

import copy
from typing import Any

from bridge import Prescription, record_from_dict
from bridge.plugins.telehealth_policy import signed_digest

STATES = ("IA", "NY", "TX", "IN", "CA", "AZ", "KY")
DRUGS = {
    "oxycodone": {"description": "oxycodone hydrochloride 5 MG Oral Tablet", "rxnorm": "7804", "dea_schedule": "CII"},
    "buprenorphine": {"description": "buprenorphine 8 MG Sublingual Tablet", "rxnorm": "1819", "dea_schedule": "CIII"},
    "bup-nal": {"description": "buprenorphine 8 MG / naloxone 2 MG Sublingual Film", "dea_schedule": "CIII"},
    "alprazolam": {"description": "alprazolam 0.5 MG Oral Tablet", "rxnorm": "596", "dea_schedule": "CIV"},
    "amphetamine": {"description": "amphetamine 10 MG Oral Tablet", "rxnorm": "725", "dea_schedule": "CII"},
    "lisinopril": {"description": "lisinopril 10 MG Oral Tablet", "rxnorm": "29046", "dea_schedule": "none"},
    "gabapentin": {"description": "gabapentin 300 MG Oral Capsule", "rxnorm": "25480", "dea_schedule": "none"},
    "pregabalin": {"description": "pregabalin 75 MG Oral Capsule", "rxnorm": "187832", "dea_schedule": "CV"},
    "tapentadol": {"description": "tapentadol 50 MG Oral Tablet", "rxnorm": "787390", "dea_schedule": "CII"},
    "unlisted-cii": {"description": "investigational compound 5 MG Oral Tablet", "dea_schedule": "CII"},
    "mystery": {"description": "compounded capsule", "dea_schedule": None},
}


def base_dict() -> dict[str, Any]:
    return {
        "kind": "Prescription",
        "id": "rx-1",
        "prescriber_order_number": "PON-1",
        "medication": {**DRUGS["oxycodone"], "strength": "5 mg", "form": "tablet"},
        "quantity": {"value": 20, "unit": "tablet"},
        "days_supply": 5,
        "refills": 0,
        "sig": "Take 1 tablet by mouth every 6 hours as needed.",
        "written_date": "2026-11-27",
        "patient": {"id": "pat-1", "name": {"family": "Testpatient", "given": ["Alex"]}, "birth_date": "1980-04-12",
                    "addresses": [{"lines": ["1 Test St"], "city": "Testville", "state": "IA", "country": "US"}]},
        "prescriber": {
            "id": "prac-1", "npi": "1234567893", "name": {"family": "Example", "given": ["Morgan"]},
            "addresses": [{"lines": ["400 Example Tower"], "city": "Testville", "state": "IA"}],
            "dea_registrations": [{"number": f"BE00000{i}", "state": s, "schedules": ["CII", "CIII", "CIV", "CV"],
                                   "expires": "2028-01-31"} for i, s in enumerate(STATES)],
            "licenses": [{"state": s, "number": f"L-{s}", "expires": "2027-12"} for s in STATES],
        },
        "pharmacy": {"id": "ph-1", "ncpdp_id": "9900001", "epcs_capable": True},
        "encounter": {
            "id": "enc-1", "status": "finished", "modality": "video",
            "period": {"start": "2026-11-27T09:00:00-05:00", "end": "2026-11-27T09:30:00-05:00"},
            "patient_location": {"country": "US", "state": "IA", "at_home": True},
            "practitioner_state": "IA",
        },
        "signature": {"value": "c2lnbmVkLWJ5LXRlc3Q=", "kind": "epcs", "signed_at": "2026-11-27T09:28:00-05:00"},
        "pdmp_checks": [],
    }


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """``"encounter.patient_location.state"`` → doc["encounter"]["patient_location"]["state"] = value."""
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc.setdefault(key, {}) if not key.isdigit() else doc[int(key)]
    if last.isdigit():
        doc[int(last)] = value
    else:
        doc[last] = value


def make(changes: dict[str, Any] | None = None, *, drug: str | None = None, sign: bool = True,
         after_signing: dict[str, Any] | None = None) -> Prescription:
    """The baseline with ``changes``, a valid digest (unless ``sign`` is False), then ``after_signing``."""
    doc = copy.deepcopy(base_dict())
    if drug:
        doc["medication"] = {**DRUGS[drug], "strength": "x", "form": "tablet"}
    for path, value in (changes or {}).items():
        set_path(doc, path, value)
    rx = record_from_dict(doc)
    if sign and rx.signature is not None:
        rx.signature.digest = signed_digest(rx)
    if after_signing:
        signed = rx.signature.digest if rx.signature else None
        doc = copy.deepcopy(doc)
        for path, value in after_signing.items():
            set_path(doc, path, value)
        rx = record_from_dict(doc)
        if rx.signature is not None:
            rx.signature.digest = signed
    return rx


def in_state(state: str, **more: Any) -> dict[str, Any]:
    return {"encounter.patient_location.state": state, "encounter.practitioner_state": state, **more}


def pdmp(state: str, checked_at: str, outcome: str = "reviewed", outage: bool = False) -> dict[str, Any]:
    return {"state": state, "checked_at": checked_at, "outcome": outcome, "outage_documented": outage}


def policy_plugins():
    """A plugin manager with the gate: built in once the lead lists it, else registered here."""
    import bridge.plugins.telehealth_policy as plugin
    from bridge.testing import plugin_manager

    manager = plugin_manager()
    if plugin.POLICY_NAME in manager.policies():
        return manager
    return plugin_manager(("telehealth_policy", plugin))

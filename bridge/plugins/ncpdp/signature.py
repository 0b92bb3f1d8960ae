"""EPCS signature evidence: carried unchanged, and guarded by a digest of the signed fields.

The ``DigitalSignature`` header element comes from the certified signing application; this engine
can neither produce nor verify it. What it can do is refuse to send a signed prescription whose
content changed after signing. At decode, :func:`signed_fields_digest` hashes the fields a
prescriber signs (drug, quantity, directions, refills, patient, prescriber DEA and NPI, written
date…) into ``SignatureEvidence.digest``; at encode the digest is recomputed from the records and
any difference refuses the send. The digest is the core's ``bridge.signed_digest`` (``sha256:<hex>``
over a canonical JSON document, docs/policy.md), so the policy gate verifies the very same value.
"""

from __future__ import annotations

import re

from bridge import Prescription, signed_digest


SIGNATURE_KIND = "ncpdp-digital-signature"
_DIGITAL_SIGNATURE = re.compile(r"<(?:[\w.-]+:)?DigitalSignature\b(?:[^>]*/>|.*?</(?:[\w.-]+:)?DigitalSignature\s*>)",
                                re.DOTALL)


def exact_signature(text: str) -> str | None:
    """The ``DigitalSignature`` element exactly as it appears in the document text."""
    match = _DIGITAL_SIGNATURE.search(text)
    return match.group(0) if match else None


def signed_fields_digest(rx: Prescription) -> str:
    """The shared signed-content digest (``bridge.signed_digest``): the policy gate checks the same one."""
    return signed_digest(rx)


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

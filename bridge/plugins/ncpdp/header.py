"""The intake's cheap read of a SCRIPT message: MessageID, transaction and the dedupe key.

It parses with the same hardened parser as the decoder (a few milliseconds for a prescription)
rather than pattern-matching bytes: a dedupe key read wrongly from a malformed message could make
a corrected resend with the same MessageID look like a duplicate and be dropped. So anything that
does not parse gets an empty header (no dedupe key), and the worker reports the decode error.
"""

from __future__ import annotations

from bridge import BridgeError, MessageHeader

from .validate import find, transaction_of
from .xmlsafe import parse_script


def peek(raw: bytes) -> MessageHeader:
    """MessageHeader(control_id=MessageID, message_type=transaction, dedupe_key="ncpdp:{MessageID}")."""
    try:
        root, _ = parse_script(raw)
    except (BridgeError, UnicodeError, ValueError):
        return MessageHeader()
    node = find(root, "Header/MessageID")
    message_id = (node.text or "").strip() if node is not None else ""
    sender = find(root, "Header/From")
    sender_id = (sender.text or "").strip() if sender is not None else ""
    transaction = transaction_of(root)
    return MessageHeader(
        control_id=message_id or None,
        sending_application=sender_id or None,
        message_type=transaction,
        dedupe_key=f"ncpdp:{message_id}" if message_id else None,
        patient_id=_text(root, f"Body/{transaction}/{PATIENT_MRN}") if transaction else None,
        prescription_number=_text(root, "Header/PrescriberOrderNumber"),
        keys_read=True,
    )


PATIENT_MRN = "Patient/HumanPatient/Identification/MedicalRecordIdentificationNumberEHR"


def _text(root, path: str) -> str | None:
    node = find(root, path)
    return (node.text or "").strip() or None if node is not None else None

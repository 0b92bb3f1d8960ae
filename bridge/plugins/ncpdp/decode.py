"""SCRIPT 2017071 → records.

NewRx and CancelRx become a :class:`Prescription` (CancelRx with ``status="cancel-requested"``);
every other transaction becomes a :class:`PrescriptionEvent` whose ``event_type`` is the
transaction name and which carries ``message_id``, ``relates_to_message_id`` and
``prescriber_order_number`` so the core can correlate it with the prescription it concerns.
Header values records have no field for, and every element this decoder does not map, are kept
in ``extra["ncpdp"]`` so that encoding the records again gives the same message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from bridge import DecodeError, Prescription, PrescriptionEvent, Record, SignatureEvidence, record_to_dict

from .codes import VERSION
from .parts import (
    MedicationBlock,
    read_medication,
    read_patient,
    read_pharmacy,
    read_prescriber,
)
from .signature import SIGNATURE_KIND, exact_signature, signed_fields_digest
from .tree import Reader, texts
from .validate import RESPONSE_CHOICES, validate
from .xmlsafe import DEFAULT_MAX_BYTES, local, parse_script

CANCEL_REQUESTED = "cancel-requested"
PRESCRIPTION_TRANSACTIONS = ("NewRx", "CancelRx")
MEDICATION_ELEMENTS: dict[str, tuple[str, ...]] = {
    "RxFill": ("MedicationDispensed", "MedicationPrescribed"),
    "RxRenewalRequest": ("MedicationDispensed", "MedicationPrescribed"),
    "RxChangeRequest": ("MedicationRequested", "MedicationPrescribed"),
    "RxRenewalResponse": ("MedicationResponse", "MedicationPrescribed"),
    "RxChangeResponse": ("MedicationPrescribed", "MedicationRequested"),
}


def check_version(options: Mapping[str, Any], error: type[Exception]) -> None:
    version = str(options.get("version", VERSION))
    if version != VERSION:
        raise error(f"SCRIPT version {version!r} is not supported (options.version: only {VERSION!r} for now)")


def decode(raw: bytes, options: Mapping[str, Any] | None = None) -> list[Record]:
    """Decode one SCRIPT message; DecodeError lists every structural problem by path."""
    options = options or {}
    check_version(options, DecodeError)
    root, text = parse_script(raw, int(options.get("max_xml_bytes", DEFAULT_MAX_BYTES)))
    problems = validate(root, routing_required=bool(options.get("require_routing", False)))
    if problems:
        raise DecodeError(f"invalid SCRIPT message ({len(problems)} problem(s)): " + "; ".join(problems))
    reader = Reader(root)
    header = reader.child(root, "Header")
    transaction = reader.first_child(reader.child(root, "Body"))
    assert transaction is not None  # validate() guarantees one transaction
    name = local(transaction.tag)
    kept = read_header(reader, header)
    signature = _signature(reader, header, text)
    if name in PRESCRIPTION_TRANSACTIONS:
        record: Record = _prescription(reader, transaction, name, kept, signature)
    else:
        record = _event(reader, transaction, name, kept)
    leftovers = reader.leftovers()
    if leftovers:
        record.extra.setdefault("ncpdp", {})["unknown"] = leftovers
    return [record]


def read_header(reader: Reader, header: ET.Element | None) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, path in (("to", "To"), ("from", "From")):
        value = reader.text(header, path)
        if value is not None:
            qualifier = reader.attribute(header, path, "Qualifier")
            kept[key] = {"id": value, **({"qualifier": qualifier} if qualifier else {})}
    for key, path in (("message_id", "MessageID"), ("relates_to_message_id", "RelatesToMessageID"),
                      ("sent_time", "SentTime"), ("rx_reference_number", "RxReferenceNumber"),
                      ("prescriber_order_number", "PrescriberOrderNumber")):
        value = reader.text(header, path)
        if value is not None:
            kept[key] = value
    software = reader.child(header, "SenderSoftware")
    if software is not None:
        parts = {key: reader.text(software, f"SenderSoftware{part}")
                 for key, part in (("developer", "Developer"), ("product", "Product"), ("version", "VersionRelease"))}
        kept["sender_software"] = {key: value for key, value in parts.items() if value is not None}
    return kept


def _signature(reader: Reader, header: ET.Element | None, text: str) -> str | None:
    element = reader.child(header, "DigitalSignature")
    if element is None:
        return None
    reader.take_subtree(element)
    return exact_signature(text)


def _prescription(reader: Reader, body: ET.Element, name: str, kept: dict[str, Any],
                  signature: str | None) -> Prescription:
    block = read_medication(reader, reader.child(body, "MedicationPrescribed")) or MedicationBlock()
    rx = Prescription(
        prescriber_order_number=kept.pop("prescriber_order_number", None),
        status=CANCEL_REQUESTED if name == "CancelRx" else None,
        medication=block.medication, quantity=block.quantity, days_supply=block.days_supply,
        refills=block.refills, sig=block.sig, substitution_allowed=block.substitution_allowed,
        written_date=block.written_date, diagnosis=block.diagnosis, note=block.note,
        patient=read_patient(reader, reader.child(body, "Patient")),
        prescriber=read_prescriber(reader, reader.child(body, "Prescriber")),
        pharmacy=read_pharmacy(reader, reader.child(body, "Pharmacy")),
    )
    ncpdp = {**kept, **block.extra}
    if ncpdp:
        rx.extra["ncpdp"] = ncpdp
    if signature is not None:
        rx.signature = SignatureEvidence(value=signature, kind=SIGNATURE_KIND, digest=signed_fields_digest(rx))
    return rx


def _event(reader: Reader, body: ET.Element, name: str, kept: dict[str, Any]) -> PrescriptionEvent:
    event = PrescriptionEvent(
        event_type=name,
        message_id=kept.pop("message_id", None),
        relates_to_message_id=kept.pop("relates_to_message_id", None),
        prescriber_order_number=kept.pop("prescriber_order_number", None),
        occurred_at=kept.pop("sent_time", None),
    )
    _event_outcome(reader, body, name, event, kept)
    event.patient = read_patient(reader, reader.child(body, "Patient"))
    event.pharmacy = read_pharmacy(reader, reader.child(body, "Pharmacy"))
    prescriber = read_prescriber(reader, reader.child(body, "Prescriber"))
    if prescriber is not None:
        kept["prescriber"] = record_to_dict(prescriber)
    _event_medication(reader, body, name, event, kept)
    if kept:
        event.extra["ncpdp"] = kept
    return event


def _event_outcome(reader: Reader, body: ET.Element, name: str, event: PrescriptionEvent,
                   kept: dict[str, Any]) -> None:
    """Code, description and reasons: where each transaction keeps its answer."""
    if name in ("Status", "Error"):
        event.code = reader.text(body, "Code")
        event.description = reader.text(body, "Description")
        codes = texts(reader.children(body, "DescriptionCode"))
        if codes:
            kept["description_codes"] = codes
    elif name == "Verify":
        event.code = reader.text(body, "VerifyStatus/Code")
        event.description = reader.text(body, "VerifyStatus/Description")
    elif name in RESPONSE_CHOICES or name == "RxFill":
        holder = reader.child(body, "Response" if name in RESPONSE_CHOICES else "FillStatus")
        choice = reader.first_child(holder)
        if choice is not None:
            if name == "RxFill":
                event.fill_status = local(choice.tag)
            else:
                event.code = local(choice.tag)
            event.description = reader.text(choice, "Note")
            _reasons(reader, choice, kept)
    elif name == "RxChangeRequest":
        event.code = reader.text(body, "MessageRequestCode")


def _reasons(reader: Reader, choice: ET.Element, kept: dict[str, Any]) -> None:
    codes = texts(reader.children(choice, "ReasonCode"))
    if codes:
        kept["reason_codes"] = codes
    denial = reader.text(choice, "DenialReason")
    if denial:
        kept["denial_reason"] = denial


def _event_medication(reader: Reader, body: ET.Element, name: str, event: PrescriptionEvent,
                      kept: dict[str, Any]) -> None:
    candidates = MEDICATION_ELEMENTS.get(name, ())
    for position, element_name in enumerate(candidates):
        element = reader.child(body, element_name)
        if element is None:
            continue
        block = read_medication(reader, element)
        if block is None:
            return
        if position:
            kept["medication_element"] = element_name
        event.medication = block.medication
        event.quantity = block.quantity
        details = details_of(block)
        if details:
            kept["prescription"] = details
        return


def details_of(block: MedicationBlock) -> dict[str, Any]:
    """The prescription details of a medication element, as JSON, for an event's ``extra``."""
    details = {
        "days_supply": block.days_supply, "refills": block.refills, "sig": block.sig,
        "substitution_allowed": block.substitution_allowed, "written_date": block.written_date,
        "note": block.note, "diagnosis": [record_to_dict(c) for c in block.diagnosis], **block.extra,
    }
    return {key: value for key, value in details.items() if value not in (None, [], {})}

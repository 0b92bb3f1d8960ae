"""Records → SCRIPT 2017071.

What is encoded is chosen from the records (one SCRIPT message carries one transaction):

- one :class:`PrescriptionEvent` → the transaction named by its ``event_type`` (RxRenewalResponse,
  RxChangeResponse — and, for simulators and round trips, every transaction the decoder reads); a
  :class:`Prescription` beside it supplies the prescriber and medication when the event lacks them;
- else one :class:`Prescription` → NewRx, or CancelRx when its ``status`` is ``cancel-requested``.

The MessageID is ``{message_control_id}-{transaction}`` when the core passes a control id (so a
re-delivery of the same outbox row carries the same MessageID), else the MessageID the record was
decoded with, else a random one. The output is validated with the same rules as input (plus
routing: To, From, SentTime) and refused with an EncodeError listing every problem. A controlled
prescription also needs unaltered signature evidence and an EPCS-capable pharmacy.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from bridge import (
    Coding,
    ConfigError,
    DecodeError,
    EncodeError,
    Pharmacy,
    Practitioner,
    Prescription,
    PrescriptionEvent,
    Quantity,
    Record,
    __version__,
    carried_schedule,
    load_drug_table,
    record_from_dict,
)

from . import directory
from .codes import CONTROLLED, UNIT_BY_NCI, VERSION_ATTRIBUTE, VERSION_ATTRIBUTES, nci_unit_code
from .decode import CANCEL_REQUESTED, MEDICATION_ELEMENTS, check_version
from .parts import MedicationBlock, write_medication, write_patient, write_pharmacy, write_prescriber
from .signature import signature_problems
from .tree import put, restore, sub
from .validate import RESPONSE_CHOICES, TRANSACTIONS, validate
from .xmlsafe import local, parse_xml

log = logging.getLogger(__name__)

TO_PHARMACY = ("NewRx", "CancelRx", "RxRenewalResponse", "RxChangeResponse")
DEFAULT_FROM_QUALIFIER = "D"
SIGNATURE_PLACEHOLDER = "tb-digital-signature"
DEFAULT_SOFTWARE = {"developer": "Telemed Bridge", "product": "telemed-bridge", "version": __version__}


def encode(records: Sequence[Record], options: Mapping[str, Any] | None = None) -> bytes:
    options = options or {}
    check_version(options, EncodeError)
    event, rx = _choose(records)
    if event is not None:
        transaction = event.event_type
        root, signature, problems = _event_message(event, rx, options)
    else:
        assert rx is not None
        transaction = "CancelRx" if rx.status == CANCEL_REQUESTED else "NewRx"
        root, signature, problems = _prescription_message(rx, transaction, options)
    problems = [_with_option_hint(p) for p in problems + validate(root, routing_required=True)]
    if problems:
        raise EncodeError(f"cannot encode SCRIPT {transaction} ({len(problems)} problem(s)): " + "; ".join(problems))
    return _serialize(root, signature)


OPTION_HINTS = {
    "Header/From is missing": "Header/From is missing: set the ncpdp option from_id, our id at the switch "
                              "(options: {from_id: …} on the destination; --option from_id=… with bridge translate)",
}


def _with_option_hint(problem: str) -> str:
    """A problem an option fixes names the option, so the reader knows what to set."""
    return OPTION_HINTS.get(problem, problem)


def _choose(records: Sequence[Record]) -> tuple[PrescriptionEvent | None, Prescription | None]:
    events = [r for r in records if isinstance(r, PrescriptionEvent)]
    prescriptions = [r for r in records if isinstance(r, Prescription)]
    if len(events) > 1 or (not events and len(prescriptions) > 1):
        raise EncodeError(f"one SCRIPT message carries one transaction: got {len(events)} PrescriptionEvent(s) "
                          f"and {len(prescriptions)} Prescription(s); route them one per message")
    if not events and not prescriptions:
        kinds = ", ".join(sorted({r.kind for r in records})) or "nothing"
        raise EncodeError(f"nothing to encode as SCRIPT: expected a Prescription or a PrescriptionEvent, got {kinds}")
    event = events[0] if events else None
    if event is not None and event.event_type not in TRANSACTIONS:
        raise EncodeError(f"PrescriptionEvent event_type {event.event_type!r} is not a SCRIPT transaction "
                          f"({', '.join(TRANSACTIONS)})")
    if event is not None and event.event_type in ("NewRx", "CancelRx"):
        raise EncodeError(f"{event.event_type} is encoded from a Prescription (CancelRx: status "
                          f"{CANCEL_REQUESTED!r}), not from a PrescriptionEvent")
    return event, prescriptions[0] if len(prescriptions) == 1 else None


# --- the envelope --------------------------------------------------------------------------------


def _message() -> tuple[ET.Element, ET.Element, ET.Element]:
    attributes = {name: VERSION_ATTRIBUTE for name in VERSION_ATTRIBUTES}
    attributes["TransactionDomain"] = "SCRIPT"
    root = ET.Element("Message", attributes)
    return root, sub(root, "Header"), sub(root, "Body")


def message_id_for(options: Mapping[str, Any], transaction: str, kept: str | None) -> tuple[str, bool]:
    """``(MessageID, reused)``: deterministic from the control id, else the kept one, else random."""
    control_id = options.get("message_control_id")
    if control_id:
        candidate = f"{control_id}-{transaction}"
        if len(candidate) > 35:
            candidate = hashlib.sha256(candidate.encode("utf-8")).hexdigest()[:32]
        return candidate, False
    if kept:
        return kept, True
    return uuid.uuid4().hex, False


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_header(header: ET.Element, transaction: str, kept: Mapping[str, Any], options: Mapping[str, Any],
                  *, to: Mapping[str, Any] | None, relates_to: str | None, order_number: str | None,
                  kept_message_id: str | None, kept_sent: str | None, signed: bool) -> None:
    if to and to.get("id"):
        put(header, "To", to["id"]).set("Qualifier", to.get("qualifier") or "P")
    sender = _from(kept, options)
    if sender:
        put(header, "From", sender["id"]).set("Qualifier", sender.get("qualifier") or DEFAULT_FROM_QUALIFIER)
    message_id, reused = message_id_for(options, transaction, kept_message_id)
    put(header, "MessageID", message_id)
    put(header, "RelatesToMessageID", relates_to)
    put(header, "SentTime", options.get("sent_time") or (kept_sent if reused and kept_sent else _now()))
    software = {**DEFAULT_SOFTWARE, **(kept.get("sender_software") or {}), **(options.get("sender_software") or {})}
    node = sub(header, "SenderSoftware")
    put(node, "SenderSoftwareDeveloper", software.get("developer"))
    put(node, "SenderSoftwareProduct", software.get("product"))
    put(node, "SenderSoftwareVersionRelease", software.get("version"))
    put(header, "RxReferenceNumber", kept.get("rx_reference_number"))
    put(header, "PrescriberOrderNumber", order_number)
    if signed:
        header.append(ET.Comment(SIGNATURE_PLACEHOLDER))


def _from(kept: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any] | None:
    if options.get("from_id"):
        return {"id": str(options["from_id"]), "qualifier": options.get("from_qualifier") or DEFAULT_FROM_QUALIFIER}
    return dict(kept["from"]) if kept.get("from") else None


# --- NewRx and CancelRx --------------------------------------------------------------------------


def _prescription_message(rx: Prescription, transaction: str,
                          options: Mapping[str, Any]) -> tuple[ET.Element, str | None, list[str]]:
    kept = dict(rx.extra.get("ncpdp") or {})
    problems: list[str] = []
    received = rx  # what the prescriber's system sent (and signed: the digest covers the record as received)
    if transaction == "NewRx":
        rx = _with_table_schedule(rx, options, problems)
    schedule = rx.medication.dea_schedule if rx.medication else None
    controlled = transaction == "NewRx" and schedule in CONTROLLED
    if transaction == "NewRx" and rx.status not in (None, "active"):
        problems.append(f"the order's status is {rx.status!r}: only an active order becomes a NewRx (an on-hold,"
                        " completed, cancelled, stopped or draft order is not sent to a pharmacy)")
    problems += _unit_problems(rx.quantity)
    if transaction == "NewRx" and schedule == "CI":
        problems.append("schedule I substances have no accepted medical use and cannot be prescribed: refused")
    problems += signature_problems(received if received.signature else rx, controlled)
    pharmacy, pharmacy_problems = _pharmacy(rx.pharmacy, options, controlled)
    problems += pharmacy_problems
    signature = _checked_signature(rx.signature.value if rx.signature else None, problems)

    root, header, body = _message()
    to = {"id": pharmacy.ncpdp_id, "qualifier": "P"} if pharmacy and pharmacy.ncpdp_id else kept.get("to")
    _write_header(header, transaction, kept, options, to=to, relates_to=kept.get("relates_to_message_id"),
                  order_number=rx.prescriber_order_number, kept_message_id=kept.get("message_id"),
                  kept_sent=kept.get("sent_time"), signed=signature is not None)
    element = sub(body, transaction)
    write_patient(element, rx.patient)
    write_pharmacy(element, pharmacy)
    write_prescriber(element, rx.prescriber)
    block = MedicationBlock(
        medication=rx.medication, quantity=rx.quantity, days_supply=rx.days_supply, refills=rx.refills,
        sig=rx.sig, substitution_allowed=rx.substitution_allowed, written_date=rx.written_date,
        diagnosis=list(rx.diagnosis), note=rx.note,
        extra={k: kept[k] for k in ("quantity_qualifier", "substitutions", "diagnosis_qualifier") if k in kept},
    )
    write_medication(element, "MedicationPrescribed", block)
    restore(root, kept.get("unknown") or [], transaction)
    return root, signature, problems


def _with_table_schedule(rx: Prescription, options: Mapping[str, Any], problems: list[str]) -> Prescription:
    """A drug whose prescriber's system stated no schedule is looked up in the schedule table (the one
    the policy gate uses): a controlled drug must go out as one — its schedule in DrugCoded, and with
    the prescriber's DEA number, the signature and an EPCS-capable pharmacy — whatever the sender said."""
    medication = rx.medication
    if medication is None or carried_schedule(medication) is not None:
        return rx
    try:
        overrides = options.get("schedule_overrides")
        table = load_drug_table(overrides=directory.resolve(str(overrides), options) if overrides else None)
    except ConfigError as exc:
        problems.append(f"schedule table: {exc}")
        return rx
    row, matched_by = table.find(medication)
    if row is None or row.schedule == "none":
        return rx
    log.info("NewRx: the drug carried no schedule; the schedule table (%s) says %s", matched_by, row.schedule)
    return replace(rx, medication=replace(medication, dea_schedule=row.schedule))


def _unit_problems(quantity: Quantity | None) -> list[str]:
    """SCRIPT carries the quantity's unit as an NCI Thesaurus code: a unit with none is refused, named."""
    if quantity is None or nci_unit_code(quantity.code, quantity.unit):
        return []
    choices = f"{', '.join(sorted(set(UNIT_BY_NCI.values()) - {'unspecified'}))} (or its NCI code)"
    given = " / ".join(repr(v) for v in (quantity.unit, quantity.code) if v)
    if not given:
        return [f"the quantity has no unit: SCRIPT needs one as an NCI code; send one of {choices}"]
    return [f"the quantity's unit ({given}) has no NCI code for SCRIPT: send it as one of {choices}"]


def _pharmacy(pharmacy: Pharmacy | None, options: Mapping[str, Any],
              controlled: bool) -> tuple[Pharmacy | None, list[str]]:
    """Fill the pharmacy from the directory; a controlled prescription needs an EPCS-capable one."""
    if pharmacy is None or not pharmacy.ncpdp_id:
        return pharmacy, []
    entry = None
    if options.get("directory"):
        try:
            entries = directory.load(directory.resolve(str(options["directory"]), options))
        except ConfigError as exc:
            return pharmacy, [f"pharmacy directory: {exc}"]
        entry = entries.get(pharmacy.ncpdp_id)
        if entry is not None:
            pharmacy = directory.complete(pharmacy, entry)
    if not controlled or pharmacy.epcs_capable:
        return pharmacy, []
    label = f"pharmacy {pharmacy.name or '(unnamed)'} (NCPDPID {pharmacy.ncpdp_id})"
    if pharmacy.epcs_capable is False:
        return pharmacy, [f"{label} cannot receive EPCS (controlled substance) prescriptions: refused"]
    where = "is not in the pharmacy directory" if options.get("directory") else "has no known EPCS capability"
    return pharmacy, [f"{label} {where}; a controlled prescription needs an EPCS-capable pharmacy: refused"]


def _checked_signature(value: str | None, problems: list[str]) -> str | None:
    """The DigitalSignature text to carry, after checking it is one well-formed element."""
    if not value:
        return None
    try:
        element = parse_xml(value.encode("utf-8"))
    except DecodeError as exc:
        problems.append(f"Header/DigitalSignature from the signature evidence is unusable: {exc}")
        return None
    if local(element.tag) != "DigitalSignature":
        problems.append(f"signature evidence holds <{local(element.tag)}>, not a SCRIPT DigitalSignature element")
        return None
    return value


# --- events --------------------------------------------------------------------------------------


def _event_message(event: PrescriptionEvent, rx: Prescription | None,
                   options: Mapping[str, Any]) -> tuple[ET.Element, None, list[str]]:
    kept = dict(event.extra.get("ncpdp") or {})
    transaction = event.event_type
    pharmacy = event.pharmacy or (rx.pharmacy if rx else None)
    root, header, body = _message()
    to = kept.get("to")
    if transaction in TO_PHARMACY and pharmacy and pharmacy.ncpdp_id:
        to = {"id": pharmacy.ncpdp_id, "qualifier": "P"}
    order_number = event.prescriber_order_number or (rx.prescriber_order_number if rx else None)
    _write_header(header, transaction, kept, options, to=to, relates_to=event.relates_to_message_id,
                  order_number=order_number, kept_message_id=event.message_id, kept_sent=event.occurred_at,
                  signed=False)
    element = sub(body, transaction)
    _write_outcome(element, transaction, event, kept)
    if transaction not in ("Status", "Error", "Verify"):
        write_patient(element, event.patient or (rx.patient if rx else None))
        write_pharmacy(element, pharmacy)
        write_prescriber(element, _event_prescriber(kept, rx))
        _write_event_medication(element, transaction, event, rx, kept)
    restore(root, kept.get("unknown") or [], transaction)
    return root, None, []


def _write_outcome(element: ET.Element, transaction: str, event: PrescriptionEvent, kept: Mapping[str, Any]) -> None:
    if transaction in ("Status", "Error"):
        put(element, "Code", event.code)
        for code in kept.get("description_codes") or []:
            put(element, "DescriptionCode", code)
        put(element, "Description", event.description)
    elif transaction == "Verify":
        status = sub(element, "VerifyStatus")
        put(status, "Code", event.code)
        put(status, "Description", event.description)
    elif transaction in RESPONSE_CHOICES or transaction == "RxFill":
        holder = sub(element, "Response" if transaction in RESPONSE_CHOICES else "FillStatus")
        choice_name = event.fill_status if transaction == "RxFill" else event.code
        if choice_name:
            choice = sub(holder, choice_name)
            for code in kept.get("reason_codes") or []:
                put(choice, "ReasonCode", code)
            put(choice, "DenialReason", kept.get("denial_reason"))
            put(choice, "Note", event.description)
    elif transaction == "RxChangeRequest":
        put(element, "MessageRequestCode", event.code)


def _event_prescriber(kept: Mapping[str, Any], rx: Prescription | None) -> Practitioner | None:
    if kept.get("prescriber"):
        try:
            return record_from_dict(kept["prescriber"], "extra.ncpdp.prescriber", Practitioner)
        except DecodeError as exc:
            raise EncodeError(f"PrescriptionEvent extra.ncpdp.prescriber is not a Practitioner: {exc}") from None
    return rx.prescriber if rx else None


def _write_event_medication(element: ET.Element, transaction: str, event: PrescriptionEvent,
                            rx: Prescription | None, kept: Mapping[str, Any]) -> None:
    names = MEDICATION_ELEMENTS.get(transaction)
    if not names:
        return
    details = dict(kept.get("prescription") or {})
    medication = event.medication or (rx.medication if rx else None)
    if medication is None and not details:
        return
    block = MedicationBlock(
        medication=medication, quantity=event.quantity or (rx.quantity if rx else None),
        days_supply=details.get("days_supply"), refills=details.get("refills"), sig=details.get("sig"),
        substitution_allowed=details.get("substitution_allowed"), written_date=details.get("written_date"),
        diagnosis=[record_from_dict(c, "extra.ncpdp.prescription.diagnosis", Coding) for c in details.get("diagnosis", [])],
        note=details.get("note"),
        extra={k: details[k] for k in ("quantity_qualifier", "substitutions", "diagnosis_qualifier") if k in details},
    )
    if rx is not None and not details:
        block = replace(block, days_supply=rx.days_supply, refills=rx.refills, sig=rx.sig,
                        substitution_allowed=rx.substitution_allowed, written_date=rx.written_date)
    write_medication(element, kept.get("medication_element") or names[0], block)


# --- output --------------------------------------------------------------------------------------


def _serialize(root: ET.Element, signature: str | None) -> bytes:
    ET.indent(root, space="  ")
    text = ET.tostring(root, encoding="unicode")
    if signature is not None:
        text = text.replace(f"<!--{SIGNATURE_PLACEHOLDER}-->", signature, 1)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode("utf-8")

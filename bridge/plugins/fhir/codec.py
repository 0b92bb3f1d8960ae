"""The ``fhir`` FormatSpec: JSON bytes to records and back, and the cheap intake read.

Encoding validates the whole Bundle with fhirclient's R4 models (``strict=True``) before returning
bytes, so a resource FHIR servers would refuse never reaches the outbox: the problem is an
``EncodeError`` naming the element. (A reference resource whose exact content passed before is not
checked again: :mod:`.known_good`.)
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from bridge import DecodeError, EncodeError, FormatSpec, MessageHeader, OptionSpec, Record

from . import known_good
from .bindings import bundle_violations
from .decode import decode_document
from .encode import Writer
from .pretty import bundle_json

MEDIA_TYPE = "application/fhir+json"


def load_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None


def decode(raw: bytes, options: Mapping[str, Any] | None = None) -> list[Record]:
    return decode_document(load_json(raw), options or {})


_OBJECT_REPR = re.compile(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")


def readable(text: str) -> str:
    """fhirclient names the model object in its messages (``on <fhirclient.models.medicationrequest.
    MedicationRequest object at 0x7f…>``): an operator needs the resource type, not a Python repr."""
    return _OBJECT_REPR.sub(r"\1", text)


def validation_problems(error: Exception, path: str = "") -> list[str]:
    """Flatten fhirclient's nested FHIRValidationError into ``path: problem`` lines."""
    nested = getattr(error, "errors", None)
    here = ".".join(p for p in (path, getattr(error, "path", None) or "") if p)
    if not nested:
        return [readable(f"{here}: {error}" if here else str(error))]
    problems = []
    for item in nested:
        problems.extend(validation_problems(item, here))
    return problems


def validate(bundle: dict[str, Any]) -> None:
    """Construct the Bundle with fhirclient's R4 models, strictly; raise EncodeError if refused."""
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.fhirabstractbase import FHIRValidationError

    try:
        Bundle(bundle, strict=True)
    except (FHIRValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        problems = validation_problems(exc)
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise EncodeError(f"the FHIR R4 Bundle does not validate: {shown}") from None
    except Exception as exc:  # fhirclient raises bare Exception on a resourceType mismatch
        raise EncodeError(f"the FHIR R4 Bundle does not validate: {readable(str(exc))}") from None


def check_bindings(bundle: dict[str, Any]) -> None:
    """Refuse a code outside the R4 value set of a required binding (fhirclient does not check them):
    a record from another format can carry a gender ``M`` or a telecom system ``PRN``, and a server
    would reject the Bundle or, worse, store it."""
    problems = bundle_violations(bundle, targets=False)
    if problems:
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise EncodeError(f"the FHIR R4 Bundle has codes outside required value sets: {shown}")


def encode(records: Sequence[Record], options: Mapping[str, Any] | None = None) -> bytes:
    if not records:
        raise EncodeError("nothing to encode: no records")
    options = options or {}
    bundle = Writer(options).bundle(records)
    checked, reusable = known_good.still_to_check(bundle)  # what passed before is not checked again
    validate(checked)
    check_bindings(checked)
    known_good.remember(reusable)
    payload = (bundle_json(bundle, options.get("indent", 2)) + "\n").encode("utf-8")
    _last_encoded.payload, _last_encoded.header = payload, header_of(bundle)
    return payload


_last_encoded = threading.local()
"""This thread's last encoded payload and its header: the engine peeks at every payload it encodes
(the outbox row's control id and message type), and parsing 16 KB of JSON again cost as much as a
twentieth of the encode. Found by identity only, so any other bytes are parsed as before."""


def peek(raw: bytes) -> MessageHeader:
    """Resource type (and Bundle type) for the timeline; never raises."""
    if raw is getattr(_last_encoded, "payload", None):
        return _last_encoded.header
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return MessageHeader()
    return header_of(doc)


def header_of(doc: Any) -> MessageHeader:
    """What :func:`peek` reads, from the parsed document (or the Bundle just encoded)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        return MessageHeader()
    rtype = doc["resourceType"]
    if rtype == "Bundle" and isinstance(doc.get("type"), str):
        rtype = f"Bundle/{doc['type']}"
    ident = doc.get("identifier") if isinstance(doc.get("identifier"), dict) else {}
    control = ident.get("value") if isinstance(ident.get("value"), str) else None
    system = ident.get("system") if isinstance(ident.get("system"), str) else ""
    patient, encounter, order = order_keys(doc)
    return MessageHeader(control_id=control, message_type=rtype,
                         dedupe_key=f"fhir:{system}|{control}" if control else None,
                         patient_id=patient, encounter_id=encounter, prescription_number=order, keys_read=True)


def order_keys(doc: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(patient, encounter, order)`` for the message's lane, read from the JSON without decoding:
    the first Patient's identifier typed MR or PI (else its first, else its id), the first
    Encounter's identifier typed VN (else its id), the first MedicationRequest's identifier typed
    PLAC (else its id)."""
    entries = doc.get("entry") if doc.get("resourceType") == "Bundle" else None
    resources = [e.get("resource") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else [doc]
    first: dict[str, dict[str, Any]] = {}
    for resource in resources:
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            first.setdefault(resource["resourceType"], resource)
    patient = _identifier(first.get("Patient"), ("MR", "PI"), fallback_first=True) or _subject(resources)
    return (patient, _identifier(first.get("Encounter"), ("VN",)),
            _identifier(first.get("MedicationRequest"), ("PLAC",)))


def _subject(resources: list[Any]) -> str | None:
    """No Patient resource: the patient a resource points at (``subject`` or ``patient``: Patient/ID)."""
    for resource in resources:
        for field_name in ("subject", "patient"):
            ref = resource.get(field_name) if isinstance(resource, dict) else None
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str) and target.startswith("Patient/"):
                return target[len("Patient/"):] or None
    return None


def _identifier(resource: dict[str, Any] | None, types: tuple[str, ...], fallback_first: bool = False) -> str | None:
    if resource is None:
        return None
    idents = [i for i in resource.get("identifier") or () if isinstance(i, dict) and isinstance(i.get("value"), str)]
    for wanted in types:
        for ident in idents:
            codings = (ident.get("type") or {}).get("coding") if isinstance(ident.get("type"), dict) else None
            if any(isinstance(c, dict) and c.get("code") == wanted for c in codings or ()):
                return ident["value"]
    if fallback_first and idents:
        return idents[0]["value"]
    return resource.get("id") if isinstance(resource.get("id"), str) else None


def detect(raw: bytes) -> bool:
    head = raw[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and b'"resourceType"' in head and b"telemed-bridge/" not in head


ORDER_NUMBER_SYSTEM = OptionSpec("order_number_system", "identifier system of the prescriber order number",
                                 kind="string")
DEFAULT_TIMEZONE = OptionSpec("default_timezone", "offset for date-times that carry none, e.g. '-05:00'",
                              kind="string")
DECODE_OPTIONS = (ORDER_NUMBER_SYSTEM, DEFAULT_TIMEZONE)
ENCODE_OPTIONS = (
    ORDER_NUMBER_SYSTEM,
    DEFAULT_TIMEZONE,
    OptionSpec("bundle_type", "the Bundle type written", kind="string", default="transaction",
               choices=("transaction", "collection")),
    OptionSpec("indent", "JSON indentation (null: one line)", kind="any", default=2),
    OptionSpec("envelope", "also write the inbound message's MessageHeader, Provenance and sender/receiver "
               "Device and Organization resources (false: only the records' resources)", kind="boolean",
               default=True),
    OptionSpec("linkage", "also write a Linkage resource for each patient with links (a merge's survivor and "
               "the records it replaces; false: Patient.link only)", kind="boolean", default=True),
)

FORMAT = FormatSpec(
    name="fhir",
    media_type=MEDIA_TYPE,
    decode=decode,
    encode=encode,
    peek=peek,
    detect=detect,
    file_extension="json",
    description="FHIR R4 resources in a transaction Bundle (idempotent conditional writes)",
    needs_timezone=True,
    decode_options=DECODE_OPTIONS,
    encode_options=ENCODE_OPTIONS,
)

"""The ``hl7v2`` format: HL7v2 ER7 messages to and from canonical records.

Decoding uses our own reader (:mod:`.reader`, :mod:`.decode`); hl7apy is never on that path
because it costs about 10 ms a message. A channel may ask for ``options: {strict: true}``: the
message is then also validated against its HL7 structure with hl7apy (:mod:`.validate`), and a
message that does not conform is refused with a DecodeError naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge import FormatSpec, MessageHeader, Record

from . import decode as _decode
from . import encode as _encode
from .header import first_segment, peek

MEDIA_TYPE = "x-application/hl7-v2+er7"


def decode(raw: bytes, options: Mapping[str, Any] | None = None) -> list[Record]:
    """Bytes → records; ``options["strict"]`` adds hl7apy structure validation first."""
    options = options or {}
    if options.get("strict"):
        from .validate import validate_strict

        validate_strict(raw)
    return _decode.decode(raw, options)


def encode(records: Sequence[Record], options: Mapping[str, Any] | None = None) -> bytes:
    return _encode.encode(records, options or {})


def detect(raw: bytes) -> bool:
    """An HL7v2 message or batch starts with MSH, FHS or BHS (after an optional BOM)."""
    return first_segment(raw[:512])[:3] in ("MSH", "FHS", "BHS")


KINDS_BY_TYPE = {
    "ADT": frozenset({"Encounter"}),
    "SIU": frozenset({"Appointment"}),
    "RDE": frozenset({"Prescription"}),
    "OMP": frozenset({"Prescription"}),
    "MDM": frozenset({"ClinicalNote"}),
    "ORU": frozenset({"ClinicalNote"}),
}


def record_kinds(header: MessageHeader) -> frozenset[str] | None:
    """What a message decodes to, from MSH-9 alone (None for batches and types we do not decode)."""
    return KINDS_BY_TYPE.get((header.message_type or "").split("^", 1)[0])


FORMAT = FormatSpec(
    name="hl7v2",
    media_type=MEDIA_TYPE,
    decode=decode,
    encode=encode,
    peek=peek,
    detect=detect,
    file_extension="hl7",
    record_kinds=record_kinds,
    description="HL7 v2.x ER7 messages: ADT, SIU, RDE/OMP, MDM, ORU to canonical records and back",
)

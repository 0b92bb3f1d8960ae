"""The ``hl7v2`` format: HL7v2 ER7 messages to and from canonical records.

Decoding uses our own reader (:mod:`.reader`, :mod:`.decode`); hl7apy is never on that path
because it costs about 10 ms a message. A channel may ask for ``options: {strict: true}``: the
message is then also validated against its HL7 structure with hl7apy (:mod:`.validate`), and a
message that does not conform is refused with a DecodeError naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge import FormatSpec, MessageHeader, OptionSpec, Record

from . import decode as _decode
from . import encode as _encode
from . import versions
from .envelope import read as read_envelope
from .header import first_segment, peek, peek_quick

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
    """An HL7v2 message or batch starts with MSH, FHS or BHS (after an optional BOM), or with the EVN
    some feeds send ahead of their MSH (read with a warning, see docs/hl7v2.md)."""
    first = first_segment(raw[:512])
    return first[:3] in ("MSH", "FHS", "BHS") or first.startswith("EVN|")


KINDS_BY_TYPE = {
    "ADT": frozenset({"Encounter", "Patient", "AllergyIntolerance", "Condition", "Coverage", "Procedure", "Account",
                      "EpisodeOfCare"}),
    "SIU": frozenset({"Appointment"}),
    "RDE": frozenset({"Prescription"}),
    "OMP": frozenset({"Prescription"}),
    "MDM": frozenset({"ClinicalNote"}),
    "ORU": frozenset({"DiagnosticReport", "Observation"}),
    "BAR": frozenset({"Encounter", "Patient", "Procedure", "Account", "EpisodeOfCare"}),
    "DFT": frozenset({"Encounter", "Patient", "Procedure", "Account", "EpisodeOfCare"}),
    "PPR": frozenset({"Condition"}),
}


def record_kinds(header: MessageHeader) -> frozenset[str] | None:
    """What a message decodes to, from MSH-9 alone (None for batches and types we do not decode)."""
    return KINDS_BY_TYPE.get((header.message_type or "").split("^", 1)[0])


TELEHEALTH = OptionSpec("telehealth", "the site's telehealth convention (segment fields for modality, "
                        "patient location…), or false", kind="any")
DECODE_OPTIONS = (
    OptionSpec("strict", "also validate each message's structure with hl7apy (slower)", kind="boolean", default=False),
    TELEHEALTH,
)
ENCODE_OPTIONS = (
    TELEHEALTH,
    OptionSpec("sending_application", "MSH-3", kind="string"),
    OptionSpec("sending_facility", "MSH-4", kind="string"),
    OptionSpec("receiving_application", "MSH-5", kind="string"),
    OptionSpec("receiving_facility", "MSH-6", kind="string"),
    OptionSpec("processing_id", "MSH-11 (P production, T training, D debugging)", kind="string", default="P"),
    OptionSpec("adt_event", "the ADT trigger event to send (default: from the encounter's status)", kind="string"),
    OptionSpec("message_datetime", "a fixed MSH-7 (ISO 8601 with offset); default: now, UTC", kind="string"),
    OptionSpec("timezone", "the receiver's IANA zone (e.g. America/New_York): exact times are written as its "
               "wall-clock time with the offset for that instant", kind="string"),
    OptionSpec("version", "the HL7 v2 version written (MSH-12), quoted: segments and fields it lacks are left "
               "out", kind="string", default=versions.DEFAULT, choices=versions.VERSIONS),
)

FORMAT = FormatSpec(
    name="hl7v2",
    media_type=MEDIA_TYPE,
    decode=decode,
    encode=encode,
    peek=peek,
    peek_quick=peek_quick,
    detect=detect,
    file_extension="hl7",
    record_kinds=record_kinds,
    envelope=read_envelope,
    decode_options=DECODE_OPTIONS,
    encode_options=ENCODE_OPTIONS,
    description="HL7 v2.x ER7 messages: ADT, SIU, RDE/OMP, MDM, ORU, BAR/DFT to canonical records and back",
)

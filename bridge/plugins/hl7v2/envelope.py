"""The envelope of an HL7v2 message: MSH (sender, receiver, time, type, control id), SFT, EVN.

Only the head of the message is read (MSH and the SFT, UAC and EVN segments around it), so it costs
a fraction of a decode. A batch of several messages has no one envelope: it gives None, as do bytes
without a readable MSH. The fields read:

======================  =============================================
MSH-3 / MSH-4           sending application / facility (HD)
MSH-5 / MSH-6           receiving application / facility (HD)
MSH-7                   when the message was created (``sent_at``)
MSH-9                   message code, trigger event, structure
MSH-10, MSH-11, MSH-12  control id, processing id, version
SFT-1 … SFT-6           vendor, version, product, binary id, info, install date (each SFT)
EVN-2, EVN-4, EVN-7     when the event was recorded, its reason (table 0062), where (HD)
EVN-5, EVN-6            the operator who entered it (XCN), when it occurred
MSH-22 / MSH-23         sending / receiving responsible organization (XON, v2.7+)
======================  =============================================
"""

from __future__ import annotations

from bridge import Coding, DecodeError, Endpoint, MessageEnvelope, Software

from . import datatypes as dt
from .organizations import read_organization
from .header import Separators
from .reader import NULL, Segment, read_messages, split_lines, text, to_text

HEAD = ("MSH", "SFT", "UAC", "EVN")
"""Segments of the head; the first other segment ends it."""
HEAD_BYTES = 16384


def read(raw: bytes) -> MessageEnvelope | None:
    """The envelope of one message, or None (a batch, no MSH, or a head that cannot be read)."""
    text_ = to_text(raw)
    if text_.count("MSH") > 1 and len([ln for ln in split_lines(text_) if ln.startswith("MSH")]) > 1:
        return None  # a batch: each message has its own envelope, and the records do not say whose
    head = []
    for line in split_lines(to_text(raw[:HEAD_BYTES]).lstrip()):
        if line[:3] in ("FHS", "BHS"):
            continue
        if line[:3] not in HEAD:
            break
        head.append(line)
    try:
        (message,) = read_messages("\r".join(head))
    except (DecodeError, ValueError):
        return None
    seps = message.separators
    msh, evn = message.msh, message.segment("EVN")
    kind = [text(p, seps) for p in msh.get(9).split(seps.component)] + ["", "", ""]
    return MessageEnvelope(
        format="hl7v2",
        message_code=kind[0] or None, event=kind[1] or None, structure=kind[2] or None,
        control_id=_plain(msh, 10, seps), sent_at=_when(msh, 7, seps),
        sending_application=_hd(msh, 3, seps), sending_facility=_hd(msh, 4, seps),
        receiving_application=_hd(msh, 5, seps), receiving_facility=_hd(msh, 6, seps),
        processing_id=_plain(msh, 11, seps), version=_plain(msh, 12, seps),
        software=tuple(_software(s, seps) for s in message.segments if s.name == "SFT"),
        event_recorded=_when(evn, 2, seps),
        event_facility=_hd(evn, 7, seps),
        event_reason=_coding(evn, 4, seps),
        operator=dt.read_practitioner(_first(evn, 5, seps), seps) if _first(evn, 5, seps) else None,
        event_occurred=_when(evn, 6, seps),
        sending_organization=read_organization(_first(msh, 22, seps), seps),
        receiving_organization=read_organization(_first(msh, 23, seps), seps),
    )


def _first(seg: Segment | None, number: int, seps: Separators) -> str:
    """The first repetition of a field as sent ("" for none or an explicit null)."""
    value = seg.get(number).split(seps.repetition)[0] if seg is not None else ""
    return "" if value == NULL else value


def _plain(seg: Segment | None, number: int, seps: Separators) -> str | None:
    return text(_first(seg, number, seps).split(seps.component)[0], seps) or None


def _when(seg: Segment | None, number: int, seps: Separators) -> str | None:
    """A TS/DTM field as ISO 8601; a value that does not read as one is left out, not guessed."""
    value = _plain(seg, number, seps)
    return dt.read_datetime(value) if value else None


def _coding(seg: Segment | None, number: int, seps: Separators) -> Coding | None:
    coding = dt.read_coding(_first(seg, number, seps), seps) if _first(seg, number, seps) else None
    if coding is not None and not coding.system:
        coding.system = "HL70062"  # EVN-4 is an event reason of HL7 table 0062
    return coding


def _hd(seg: Segment, number: int, seps: Separators) -> Endpoint | None:
    parts = [text(p, seps) for p in _first(seg, number, seps).split(seps.component)] + ["", "", ""]
    endpoint = Endpoint(name=parts[0] or None, universal_id=parts[1] or None, universal_id_type=parts[2] or None)
    return endpoint or None


def _software(sft: Segment, seps: Separators) -> Software:
    # SFT-1 is an XON: its first component is the vendor's name.
    return Software(vendor=_plain(sft, 1, seps), version=_plain(sft, 2, seps), product=_plain(sft, 3, seps),
                    binary_id=_plain(sft, 4, seps), info=_plain(sft, 5, seps), installed=_when(sft, 6, seps))


"""A cheap, forgiving read of an HL7v2 message's MSH segment (what the intake and MLLP need).

It splits only the first segment, so it costs microseconds whatever the message size. Full
decoding lives in the format's decoder; this module must never raise on bad input except through
:func:`parse_msh`, whose errors say exactly what is wrong with the MSH.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge import DecodeError, MessageHeader

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


@dataclass(frozen=True)
class MSH:
    """MSH fields by their HL7 number (``fields[9]`` is MSH-9); MSH-1 and MSH-2 are the separators."""

    separators: Separators
    fields: tuple[str, ...]

    def get(self, number: int) -> str:
        return self.fields[number] if number < len(self.fields) else ""

    def component(self, number: int, index: int = 1) -> str:
        parts = self.get(number).split(self.separators.component)
        return parts[index - 1] if index - 1 < len(parts) else ""

    @property
    def control_id(self) -> str:
        return self.get(10)

    @property
    def message_type(self) -> str:
        t = self.get(9).split(self.separators.component)
        return "^".join(p for p in t[:2] if p)


def first_segment(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.lstrip("\ufeff").lstrip()
    for sep in ("\r", "\n"):
        idx = text.find(sep)
        if idx != -1:
            text = text[:idx]
    return text


_last: tuple[bytes | str, MSH] | None = None
"""The last successful parse: the MLLP listener reads each frame's MSH for its ACK and the intake's
peek reads it again straight after, on the same thread (two parses were ~6 % of the listener's loop
with 32 senders). One slot, replaced as a whole (no lock needed): another thread's parse costs a miss."""


def parse_msh(raw: bytes | str) -> MSH:
    """Parse the MSH segment; raises DecodeError naming the problem (missing MSH, bad separators…)."""
    global _last
    last = _last
    if last is not None and type(last[0]) is type(raw) and (last[0] is raw or last[0] == raw):
        return last[1]
    msh = _parse_msh(raw)
    _last = (raw, msh)
    return msh


_SEPARATORS: dict[str, Separators] = {}
"""Separators by MSH-1 + MSH-2 (nearly every feed sends ``|^~\\&``): built and checked once, not per message."""


def _parse_msh(raw: bytes | str) -> MSH:
    seg = first_segment(raw)
    if seg.startswith(("FHS", "BHS", "EVN")):  # a batch header, or an EVN some feeds send first
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
            if line.startswith("MSH"):
                seg = line
                break
    if not seg.startswith("MSH"):
        raise DecodeError("message does not start with an MSH segment", "MSH")
    if len(seg) < 8:
        raise DecodeError("MSH segment is too short to hold its separators", "MSH-2")
    field_sep = seg[3]
    enc = seg[4:8] if len(seg) > 8 and seg[8] == field_sep else seg[4:].split(field_sep, 1)[0]
    if field_sep.isalnum() or field_sep in " \r\n":
        raise DecodeError(f"invalid field separator {field_sep!r}", "MSH-1")
    if len(enc) < 2:
        raise DecodeError(f"MSH-2 encoding characters {enc!r} are incomplete", "MSH-2")
    seps = _SEPARATORS.get(field_sep + enc)
    if seps is None:
        chars = [field_sep, *enc]
        if len(set(chars)) != len(chars):
            raise DecodeError(f"duplicate encoding characters in MSH-1/MSH-2 ({field_sep}{enc})", "MSH-2")
        seps = Separators(
            field=field_sep,
            component=enc[0],
            repetition=enc[1] if len(enc) > 1 else "~",
            escape=enc[2] if len(enc) > 2 else "\\",
            subcomponent=enc[3] if len(enc) > 3 else "&",
        )
        if len(_SEPARATORS) < 64:
            _SEPARATORS[field_sep + enc] = seps
    parts = seg.split(field_sep)
    # parts[0] == "MSH", parts[1] == encoding characters: MSH-n is parts[n - 1] for n >= 2.
    fields = ("MSH", field_sep, *parts[1:])
    return MSH(seps, fields)


KEY_SCAN_BYTES = 65536
"""How far the order keys are looked for: PID, PV1 and ORC come early; a huge OBX tail is not read."""


def peek(raw: bytes) -> MessageHeader:
    """The intake's header read: sending application/facility, MSH-10, and the order keys (PID-3,
    PV1-19, the first ORC-2). Never raises."""
    try:
        msh = parse_msh(raw[:4096])
    except DecodeError:
        return MessageHeader()
    patient, encounter, order = order_keys(raw[:KEY_SCAN_BYTES], msh.separators)
    return _header(msh, patient_id=patient, encounter_id=encounter, prescription_number=order, keys_read=True)


def peek_quick(raw: bytes) -> MessageHeader:
    """``peek`` without the order keys (the MSH alone): for an intake journal's listener, whose mover
    reads the whole header with ``peek`` (FormatSpec.peek_quick). Never raises."""
    try:
        return _header(parse_msh(raw[:4096]))
    except DecodeError:
        return MessageHeader()


def _header(msh: MSH, **keys: Any) -> MessageHeader:
    """What the intake reads from the MSH (MSH-10, MSH-3/4 namespaces, MSH-9), and any order keys.

    Built without the frozen dataclass's ``__init__`` (ten ``object.__setattr__`` calls, the largest
    part of a listener's header read): the fields given go into the instance's ``__dict__``, the
    others keep their class defaults, so it equals ``MessageHeader(...)`` with the same arguments."""
    fields = msh.fields
    comp = msh.separators.component
    count = len(fields)
    kind = fields[9].split(comp, 2) if count > 9 else ()
    header = _new(MessageHeader)
    header.__dict__.update(
        control_id=(fields[10] if count > 10 else "") or None,
        sending_application=(fields[3].split(comp, 1)[0] if count > 3 else "") or None,
        sending_facility=(fields[4].split(comp, 1)[0] if count > 4 else "") or None,
        message_type="^".join(p for p in kind[:2] if p) or None,
        **keys,
    )
    return header


_new = object.__new__


def order_keys(raw: bytes, seps: Separators) -> tuple[str | None, str | None, str | None]:
    """``(patient, visit number, placer order number)`` as the lanes need them: the PID-3 identifier
    typed MR or PI (else the first), PV1-19's id and the first ORC-2's id; the decoder's choices."""
    text = raw.decode("utf-8", "replace").replace("\n", "\r")
    found: dict[str, list[str]] = {}
    for line in text.split("\r"):
        name = line[:3]
        if name in ("PID", "PV1", "ORC") and name not in found:
            found[name] = line.split(seps.field)
            if len(found) == 3:
                break
    patient = _patient_id(_field(found.get("PID"), 3), seps)
    encounter = _field(found.get("PV1"), 19).split(seps.repetition)[0].split(seps.component)[0]
    order = _field(found.get("ORC"), 2).split(seps.component)[0]
    return patient, encounter or None, order or None


def _field(parts: list[str] | None, number: int) -> str:
    return parts[number] if parts is not None and number < len(parts) else ""


def _patient_id(value: str, seps: Separators) -> str | None:
    ids = [rep.split(seps.component) for rep in value.split(seps.repetition) if rep.split(seps.component)[0]]
    for wanted in ("MR", "PI"):
        for cx in ids:
            if len(cx) > 4 and cx[4] == wanted:
                return cx[0]
    return ids[0][0] if ids else None

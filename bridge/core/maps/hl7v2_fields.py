"""HL7v2 field-position paths (``PID-3[2].4``, ``OBX[*]-5``, ``PV1-2``): parsing, reading, writing.

Analysts who know HL7v2 name a value by where it sits, as Mirth's ``msg['PID']['PID.3']`` or any
HL7 viewer does. The counting is HL7's own, 1-based throughout:

- ``SEG`` is the **first** segment of that name; ``SEG[N]`` the Nth; ``SEG[*]`` every one.
- ``SEG-F`` is field F's **first repetition**; ``SEG-F[N]`` the Nth; ``SEG-F[*]`` every one.
- ``.C`` a component, ``.C.S`` a subcomponent of it.

Reading expands the escapes written with the message's own encoding characters (MSH-1/2); a value
that still has parts (a whole ``PID-3`` repetition) reads as written, separators and escapes kept. Writing
escapes text with those same characters, so ``set: {PV1-3.1: "A^B"}`` stays one component. Only
``copy`` and ``move`` carry a value as written (its parts and escapes intact). A segment a path
names is never created; missing fields, repetitions and components are, as empty ones up to it.

The editing works on :class:`bridge.er7.Message` (the hl7v2 format's reader, public), and gives the
message back as text with only the changed segments rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bridge.er7 import NULL, Message, Segment, Separators, escape, read_messages, text

MESSAGE_KIND = "HL7v2"
"""The ``kind`` of actions that edit the HL7v2 message instead of records."""
EVERY = 0
"""A selector of every segment or repetition (``[*]``)."""
MAX_POSITION = 999

_PATH = re.compile(r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\[(?P<occ>[^\]]*)\])?-(?P<field>\d+)(?:\[(?P<rep>[^\]]*)\])?"
                   r"(?:\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?)?$")
_LOOKS_POSITIONAL = re.compile(r"^[A-Za-z][A-Za-z0-9]{2}(?:\[[^\]]*\])?-")


class FieldPathError(ValueError):
    """A field-position path that cannot be read; the message says which part and why."""


@dataclass(frozen=True)
class FieldPath:
    """``PID-3[2].4``: segment, which occurrence(s), field, which repetition(s), component, subcomponent."""

    text: str
    segment: str
    occurrence: int  # 1-based; EVERY for [*]
    field: int
    repetition: int  # 1-based; EVERY for [*]
    component: int | None = None
    subcomponent: int | None = None

    kind = MESSAGE_KIND

    @property
    def read_only(self) -> bool:
        """MSH-1 and MSH-2 are the message's separators: they are read, never written by a step."""
        return self.segment == "MSH" and self.field <= 2

    @property
    def place(self) -> tuple[str, int]:
        return self.segment, self.occurrence


def is_field_path(value: object) -> bool:
    """True for text shaped like a field position (``PID-3``, ``obx[2]-5``): record paths never are."""
    return isinstance(value, str) and bool(_LOOKS_POSITIONAL.match(value))


def parse_field_path(value: object) -> FieldPath:
    """Parse ``PID-3[2].4``-style text; raises FieldPathError naming what is wrong."""
    if not isinstance(value, str) or not value:
        raise FieldPathError(f"expected a field position such as PID-3, got {value!r}")
    match = _PATH.match(value)
    if not match:
        raise FieldPathError(_why(value))
    numbers = [int(match[k]) for k in ("field", "comp", "sub") if match[k] is not None]
    if any(n < 1 or n > MAX_POSITION for n in numbers):
        raise FieldPathError(f"{value}: field, component and subcomponent numbers count from 1 (up to {MAX_POSITION})")
    return FieldPath(value, match["seg"], _selector(match["occ"], value, "segment"), int(match["field"]),
                     _selector(match["rep"], value, "field"),
                     int(match["comp"]) if match["comp"] else None, int(match["sub"]) if match["sub"] else None)


def _why(value: str) -> str:
    head = value.split("-", 1)[0].split("[", 1)[0]
    if head != head.upper():
        return f"{value}: segment names are upper case ({head.upper()})"
    return (f"{value}: not a field position; write SEG-F with optional [N] or [*] after the segment and the "
            "field, then .C (component) and .C.S (subcomponent): PID-3, PID-3[2].4, OBX[*]-5, PID-3.4.1")


def _selector(raw: str | None, value: str, what: str) -> int:
    if raw is None:
        return 1
    if raw == "*":
        return EVERY
    if re.fullmatch(r"[1-9]\d{0,2}", raw):
        return int(raw)
    raise FieldPathError(f"{value}: [{raw}] after the {what} must be [N] (1 is the first) or [*] (every one)")


# --- messages ------------------------------------------------------------------------------------


@dataclass
class Outbound:
    """HL7v2 messages being edited, with what is needed to give them back as the same kind of bytes."""

    messages: list[Message]
    encoding: str

    def render(self) -> bytes:
        """Every message as text again: changed segments rewritten, the others as they were read."""
        return "".join(_render(m) for m in self.messages).encode(self.encoding)


def parse_messages(raw: bytes) -> Outbound:
    """The HL7v2 messages in ``raw`` (UTF-8, or Latin-1 when it is not UTF-8: written back the same)."""
    try:
        decoded, encoding = raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        decoded, encoding = raw.decode("latin-1"), "latin-1"
    return Outbound(read_messages(decoded), encoding)


def _render(message: Message) -> str:
    fs = message.separators.field
    lines = []
    for seg in message.segments:
        if seg.name == "MSH":
            lines.append("MSH" + fs + fs.join(seg.fields[2:]))
        else:
            lines.append(fs.join(seg.fields))
    return "\r".join(lines) + "\r"


def segments_at(message: Message, path: FieldPath) -> list[Segment]:
    """The segments ``path`` names in ``message`` (none when there is no such occurrence)."""
    found = [s for s in message.segments if s.name == path.segment]
    if path.occurrence == EVERY:
        return found
    return found[path.occurrence - 1:path.occurrence]


def _repetitions(seg: Segment, path: FieldPath, seps: Separators) -> list[str]:
    raw = seg.get(path.field)
    if path.read_only:
        return [raw] if raw else []
    reps = raw.split(seps.repetition) if raw else []
    if path.repetition == EVERY:
        return reps
    return reps[path.repetition - 1:path.repetition]


def _part(raw: str, sep: str, number: int | None) -> str | None:
    if number is None:
        return raw
    parts = raw.split(sep)
    return parts[number - 1] if number <= len(parts) else None


def raw_values(message: Message, path: FieldPath, segment: Segment | None = None) -> Iterator[str]:
    """Each value at ``path`` as written (separators and escapes kept), in one segment or all it names."""
    seps = message.separators
    for seg in [segment] if segment is not None else segments_at(message, path):
        for rep in _repetitions(seg, path, seps):
            comp = _part(rep, seps.component, path.component)
            value = _part(comp, seps.subcomponent, path.subcomponent) if comp is not None else None
            if value:
                yield value


def readable(raw: str, seps: Separators) -> str:
    """A value as an analyst compares it: a single value with its escapes expanded (``\\S\\`` is
    ``^``), the explicit null ``""`` empty; a value that still has parts (a whole ``PID-3``
    repetition) exactly as written, so its separators and escapes cannot be confused."""
    if raw == NULL:
        return ""
    if seps.component in raw or seps.subcomponent in raw or seps.repetition in raw:
        return raw
    return text(raw, seps)


def read_fields(messages: Sequence[Message], path: FieldPath, segment: Segment | None = None) -> list[str]:
    """Every non-empty value at ``path``, readable (escapes expanded)."""
    out = []
    for message in messages:
        for raw in raw_values(message, path, segment):
            value = readable(raw, message.separators)
            if value:
                out.append(value)
    return out


def write_field(message: Message, path: FieldPath, wire: str, segment: Segment | None = None) -> int:
    """Put ``wire`` (already escaped) at ``path`` in each segment it names (or in ``segment``);
    how many places changed. ``[*]`` on the repetition writes every repetition the field has."""
    seps = message.separators
    changed = 0
    for seg in [segment] if segment is not None else segments_at(message, path):
        before = seg.get(path.field)
        after = _written(before, path, seps, wire)
        if after != before:
            _set_field(seg, path.field, after)
            changed += 1
    return changed


def _written(field: str, path: FieldPath, seps: Separators, wire: str) -> str:
    if path.repetition == EVERY and path.component is None:
        if not wire:
            return ""  # delete: PID-3[*] clears the field
        reps = field.split(seps.repetition) if field else [""]
        return seps.repetition.join(wire for _ in reps)
    reps = field.split(seps.repetition) if field else []
    indexes = range(max(len(reps), 1)) if path.repetition == EVERY else [path.repetition - 1]
    out = field
    for index in indexes:
        rep = reps[index] if index < len(reps) else ""
        new = _in_part(rep, seps.component, path.component,
                       lambda comp: _in_part(comp, seps.subcomponent, path.subcomponent, lambda _: wire))
        out = _put_part(out, seps.repetition, index + 1, new)
        reps = out.split(seps.repetition)
    return out


def _in_part(raw: str, sep: str, number: int | None, change: Callable[[str], str]) -> str:
    """``raw`` with part ``number`` replaced by ``change`` of it (the whole of ``raw`` when None)."""
    if number is None:
        return change(raw)
    parts = raw.split(sep) if raw else [""]
    current = parts[number - 1] if number <= len(parts) else ""
    return _put_part(raw, sep, number, change(current))


def _put_part(raw: str, sep: str, number: int, value: str) -> str:
    """``raw`` with part ``number`` (1-based) replaced; parts added up to it are trimmed again when
    they stay empty, so an edit adds no separators the sender did not write, and a part emptied at
    the end takes its separator with it (``A^B`` less component 2 is ``A``)."""
    parts = raw.split(sep) if raw else []
    keep = len(parts) if value else number - 1
    while len(parts) < number:
        parts.append("")
    parts[number - 1] = value
    while len(parts) > keep and parts and not parts[-1]:
        parts.pop()
    return sep.join(parts)


def _set_field(seg: Segment, number: int, value: str) -> None:
    fields = seg.fields
    written = len(fields)
    while len(fields) <= number:
        fields.append("")
    fields[number] = value
    while len(fields) > written and fields[-1] == "":
        fields.pop()


def escaped(value: object, message: Message) -> str:
    """Text for a leaf, escaped with the message's own encoding characters."""
    return escape(str(value), message.separators) if value not in (None, "") else ""

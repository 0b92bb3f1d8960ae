"""A small, fast HL7v2 (ER7) reader and writer of separators and escapes.

hl7apy takes about 10 ms per parse, far too slow for the per-message path, so decoding uses this
reader: a line split, one ``str.split`` per segment on the field separator, and component splits
only for the fields a mapping actually reads. It copes with what real feeds send: CR, LF or CRLF
segment endings (and blank lines), a leading byte-order mark, custom encoding characters (with
duplicates refused by :func:`header.parse_msh`) and batch files (FHS/BHS ... BTS/FTS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bridge import DecodeError

from .header import Separators, parse_msh

STANDARD = Separators()
NULL = '""'
"""HL7v2's explicit null: the receiver must clear the value (an empty field means "no change")."""

_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_BATCH_SEGMENTS = frozenset(("FHS", "BHS", "BTS", "FTS"))


@dataclass
class Segment:
    """One segment: ``fields[n]`` is field n (for MSH, ``fields[1]`` is MSH-1, the field separator)."""

    name: str
    fields: list[str]
    position: int

    def get(self, number: int) -> str:
        return self.fields[number] if number < len(self.fields) else ""


@dataclass
class Message:
    """One HL7v2 message: its separators and its segments in order."""

    separators: Separators
    segments: list[Segment]
    first: dict[str, Segment] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for seg in reversed(self.segments):
            self.first[seg.name] = seg

    def segment(self, name: str) -> Segment | None:
        return self.first.get(name)

    @property
    def msh(self) -> Segment:
        return self.segments[0]


# --- text to messages ---------------------------------------------------------------------------


def to_text(raw: bytes | str) -> str:
    """Bytes to text: UTF-8 (a BOM is dropped), falling back to Latin-1 which never fails."""
    if isinstance(raw, str):
        return raw.lstrip("\ufeff")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_lines(text: str) -> list[str]:
    """Segments of a message or file, whatever the line endings; blank lines dropped."""
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [line for line in text.split("\r") if line.strip()]


def read_messages(raw: bytes | str) -> list[Message]:
    """Every message in ``raw``: one message, several in a row, or a FHS/BHS batch file."""
    lines = split_lines(to_text(raw).lstrip())
    if not lines:
        raise DecodeError("empty message: no segments")
    groups: list[list[tuple[int, str]]] = []
    early: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        tag = line[:3]
        if tag in _BATCH_SEGMENTS:
            continue
        if tag == "MSH":
            groups.append([])
        elif not groups:
            early.append((number, line))
            continue
        groups[-1].append((number, line))
    warnings = _misplaced(early, groups)
    if not groups:
        raise DecodeError("batch contains no messages (no MSH segment)", "MSH")
    messages = [_read_message(group) for group in groups]
    messages[0].warnings += warnings
    return messages


def _misplaced(early: list[tuple[int, str]], groups: list[list[tuple[int, str]]]) -> list[str]:
    """Segments before the first MSH. An EVN written ahead of its MSH (some feeds do) belongs to
    the one message that follows: it is moved after that MSH, with a warning. Anything else
    before the header, or an EVN with no MSH after it, leaves the message without a header
    (type, sender, control id), so it is refused."""
    if not early:
        return []
    number, line = early[0]
    tag = line[:3]
    if len(groups) == 1 and all(item[1][:3] == "EVN" for item in early) and len(early) == 1:
        groups[0].insert(1, (number, line))
        return [f"segment {number} (EVN) came before the MSH segment; read as the message's EVN"]
    if not groups:
        raise DecodeError(f"segment {number} ({_safe_tag(tag)}) comes before any MSH segment and no MSH "
                          "follows: the message has no header (type, sender, control id)", "MSH")
    raise DecodeError(f"segment {number} ({_safe_tag(tag)}) comes before any MSH segment", "MSH")


def _safe_tag(tag: str) -> str:
    return tag if _SEGMENT_NAME.match(tag) else "unreadable name"


def _read_message(lines: list[tuple[int, str]]) -> Message:
    msh_line = lines[0][1]
    seps = parse_msh(msh_line).separators
    fs = seps.field
    segments: list[Segment] = []
    for index, (number, line) in enumerate(lines):
        parts = line.split(fs)
        name = parts[0]
        if not _SEGMENT_NAME.match(name):
            raise DecodeError(f"segment {number}: invalid segment name ({_safe_tag(name[:3])})",
                              f"segment {number}")
        if index == 0:
            parts.insert(1, fs)
        segments.append(Segment(name, parts, index))
    return Message(seps, segments)


# --- values --------------------------------------------------------------------------------------


def repetitions(value: str, seps: Separators) -> list[str]:
    return value.split(seps.repetition) if value else []


def components(value: str, seps: Separators) -> list[str]:
    return value.split(seps.component)


def component(value: str, index: int, seps: Separators) -> str:
    """Component ``index`` (1-based) of a field, unescaped; subcomponents kept joined by ``&``."""
    if not value:
        return ""
    parts = value.split(seps.component)
    if index > len(parts):
        return ""
    return text(parts[index - 1], seps)


def text(value: str, seps: Separators) -> str:
    """A leaf value's text: escapes expanded; the explicit null ``""`` reads as empty."""
    if value == NULL:
        return ""
    if seps.escape in value:
        return unescape(value, seps)
    return value


def unescape(value: str, seps: Separators) -> str:
    """Expand HL7 escapes: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\Xhh\\, \\.br\\ (newline); \\H\\ \\N\\ dropped."""
    e = seps.escape
    parts = value.split(e)
    out = [parts[0]]
    i = 1
    while i < len(parts):
        if i + 1 >= len(parts):  # an unterminated escape is kept as written
            out.append(e + parts[i])
            break
        out.append(_expand(parts[i], seps))
        out.append(parts[i + 1])
        i += 2
    return "".join(out)


def _expand(code: str, seps: Separators) -> str:
    simple = {"F": seps.field, "S": seps.component, "T": seps.subcomponent, "R": seps.repetition,
              "E": seps.escape, "H": "", "N": ""}
    if code in simple:
        return simple[code]
    if code.startswith("X") and len(code) % 2 == 1:
        try:
            data = bytes.fromhex(code[1:])
        except ValueError:
            return seps.escape + code + seps.escape
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    if code == ".br" or code.startswith(".sp"):
        return "\n"
    if code[:3] in (".fi", ".nf", ".in", ".ti", ".sk", ".ce") or code[:1] in ("C", "M"):
        return ""  # formatting and character-set switches carry no text
    return seps.escape + code + seps.escape


def escape(value: str, seps: Separators = STANDARD) -> str:
    """Escape text for a leaf value (escape character first); line breaks become \\.br\\."""
    e = seps.escape
    out = value.replace(e, f"{e}E{e}")
    for char, code in ((seps.field, "F"), (seps.component, "S"), (seps.subcomponent, "T"),
                       (seps.repetition, "R")):
        if char in out:
            out = out.replace(char, f"{e}{code}{e}")
    if "\r" in out or "\n" in out:
        out = out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{e}.br{e}")
    return out


def reencode(value: str, source: Separators, target: Separators = STANDARD) -> str:
    """Rewrite a wire value from ``source`` separators to ``target`` ones, re-escaping its leaves."""
    if source == target:
        return value
    reps = []
    for rep in value.split(source.repetition):
        comps = []
        for comp in rep.split(source.component):
            subs = [NULL if s == NULL else escape(text(s, source), target) for s in comp.split(source.subcomponent)]
            comps.append(target.subcomponent.join(subs))
        reps.append(target.component.join(comps))
    return target.repetition.join(reps)


def reencode_segment(segment: Segment, source: Separators) -> str:
    """A whole segment as standard-separator text (how unmapped segments are kept in ``extra``)."""
    if segment.name == "MSH":
        return "|".join(["MSH", STANDARD.encoding_characters,
                         *(reencode(f, source) for f in segment.fields[3:])])
    return "|".join([segment.name, *(reencode(f, source) for f in segment.fields[1:])])


# --- building values -----------------------------------------------------------------------------


def join(parts: list[str], sep: str) -> str:
    """Join with trailing empty parts trimmed (HL7 writers drop trailing separators)."""
    end = len(parts)
    while end and not parts[end - 1]:
        end -= 1
    return sep.join(parts[:end])


def comp(*parts: str | None) -> str:
    """Build a component-separated value from already-escaped parts."""
    return join([p or "" for p in parts], STANDARD.component)


def sub(*parts: str | None) -> str:
    return join([p or "" for p in parts], STANDARD.subcomponent)


def esc(value: str | None) -> str:
    return escape(value) if value else ""


def parse_path(path: str) -> tuple[str, int, int | None]:
    """``"PV1-18"`` or ``"ZTH-2.1"`` → (segment, field, component or None); raises ValueError."""
    match = re.fullmatch(r"([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?", path.strip())
    if not match:
        raise ValueError(f"not a segment-field path like 'PV1-18' or 'ZTH-2.1': {path!r}")
    seg, fld, cmp = match.groups()
    return seg, int(fld), int(cmp) if cmp else None

"""Kept AL1, DG1, PR1 and IN1 segments rewritten where a map changed the records read from them.

An ADT's (or an order header's) allergies, diagnoses, procedures and insurance travel as the
segments the sender wrote, kept in the message's first record; the records decoded from them are
``carried`` and the encoder writes nothing for them, which makes an HL7v2 round trip lossless. A
map that changes such a record (a local diagnosis code mapped to SNOMED CT) must still reach an
HL7v2 destination, so before encoding each kept segment is paired with its carried record and read
again: where the record no longer says what its segment says, the fields the record's writer
(:mod:`.adt_encode`) writes differently for the changed record than for the segment's own reading
are replaced, and every other field stays as the sender wrote it. An unchanged record leaves its
segment byte for byte as it was.

Pairing: the k-th kept segment of a type that makes a record goes with the k-th carried record of
that kind that follows the first record (same patient). When the counts differ (a route did not
send that kind, a map dropped one), the segments of that type go out as they were: which record
belongs to which segment cannot be told, and guessing could write one patient's diagnosis into
another's segment. docs/maps.md ("Maps and HL7v2 destinations") says so.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from bridge import AllergyIntolerance, Condition, Coverage, Procedure, Record, record_to_dict

from . import adt_encode, procedures
from .adt import ClinicalReader
from .decode import Decoder
from .reader import Segment, join, read_messages

Reading = Callable[[ClinicalReader, Segment, Segment | None, Any], Record | None]


def _condition(reader: ClinicalReader, seg: Segment, _next: Segment | None, patient: Any) -> Record | None:
    return reader.condition(seg, patient, None)


def _allergy(reader: ClinicalReader, seg: Segment, _next: Segment | None, patient: Any) -> Record | None:
    return reader.allergy(seg, patient)


def _procedure(reader: ClinicalReader, seg: Segment, _next: Segment | None, patient: Any) -> Record | None:
    return procedures.read(reader, seg, patient, None)


def _coverage(reader: ClinicalReader, seg: Segment, following: Segment | None, patient: Any) -> Record | None:
    return reader.coverage(seg, following if following is not None and following.name == "IN2" else None, patient)


KINDS: dict[str, tuple[type, Reading, Callable[[Any, int], dict[int, str]]]] = {
    "AL1": (AllergyIntolerance, _allergy, adt_encode.al1),
    "DG1": (Condition, _condition, adt_encode.dg1),
    "PR1": (Procedure, _procedure, procedures.pr1),
    "IN1": (Coverage, _coverage, adt_encode.in1),
}
"""Segment → the record kind it gives, how the decoder reads it, and how the encoder writes it."""
_RECORD_KINDS = tuple(kind for kind, _, _ in KINDS.values())


def with_edits(records: Sequence[Record]) -> list[Record]:
    """``records`` with each first record's kept segments rewritten where its carried records were
    changed; records with nothing to rewrite are the same objects (nothing is copied for them)."""
    out = list(records)
    for start, record in enumerate(records):
        kept = _kept(record)
        if kept is None:
            continue
        followers = [r for r in _carried_after(records, start) if isinstance(r, _RECORD_KINDS)]
        if not followers or not any(_name(item) in KINDS for item in kept):
            continue
        rewritten = _rewrite(kept, followers, getattr(record, "patient", None) or record)
        if rewritten is not None:
            out[start] = _with_kept(record, rewritten)
    return out


def _kept(record: Record) -> list[dict[str, str]] | None:
    hl7 = record.extra.get("hl7v2") if isinstance(record.extra, dict) else None  # type: ignore[attr-defined]
    if not isinstance(hl7, dict) or hl7.get("carried"):
        return None
    found = hl7.get("segments") or (hl7.get("header") or {}).get("segments")
    return found if isinstance(found, list) and found else None


def _name(item: Any) -> str:
    return str(item.get("segment", ""))[:3] if isinstance(item, dict) else ""


def _carried_after(records: Sequence[Record], start: int) -> list[Record]:
    out = []
    for record in records[start + 1:]:
        if not record.extra.get("hl7v2", {}).get("carried"):  # type: ignore[attr-defined]
            break
        out.append(record)
    return out


def _rewrite(kept: list[dict[str, str]], followers: list[Record], patient: Any) -> list[dict[str, str]] | None:
    """The kept segment list with changed records' segments rewritten; None when nothing changed."""
    segments = [_segment(str(item.get("segment", "")), i) for i, item in enumerate(kept)]
    result: list[dict[str, str]] | None = None
    for name, (kind, read, write) in KINDS.items():
        readings = [(i, read(_reader(), seg, segments[i + 1] if i + 1 < len(segments) else None, None))
                    for i, seg in enumerate(segments) if seg.name == name]
        found = [(i, r) for i, r in readings if r is not None]
        mine = [r for r in followers if isinstance(r, kind) and _of_patient(r, patient)]
        if not found or len(mine) != len(found):
            continue
        for (i, reading), record in zip(found, mine):
            text = _rewritten(segments[i], reading, record, write)
            if text is not None:
                result = result or [dict(item) for item in kept]
                result[i]["segment"] = text
    return result


def _segment(line: str, position: int) -> Segment:
    """A kept line as a segment (kept segments are in the standard encoding characters)."""
    return Segment(line[:3], line.split("|"), position)


@functools.cache
def _reader() -> ClinicalReader:
    """The decoder's reader for the standard encoding characters (it keeps no state of a message)."""
    decoder = Decoder(read_messages("MSH|^~\\&|||||||ADT^A08|0|P|2.5\r")[0], {})
    return ClinicalReader(decoder.seps, decoder.t, decoder.reps)


def _of_patient(record: Record, patient: Any) -> bool:
    own = getattr(record, "patient", None)
    return own is None or patient is None or own is patient or record_to_dict(own) == record_to_dict(patient)


_OWN = frozenset(("patient", "encounter", "extra"))
"""What a segment does not say about its record (its patient and visit are PID's and PV1's)."""
_OFFSET = re.compile(r"(\d{12,14}(?:\.\d+)?)[+-]\d{4}")


def _same(before: str, after: str) -> bool:
    """Equal, or equal but for UTC offsets the channel's time zone gave offset-less times (the
    record's times are exact since decoding; the segment says what the sender wrote)."""
    return before == after or _OFFSET.sub(r"\1", before) == _OFFSET.sub(r"\1", after)


def _unchanged(reading: Record, record: Record) -> bool:
    """The record says what its segment says (its patient, visit and kept extras aside)."""
    return all(getattr(reading, f.name) == getattr(record, f.name)
               for f in dataclasses.fields(record) if f.name not in _OWN)


def _rewritten(seg: Segment, reading: Record, record: Record, write: Callable[[Any, int], dict[int, str]]) -> str | None:
    """The segment with the fields that changed written from ``record``; None when nothing did."""
    if _unchanged(reading, record):
        return None
    number = int(seg.get(1)) if seg.get(1).isdigit() else 1
    before, after = write(reading, number), write(record, number)
    changed = [n for n in sorted(set(before) | set(after)) if not _same(before.get(n, ""), after.get(n, ""))]
    if not changed:
        return None
    fields = list(seg.fields)
    for n in changed:
        fields += [""] * (n + 1 - len(fields))
        fields[n] = after.get(n, "")
    text = join(fields, "|")
    return None if text == join(seg.fields, "|") else text


def _with_kept(record: Record, kept: list[dict[str, str]]) -> Record:
    """A shallow copy of ``record`` whose kept segments are ``kept`` (the caller's record untouched)."""
    out = copy.copy(record)
    extra = copy.deepcopy(record.extra)  # type: ignore[attr-defined]
    hl7 = extra["hl7v2"]
    if hl7.get("segments"):
        hl7["segments"] = kept
    else:
        hl7["header"]["segments"] = kept
    out.extra = extra  # type: ignore[attr-defined]
    return out

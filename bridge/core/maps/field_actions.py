"""Actions on an HL7v2 message by field position: set, copy, move, delete, lookup, format_date,
split and join with ``PID-3[2].4``-style paths (:mod:`.hl7v2_fields`).

They run where a map has an HL7v2 message to edit: a destination's outbound message (the encoded
records, or the sender's own message for a ``passthrough`` destination), after the map's record
steps and the encoding. Each application works on one message (the *subject*) and returns how many
places changed: the timeline keeps paths and counts, never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.core.maps.actions import PRECISIONS, Action, ActionError, MapFailure, Run, format_date
from bridge.core.maps.actions import _mapping  # the record actions' own check of a step's keys
from bridge.core.maps.hl7v2_fields import (
    EVERY,
    MESSAGE_KIND,
    FieldPath,
    FieldPathError,
    escaped,
    is_field_path,
    parse_field_path,
    raw_values,
    read_fields,
    segments_at,
    write_field,
)
from bridge.core.maps.tables import Table
from bridge.er7 import Message, read_datetime, write_datetime

FIELD_ACTIONS = ("set", "copy", "move", "delete", "lookup", "format_date", "split", "join")
_MAIN_PATH = {"copy": "to", "move": "to", "lookup": "key", "format_date": "path", "split": "path", "join": "to"}


def names_fields(name: str, body: Any) -> bool:
    """True when the step's main path is a field position (then every path of it must be one)."""
    if name == "set":
        return isinstance(body, Mapping) and any(is_field_path(k) for k in body)
    if name == "delete":
        return is_field_path(body)
    key = _MAIN_PATH.get(name)
    if key is None or not isinstance(body, Mapping):
        return False
    main = body.get(key)
    return is_field_path(main) or (name in ("copy", "move", "join", "split")
                                   and any(is_field_path(p) for p in _as_list(body.get("from", body.get("path")))))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _field(raw: Any, role: str, writes: bool = False) -> FieldPath:
    if not is_field_path(raw):
        raise ActionError(f"{role}: {raw!r}: every path of a step that edits HL7v2 fields must be a field "
                          "position (PID-3, OBX[*]-5); record paths and field positions do not mix in one step")
    try:
        path = parse_field_path(raw)
    except FieldPathError as exc:
        raise ActionError(f"{role}: {exc}") from None
    if writes and path.read_only:
        raise ActionError(f"{role}: {path.text} holds the message's separators and cannot be written")
    return path


def _text(value: Any, role: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ActionError(f"{role}: expected a text or number to write into an HL7v2 field")
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


@dataclass(frozen=True)
class FieldAction(Action):
    """Base of the field-position actions: their subject is one HL7v2 message."""


@dataclass(frozen=True)
class FieldSet(FieldAction):
    entries: tuple[tuple[FieldPath, str], ...] = ()

    def apply(self, run: Run, subject: Message) -> int:
        return sum(write_field(subject, path, escaped(value, subject)) for path, value in self.entries)


@dataclass(frozen=True)
class FieldCopy(FieldAction):
    """Copies the first value at ``source`` as written (its parts and escapes kept); ``move`` then
    clears the source."""

    source: FieldPath | None = None
    target: FieldPath | None = None
    move: bool = False

    def apply(self, run: Run, subject: Message) -> int:
        assert self.source is not None and self.target is not None
        value = next(raw_values(subject, self.source), None)
        if value is None:
            return 0
        changed = write_field(subject, self.target, value)
        if self.move:
            changed += write_field(subject, self.source, "")
        return changed


@dataclass(frozen=True)
class FieldDelete(FieldAction):
    path: FieldPath | None = None

    def apply(self, run: Run, subject: Message) -> int:
        assert self.path is not None
        return write_field(subject, self.path, "")


@dataclass(frozen=True)
class FieldLookup(FieldAction):
    """Per segment the key names (``OBX[*]-3.1``: each OBX), the code is looked up and the row's
    columns (``set``) and fixed values (``also``) go to fields of that same segment."""

    table: Table | None = None
    key: FieldPath | None = None
    sets: tuple[tuple[FieldPath, str], ...] = ()
    also: tuple[tuple[FieldPath, str], ...] = ()
    step: str = ""

    def apply(self, run: Run, subject: Message) -> int:
        assert self.table is not None and self.key is not None
        changed = 0
        for segment in segments_at(subject, self.key):
            code = next(iter(read_fields([subject], self.key, segment)), "")
            if not code:
                continue
            row = self.table.find(code)
            if row is None:
                self._missing(run)
                continue
            for path, column in self.sets:
                changed += write_field(subject, path, escaped(row[column], subject), segment)
            for path, value in self.also:
                changed += write_field(subject, path, escaped(value, subject), segment)
        return changed

    def _missing(self, run: Run) -> None:
        assert self.table is not None and self.key is not None
        if self.table.missing == "fail":
            raise MapFailure(f"table {self.table.name} has no row for the code at {self.key.text}")
        if self.table.missing == "hold":
            run.holds.append({"id": self.step, "reason": self.table.reason
                              or f"the code at {self.key.text} is not in table {self.table.name}"})


@dataclass(frozen=True)
class FieldFormatDate(FieldAction):
    """An HL7 date (DTM) rewritten: a precision cuts it (``date``: 8 digits; ``minute`` and ``second``
    keep the offset), a
    strftime pattern writes text; a value less precise than a date is left alone by a pattern, and
    one that is not an HL7 date at all is left as it is (nothing is invented)."""

    source: FieldPath | None = None
    target: FieldPath | None = None
    fmt: str = "date"

    def apply(self, run: Run, subject: Message) -> int:
        assert self.source is not None and self.target is not None
        changed = 0
        for segment in segments_at(subject, self.source):
            value = next(iter(read_fields([subject], self.source, segment)), "")
            iso = read_datetime(value) if value else None
            formatted = format_date(iso, self.fmt) if iso else None
            if formatted is None:
                continue
            out = write_datetime(formatted) if self.fmt in PRECISIONS else formatted
            into = segment if self.target.place == self.source.place else None
            changed += write_field(subject, self.target, escaped(out, subject), into)
        return changed


@dataclass(frozen=True)
class FieldSplit(FieldAction):
    source: FieldPath | None = None
    separator: str = " "
    targets: tuple[FieldPath, ...] = ()

    def apply(self, run: Run, subject: Message) -> int:
        assert self.source is not None
        value = next(iter(read_fields([subject], self.source)), None)
        if value is None:
            return 0
        parts = value.split(self.separator)
        return sum(write_field(subject, target, escaped(part, subject)) for target, part in zip(self.targets, parts))


@dataclass(frozen=True)
class FieldJoin(FieldAction):
    sources: tuple[FieldPath, ...] = ()
    separator: str = " "
    target: FieldPath | None = None

    def apply(self, run: Run, subject: Message) -> int:
        assert self.target is not None
        parts = [v for path in self.sources for v in read_fields([subject], path)]
        if not parts:
            return 0
        return write_field(subject, self.target, escaped(self.separator.join(parts), subject))


# --- compiling -----------------------------------------------------------------------------------


def compile_field_action(name: str, body: Any, tables: Mapping[str, Table], step: str) -> Action:
    """The field-position form of action ``name``; raises ActionError saying what is wrong."""
    if name not in FIELD_ACTIONS:
        raise ActionError(f"{name} works on records; with HL7v2 field positions use one of "
                          f"{', '.join(FIELD_ACTIONS)}")
    return _BUILDERS[name](body, tables, step)


def _set(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    if not isinstance(body, Mapping) or not body:
        raise ActionError("set: expected a mapping of path: value")
    entries = tuple((_field(raw, "set", writes=True), _text(value, f"set: {raw}")) for raw, value in body.items())
    return FieldSet("set", MESSAGE_KIND, tuple(p.text for p, _ in entries), entries)


def _copy(body: Any, tables: Mapping[str, Table], step: str, move: bool = False) -> Action:
    role = "move" if move else "copy"
    spec = _mapping(body, role, ("from", "to"), ("from", "to"))
    source = _field(spec["from"], f"{role}.from", writes=move)
    target = _field(spec["to"], f"{role}.to", writes=True)
    return FieldCopy(role, MESSAGE_KIND, (source.text, target.text), source, target, move)


def _move(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    return _copy(body, tables, step, move=True)


def _delete(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    path = _field(body, "delete", writes=True)
    return FieldDelete("delete", MESSAGE_KIND, (path.text,), path)


def _lookup(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "lookup", ("table", "key", "set", "also"), ("table", "key"))
    table = tables.get(spec["table"])
    if table is None:
        raise ActionError(f"lookup.table: no table {spec['table']!r} is declared under tables: "
                          f"(declared: {', '.join(sorted(tables)) or 'none'})")
    key = _field(spec["key"], "lookup.key")
    if key.repetition == EVERY:
        raise ActionError(f"lookup.key: {key.text} must name one repetition per segment (drop the [*] after the field)")
    sets, also = [], []
    for raw, column in (spec.get("set") or {}).items():
        path = _beside(raw, key, "lookup.set")
        if column not in table.columns:
            raise ActionError(f"lookup.set: {path.text}: table {table.name} declares no column {column!r} "
                              f"(declared: {', '.join(table.columns) or 'none'})")
        sets.append((path, column))
    for raw, value in (spec.get("also") or {}).items():
        also.append((_beside(raw, key, "lookup.also"), _text(value, f"lookup.also: {raw}")))
    paths = tuple(dict.fromkeys((key.text, *(p.text for p, _ in sets), *(p.text for p, _ in also))))
    return FieldLookup("lookup", MESSAGE_KIND, paths, table, key, tuple(sets), tuple(also), step)


def _beside(raw: Any, key: FieldPath, role: str) -> FieldPath:
    path = _field(raw, role, writes=True)
    if path.segment != key.segment:
        raise ActionError(f"{role}: {path.text} must be a field of the key's segment ({key.segment}): "
                          "the row's values go to the segment the code was found in")
    return path


def _format_date(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "format_date", ("path", "format", "to"), ("path", "format"))
    source = _field(spec["path"], "format_date.path", writes="to" not in spec)
    target = _field(spec["to"], "format_date.to", writes=True) if "to" in spec else source
    fmt = spec["format"]
    if not isinstance(fmt, str) or (fmt not in PRECISIONS and "%" not in fmt):
        raise ActionError(f"format_date.format: expected one of {', '.join(PRECISIONS)} or a strftime "
                          f"pattern such as %Y%m%d, got {fmt!r}")
    return FieldFormatDate("format_date", MESSAGE_KIND, tuple(dict.fromkeys((source.text, target.text))),
                           source, target, fmt)


def _split(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "split", ("path", "separator", "to"), ("path", "separator", "to"))
    source = _field(spec["path"], "split.path")
    targets = tuple(_field(t, "split.to", writes=True) for t in _as_list(spec["to"]))
    if not isinstance(spec["separator"], str) or not spec["separator"]:
        raise ActionError("split.separator: expected a non-empty text")
    return FieldSplit("split", MESSAGE_KIND, (source.text, *(t.text for t in targets)), source,
                      spec["separator"], targets)


def _join(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "join", ("from", "separator", "to"), ("from", "to"))
    sources = tuple(_field(s, "join.from") for s in _as_list(spec["from"]))
    target = _field(spec["to"], "join.to", writes=True)
    separator = spec.get("separator", " ")
    if not isinstance(separator, str):
        raise ActionError("join.separator: expected a text")
    return FieldJoin("join", MESSAGE_KIND, (*(s.text for s in sources), target.text), sources, separator, target)


_BUILDERS = {"set": _set, "copy": _copy, "move": _move, "delete": _delete, "lookup": _lookup,
             "format_date": _format_date, "split": _split, "join": _join}

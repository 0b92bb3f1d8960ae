"""Step actions: what a map step does to the records when its condition holds.

Every action is compiled at load (paths checked against the record classes, literal values checked
against the field they go into) and applied per message to a *subject*: each record of the kind its
main path names (``drop`` and the message-level ``route`` and ``hold`` are the exceptions). Each
application returns how many values it changed, which is all the timeline keeps: paths and counts,
never values, because values are patient data.

A value produced at run time (copied, looked up, split, formatted) is checked against the field it
goes into like a decoded value would be; one that does not fit fails the message (or, in a
destination map, that destination alone) with the step and path named, never the value.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from bridge.core.maps.paths import Leaf, Path, PathError, Slot, _get, parse_path, records_of_kind
from bridge.core.maps.tables import Table
from bridge.core.model.codec import _convert
from bridge.core.model.records import Identifier, Record
from bridge.errors import DecodeError

ACTIONS = ("set", "copy", "move", "delete", "lookup", "format_date", "split", "join", "add_identifier",
           "drop", "route", "hold", "call")
"""(``call`` is compiled by :mod:`.calls`: it needs the map's folder.)"""
CHANNEL_ONLY = ("route",)
"""Actions a destination map cannot take: a destination's copy is already routed."""
PRECISIONS = {"year": 4, "month": 7, "date": 10, "minute": 16, "second": 19}


class ActionError(ValueError):
    """A step whose action cannot be compiled; the message names the part."""


class MapFailure(Exception):
    """A step could not do its work on this message; the text names paths, never values."""


@dataclass
class Run:
    """One message's pass through the maps: the records (changed in place) and what steps asked for."""

    records: list[Record]
    holds: list[dict[str, str]] = dataclasses.field(default_factory=list)
    _index: dict[str, list[Record]] = dataclasses.field(default_factory=dict)
    routes: dict[str, tuple[str, ...] | None] = dataclasses.field(default_factory=dict)
    """Destinations ``route`` steps chose: the record kinds each takes (None: every record)."""
    inbound: Sequence[Any] = ()
    """The sender's HL7v2 message(s), parsed when a condition reads field positions (else empty)."""
    outbound: Sequence[Any] = ()
    """The outbound HL7v2 message(s) field-position steps edit (a destination's, after encoding)."""
    stage: str = "channel"
    """``channel`` or ``destination:NAME``, for ``call`` steps that need to know."""

    def of_kind(self, kind: str) -> list[Record]:
        """The message's records of ``kind`` (nested ones included), found once until :meth:`reshaped`."""
        found = self._index.get(kind)
        if found is None:
            found = self._index[kind] = records_of_kind(self.records, kind)
        return found

    def reshaped(self) -> None:
        """A step added, removed or replaced records: find them again."""
        self._index.clear()


# --- values --------------------------------------------------------------------------------------


def fit(value: Any, leaf: Leaf, where: str) -> Any:
    """``value`` converted for the field ``leaf`` describes; raises MapFailure (no value quoted)."""
    if leaf.free or value is None:
        return value
    hint = leaf.hint
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return copy.deepcopy(value)
        if isinstance(value, Mapping):
            return _checked(hint, dict(value), where, leaf.metadata)
        raise MapFailure(f"{where}: expected a {hint.__name__} there")
    return _checked(hint, _coerce(value, hint), where, leaf.metadata)


def _checked(hint: Any, value: Any, where: str, meta: Any) -> Any:
    try:
        return _convert(hint, value, where, meta)
    except DecodeError as exc:
        reason = re.sub(r", got .*$", "", str(exc).split(": ", 1)[-1])
        raise MapFailure(f"{where}: the value does not fit the field ({reason})") from None


def _coerce(value: Any, hint: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.datetime)):
        value = value.isoformat()
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        try:
            if hint is int:
                return int(value)
            if hint is float:
                return float(value)
        except ValueError:
            return value
        if hint is bool and value.lower() in ("true", "false"):
            return value.lower() == "true"
    return value


def _put(slot: Slot, value: Any, leaf: Leaf, where: str) -> int:
    """Write ``value`` into ``slot``; 1 when that changed something. A whole list field takes a list
    (or one value, as a list of one)."""
    if leaf.is_list and slot.index is None:
        items = value if isinstance(value, list) else [value]
        new: Any = [fit(v, leaf, where) for v in items if v is not None]
    else:
        new = fit(value, leaf, where)
    if slot.get() == new:
        return 0
    slot.put(new)
    return 1


def _path(raw: Any, role: str) -> Path:
    try:
        return parse_path(raw)
    except PathError as exc:
        raise ActionError(f"{role}: {exc}") from None


def _static_fit(value: Any, path: Path, role: str) -> Any:
    try:
        if path.leaf.is_list and not path.leaf.selected and isinstance(value, list):
            return [fit(v, path.leaf, path.text) for v in value]
        return fit(value, path.leaf, path.text)
    except MapFailure as exc:
        raise ActionError(f"{role}: {exc}") from None


def _required(path: Path) -> bool:
    owner, name = path.leaf.owner, path.segments[-1].name
    if owner is None or path.leaf.free or path.segments[-1].select is not None:
        return False
    f = next((f for f in dataclasses.fields(owner) if f.name == name), None)
    return f is not None and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


# --- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action(ABC):
    """Base: ``kind`` is the record kind the action works on (None: the message as a whole).
    ``reshapes``: a change it makes may add, remove or replace records (then they are found again)."""

    name: str
    kind: str | None
    paths: tuple[str, ...]

    @abstractmethod
    def apply(self, run: Run, subject: Any) -> int:
        """Apply to ``subject`` (None for a message-wide action); return how many values changed."""

    @property
    def reshapes(self) -> bool:
        return False


def _holds_records(path: Path) -> bool:
    from bridge.core.maps.paths import _kinds_within

    hint = path.leaf.hint  # inside ``extra`` nothing is a record the maps look for
    return not path.leaf.free and isinstance(hint, type) and (issubclass(hint, Record) or bool(_kinds_within(hint)))


def _first(run: Run, subject: Any, subject_kind: str | None, path: Path) -> Any:
    """The first value at ``path``: in the subject for its own kind, else anywhere in the message."""
    if subject is not None and path.kind == subject_kind:
        values = path.read(subject)
    else:
        values = [v for r in run.of_kind(path.kind) for v in path.read(r)]
    return values[0] if values else None


@dataclass(frozen=True)
class SetAction(Action):
    entries: tuple[tuple[Path, Any], ...] = ()

    @cached_property
    def reshapes(self) -> bool:  # type: ignore[override]
        return any(_holds_records(p) for p, _ in self.entries)

    @cached_property
    def _prefitted(self) -> tuple[bool, ...]:
        """Per entry: its value is a plain value already fitted to one field when the map loaded,
        so each write only compares and stores (a record-shaped value is copied per write, and a
        whole list field takes a new list, as :func:`_put` does)."""
        return tuple(isinstance(value, (str, int, float)) and not (path.leaf.is_list and not path.leaf.selected)
                     for path, value in self.entries)

    @cached_property
    def _fields(self) -> tuple[str | None, ...]:
        """Per entry: the record's own field it writes when that is all the path is (``encounter.status``,
        prefitted): read and written directly, as its one :class:`Slot` would."""
        return tuple(path.segments[-1].name if prefitted and not path.parent and path.segments[-1].select is None
                     and not path.leaf.free else None for (path, _), prefitted in zip(self.entries, self._prefitted))

    @cached_property
    def _owned(self) -> tuple[str | None, ...]:
        """Per entry: the last field's name when the value is prefitted and the path ends on a plain
        field below the record (``identifiers[0].system``): written on each owner its compiled
        walker reaches, as a :class:`Slot` per owner would, without making the slots."""
        return tuple(path.segments[-1].name if prefitted and field is None and path.parent
                     and path.segments[-1].select is None else None
                     for (path, _), prefitted, field in zip(self.entries, self._prefitted, self._fields))

    def apply(self, run: Run, subject: Any) -> int:
        changed = 0
        for (path, value), prefitted, field, owned in zip(self.entries, self._prefitted, self._fields, self._owned):
            if field is not None:  # the subject is a record of the path's kind (one kind per step)
                if getattr(subject, field, None) != value:
                    setattr(subject, field, value)
                    changed += 1
                continue
            if owned is not None:
                changed += _set_on_owners(path.owners_created(subject), owned, value)
                continue
            for slot in path.slots(subject, True):
                if not prefitted:
                    changed += _put(slot, value, path.leaf, path.text)
                elif slot.get() != value:
                    slot.put(value)
                    changed += 1
        return changed


def _write(target: Path, subject: Any, value: Any) -> int:
    """``value`` written at ``target`` under ``subject`` (absent objects created), as :func:`_put`
    on each of its slots; a plain field is fitted once and written on each owner directly."""
    name = target.plain_name
    if name is None:
        return sum(_put(s, value, target.leaf, target.text) for s in target.slots(subject, True))
    owners = target.owners_created(subject) if target.parent else (subject,)
    if not owners:
        return 0
    return _set_on_owners(owners, name, fit(value, target.leaf, target.text))


def _set_on_owners(owners: list[Any], name: str, value: Any) -> int:
    """``value`` in field ``name`` of each owner (a mapping or a dataclass, as :class:`Slot` writes);
    how many changed."""
    changed = 0
    for owner in owners:
        if type(owner) is dict:
            if owner.get(name) != value:
                owner[name] = value
                changed += 1
        elif isinstance(owner, dict) or hasattr(owner, "__dataclass_fields__"):
            if getattr(owner, name, None) != value:
                Slot(owner, name).put(value)
                changed += 1
    return changed


@dataclass(frozen=True)
class CopyAction(Action):
    source: Path | None = None
    target: Path | None = None
    move: bool = False

    @cached_property
    def reshapes(self) -> bool:  # type: ignore[override]
        """Only a value that is or holds records changes which records the message has."""
        assert self.source is not None and self.target is not None
        return _holds_records(self.target) or (self.move and _holds_records(self.source))

    def apply(self, run: Run, subject: Any) -> int:
        assert self.source is not None and self.target is not None
        value = _first(run, subject, self.kind, self.source)
        if value is None:
            return 0
        changed = _write(self.target, subject, value)
        if self.move:
            changed += _delete(subject, self.source)
        return changed


def _delete(subject: Any, path: Path) -> int:
    changed = 0
    for slot in reversed(path.slots(subject)):  # from the end, so list indexes stay right
        if slot.index is not None:
            del _get(slot.owner, slot.name)[slot.index]
            changed += 1
        elif slot.get() not in (None, [], {}):
            slot.put([] if isinstance(slot.get(), list) else ({} if isinstance(slot.get(), dict) else None))
            changed += 1
    return changed


@dataclass(frozen=True)
class DeleteAction(Action):
    path: Path | None = None

    @cached_property
    def reshapes(self) -> bool:  # type: ignore[override]
        assert self.path is not None
        return _holds_records(self.path)

    def apply(self, run: Run, subject: Any) -> int:
        assert self.path is not None
        return _delete(subject, self.path)


@dataclass(frozen=True)
class LookupAction(Action):
    """Each code at ``key`` is looked up; the row's columns go to the ``set`` paths beside it."""

    table: Table | None = None
    key: Path | None = None
    sets: tuple[tuple[Path, str], ...] = ()
    also: tuple[tuple[Path, Any], ...] = ()
    step: str = ""

    def apply(self, run: Run, subject: Any) -> int:
        assert self.table is not None and self.key is not None
        changed = 0
        for anchor in self.key.owners(subject):
            code = _get(anchor, self.key.segments[-1].name)
            if code is None or code == "":
                continue
            row = self.table.find(str(code))
            if row is None:
                code_not_in_table(run, self.table, self.key.text, self.step)
                continue
            for path, column in self.sets:
                changed += _put(Slot(anchor, path.segments[-1].name), row[column], path.leaf, path.text)
            for path, value in self.also:
                changed += _put(Slot(anchor, path.segments[-1].name), value, path.leaf, path.text)
        return changed


def code_not_in_table(run: Run, table: Table, key_text: str, step: str) -> None:
    """A lookup's code the table lacks, as the table declares: fail the message, hold it, or pass."""
    if table.missing == "fail":
        raise MapFailure(f"table {table.name} has no row for the code at {key_text}")
    if table.missing == "hold":
        run.holds.append({"id": step, "reason": table.reason or f"the code at {key_text} is not in table {table.name}"})


@dataclass(frozen=True)
class FormatDateAction(Action):
    """``format``: a precision (year, month, date, minute, second: the ISO text cut there, offset
    kept) or a strftime pattern (``%Y%m%d``) for a text field; values less precise than a date are
    left alone by a pattern (formatting them would invent a day)."""

    source: Path | None = None
    target: Path | None = None
    fmt: str = "date"

    def apply(self, run: Run, subject: Any) -> int:
        assert self.source is not None and self.target is not None
        changed = 0
        for slot in self.source.slots(subject):
            value = slot.get()
            formatted = format_date(value, self.fmt) if isinstance(value, str) else None
            if formatted is None:
                continue
            if self.target is self.source:
                changed += _put(slot, formatted, self.target.leaf, self.target.text)
            else:
                changed += _write(self.target, subject, formatted)
        return changed


_YEAR = re.compile(r"\d{4}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")


def format_date(value: str, fmt: str) -> str | None:
    """``value`` (ISO 8601, any precision) in ``fmt``; None when it cannot be done without inventing."""
    if fmt in PRECISIONS:
        cut = PRECISIONS[fmt]
        if len(value) < cut or not _YEAR.match(value):
            return None
        offset = _OFFSET.search(value[10:]) if cut > 10 else None
        return value[:cut] + (offset.group(1) if offset else "")
    if not _DAY.match(value):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.strftime(fmt)


@dataclass(frozen=True)
class SplitAction(Action):
    source: Path | None = None
    separator: str = " "
    targets: tuple[Path, ...] = ()

    def apply(self, run: Run, subject: Any) -> int:
        assert self.source is not None
        value = _first(run, subject, self.kind, self.source)
        if not isinstance(value, str):
            return 0
        parts = value.split(self.separator)
        if len(self.targets) == 1 and self.targets[0].leaf.is_list and not self.targets[0].leaf.selected:
            target = self.targets[0]
            return sum(_put(s, parts, target.leaf, target.text) for s in target.slots(subject, True))
        changed = 0
        for target, part in zip(self.targets, parts):
            changed += _write(target, subject, part)
        return changed


@dataclass(frozen=True)
class JoinAction(Action):
    sources: tuple[Path, ...] = ()
    separator: str = " "
    target: Path | None = None

    def apply(self, run: Run, subject: Any) -> int:
        assert self.target is not None
        parts: list[str] = []
        for path in self.sources:
            own = path.kind == self.kind
            values = path.read(subject) if own else [v for r in run.of_kind(path.kind) for v in path.read(r)]
            parts.extend(str(v) for v in values if v != "")
        if not parts:
            return 0
        joined = self.separator.join(parts)
        return _write(self.target, subject, joined)


@dataclass(frozen=True)
class AddIdentifierAction(Action):
    """Appends an identifier unless one with the same value, system and type is already there."""

    target: Path | None = None
    value: str | None = None
    source: Path | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def apply(self, run: Run, subject: Any) -> int:
        assert self.target is not None
        value = self.value if self.source is None else _first(run, subject, self.kind, self.source)
        if value is None or value == "":
            return 0
        text, fields = str(value), self._fields
        system, type_ = fields.get("system"), fields.get("type")
        changed = 0
        for owner in self.target.owners_created(subject):
            items = _get(owner, self.target.segments[-1].name)
            if items is None or _has_identifier(items, text, system, type_):
                continue
            items.append(Identifier(value=text, **fields))  # a new one per owner: none shares it
            changed += 1
        return changed

    @cached_property
    def _fields(self) -> dict[str, str]:
        return dict(self.fields)


def _has_identifier(items: list[Any], value: str, system: str | None, type_: str | None) -> bool:
    """Some identifier in ``items`` has this value, system and type already."""
    for item in items:
        if item.value == value and item.system == system and item.type == type_:
            return True
    return False


@dataclass(frozen=True)
class DropAction(Action):
    """Removes the message's top-level records of ``kind`` (the subjects whose condition held)."""

    @property
    def reshapes(self) -> bool:
        return True

    def apply(self, run: Run, subject: Any) -> int:
        before = len(run.records)
        run.records[:] = [r for r in run.records if r is not subject]
        return before - len(run.records)


@dataclass(frozen=True)
class RouteAction(Action):
    """Sends the message (or its records of ``records`` kinds) to destinations, beside the routes."""

    to: tuple[str, ...] = ()
    records: tuple[str, ...] = ()

    def apply(self, run: Run, subject: Any) -> int:
        for name in self.to:
            before = run.routes.get(name, ())
            everything = not self.records or (name in run.routes and before is None)
            run.routes[name] = None if everything else tuple(sorted({*(before or ()), *self.records}))
        return len(self.to)


@dataclass(frozen=True)
class HoldAction(Action):
    reason: str = ""
    step: str = ""

    def apply(self, run: Run, subject: Any) -> int:
        run.holds.append({"id": self.step, "reason": self.reason})
        return 1


# --- compiling -----------------------------------------------------------------------------------


def compile_action(name: str, body: Any, tables: Mapping[str, Table], step: str) -> Action:
    """Build the action ``name`` of step ``step`` from its YAML body; raises ActionError."""
    from bridge.core.maps.field_actions import compile_field_action, names_fields

    builder = _BUILDERS.get(name)
    if builder is None:  # pragma: no cover - the caller checks names
        raise ActionError(f"unknown action {name!r}")
    if names_fields(name, body):  # HL7v2 field positions (PID-3[2].4): the message, not the records
        return compile_field_action(name, body, tables, step)
    return builder(body, tables, step)


def _one_kind(paths: Sequence[Path], role: str) -> str:
    kinds = {p.kind for p in paths}
    if len(kinds) != 1:
        raise ActionError(f"{role}: every path of one step must start with the same record kind "
                          f"(got {', '.join(sorted(kinds))})")
    return kinds.pop()


def _mapping(body: Any, role: str, keys: Sequence[str], required: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ActionError(f"{role}: expected a mapping with {', '.join(keys)}")
    unknown = sorted(set(map(str, body)) - set(keys))
    if unknown:
        raise ActionError(f"{role}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(keys)})")
    absent = [k for k in required if k not in body]
    if absent:
        raise ActionError(f"{role}: {', '.join(absent)} is required")
    return body


def _set(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    if not isinstance(body, Mapping) or not body:
        raise ActionError("set: expected a mapping of path: value")
    entries = []
    for raw, value in body.items():
        path = _path(raw, "set")
        if _required(path) and value is None:
            raise ActionError(f"set: {path.text} is required and cannot be set to nothing")
        entries.append((path, _static_fit(value, path, "set")))
    paths = [p for p, _ in entries]
    return SetAction("set", _one_kind(paths, "set"), tuple(p.text for p in paths), tuple(entries))


def _copy(body: Any, tables: Mapping[str, Table], step: str, move: bool = False) -> Action:
    role = "move" if move else "copy"
    spec = _mapping(body, role, ("from", "to"), ("from", "to"))
    source, target = _path(spec["from"], f"{role}.from"), _path(spec["to"], f"{role}.to")
    if source.leaf.hint != target.leaf.hint and not (source.leaf.free or target.leaf.free):
        raise ActionError(f"{role}: {source.text} and {target.text} hold different kinds of value")
    if move and (source.kind != target.kind or _required(source)):
        raise ActionError(f"move: {source.text} must be an optional field of the same record kind as the target")
    return CopyAction(role, target.kind, (source.text, target.text), source, target, move)


def _move(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    return _copy(body, tables, step, move=True)


def _delete_action(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    path = _path(body, "delete")
    if _required(path):
        raise ActionError(f"delete: {path.text} is a required field; delete what holds it instead")
    return DeleteAction("delete", path.kind, (path.text,), path)


def _lookup(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "lookup", ("table", "key", "set", "also"), ("table", "key"))
    table = tables.get(spec["table"])
    if table is None:
        raise ActionError(f"lookup.table: no table {spec['table']!r} is declared under tables: "
                          f"(declared: {', '.join(sorted(tables)) or 'none'})")
    key = _path(spec["key"], "lookup.key")
    if key.leaf.is_list or key.segments[-1].select is not None:
        raise ActionError(f"lookup.key: {key.text} must end on a single value (select one item or go deeper)")
    sets, also = [], []
    for raw, column in (spec.get("set") or {}).items():
        path = _beside(raw, key, "lookup.set")
        if column not in table.columns:
            raise ActionError(f"lookup.set: {path.text}: table {table.name} declares no column {column!r} "
                              f"(declared: {', '.join(table.columns) or 'none'})")
        sets.append((path, column))
    for raw, value in (spec.get("also") or {}).items():
        path = _beside(raw, key, "lookup.also")
        also.append((path, _static_fit(value, path, "lookup.also")))
    paths = tuple(dict.fromkeys((key.text, *(p.text for p, _ in sets), *(p.text for p, _ in also))))
    return LookupAction("lookup", key.kind, paths, table, key, tuple(sets), tuple(also), step)


def _beside(raw: Any, key: Path, role: str) -> Path:
    path = _path(raw, role)
    if path.kind != key.kind or path.parent != key.parent or path.segments[-1].select is not None:
        parent = ".".join([key.text.split(".")[0], *(s.name for s in key.parent)])
        raise ActionError(f"{role}: {path.text} must be a field beside the key (under {parent})")
    return path


def _format_date(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "format_date", ("path", "format", "to"), ("path", "format"))
    source = _path(spec["path"], "format_date.path")
    target = _path(spec["to"], "format_date.to") if "to" in spec else source
    fmt = spec["format"]
    if not isinstance(fmt, str) or (fmt not in PRECISIONS and "%" not in fmt):
        raise ActionError(f"format_date.format: expected one of {', '.join(PRECISIONS)} or a strftime "
                          f"pattern such as %Y%m%d, got {fmt!r}")
    if source.kind != target.kind:
        raise ActionError("format_date: path and to must start with the same record kind")
    sample = format_date("2026-01-31T09:05:07-06:00", fmt)
    if target.leaf.metadata and target.leaf.metadata.get("format") == "datetime" and fmt not in PRECISIONS:
        from bridge.core.model.codec import valid_datetime

        if not valid_datetime(sample or ""):
            raise ActionError(f"format_date: {target.text} holds ISO dates; {fmt!r} does not write one "
                              "(use a precision such as date, or write to a text field)")
    return FormatDateAction("format_date", source.kind, (source.text, target.text), source, target, fmt)


def _split(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "split", ("path", "separator", "to"), ("path", "separator", "to"))
    source = _path(spec["path"], "split.path")
    raw_targets = spec["to"] if isinstance(spec["to"], list) else [spec["to"]]
    targets = tuple(_path(t, "split.to") for t in raw_targets)
    if not isinstance(spec["separator"], str) or not spec["separator"]:
        raise ActionError("split.separator: expected a non-empty text")
    kind = _one_kind(targets, "split.to")
    return SplitAction("split", kind, (source.text, *(t.text for t in targets)), source, spec["separator"], targets)


def _join(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "join", ("from", "separator", "to"), ("from", "to"))
    raw_sources = spec["from"] if isinstance(spec["from"], list) else [spec["from"]]
    sources = tuple(_path(s, "join.from") for s in raw_sources)
    target = _path(spec["to"], "join.to")
    separator = spec.get("separator", " ")
    if not isinstance(separator, str):
        raise ActionError("join.separator: expected a text")
    return JoinAction("join", target.kind, (*(s.text for s in sources), target.text), sources, separator, target)


def _add_identifier(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    spec = _mapping(body, "add_identifier", ("to", "value", "from", "system", "type", "assigner"), ("to",))
    target = _path(spec["to"], "add_identifier.to")
    if target.leaf.hint is not Identifier or not target.leaf.is_list or target.segments[-1].select is not None:
        raise ActionError(f"add_identifier.to: {target.text} is not a list of identifiers (such as patient.identifiers)")
    if ("value" in spec) == ("from" in spec):
        raise ActionError("add_identifier: give exactly one of value (a literal) or from (a path)")
    system = spec.get("system")
    if system is not None and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", str(system)):
        raise ActionError(f"add_identifier.system: expected an absolute URI (urn:oid:…, https://…), got {system!r}")
    fields = tuple((k, str(spec[k])) for k in ("system", "type", "assigner") if spec.get(k) is not None)
    source = _path(spec["from"], "add_identifier.from") if "from" in spec else None
    paths = (target.text, *((source.text,) if source else ()))
    value = None if "value" in spec and spec["value"] is None else (str(spec["value"]) if "value" in spec else None)
    return AddIdentifierAction("add_identifier", target.kind, paths, target, value, source, fields)


def _drop(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    from bridge.core.maps.paths import ROOTS

    if body not in ROOTS:
        raise ActionError(f"drop: expected a record kind such as encounter (known: {', '.join(sorted(ROOTS))})")
    return DropAction("drop", ROOTS[body], (body,))


def _route(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    from bridge.core.maps.paths import ROOTS

    spec = {"to": body} if isinstance(body, (str, list)) else _mapping(body, "route", ("to", "records"), ("to",))
    to = [spec["to"]] if isinstance(spec["to"], str) else spec["to"]
    if not isinstance(to, list) or not to or not all(isinstance(d, str) and d for d in to):
        raise ActionError("route.to: expected a destination name or a list of them")
    records = spec.get("records", [])
    records = [records] if isinstance(records, str) else records
    bad = [r for r in records if r not in ROOTS]
    if bad:
        raise ActionError(f"route.records: unknown record kind(s) {', '.join(map(str, bad))}")
    return RouteAction("route", None, tuple(to), tuple(to), tuple(ROOTS[r] for r in records))


def _hold(body: Any, tables: Mapping[str, Table], step: str) -> Action:
    if not isinstance(body, str) or not body.strip():
        raise ActionError("hold: expected the reason a reviewer will read (no patient data in it)")
    return HoldAction("hold", None, (), body.strip(), step)


_BUILDERS = {
    "set": _set, "copy": _copy, "move": _move, "delete": _delete_action, "lookup": _lookup,
    "format_date": _format_date, "split": _split, "join": _join, "add_identifier": _add_identifier,
    "drop": _drop, "route": _route, "hold": _hold,
}

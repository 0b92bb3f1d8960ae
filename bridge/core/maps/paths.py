"""Paths into canonical records: ``encounter.class``, ``patient.identifiers[type=MR].value``.

A path is checked against the record classes when the map is loaded, so a typo is reported by
``bridge check`` (with the field it probably meant) instead of silently matching nothing at run time.

Grammar: ``ROOT(.FIELD[SELECTOR]?)*``. ``ROOT`` is a record kind in snake case (``encounter``,
``medication_administration``) and addresses every record of that kind in the message, including
records nested inside others (an encounter's ``patient``). Repetition rules, for list fields:

- no selector, or ``[*]``: every item (a condition holds when any item satisfies it; an action
  changes every item);
- ``[N]``: the item at index N (0-based; ``[-1]`` the last); no item there: nothing is read or written;
- ``[FIELD=VALUE]``: every item whose ``FIELD`` equals ``VALUE`` (``identifiers[type=MR]``).

``set`` on a path whose intermediate object is absent creates it when it has no required fields
(``encounter.period.start`` creates the period); a list selector never creates items (use
``add_identifier``). Inside ``extra`` (a free mapping) names are not checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass
from collections.abc import Callable
from functools import cache, cached_property
from typing import Any, Union

from bridge.core.model.records import RECORD_TYPES, Record

ALIASES: dict[tuple[str, str], str] = {("Encounter", "class"): "encounter_class"}
"""Short names analysts expect (FHIR's ``Encounter.class``) for fields whose Python name differs."""

_SEGMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<sel>[^\]]*)\])?$")


class PathError(ValueError):
    """A path that does not fit the record classes; the message says which part and why."""


def snake(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


ROOTS: dict[str, str] = {snake(kind): kind for kind in RECORD_TYPES}
"""``medication_administration`` → ``MedicationAdministration``."""


@dataclass(frozen=True)
class Segment:
    """One field step; ``select`` is None (all), ``("index", n)`` or ``("match", field, value)``."""

    name: str
    select: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Leaf:
    """What a path ends on: the field's type (``item`` for a list's items) and its metadata."""

    hint: Any
    is_list: bool
    selected: bool
    metadata: Any = None
    owner: type | None = None
    free: bool = False  # inside ``extra``: not checked


@dataclass(frozen=True)
class Path:
    text: str
    kind: str
    segments: tuple[Segment, ...]
    leaf: Leaf

    @cached_property
    def parent(self) -> tuple[Segment, ...]:
        return self.segments[:-1]

    # Compiled once per path (the first time a message needs it), so that a step's per-message
    # work is direct attribute reads with the selector already resolved: no parsing, no dispatch
    # on the selector's kind, no generic walk. See :func:`_walker`.

    @cached_property
    def read(self) -> Callable[[Any], list[Any]]:
        """``read(start, path)`` for this path: every non-empty value under ``start``."""
        return _reader(self)

    @cached_property
    def owners(self) -> Callable[[Any], list[Any]]:
        """The objects holding the path's last field (``objects_at(start, path.parent)``)."""
        return _walker(self.parent, False)

    @cached_property
    def owners_created(self) -> Callable[[Any], list[Any]]:
        """As :attr:`owners`, creating absent intermediate objects that need no required field."""
        return _walker(self.parent, True)

    @cached_property
    def plain_name(self) -> str | None:
        """The last field's name when a write needs no slot per place: one plain value (not a list,
        not a dataclass copied per place) in a field without a selector."""
        last = self.segments[-1]
        if last.select is None and not self.leaf.is_list and not dataclasses.is_dataclass(self.leaf.hint):
            return last.name
        return None

    @cached_property
    def slots(self) -> Callable[[Any, bool], list["Slot"]]:
        """``slots(start, path, create)`` for this path."""
        return _slotter(self)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> Any:
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0]
    return hint


def _selector(raw: str | None, text: str) -> tuple[Any, ...] | None:
    if raw is None or raw == "*":
        return None
    if re.fullmatch(r"-?\d+", raw):
        return ("index", int(raw))
    key, eq, value = raw.partition("=")
    if not eq or not key.strip():
        raise PathError(f"{text}: selector [{raw}] must be [N], [*] or [FIELD=VALUE]")
    return ("match", key.strip(), value.strip())


def _parts(text: str) -> list[str]:
    """``text`` split at dots outside brackets: ``identifiers[system=urn:oid:2.16.840.1].value``."""
    parts, current, depth = [], "", 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def parse_path(text: Any) -> Path:
    """Parse and check a path against the record classes; raises PathError saying what is wrong."""
    if not isinstance(text, str) or not text:
        raise PathError(f"expected a path such as encounter.class, got {text!r}")
    root, *rest = _parts(text)
    if root not in ROOTS and re.match(r"^[A-Z][A-Z0-9]{2}(\[[^\]]*\])?-", text):
        raise PathError(f"{text}: an HL7v2 field position is read in conditions and written by set, copy, move, "
                        "delete, lookup, format_date, split and join (every path of the step a field position); "
                        "not here")
    if root not in ROOTS:
        hint = difflib.get_close_matches(root, sorted(ROOTS), n=1)
        raise PathError(f"{text}: unknown record kind {root!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(sorted(ROOTS))})"))
    if not rest:
        raise PathError(f"{text}: name a field of {ROOTS[root]} after {root!r}")
    kind = ROOTS[root]
    cls: Any = RECORD_TYPES[kind]
    segments: list[Segment] = []
    leaf = Leaf(cls, False, False)
    for part in rest:
        match = _SEGMENT.match(part)
        if not match:
            raise PathError(f"{text}: {part!r} is not a field name with an optional [selector]")
        if leaf.free:
            segments.append(Segment(match["name"], _selector(match["sel"], text)))
            continue
        cls = leaf.hint  # after a list, a field of its items (all of them, or the selected ones)
        name = ALIASES.get((getattr(cls, "kind", ""), match["name"]), match["name"])
        leaf = _field_leaf(cls, name, text)
        select = _selector(match["sel"], text)
        if match["sel"] is not None and not leaf.is_list:
            raise PathError(f"{text}: {name!r} is not a list, so it takes no [selector]")
        if select and select[0] == "match":
            _field_leaf(leaf.hint, select[1], text)
        leaf = dataclasses.replace(leaf, selected=select is not None and select[0] == "index")
        segments.append(Segment(name, select))
    return Path(text, kind, tuple(segments), leaf)


def _field_leaf(cls: Any, name: str, text: str) -> Leaf:
    if not dataclasses.is_dataclass(cls):
        raise PathError(f"{text}: {name!r} cannot follow a {getattr(cls, '__name__', cls)} value")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if name not in fields:
        aliases = [alias for (kind, alias) in ALIASES if kind == getattr(cls, "kind", None)]
        hint = difflib.get_close_matches(name, sorted([*fields, *aliases]), n=1)
        raise PathError(f"{text}: {cls.__name__} has no field {name!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    hint = _unwrap(_hints(cls)[name])
    meta = fields[name].metadata
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        item_meta = {"choices": meta["item_choices"]} if meta.get("item_choices") else None
        return Leaf(item, True, False, item_meta, cls)
    if typing.get_origin(hint) is dict or hint is Any:
        return Leaf(Any, False, False, None, cls, free=True)
    return Leaf(hint, False, False, meta, cls)


# --- reading and writing --------------------------------------------------------------------------


def records_of_kind(records: typing.Sequence[Record], kind: str) -> list[Record]:
    """Every record of ``kind`` in the message, each once, outer records before the ones they hold.
    Only fields whose type can hold such a record are walked (a patient's names and addresses are
    not), which keeps this cheap enough to run for every step of every message."""
    out: list[Record] = []
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Record) and value.kind == kind and id(value) not in seen:
            seen.add(id(value))
            out.append(value)
        for name in _fields_toward(type(value), kind):
            child = getattr(value, name)
            if isinstance(child, list):
                for item in child:
                    walk(item)
            elif child is not None:
                walk(child)

    for record in records:
        walk(record)
    return out


@cache
def _children(cls: type) -> tuple[tuple[str, type], ...]:
    """(field, value class) for the fields of ``cls`` that hold dataclasses (lists unwrapped)."""
    if not dataclasses.is_dataclass(cls):
        return ()
    out = []
    for f in dataclasses.fields(cls):
        hint = _unwrap(_hints(cls)[f.name]) if f.name != "extra" else None
        if typing.get_origin(hint) is list:
            hint = typing.get_args(hint)[0]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out.append((f.name, hint))
    return tuple(out)


@cache
def _kinds_within(cls: type) -> frozenset[str]:
    """Record kinds that can be found anywhere below a value of ``cls``."""
    kinds: set[str] = set()
    seen: set[type] = set()
    stack = [cls]
    while stack:
        for _, child in _children(stack.pop()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
                if issubclass(child, Record):
                    kinds.add(child.kind)
    return frozenset(kinds)


@cache
def _fields_toward(cls: type, kind: str) -> tuple[str, ...]:
    return tuple(name for name, child in _children(cls)
                 if (issubclass(child, Record) and child.kind == kind) or kind in _kinds_within(child))


def _get(obj: Any, name: str) -> Any:
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(slots=True)
class Slot:
    """A place a value lives: ``owner.name`` (or ``owner[name]``), item ``index`` of a list or the whole field."""

    owner: Any
    name: str
    index: int | None = None

    def get(self) -> Any:
        owner = self.owner
        value = owner.get(self.name) if type(owner) is dict else getattr(owner, self.name, None)
        return value[self.index] if self.index is not None else value

    def put(self, value: Any) -> None:
        if self.index is not None:
            _get(self.owner, self.name)[self.index] = value
        elif isinstance(self.owner, dict):
            self.owner[self.name] = value
        else:
            setattr(self.owner, self.name, value)


def objects_at(start: Any, segments: typing.Sequence[Segment], create: bool = False) -> list[Any]:
    """The objects reached by walking ``segments`` from ``start`` (list items flattened). Steps use
    the walker their path compiled (:attr:`Path.owners`); this is the same walk for any segments."""
    return _walker(tuple(segments), create)(start)


Walk = Callable[[list[Any]], list[Any]]


def _pick(select: tuple[Any, ...] | None) -> Callable[[list[Any]], list[Any]] | None:
    """A list field's selector as a function of the list (None: every item, nothing to call)."""
    if select is None:
        return None
    if select[0] == "index":
        i = select[1]
        return lambda items: [items[i]] if -len(items) <= i < len(items) else []
    _, field, wanted = select
    return lambda items: [item for item in items if _text(_get(item, field)) == wanted]


def _segment_walk(seg: Segment, create: bool) -> Walk:
    """One segment as a function from the objects reached so far to the ones it reaches."""
    name, pick = seg.name, _pick(seg.select)

    def walk(current: list[Any]) -> list[Any]:
        found: list[Any] = []
        for obj in current:
            value = obj.get(name) if type(obj) is dict else getattr(obj, name, None)
            if value is None:
                if not create:
                    continue
                value = _create(obj, name)
                if value is None:
                    continue
            if isinstance(value, list):
                found.extend(value if pick is None else pick(value))
            else:
                found.append(value)
        return found
    return walk


def _walker(segments: tuple[Segment, ...], create: bool) -> Callable[[Any], list[Any]]:
    """``objects_at`` compiled for ``segments``: the common single-field steps without a list
    between them are direct reads."""
    if not segments:
        return lambda start: [start]
    if len(segments) == 1 and segments[0].select is None and not create:
        name = segments[0].name

        def one(start: Any) -> list[Any]:
            value = start.get(name) if type(start) is dict else getattr(start, name, None)
            if value is None:
                return []
            return list(value) if isinstance(value, list) else [value]
        return one
    if len(segments) == 1:
        return _one_segment(segments[0], create)
    walks = [_segment_walk(seg, create) for seg in segments]

    def chain(start: Any) -> list[Any]:
        current = [start]
        for walk in walks:
            current = walk(current)
            if not current:
                break
        return current
    return chain


def _one_segment(seg: Segment, create: bool) -> Callable[[Any], list[Any]]:
    """One segment from one start object (``identifiers[0]``, ``period`` created when absent):
    :func:`_segment_walk` without the list of starts around it."""
    name, pick = seg.name, _pick(seg.select)

    def one(start: Any) -> list[Any]:
        value = start.get(name) if type(start) is dict else getattr(start, name, None)
        if value is None:
            if not create:
                return []
            value = _create(start, name)
            if value is None:
                return []
        if isinstance(value, list):
            return list(value) if pick is None else pick(value)
        return [value]
    return one


def _reader(path: Path) -> Callable[[Any], list[Any]]:
    last = path.segments[-1]
    name, pick = last.name, _pick(last.select)
    owners = _walker(path.parent, False)

    def value_of(owner: Any, values: list[Any]) -> None:
        value = owner.get(name) if type(owner) is dict else getattr(owner, name, None)
        if isinstance(value, list):
            values.extend(v for v in (value if pick is None else pick(value)) if v is not None)
        elif value is not None:
            values.append(value)

    if not path.parent:
        def direct(start: Any) -> list[Any]:
            value = start.get(name) if type(start) is dict else getattr(start, name, None)
            if isinstance(value, list):
                return [v for v in (value if pick is None else pick(value)) if v is not None]
            return [] if value is None else [value]
        return direct

    if len(path.parent) == 1:
        return _reader_below(path.parent[0], name, pick)

    def through(start: Any) -> list[Any]:
        values: list[Any] = []
        for owner in owners(start):
            value_of(owner, values)
        return values
    return through


def _reader_below(first: Segment, name: str, pick: Callable[[list[Any]], list[Any]] | None
                  ) -> Callable[[Any], list[Any]]:
    """A reader for a field one object below the record (``identifiers[0].value``, ``period.start``),
    the owners and their values read in one function, without a list of owners made per read."""
    owner_name, owner_pick = first.name, _pick(first.select)

    def below(start: Any) -> list[Any]:
        found = start.get(owner_name) if type(start) is dict else getattr(start, owner_name, None)
        if found is None:
            return []
        if isinstance(found, list):
            owners = found if owner_pick is None else owner_pick(found)
        else:
            owners = (found,)
        values: list[Any] = []
        for owner in owners:
            value = owner.get(name) if type(owner) is dict else getattr(owner, name, None)
            if isinstance(value, list):
                values.extend(v for v in (value if pick is None else pick(value)) if v is not None)
            elif value is not None:
                values.append(value)
        return values
    return below


def _slotter(path: Path) -> Callable[[Any, bool], list[Slot]]:
    last = path.segments[-1]
    name, select = last.name, last.select
    indexes = _index_pick(select)
    plain, created = _walker(path.parent, False), _walker(path.parent, True)
    if not path.parent and indexes is None:
        def field(start: Any, create: bool = False) -> list[Slot]:
            if type(start) is dict or isinstance(start, dict) or hasattr(start, "__dataclass_fields__"):
                return [Slot(start, name)]
            return []
        return field

    if indexes is None and path.parent:
        def under(start: Any, create: bool = False) -> list[Slot]:
            return [Slot(owner, name) for owner in (created if create else plain)(start)
                    if type(owner) is dict or isinstance(owner, dict) or hasattr(owner, "__dataclass_fields__")]
        return under

    def places(start: Any, create: bool = False) -> list[Slot]:
        out: list[Slot] = []
        for owner in (created if create else plain)(start) if path.parent else (start,):
            if indexes is not None:
                value = owner.get(name) if type(owner) is dict else getattr(owner, name, None)
                if isinstance(value, list):
                    out.extend(Slot(owner, name, i) for i in indexes(value))
                    continue
            if type(owner) is dict or isinstance(owner, dict) or hasattr(owner, "__dataclass_fields__"):
                out.append(Slot(owner, name))
        return out
    return places


def _index_pick(select: tuple[Any, ...] | None) -> Callable[[list[Any]], list[int]] | None:
    """A selector as the indexes it picks in a list (for slots, which write by index)."""
    if select is None:
        return None
    if select[0] == "index":
        i = select[1]
        return lambda items: [i % len(items)] if -len(items) <= i < len(items) else []
    _, field, wanted = select
    return lambda items: [n for n, item in enumerate(items) if _text(_get(item, field)) == wanted]


def _create(obj: Any, name: str) -> Any:
    """An empty value object for an absent field, when it can exist without required fields."""
    if isinstance(obj, dict):
        obj[name] = {}
        return obj[name]
    if not dataclasses.is_dataclass(obj):
        return None
    hint = _unwrap(_hints(type(obj)).get(name))
    if not dataclasses.is_dataclass(hint) or issubclass(hint, Record):
        return None
    try:
        value = hint()
    except TypeError:
        return None
    setattr(obj, name, value)
    return value


def slots(start: Any, path: Path, create: bool = False) -> list[Slot]:
    """The places ``path`` names under ``start``: one per selected list item, or the field itself."""
    return path.slots(start, create)


def read(start: Any, path: Path) -> list[Any]:
    """Every non-empty value at ``path`` under ``start`` (list fields flattened): the path's
    compiled reader, the hot path of every condition."""
    return path.read(start)

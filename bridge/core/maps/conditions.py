"""Step conditions (``when:``): equals, in, not, pattern, range, exists, combined with all/any/not.

A condition is compiled once, when the map is loaded (regular expressions included), into a plain
function of the message and the step's current record, so a bad pattern is a ``bridge check``
error and the per-message cost is only the comparisons.

Scope: a path whose record kind is the step's own (``encounter.class`` in a step that changes an
encounter) reads the record being changed; any other path reads every record of its kind in the
message. A condition on a list holds when any value satisfies it (``not`` negates the whole).
An HL7v2 field position (``PV1-2``) reads the message the step works on when its action edits
fields (the outbound message), else the message as the sender sent it; no HL7v2 message: no value.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bridge.core.maps.hl7v2_fields import (
    MESSAGE_KIND,
    FieldPath,
    FieldPathError,
    is_field_path,
    parse_field_path,
    read_fields,
)
from bridge.er7 import read_datetime
from bridge.core.maps.paths import Path, PathError, parse_path, records_of_kind
from bridge.core.model.records import Record

Condition = Callable[["Scope"], bool]
KINDS = ("equals", "in", "not", "pattern", "range", "exists", "all", "any")


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message names the part."""


class Scope:
    """What a condition reads: the message's records, the record (or HL7v2 message) a step is
    working on, and the sender's HL7v2 message(s) when the map reads field positions."""

    def __init__(self, records: Sequence[Record], subject: Any = None, subject_kind: str | None = None,
                 of_kind: Callable[[str], Sequence[Record]] | None = None, inbound: Sequence[Any] = ()):
        self.records = records
        self.subject = subject
        self.subject_kind = subject_kind
        self.of_kind = of_kind or (lambda kind: records_of_kind(records, kind))
        self.inbound = inbound

    def values(self, path: Path) -> list[Any]:
        if self.subject is not None and path.kind == self.subject_kind:
            return path.read(self.subject)
        read = path.read
        return [v for record in self.of_kind(path.kind) for v in read(record)]

    def field_values(self, path: FieldPath) -> list[Any]:
        """Values at a field position: in the message being edited, else in the sender's message."""
        messages = [self.subject] if self.subject_kind == MESSAGE_KIND else self.inbound
        return read_fields(messages, path)


def _reader(path: Path | FieldPath) -> Callable[[Scope], list[Any]]:
    """How a condition reads ``path``, chosen once when it is compiled: a record path reads with
    its own compiled reader (the subject when it is of the path's kind, else every such record)."""
    if isinstance(path, FieldPath):
        return lambda scope: scope.field_values(path)
    kind = path.kind
    read = path.read

    def values(scope: Scope) -> list[Any]:
        subject = scope.subject
        if subject is not None and scope.subject_kind == kind:
            return read(subject)
        return [v for record in scope.of_kind(kind) for v in read(record)]
    return values


def _some(get: Callable[[Scope], list[Any]], holds: Callable[[Any], Any]) -> Condition:
    """True when some value read by ``get`` satisfies ``holds`` (a plain loop: no generator per check)."""
    def check(scope: Scope) -> bool:
        for value in get(scope):
            if holds(value):
                return True
        return False
    return check


def _equal_to(get: Callable[[Scope], list[Any]], want: str) -> Condition:
    """``equals`` on one path: some value reads as ``want``."""
    def check(scope: Scope) -> bool:
        for v in get(scope):
            if (v if type(v) is str else text(v)) == want:
                return True
        return False
    return check


def _one_of(get: Callable[[Scope], list[Any]], wanted: frozenset[str]) -> Condition:
    """``in`` on one path: some value reads as one of ``wanted``."""
    def check(scope: Scope) -> bool:
        for v in get(scope):
            if (v if type(v) is str else text(v)) in wanted:
                return True
        return False
    return check


def text(value: Any) -> str:
    """How a value compares with what a map wrote: booleans as true/false, dates as ISO. (The
    comparisons pass a text as it is, without the call: it is most of what they read.)"""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def compile_condition(spec: Any, paths: list[Path] | None = None) -> Condition:
    """Compile a ``when:`` mapping; ``paths`` collects every path read (for checks)."""
    paths = paths if paths is not None else []
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConditionError(f"expected one of {', '.join(KINDS)} as the only key, got {_show(spec)}")
    (kind, body), = spec.items()
    if kind not in _BUILDERS:
        raise ConditionError(f"unknown condition {kind!r} (known: {', '.join(KINDS)})")
    return _BUILDERS[kind](body, paths)


def _show(spec: Any) -> str:
    return repr(list(spec)) if isinstance(spec, Mapping) else type(spec).__name__


def _path(text_: Any, paths: list[Any]) -> Any:
    try:
        path = parse_field_path(text_) if is_field_path(text_) else parse_path(text_)
    except (PathError, FieldPathError) as exc:
        raise ConditionError(str(exc)) from None
    paths.append(path)
    return path


def _pairs(body: Any, kind: str) -> list[tuple[Any, Any]]:
    if not isinstance(body, Mapping) or not body:
        raise ConditionError(f"{kind}: expected a mapping of path: value")
    return list(body.items())


def _combine(checks: list[Condition]) -> Condition:
    return checks[0] if len(checks) == 1 else (lambda scope: all(c(scope) for c in checks))


def _equals(body: Any, paths: list[Path]) -> Condition:
    checks = []
    for raw, wanted in _pairs(body, "equals"):
        path, want = _path(raw, paths), text(wanted)
        checks.append(_equal_to(_reader(path), want))
    return _combine(checks)


def _in(body: Any, paths: list[Path]) -> Condition:
    checks = []
    for raw, wanted in _pairs(body, "in"):
        if not isinstance(wanted, list) or not wanted:
            raise ConditionError(f"in: {raw}: expected a list of values")
        path, want = _path(raw, paths), frozenset(text(w) for w in wanted)
        checks.append(_one_of(_reader(path), want))
    return _combine(checks)


def _pattern(body: Any, paths: list[Path]) -> Condition:
    """The whole value must match (``re.fullmatch``): ``Z\\d+`` does not match ``XZ12``."""
    checks = []
    for raw, regex in _pairs(body, "pattern"):
        try:
            compiled = re.compile(str(regex))
        except re.error as exc:
            raise ConditionError(f"pattern: {raw}: bad regular expression {regex!r}: {exc}") from None
        path = _path(raw, paths)
        checks.append(_some(_reader(path), lambda v, r=compiled: r.fullmatch(v if type(v) is str else text(v))))
    return _combine(checks)


def _range(body: Any, paths: list[Path]) -> Condition:
    checks = []
    for raw, bounds in _pairs(body, "range"):
        if not isinstance(bounds, Mapping) or not bounds or set(bounds) - {"min", "max"}:
            raise ConditionError(f"range: {raw}: expected {{min: ..., max: ...}} (either or both)")
        path = _path(raw, paths)
        low, high = bounds.get("min"), bounds.get("max")
        numeric = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in (low, high) if b is not None)
        if numeric:
            checks.append(_some(_reader(path), lambda v, lo=low, hi=high: _in_numbers(v, lo, hi)))
        else:
            lo, hi = (None if b is None else _date_bound(b, raw) for b in (low, high))
            get = (lambda s, p=path: _hl7_dates(s, p)) if isinstance(path, FieldPath) else _reader(path)
            checks.append(_some(get, lambda v, lo=lo, hi=hi: _in_dates(v, lo, hi)))
    return _combine(checks)


def _hl7_dates(scope: Scope, path: FieldPath) -> list[Any]:
    """An HL7 date (``20261127093000-0600``) compared as the ISO text it stands for."""
    return [read_datetime(v) or v for v in scope.field_values(path)]


def _date_bound(value: Any, raw: Any) -> str:
    bound = text(value)
    if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2})?)?)?)?)?", bound):
        raise ConditionError(f"range: {raw}: bounds must both be numbers or both ISO dates (2026-01-31), "
                             f"got {value!r}")
    return bound


def _in_numbers(value: Any, low: float | None, high: float | None) -> bool:
    try:
        number = float(getattr(value, "value", value))
    except (TypeError, ValueError):
        return False
    return (low is None or number >= low) and (high is None or number <= high)


_YEAR = re.compile(r"\d{4}")


def _in_dates(value: Any, low: str | None, high: str | None) -> bool:
    """Dates compare as written (the sender's local date) at the precision of the bound: with
    ``max: 2026-03`` every day of March 2026 is inside."""
    written = value if type(value) is str else text(value)
    if not _YEAR.match(written):
        return False
    return (low is None or written[:len(low)] >= low) and (high is None or written[:len(high)] <= high)


def _exists(body: Any, paths: list[Path]) -> Condition:
    items = body if isinstance(body, list) else [body]
    readers = [_reader(_path(raw, paths)) for raw in items]
    if len(readers) == 1:
        (get,) = readers
        return lambda s: bool(get(s))
    return lambda s: all(bool(get(s)) for get in readers)


def _not(body: Any, paths: list[Path]) -> Condition:
    inner = compile_condition(body, paths)
    return lambda s: not inner(s)


def _all(body: Any, paths: list[Path]) -> Condition:
    inner = _many(body, "all", paths)

    def every(scope: Scope) -> bool:
        for condition in inner:
            if not condition(scope):
                return False
        return True
    return every


def _any(body: Any, paths: list[Path]) -> Condition:
    inner = _many(body, "any", paths)

    def some(scope: Scope) -> bool:
        for condition in inner:
            if condition(scope):
                return True
        return False
    return some


def _many(body: Any, kind: str, paths: list[Path]) -> list[Condition]:
    if not isinstance(body, list) or not body:
        raise ConditionError(f"{kind}: expected a list of conditions")
    return [compile_condition(item, paths) for item in body]


_BUILDERS: dict[str, Callable[[Any, list[Path]], Condition]] = {
    "equals": _equals, "in": _in, "pattern": _pattern, "range": _range, "exists": _exists,
    "not": _not, "all": _all, "any": _any,
}

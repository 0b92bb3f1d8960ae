"""The JSON form of records: ``record_to_dict`` and ``record_from_dict``.

One generic walker over the dataclass fields, so a new field needs no codec change. Input is
checked as it is read, and every problem names its path (``records[0].period.start``), because
the people who read these errors are integration analysts looking at a platform's payload.
Unknown keys are kept in ``extra["json"]`` and written back in place, so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import types
import typing
from functools import cache
from typing import Any, Union

from bridge.errors import DecodeError

from .records import RECORD_TYPES, Record

ISO_DATETIME = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)
UNKNOWN_KEYS = "json"
"""``extra`` key under which JSON keys without a field are kept."""


def valid_datetime(value: str) -> bool:
    """ISO 8601 at any precision from year to fraction of a second, with a real calendar date."""
    if not ISO_DATETIME.fullmatch(value):
        return False
    parts = value[:10].split("-")
    if len(parts) == 3:
        try:
            datetime.date(int(parts[0]), int(parts[1]), int(parts[2]))
        except ValueError:
            return False
    elif len(parts) == 2 and not 1 <= int(parts[1]) <= 12:
        return False
    return True


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.init)


def record_to_dict(obj: Any) -> Any:
    """Return the JSON-ready form of a record or value: ``None`` and empty lists/dicts omitted."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        if isinstance(obj, Record):
            out["kind"] = obj.kind
        for f in _fields(type(obj)):
            value = getattr(obj, f.name)
            if value is None or value == [] or value == {}:
                continue
            if f.name == "extra":
                value = dict(value)
                unknown = value.pop(UNKNOWN_KEYS, None) or {}
                if value:
                    out["extra"] = value
                for key, item in unknown.items():
                    out.setdefault(key, item)
                continue
            out[f.name] = record_to_dict(value)
        return out
    if isinstance(obj, list):
        return [record_to_dict(item) for item in obj]
    if isinstance(obj, dict):
        return {key: record_to_dict(value) for key, value in obj.items()}
    return obj


def record_from_dict(data: Any, path: str = "record", kind: type | None = None) -> Any:
    """Build a record from its JSON form, checking every field; raises DecodeError naming the path."""
    if not isinstance(data, dict):
        raise DecodeError("expected an object", path)
    if kind is None:
        name = data.get("kind")
        if not isinstance(name, str):
            raise DecodeError(f"missing 'kind' (one of {', '.join(sorted(RECORD_TYPES))})", path)
        if name not in RECORD_TYPES:
            raise DecodeError(f"unknown record kind {name!r} (one of {', '.join(sorted(RECORD_TYPES))})", path)
        kind = RECORD_TYPES[name]
    return _build(kind, data, path)


def _build(cls: type, data: dict[str, Any], path: str) -> Any:
    hints = _hints(cls)
    known = {f.name: f for f in _fields(cls)}
    kwargs: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for key, value in data.items():
        if key == "kind" and issubclass(cls, Record):
            if value != cls.kind:
                raise DecodeError(f"expected kind {cls.kind!r}, got {value!r}", f"{path}.kind")
            continue
        f = known.get(key)
        if f is None:
            unknown[key] = value
            continue
        kwargs[key] = _convert(hints[key], value, f"{path}.{key}", f.metadata)
    if isinstance(kwargs.get("extra"), dict) and UNKNOWN_KEYS in kwargs["extra"] and not unknown:
        raise DecodeError(f"extra.{UNKNOWN_KEYS} is reserved for fields without a place in the record", f"{path}.extra")
    if unknown:
        if "extra" not in known:
            raise DecodeError(f"unknown field(s): {', '.join(sorted(unknown))}", path)
        extra = dict(kwargs.get("extra") or {})
        extra[UNKNOWN_KEYS] = {**extra.get(UNKNOWN_KEYS, {}), **unknown}
        kwargs["extra"] = extra
    for f in known.values():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in kwargs:
            raise DecodeError("is required", f"{path}.{f.name}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any, path: str, meta: Any = None) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, path, meta)
    if origin is list:
        if not isinstance(value, list):
            raise DecodeError("expected a list", path)
        (item,) = typing.get_args(hint)
        item_meta = {"choices": meta["item_choices"]} if meta and meta.get("item_choices") else None
        return [_convert(item, v, f"{path}[{i}]", item_meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise DecodeError("expected an object", path)
        return value
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise DecodeError("expected an object", path)
        return _build(hint, value, path)
    return _scalar(hint, value, path, meta or {})


def _scalar(hint: type, value: Any, path: str, meta: Any) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise DecodeError("expected true or false", path)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError("expected a whole number", path)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DecodeError("expected a number", path)
        return value  # a whole number stays whole: 30 tablets is written back as 30, not 30.0
    if hint is str:
        if not isinstance(value, str):
            raise DecodeError("expected a string", path)
        if meta.get("format") == "datetime" and not valid_datetime(value):
            raise DecodeError(f"expected an ISO 8601 date or date-time, got {value!r}", path)
        choices = meta.get("choices")
        if choices and value not in choices:
            raise DecodeError(f"expected one of {', '.join(choices)}, got {value!r}", path)
        return value
    raise DecodeError(f"unsupported field type {hint!r}", path)  # pragma: no cover - model bug

"""The Bundle's JSON text, written entry by entry so that a reference entry's text is reused.

``json.dumps`` with ``indent`` (the default output) runs Python's pure-Python encoder, the slowest
part of writing a bundle per resource. The organizations that assign identifiers, the sending
application's Device, the clinic's Location come back byte for byte in bundle after bundle (a map
that gives identifiers new assigners adds three such Organizations to every bundle:
benchmarks/README.md#mapspy), so their indented text is remembered per exact entry (keyed by its
compact JSON, which the C encoder writes quickly) and indented to its place. The bytes are those of
``json.dumps(bundle, indent=indent, ensure_ascii=False)``: an entry at depth two is the same text as
on its own with two more indents after each line break (JSON strings never hold a raw line break),
and tests compare the two. The memory is bounded.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from .known_good import REUSED_TYPES

MAX_REMEMBERED = 2048
MAX_KEY_CHARS = 16384

_texts: OrderedDict[str, str] = OrderedDict()
_lock = threading.Lock()


def bundle_json(bundle: dict[str, Any], indent: Any) -> str:
    """``json.dumps(bundle, indent=indent, ensure_ascii=False)``, with reference entries' text reused."""
    entries = bundle.get("entry")
    unit = " " * indent if isinstance(indent, int) else indent
    if (not isinstance(unit, str) or not isinstance(entries, list) or not entries or len(bundle) < 2
            or next(reversed(bundle)) != "entry"):
        return json.dumps(bundle, indent=indent, ensure_ascii=False)
    head = indented({k: v for k, v in bundle.items() if k != "entry"}, indent)
    inner = "\n" + unit * 2
    parts = [_entry_text(entry, indent).replace("\n", inner) for entry in entries]
    return f'{head[:-2]},\n{unit}"entry": [{inner}{("," + inner).join(parts)}\n{unit}]\n}}'


def _entry_text(entry: Any, indent: Any) -> str:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(resource, dict) or resource.get("resourceType") not in REUSED_TYPES:
        return indented(entry, indent)
    key = f"{indent!r}\0" + json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    if len(key) > MAX_KEY_CHARS:
        return indented(entry, indent)
    with _lock:
        text = _texts.get(key)
        if text is not None:
            _texts.move_to_end(key)
            return text
    text = indented(entry, indent)
    with _lock:
        _texts[key] = text
        while len(_texts) > MAX_REMEMBERED:
            _texts.popitem(last=False)
    return text


class _Unusual(Exception):
    """A value :func:`_write` leaves to ``json.dumps`` (a tuple, a subclass, a non-text key…)."""


def indented(value: Any, indent: Any) -> str:
    """``json.dumps(value, indent=indent, ensure_ascii=False)``, the same text, written without the
    standard library's pure-Python encoder: that one is a generator per nesting level, each piece
    of text passing up through every level above it, and an entry's resource is eight levels deep.
    Here one recursive function appends to one list. Anything but the JSON types a resource is made
    of (dict with text keys, list, text, int, float, bool, None) goes to ``json.dumps`` whole."""
    unit = " " * indent if isinstance(indent, int) else indent
    if not isinstance(unit, str):
        return json.dumps(value, indent=indent, ensure_ascii=False)
    out: list[str] = []
    try:
        _write(value, out, "\n", unit)
    except (_Unusual, RecursionError):
        return json.dumps(value, indent=indent, ensure_ascii=False)
    return "".join(out)


_text = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes a string with
_INFINITY = float("inf")


def _write(value: Any, out: list[str], newline: str, unit: str) -> None:
    """``value`` as the standard library's indented encoder writes it at the depth ``newline`` ends
    with (``\\n`` and one ``unit`` per level)."""
    kind = type(value)
    if kind is str:
        out.append(_text(value))
    elif kind is dict:
        if not value:
            out.append("{}")
            return
        inner = newline + unit
        separator = "{" + inner
        for key, item in value.items():
            if type(key) is not str:
                raise _Unusual
            out.append(separator)
            out.append(_text(key))
            out.append(": ")
            _write(item, out, inner, unit)
            separator = "," + inner
        out.append(newline + "}")
    elif kind is list:
        if not value:
            out.append("[]")
            return
        inner = newline + unit
        separator = "[" + inner
        for item in value:
            out.append(separator)
            _write(item, out, inner, unit)
            separator = "," + inner
        out.append(newline + "]")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is float:
        if value != value:
            out.append("NaN")
        elif value == _INFINITY:
            out.append("Infinity")
        elif value == -_INFINITY:
            out.append("-Infinity")
        else:
            out.append(float.__repr__(value))
    else:
        raise _Unusual


def forget() -> None:
    """Empty the memory (tests)."""
    with _lock:
        _texts.clear()

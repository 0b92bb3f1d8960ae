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
    head = json.dumps({k: v for k, v in bundle.items() if k != "entry"}, indent=indent, ensure_ascii=False)
    inner = "\n" + unit * 2
    parts = [_entry_text(entry, indent).replace("\n", inner) for entry in entries]
    return f'{head[:-2]},\n{unit}"entry": [{inner}{("," + inner).join(parts)}\n{unit}]\n}}'


def _entry_text(entry: Any, indent: Any) -> str:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(resource, dict) or resource.get("resourceType") not in REUSED_TYPES:
        return json.dumps(entry, indent=indent, ensure_ascii=False)
    key = f"{indent!r}\0" + json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    if len(key) > MAX_KEY_CHARS:
        return json.dumps(entry, indent=indent, ensure_ascii=False)
    with _lock:
        text = _texts.get(key)
        if text is not None:
            _texts.move_to_end(key)
            return text
    text = json.dumps(entry, indent=indent, ensure_ascii=False)
    with _lock:
        _texts[key] = text
        while len(_texts) > MAX_REMEMBERED:
            _texts.popitem(last=False)
    return text


def forget() -> None:
    """Empty the memory (tests)."""
    with _lock:
        _texts.clear()

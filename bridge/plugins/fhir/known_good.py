"""Resources already validated: reference data (an Organization, a Location, a Device…) is checked
once per content, not once per bundle.

Every bundle is validated whole before it is sent (fhirclient's R4 models, strictly, then the
required bindings). Most of a bundle is new each time (the patient, the visit), but the
organizations that assign identifiers, the sending application's Device and the clinic's Location
come back in bundle after bundle, byte for byte: a map that gives identifiers new assigners adds
three such Organizations to every bundle, and validating them again was most of what the map cost
the encoder (benchmarks/README.md#mapspy). Both checks are pure functions of a resource's own JSON
(the encoder checks codes only, not reference targets), so a resource whose exact content passed
them before passes again; only those are left out of the checked copy of the bundle, and every
entry keeps its place, so an error names the same ``entry.N`` it always did. The memory is bounded.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

REUSED_TYPES = frozenset({"Organization", "Location", "Device", "Practitioner", "PractitionerRole", "Endpoint",
                          "Medication"})
"""Resource types that repeat across messages as they are; the others (Patient, Encounter…) are
new each time, so remembering them would cost a serialization for nothing."""
MAX_REMEMBERED = 4096
MAX_KEY_CHARS = 16384

_passed: OrderedDict[str, None] = OrderedDict()
_lock = threading.Lock()


def _key(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") not in REUSED_TYPES:
        return None
    key = json.dumps(resource, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return key if len(key) <= MAX_KEY_CHARS else None


def still_to_check(bundle: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``bundle`` whose entries keep their place but not a resource that passed before,
    and the keys of the reusable resources it still holds (to :func:`remember` once it passed)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return bundle, []
    kept: list[Any] = []
    new_keys: list[str] = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        key = _key(resource) if isinstance(resource, dict) else None
        if key is not None and key in _passed:
            with _lock:
                if key in _passed:
                    _passed.move_to_end(key)
            kept.append({k: v for k, v in entry.items() if k != "resource"})
            continue
        if key is not None:
            new_keys.append(key)
        kept.append(entry)
    return {**bundle, "entry": kept}, new_keys


def remember(keys: list[str]) -> None:
    """These resources passed both checks."""
    with _lock:
        for key in keys:
            _passed[key] = None
            _passed.move_to_end(key)
        while len(_passed) > MAX_REMEMBERED:
            _passed.popitem(last=False)


def forget() -> None:
    """Empty the memory (tests)."""
    with _lock:
        _passed.clear()

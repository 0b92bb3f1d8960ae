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

The same holds one level down for identifiers: a patient or a visit is new each time, but its
identifiers differ from message to message only in their ``value`` (a map that adds a registry
number with an assigner adds an Identifier with a type coding and an assigner reference to every
Patient). Both checks see an identifier's ``value`` only as "a string", so an identifier whose
content, with a text value of any kind, passed in the same kind of resource before passes again: in
the checked copy it becomes an empty Identifier (``{}``, valid, and it keeps the list's indices so
an error names the same ``identifier.N``), or is left out when no identifier to check follows it. Identifiers are remembered per resource type, system,
type, assigner… (one key per such shape, not per value), so the memory stays small.
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

_ANY_TEXT = "\0text"
"""Stands for an identifier's ``value`` in its key when that value is a string (any string passes)."""

_passed: OrderedDict[str, None] = OrderedDict()
_lock = threading.Lock()


def _key(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") not in REUSED_TYPES:
        return None
    key = json.dumps(resource, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return key if len(key) <= MAX_KEY_CHARS else None


def still_to_check(bundle: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``bundle`` whose entries keep their place but not a resource that passed before
    (nor, in a new resource, an identifier whose shape passed before), and the keys of the
    reusable resources and identifiers it still holds (to :func:`remember` once it passed)."""
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
        elif isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            entry = _without_known_identifiers(entry, resource, new_keys)
        kept.append(entry)
    return {**bundle, "entry": kept}, new_keys


def _without_known_identifiers(entry: dict[str, Any], resource: dict[str, Any],
                               new_keys: list[str]) -> dict[str, Any]:
    """``entry`` with each identifier of ``resource`` that passed before (in its shape) as ``{}``;
    the keys of the others join ``new_keys``. The entry itself when nothing was left out."""
    identifiers = resource.get("identifier")
    if not isinstance(identifiers, list) or not identifiers:
        return entry
    checked: list[Any] = []
    skipped = False
    for identifier in identifiers:
        key = _identifier_key(resource["resourceType"], identifier)
        if key is not None and key in _passed:
            checked.append({})
            skipped = True
            continue
        if key is not None:
            new_keys.append(key)
        checked.append(identifier)
    if not skipped:
        return entry
    while checked and checked[-1] == {}:  # nothing after them: left out, no index to keep
        checked.pop()
    trimmed = {k: v for k, v in resource.items() if k != "identifier"}
    return {**entry, "resource": {**trimmed, "identifier": checked} if checked else trimmed}


def _identifier_key(resource_type: str, identifier: Any) -> str | None:
    if not isinstance(identifier, dict) or not identifier:
        return None
    shape = {**identifier, "value": _ANY_TEXT} if isinstance(identifier.get("value"), str) else identifier
    try:
        key = f"{resource_type}.identifier\0" + json.dumps(shape, sort_keys=True, ensure_ascii=False,
                                                           separators=(",", ":"))
    except (TypeError, ValueError):  # not JSON (the validator will say so)
        return None
    return key if len(key) <= MAX_KEY_CHARS else None


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

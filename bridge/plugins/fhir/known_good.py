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
An entry whose own elements too (its ``fullUrl`` and conditional ``request``, derived from the
resource's business identifier, so the same in every bundle) passed with that resource is an empty
entry in the checked copy (``{}``), or left out when no entry to check follows it: the assigning
authorities come last in a bundle, so a map's new assigners cost the validator nothing after the
first message.

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


def _compact(value: Any) -> str | None:
    """A key's JSON text (the C encoder; keys in the encoder's order: the same content written by the
    same code has the same text, and equal content in another order only misses, so is checked)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), check_circular=False)
    except (TypeError, ValueError, RecursionError):  # not JSON (the validator will say so)
        return None


def _key(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") not in REUSED_TYPES:
        return None
    key = _compact(resource)
    return key if key is not None and len(key) <= MAX_KEY_CHARS else None


def _entry_key(entry: dict[str, Any]) -> str | None:
    """A whole entry's key: a reference resource with its ``fullUrl`` and conditional ``request``,
    which derive from its business identifier, so are the same in bundle after bundle."""
    text = _compact(entry)
    return "entry\0" + text if text is not None and len(text) <= MAX_KEY_CHARS else None


def still_to_check(bundle: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``bundle`` whose entries keep their place but not a resource that passed before
    (nor, in a new resource, an identifier whose shape passed before; nor a whole entry that passed
    before), and the keys of the reusable resources, entries and identifiers it still holds (to
    :func:`remember` once it passed)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return bundle, []
    kept: list[Any] = []
    new_keys: list[str] = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            kept.append(entry)
            continue
        if resource.get("resourceType") not in REUSED_TYPES:
            if isinstance(resource.get("resourceType"), str):
                entry = _without_plain_references(_without_known_identifiers(entry, resource, new_keys))
            kept.append(entry)
            continue
        whole = _entry_key(entry)
        if whole is not None and whole in _passed:  # the same resource in the same entry passed before
            _seen(whole)
            kept.append({})
            continue
        key = _key(resource)
        if whole is not None:
            new_keys.append(whole)
        if key is not None and key in _passed:
            _seen(key)
            kept.append({k: v for k, v in entry.items() if k != "resource"})
            continue
        if key is not None:
            new_keys.append(key)
        kept.append(entry)
    while len(kept) > 1 and kept[-1] == {}:  # nothing after them: left out, no index to keep
        kept.pop()
    return {**bundle, "entry": kept}, new_keys


def _seen(key: str) -> None:
    """Keep a key that is used at the recent end (least recently used ones go first)."""
    try:
        _passed.move_to_end(key)
    except KeyError:  # another thread's bundle pushed it out just now
        pass


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


PLAIN_REFERENCE_LISTS = {"Provenance": "target", "MessageHeader": "focus"}
"""Lists that name (nearly) every entry of a bundle, each item a bare ``{"reference": "urn:uuid:…"}``."""


def _plain_reference(item: Any) -> bool:
    """A Reference with nothing but its text ``reference``: both checks pass it whatever the text
    (fhirclient sees a string; no binding reads it), so checking it can find nothing."""
    return type(item) is dict and len(item) == 1 and type(item.get("reference")) is str


def _without_plain_references(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with a Provenance's ``target`` (or a MessageHeader's ``focus``) list cut after its
    last item that is not a plain reference, keeping at least one (the list is required): the
    plain references after it could fail nothing, and the items before it keep their indices, so an
    error names the same ``target.N``. They grow with the bundle (a map's three new assigner
    Organizations add three to each), and fhirclient builds each as a Reference."""
    resource = entry.get("resource")
    name = PLAIN_REFERENCE_LISTS.get(resource.get("resourceType")) if isinstance(resource, dict) else None
    items = resource.get(name) if name is not None else None  # type: ignore[union-attr]
    if not isinstance(items, list) or len(items) < 2:
        return entry
    keep = max((i + 1 for i, item in enumerate(items) if not _plain_reference(item)), default=1)
    if keep >= len(items):
        return entry
    return {**entry, "resource": {**resource, name: items[:keep]}}  # type: ignore[dict-item]


def _identifier_key(resource_type: str, identifier: Any) -> str | None:
    if not isinstance(identifier, dict) or not identifier:
        return None
    shape = {**identifier, "value": _ANY_TEXT} if isinstance(identifier.get("value"), str) else identifier
    text = _compact(shape)
    if text is None:
        return None
    key = f"{resource_type}.identifier\0" + text
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

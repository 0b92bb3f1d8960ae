"""What a decoded resource carries beyond our mapping, kept in ``record.extra["fhir"]``.

After a resource is decoded, the record is encoded again and the two resources are compared
element by element. Every top-level element where they differ (an element we do not map, an
identifier period, a reference display, a status we cannot represent…) is kept as it arrived,
together with a digest of what our encoder produced for it at that moment. On encode, the kept
element replaces ours only while our encoding of that element still has the same digest: if a
later step changed the record field behind it, the change wins. Extensions we do not define are
kept separately and always written back, so a changed record never drops them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .constants import OUR_EXTENSIONS, TAG_ENTRY_KEY

FHIR = "fhir"
"""Key of ``record.extra`` this format owns."""


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def without_entry_key(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without our entry-key tag (a resource we wrote, read back, keeps its ``meta``):
    the key is derived again from the content, so reading and writing again gives the same bytes."""
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not meta.get("tag"):
        return resource
    tags = [t for t in meta["tag"] if not (isinstance(t, dict) and t.get("system") == TAG_ENTRY_KEY)]
    meta = {k: v for k, v in meta.items() if k != "tag"} | ({"tag": tags} if tags else {})
    return {k: v for k, v in resource.items() if k != "meta"} | ({"meta": meta} if meta else {})


def remember(original: dict[str, Any], generated: dict[str, Any]) -> dict[str, Any]:
    """What of ``original`` our ``generated`` resource would not reproduce, ready for ``extra["fhir"]``.
    Our own entry-key tag is not kept: the encoder derives it again."""
    original = without_entry_key(original)
    elements: dict[str, Any] = {}
    for key in list(original) + [k for k in generated if k not in original]:
        if key in ("resourceType", "extension"):
            continue
        if original.get(key) != generated.get(key):
            elements[key] = {"value": original.get(key), "when": digest(generated.get(key))}
    foreign = [e for e in original.get("extension") or []
               if not (isinstance(e, dict) and e.get("url") in OUR_EXTENSIONS)]
    kept: dict[str, Any] = {}
    if elements:
        kept["elements"] = elements
    if foreign:
        kept["extension"] = foreign
    return kept


def apply(generated: dict[str, Any], kept: Any) -> dict[str, Any]:
    """Our resource with the kept elements put back where the record has not changed."""
    if not isinstance(kept, dict) or not kept:
        return generated
    result = dict(generated)
    for key, item in (kept.get("elements") or {}).items():
        if not isinstance(item, dict) or item.get("when") != digest(generated.get(key)):
            continue
        if item.get("value") is None:
            result.pop(key, None)
        else:
            result[key] = item["value"]
    foreign = kept.get("extension") or []
    if foreign:
        result["extension"] = list(result.get("extension") or []) + list(foreign)
    return result

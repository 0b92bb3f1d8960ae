"""Patient links (HL7v2 MRG after a merge or an identifier change) also as FHIR Linkage resources.

``Patient.link`` already says that the surviving patient replaces a retired record; a Linkage says
the same as a resource of its own, which is what a master patient index or a record-linkage
service searches (``Linkage?item=…``) to find every record of one person. So each Patient of the
Bundle that has links gets one Linkage: the patient as ``source`` and each linked record as
``historical`` (a record it ``replaces``) or ``alternate`` (``seealso``, ``refer``); a patient that is
itself the retired record (``replaced-by``) is the ``historical`` item and the survivor the source.
Linked records are logical references by identifier, as in ``Patient.link``.

Derived at encode time, not a record: the links are the Patient record's. A Linkage has no
identifier element in R4, so it is ``PUT Linkage/id`` with an id derived (uuid5) from the patient's
fullUrl and its links: a redelivered message gives the same resource. The destination option
``linkage: false`` leaves them out (a server that does not support Linkage). Read back, a Linkage is
skipped: the Patient's own links carry the same facts.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from . import constants as C

if TYPE_CHECKING:
    from .encode import Writer

OPTION = "linkage"
FALSE = (False, "false", "no", "0", "off")
ITEM_TYPES = {"replaces": "historical", "seealso": "alternate", "refer": "alternate"}
"""Patient.link.type → Linkage.item.type of the other record (linkage-type, a required binding)."""


def add_linkages(w: Writer) -> None:
    """One Linkage per Patient entry with links (none with ``linkage: false``)."""
    if w.options.get(OPTION, True) in FALSE:
        return
    for full_url, entry in list(w.entries.items()):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient" and resource.get("link"):
            _put(w, full_url, _items(full_url, resource["link"]))


def _items(full_url: str, links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    me = {"reference": full_url}
    survivors = [link["other"] for link in links if link.get("type") == "replaced-by"]
    if survivors:  # this record was retired: the survivor is the source
        return [{"type": "source", "resource": survivors[0]}, {"type": "historical", "resource": me}]
    items = [{"type": "source", "resource": me}]
    seen: list[Any] = []
    for link in links:
        kind = ITEM_TYPES.get(link.get("type", ""))
        if kind and link.get("other") not in seen:
            seen.append(link.get("other"))
            items.append({"type": kind, "resource": link["other"]})
    return items


def _put(w: Writer, full_url: str, items: list[dict[str, Any]]) -> None:
    if len(items) < 2:
        return
    seed = full_url + "|" + json.dumps(items[1:], sort_keys=True)
    rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{C.BASE}/Linkage#{seed}"))
    url = f"urn:uuid:{rid}"
    entry: dict[str, Any] = {"fullUrl": url, "resource": {"resourceType": "Linkage", "id": rid, "item": items}}
    if w.bundle_type == "transaction":
        entry["request"] = {"method": "PUT", "url": f"Linkage/{rid}"}
    w.entries[url] = entry

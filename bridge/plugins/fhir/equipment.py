"""The equipment that made a result (HL7v2 OBX-18) as a FHIR Device, ``Observation.device``.

A Device is reference data: it is written as a conditional create on its identifier, so a result
never overwrites what a server knows of the instrument. An identifier with a system keys it; an
instrument named only within a namespace (``Unknown^3DHISTECH``) gets a derived key
(``…/sid/equipment-key``: uuid5 of its ids and namespaces), so a re-sent result finds the one Device
it created. The key is left out again on decode.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from bridge import Identifier

from . import constants as C
from .datatypes import identifier_in, identifier_out
from .reader import Node

if TYPE_CHECKING:
    from .decode import Reader
    from .encode import Writer

SID_EQUIPMENT_KEY = f"{C.BASE}/sid/equipment-key"


def device_ref(equipment: list[Identifier], w: Writer) -> dict[str, str] | None:
    """The Device named by a result's equipment identifiers, or None when it names none."""
    if not equipment:
        return None
    idents = [identifier_out(i) for i in equipment]  # systems as absolute URIs (bare OIDs as urn:oid)
    if not any(i.get("system") for i in idents):
        seed = "|".join(f"{i.value}@{i.assigner or ''}" for i in equipment)
        key = uuid.uuid5(uuid.NAMESPACE_URL, f"{SID_EQUIPMENT_KEY}#{seed}")
        idents.append({"system": SID_EQUIPMENT_KEY, "value": str(key)})
    from .create_once import created_once

    return created_once(w, {"resourceType": "Device", "identifier": idents})


def equipment_in(ref: Node | None, r: Reader) -> list[Identifier]:
    """The identifiers of the Device an Observation references (our derived key left out)."""
    node = r.target(ref, r.stack[-1] if r.stack else None)
    if node is None or node.str("resourceType") != "Device":
        return []
    found = [i for i in node.list("identifier") if i.str("system") != SID_EQUIPMENT_KEY]
    for ident in found:  # an assigner's Organization entry is this identifier's, not a record of its own
        authority = r.target(ident.obj("assigner"), node)
        if authority is not None:
            r.referenced.add(id(authority.data))
    return [identifier_in(i) for i in found]

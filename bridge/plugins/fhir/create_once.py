"""Entries written as conditional creates (``POST`` with ``ifNoneExist``): what a message names but
does not describe, and reference data.

A Device of an application or an instrument, a parent specimen, procedure or order known by its
identifiers alone: the Bundle must hold a resource for the reference to resolve, but what the
message says of it is too little to update what a server already holds. Created only if absent,
such an entry never overwrites the full resource, and a redelivered message adds nothing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .encode import Writer


def created_once(w: Writer, resource: dict[str, Any]) -> dict[str, str]:
    """An entry created once on its identifier (``ifNoneExist``), never overwritten: reference data
    (a Device) and what a message names by its ids alone (a parent procedure or order)."""
    from bridge import EncodeError

    from .assigners import link_assigners
    from .encode import NAMESPACE, business_key

    resource = link_assigners(resource, w)  # an identifier's assigner is its Organization entry
    rtype = resource["resourceType"]
    key = business_key(resource)
    if key is None:
        raise EncodeError(f"a {rtype} has no identifier a server could match it by")
    full_url = f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{rtype}|{key[0]}={key[1]}')}"
    if full_url in w.entries:  # already in the Bundle (a full copy, or the same stub): that one serves
        return {"reference": full_url}
    w.entries[full_url] = w.entry(full_url, resource, key)
    if w.bundle_type == "transaction":
        w.entries[full_url]["request"] = {"method": "POST", "url": rtype, "ifNoneExist": f"{key[0]}={key[1]}"}
    return {"reference": full_url}

"""Identifier assigning authorities as Organization entries (``Identifier.assigner``).

An HL7v2 identifier names who issued it (CX.4, EI.2-3, XCN.9, XON.6: an HD of namespace id and
universal id); the record keeps that as ``Identifier.assigner`` (the namespace) and
``Identifier.system`` (the universal id). FHIR types ``Identifier.assigner`` as a Reference to an
Organization, and a server that receives only a display cannot tell two hospitals' MRNs apart by who
issued them, nor list what an authority issued. So every identifier we write that names an assigner
references an Organization entry of the Bundle, keeping the display as sent:

- the Organization is named by the namespace; when the universal id is an OID or a UUID it is the
  Organization's identifier too (system ``urn:ietf:rfc:3986``, value ``urn:oid:…``), which also keys
  its conditional create, so the authority is one resource on the server however many messages and
  namespaces name it;
- within a Bundle an authority is one entry: by its universal id when it has one (a sender that
  writes two namespaces for one OID names one authority twice; the first namespace in the Bundle
  names the entry), else by its name.

This is derived at encode time, not a record of its own: the assigner is a property of the
identifier, already carried by every record that has identifiers, so every resource type (Patient,
Encounter, RelatedPerson, Coverage, Practitioner, Specimen…) gets it without a field per record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from bridge import Identifier, Organization

from .reader import Node

if TYPE_CHECKING:
    from .encode import Writer

URI_SYSTEM = "urn:ietf:rfc:3986"
"""The system of an identifier that is itself a URI (an HD universal id as ``urn:oid:…``)."""
AUTHORITY_SCHEMES = ("urn:oid:", "urn:uuid:")
"""Identifier systems that are an HD universal id, and so identify the assigning authority itself
(an ``http`` system names a value space, not necessarily who assigns in it)."""


def authority(assigner: str | None, system: str | None) -> Organization | None:
    """The assigning authority of an identifier as an Organization record (None if it names none)."""
    universal = system if system and system.startswith(AUTHORITY_SCHEMES) else None
    if not assigner and not universal:
        return None
    ids = [Identifier(value=universal, system=URI_SYSTEM)] if universal else []
    return Organization(name=assigner or None, identifiers=ids)


def dedupe_key(org: Organization) -> str:
    """One entry per authority in a Bundle: by universal id when there is one, else by name."""
    if org.identifiers:
        return "id|" + org.identifiers[0].value
    return "name|" + (org.name or "")


def link_assigners(resource: dict[str, Any], w: Writer) -> dict[str, Any]:
    """Give every ``assigner`` display in the resource a reference to its Organization entry."""
    for ident in _identifiers(resource, _unlinked):
        assigner = ident["assigner"]
        display, system = assigner.get("display"), ident.get("system")
        hashable = isinstance(display, str) and (system is None or isinstance(system, str))
        key = _authority_key(display, system) if hashable else _key_of(authority(display, system))
        if key is None:
            continue
        url = w.assigners.get(key)
        if url is None:
            built = _authority_resource(display, system)
            url = (w.add(authority(display, system)) if built is None
                   else w.add_resource(json.loads(built[0]), built[1]))
            w.assigners[key] = url
        ident["assigner"] = {"reference": url, **{k: v for k, v in assigner.items() if k != "reference"}}
    return resource


def _key_of(org: Organization | None) -> str | None:
    return None if org is None else dedupe_key(org)


@lru_cache(maxsize=1024)
def _authority_key(assigner: str, system: str | None) -> str | None:
    """:func:`dedupe_key` of an identifier's authority, worked out once per (assigner, system) pair:
    every identifier of every bundle asks, and the same few pairs come back message after message."""
    return _key_of(authority(assigner, system))


@lru_cache(maxsize=1024)
def _authority_resource(assigner: str | None, system: str | None) -> tuple[str, tuple[str, str] | None] | None:
    """The Organization resource (as JSON text) and business key of an assigning authority.

    The same few authorities come back in message after message (a map that gives identifiers an
    assigner adds them to every bundle), and their resource depends on nothing but the assigner and
    the system, so it is built once per pair; each bundle gets its own copy (``json.loads``), since
    the writer may still tag it. None when building it touched anything else (then it is built as
    any record is, every time)."""
    from .encode import Writer, business_key

    org = authority(assigner, system)
    if org is None:  # pragma: no cover - callers pass only identifiers that name an authority
        return None
    writer = Writer({})
    resource = writer.resource(org)
    if writer.entries or writer.assigners:
        return None
    return json.dumps(resource, ensure_ascii=False), business_key(resource)


def _unlinked(ident: dict[str, Any]) -> bool:
    assigner = ident.get("assigner")
    return isinstance(assigner, dict) and bool(assigner.get("display")) and "reference" not in assigner


def _linked(ident: dict[str, Any]) -> bool:
    assigner = ident.get("assigner")
    return isinstance(assigner, dict) and isinstance(assigner.get("reference"), str)


def _identifiers(value: Any, wanted: Callable[[dict[str, Any]], bool], depth: int = 0) -> list[dict[str, Any]]:
    """Every Identifier-shaped object (a ``value`` and an ``assigner``) that ``wanted`` accepts,
    anywhere in a resource: contained resources and logical references included."""
    found: list[dict[str, Any]] = []
    if depth > 16:
        return found
    if isinstance(value, dict):
        if "value" in value and "assigner" in value and wanted(value):
            found.append(value)
        for key, item in value.items():
            if key != "assigner" and isinstance(item, (dict, list)):
                found += _identifiers(item, wanted, depth + 1)
    elif isinstance(value, list):
        for item in value:
            found += _identifiers(item, wanted, depth + 1)
    return found


def assigners_last(entries: dict[str, dict[str, Any]], assigners: dict[str, str],
                   roots: dict[str, list[int]]) -> list[tuple[str, dict[str, Any]]]:
    """The Bundle's entries with the assigning authorities after everything else: a reader that
    takes the first entry as the message's subject (as many do) still finds the Patient there.

    An authority no entry references any more is left out: a record decoded from someone else's
    FHIR keeps its identifiers as they came (``extra["fhir"]``), which replace the ones we linked."""
    tail = set(assigners.values()) - set(roots)
    if not tail:
        return list(entries.items())
    referenced = _top_level_assigners(entries, tail)
    if tail <= referenced:  # the usual case: every authority is named by some resource's own identifier
        return [item for item in entries.items() if item[0] not in tail] + \
            [item for item in entries.items() if item[0] in tail]
    for url, entry in entries.items():
        if url not in tail:
            _references(entry.get("resource"), referenced)
            if tail <= referenced:  # every authority is referenced: the rest cannot change the answer
                break
    return [item for item in entries.items() if item[0] not in tail] + \
        [item for item in entries.items() if item[0] in tail and item[0] in referenced]


def _top_level_assigners(entries: dict[str, dict[str, Any]], tail: set[str]) -> set[str]:
    """The assigner references of the resources' own ``identifier`` lists (not the authorities'):
    where nearly every authority is named, found without walking whole resources. A subset of what
    :func:`_references` finds, so an authority found here is referenced."""
    found: set[str] = set()
    for url, entry in entries.items():
        resource = entry.get("resource") if url not in tail else None
        identifiers = resource.get("identifier") if isinstance(resource, dict) else None
        for ident in identifiers if isinstance(identifiers, list) else ():
            assigner = ident.get("assigner") if isinstance(ident, dict) else None
            ref = assigner.get("reference") if isinstance(assigner, dict) else None
            if isinstance(ref, str):
                found.add(ref)
    return found


def _references(value: Any, into: set[str], depth: int = 0) -> None:
    """Every ``reference`` string in a resource."""
    if depth > 32:
        return
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            into.add(ref)
        for item in value.values():
            if isinstance(item, (dict, list)):
                _references(item, into, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _references(item, into, depth + 1)


def assigner_targets(resources: list[Node], target: Callable[[Node], Node | None]) -> set[int]:
    """Ids of the resources that some identifier's ``assigner`` references (``target`` resolves a
    Reference node): an authority an identifier names is not a record of its own when a Bundle we
    did not mark is read back."""
    found: set[int] = set()
    for resource in resources:
        for ident in _identifiers(resource.data, _linked):
            node = target(Node(ident["assigner"], resource.path))
            if node is not None:
                found.add(id(node.data))
    return found

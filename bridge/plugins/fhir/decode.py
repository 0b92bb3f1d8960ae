"""A FHIR R4 resource or Bundle to canonical records.

References inside the Bundle (``urn:uuid:`` full URLs, ``Type/id``, absolute URLs, ``#contained``)
are resolved, so a MedicationRequest becomes a Prescription with its patient, prescriber,
medication, pharmacy and encounter nested in it. Which entries become top-level records: those we
marked with the ``record-index`` extension when we wrote the Bundle; otherwise the searchset
matches, the message's focus, or every supported entry no other entry refers to.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from functools import cache
from typing import Any

from bridge import DecodeError, EncodeError, Medication, Record

from . import constants as C
from . import keep, people
from .assigners import assigner_targets
from .organizations import organizations_in
from .reader import Node
from .resources import IN

log = logging.getLogger(__name__)

BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset", "message")
SKIPPED_IN_BUNDLES = frozenset({"MessageHeader", "OperationOutcome", "Provenance", "Device"})
"""Resources that describe a message rather than say something a record holds (our own envelope
resources among them): skipped without a note in the log."""


@cache
def is_r4_resource_type(name: str) -> bool:
    """Whether ``name`` is an R4 resource type (fhirclient generates one module per type)."""
    if not name.isascii() or not name.isalpha() or not name[:1].isupper():
        return False
    try:
        module = importlib.import_module(f"fhirclient.models.{name.lower()}")
    except ImportError:
        return False
    from fhirclient.models.resource import Resource

    cls = getattr(module, name, None)
    return isinstance(cls, type) and issubclass(cls, Resource)


class Reader:
    """Decodes one document; resolves references between its resources."""

    def __init__(self, options: Mapping[str, Any]):
        self.options = options
        self.by_url: dict[str, Node] = {}
        self.records: dict[int, Record] = {}
        self.busy: set[int] = set()
        self.referenced: set[int] = set()
        self.stack: list[Node] = []
        self.alternates: dict[int, Record] = {}

    # -- references --

    def index(self, node: Node, full_url: str | None) -> None:
        rtype, rid = node.str("resourceType"), node.str("id")
        if full_url:
            self.by_url[full_url] = node
        if rtype and rid:
            self.by_url.setdefault(f"{rtype}/{rid}", node)

    def target(self, ref: Node | None, container: Node | None = None) -> Node | None:
        """The resource a Reference points at, when the document holds it."""
        if ref is None:
            return None
        text = ref.str("reference")
        if not text:
            return None
        if text.startswith("#") and container is not None:
            for i, item in enumerate(container.list("contained")):
                if item.str("id") == text[1:]:
                    return Node(item.data, f"{container.path}.contained[{i}]")
            return None
        if text in self.by_url:
            return self.by_url[text]
        parts = text.rstrip("/").split("/")
        if len(parts) >= 2 and "/_history/" not in text:
            return self.by_url.get(f"{parts[-2]}/{parts[-1]}")
        if len(parts) >= 4 and parts[-2] == "_history":
            return self.by_url.get(f"{parts[-4]}/{parts[-3]}")
        return None

    def follow(self, ref: Node | None, wanted: type, container: Node | None = None) -> Any:
        """The record a Reference resolves to, if it is in the document and of the wanted kind."""
        node = self.target(ref, container or (self.stack[-1] if self.stack else None))
        if node is None:
            return None
        rtype = node.str("resourceType")
        if rtype not in IN or IN[rtype][0] is not wanted:
            return None
        self.referenced.add(id(node.data))
        return self.record(node)

    def follow_as(self, ref: Node | None, rtype: str, wanted: type, decoder: Any) -> Any:
        """A reference read with another decoder than its type's usual one (an Organization as an
        Organization rather than a Pharmacy); cached apart from the usual records."""
        node = self.target(ref, self.stack[-1] if self.stack else None)
        if node is None or node.str("resourceType") != rtype:
            return None
        self.referenced.add(id(node.data))
        key = id(node.data)
        if key in self.alternates:
            return self.alternates[key]
        if key in self.busy:
            raise DecodeError("references form a cycle", node.path)
        self.busy.add(key)
        self.stack.append(node)
        try:
            record = decoder(node, self)
            self.remember(node, record)
        finally:
            self.stack.pop()
            self.busy.discard(key)
        self.alternates[key] = record
        return record

    # -- resources --

    def record(self, node: Node) -> Record:
        key = id(node.data)
        if key in self.records:
            return self.records[key]
        if key in self.busy:
            raise DecodeError("references form a cycle", node.path)
        self.busy.add(key)
        self.stack.append(node)
        try:
            rtype = node.str("resourceType")
            _, decoder = IN[rtype]  # type: ignore[index]
            record = decoder(node, self)
            people.read(node, record, self)
            organizations_in(node, record, self)
            self.remember(node, record)
        finally:
            self.stack.pop()
            self.busy.discard(key)
        self.records[key] = record
        return record

    def remember(self, node: Node, record: Record) -> None:
        """Keep in extra["fhir"] what our encoding of the record would not reproduce."""
        from .encode import Writer

        try:
            writer = Writer(self.options)
            contained = ".contained[" in node.path and isinstance(record, Medication)
            generated = writer.contained_body(record) if contained else writer.body(record)
        except EncodeError:
            generated = {}  # cannot be written as is: keep every element unconditionally
        kept = keep.remember(node.data, generated)
        if kept:
            record.extra[keep.FHIR] = kept


def check_resource_type(node: Node) -> str:
    rtype = node.data.get("resourceType")
    if not isinstance(rtype, str):
        raise DecodeError("missing resourceType", node.path)
    if not is_r4_resource_type(rtype):
        raise DecodeError(f"unknown resourceType {rtype!r}", node.path)
    return rtype


def decode_document(doc: Any, options: Mapping[str, Any]) -> list[Record]:
    root = Node(doc, "$") if not isinstance(doc, dict) else Node(doc, str(doc.get("resourceType")))
    rtype = check_resource_type(root)
    reader = Reader(options)
    if rtype == "Bundle":
        return decode_bundle(root, reader)
    if rtype not in IN:
        raise DecodeError(f"resourceType {rtype} is not supported (supported: {', '.join(sorted(IN))}, "
                          "Bundle)", rtype)
    reader.index(root, None)
    return [reader.record(root)]


def bundle_entries(bundle: Node) -> list[tuple[Node, Node]]:
    """(entry, resource) pairs with a checked resourceType."""
    pairs = []
    for i, entry in enumerate(bundle.list("entry")):
        raw = entry.data.get("resource")
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise DecodeError("expected an object", f"Bundle.entry[{i}].resource")
        path = f"Bundle.entry[{i}].{raw.get('resourceType')}"
        resource = Node(raw, path)
        check_resource_type(resource)
        pairs.append((entry, resource))
    return pairs


def decode_bundle(bundle: Node, reader: Reader) -> list[Record]:
    btype = bundle.str("type")
    if btype not in BUNDLE_TYPES:
        raise DecodeError(f"{btype!r} is not supported (one of {', '.join(BUNDLE_TYPES)})",
                          "Bundle.type")
    pairs = bundle_entries(bundle)
    for entry, resource in pairs:
        reader.index(resource, entry.str("fullUrl"))
    supported = [(e, r) for e, r in pairs if r.str("resourceType") in IN]
    skipped = sorted({str(r.str("resourceType")) for _, r in pairs if r.str("resourceType") not in IN}
                     - SKIPPED_IN_BUNDLES)
    if skipped:
        log.info("fhir decode: skipped unsupported resource types %s", ", ".join(skipped))
    if not supported:
        raise DecodeError("the Bundle holds no supported resource "
                          f"({', '.join(sorted(IN))})", "Bundle.entry")
    marked = [(index, r) for e, r in supported for index in record_indexes(e)]
    if marked:
        return [reader.record(r) for _, r in sorted(marked, key=lambda pair: pair[0])]
    decoded = [(r, reader.record(r)) for _, r in supported]
    roots = root_ids(bundle, btype, supported, reader)
    return [record for r, record in decoded if id(r.data) in roots]


def record_indexes(entry: Node) -> list[int]:
    return [e.int("valueInteger") or 0 for e in entry.list("extension") if e.str("url") == C.EXT_RECORD_INDEX]


def root_ids(bundle: Node, btype: str, supported: list[tuple[Node, Node]], reader: Reader) -> set[int]:
    """Which entries are records in their own right, for Bundles we did not write."""
    if btype == "searchset":
        matches = {id(r.data) for e, r in supported
                   if (e.obj("search").str("mode") if e.obj("search") else "match") != "include"}
        return matches
    if btype == "message":
        focus = focus_ids(bundle, reader)
        if focus:
            return focus
    authorities = assigner_targets([r for _, r in supported], reader.target)
    return {id(r.data) for _, r in supported if id(r.data) not in reader.referenced | authorities}


def focus_ids(bundle: Node, reader: Reader) -> set[int]:
    entries = bundle.list("entry")
    header = entries[0].obj("resource") if entries else None
    if header is None or header.str("resourceType") != "MessageHeader":
        raise DecodeError("a message Bundle must start with a MessageHeader", "Bundle.entry[0]")
    found = set()
    for ref in header.list("focus"):
        node = reader.target(ref)
        if node is not None and node.str("resourceType") in IN:
            found.add(id(node.data))
    return found

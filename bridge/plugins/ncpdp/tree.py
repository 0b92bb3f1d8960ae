"""Reading and writing element trees while keeping what we do not map.

The :class:`Reader` remembers every element the decoder looked at. What it never looked at is an
element we do not map; :meth:`Reader.leftovers` returns each such element as a fragment with the
path of its parent and the name of the sibling it followed, so the encoder can put it back in the
same place (:func:`restore`) and a round trip loses nothing we carry.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from defusedxml import ElementTree as SafeET

from .xmlsafe import fragment, local


class Reader:
    def __init__(self, root: ET.Element):
        self.root = root
        self.seen: set[int] = {id(root)}

    def child(self, element: ET.Element | None, path: str) -> ET.Element | None:
        """The first element at ``path`` ("A/B/C", local names) under ``element``; marks it seen."""
        node = element
        for name in path.split("/"):
            if node is None:
                return None
            node = next((c for c in node if local(c.tag) == name), None)
            if node is not None:
                self.seen.add(id(node))
        return node

    def children(self, element: ET.Element | None, name: str) -> list[ET.Element]:
        if element is None:
            return []
        found = [c for c in element if local(c.tag) == name]
        self.seen.update(id(c) for c in found)
        return found

    def text(self, element: ET.Element | None, path: str) -> str | None:
        node = self.child(element, path)
        if node is None or node.text is None or not node.text.strip():
            return None
        return node.text.strip()

    def attribute(self, element: ET.Element | None, path: str, name: str) -> str | None:
        node = self.child(element, path)
        return None if node is None else node.get(name)

    def take_subtree(self, element: ET.Element) -> None:
        self.seen.update(id(node) for node in element.iter())

    def first_child(self, element: ET.Element | None) -> ET.Element | None:
        """The first element child (the transaction under Body, the choice under Response…)."""
        if element is None:
            return None
        node = next((c for c in element if isinstance(c.tag, str)), None)
        if node is not None:
            self.seen.add(id(node))
        return node

    def leftovers(self) -> list[dict[str, Any]]:
        """Every element never read, as ``{"path", "after", "xml"}`` in document order."""
        kept: list[dict[str, Any]] = []
        self._collect(self.root, "", kept)
        return kept

    def _collect(self, element: ET.Element, path: str, kept: list[dict[str, Any]]) -> None:
        previous: str | None = None
        for child in element:
            if not isinstance(child.tag, str):
                continue
            name = local(child.tag)
            if id(child) in self.seen:
                self._collect(child, f"{path}/{name}" if path else name, kept)
            else:
                item: dict[str, Any] = {"path": path, "xml": fragment(child)}
                if previous:
                    item["after"] = previous
                kept.append(item)
            previous = name


# --- writing -------------------------------------------------------------------------------------


def sub(parent: ET.Element, name: str, text: str | None = None, attrib: Mapping[str, str] | None = None) -> ET.Element:
    element = ET.SubElement(parent, name, dict(attrib or {}))
    if text is not None:
        element.text = text
    return element


def ensure(parent: ET.Element, path: str) -> ET.Element:
    """The element at ``path`` under ``parent``, creating missing containers."""
    node = parent
    for name in (p for p in path.split("/") if p):
        found = next((c for c in node if local(c.tag) == name), None)
        node = found if found is not None else sub(node, name)
    return node


def put(parent: ET.Element, path: str, value: Any) -> ET.Element | None:
    """Write ``value`` at ``path`` (a new chain of elements); nothing is written for None or ""."""
    if value is None or value == "":
        return None
    names = path.split("/")
    node = ensure(parent, "/".join(names[:-1])) if len(names) > 1 else parent
    return sub(node, names[-1], str(value))


def restore(root: ET.Element, kept: Sequence[Mapping[str, Any]], transaction: str) -> None:
    """Put kept fragments back where they were, skipping those of another transaction's body."""
    for item in kept:
        path = str(item.get("path", ""))
        parts = path.split("/")
        if parts[0] == "Body" and len(parts) > 1 and parts[1] != transaction:
            continue
        element = SafeET.fromstring(str(item["xml"]), forbid_dtd=True, forbid_entities=True, forbid_external=True)
        parent = ensure(root, path)
        _insert_after(parent, element, item.get("after"))


def _insert_after(parent: ET.Element, element: ET.Element, after: str | None) -> None:
    if not after:
        parent.insert(0, element)
        return
    index = None
    for position, child in enumerate(parent):
        if local(child.tag) == after:
            index = position + 1
    if index is None:
        parent.append(element)
    else:
        parent.insert(index, element)


def texts(elements: Iterable[ET.Element]) -> list[str]:
    return [e.text.strip() for e in elements if e.text and e.text.strip()]

"""Hardened XML reading for SCRIPT: no DTDs, no entities, a size and depth limit, and unwrapping.

Inbound XML comes from pharmacy networks and platforms we do not control, so it is parsed with
``defusedxml`` with DTDs forbidden outright: an external-entity (XXE) probe and an entity bomb
("billion laughs") both need a DOCTYPE, and are refused before any entity is read. The five XML
predefined entities (``&lt;`` …) are character escapes, not entity expansion, and stay allowed:
gateways use them to double-wrap a SCRIPT document inside another element's text, which
:func:`parse_script` unwraps (at most :data:`MAX_WRAPS` times).
"""

from __future__ import annotations

import re
from copy import deepcopy
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from bridge import DecodeError

from .codes import LEGACY_NAMESPACE

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64
MAX_WRAPS = 2


def local(tag: object) -> str:
    """The tag without its ``{namespace}``; comments and processing instructions give ``""``."""
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def namespace(tag: str) -> str | None:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def parse_xml(data: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> ET.Element:
    """Parse one XML document safely; every refusal is a DecodeError saying why."""
    size = len(data)
    if size > max_bytes:
        raise DecodeError(f"XML is {size} bytes, over the limit of {max_bytes}")
    if isinstance(data, bytes) and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not (data.strip() if isinstance(data, (bytes, str)) else data):
        raise DecodeError("empty input: expected a SCRIPT XML document")
    parser = SafeET.DefusedXMLParser(target=_DepthBoundBuilder(), forbid_dtd=True, forbid_entities=True,
                                     forbid_external=True)
    try:
        parser.feed(data)
        root = parser.close()
    except DefusedXmlException as exc:
        raise DecodeError(f"refused: the XML declares a DTD or entities ({type(exc).__name__}); "
                          "SCRIPT needs neither and they are how XXE and entity-bomb attacks work") from None
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        reason = str(exc).split(":")[0]
        raise DecodeError(f"not well-formed XML at line {line} column {column + 1}: {reason}") from None
    except _TooDeep as exc:
        raise DecodeError(str(exc)) from None
    except LookupError:  # expat asks the codec registry for the declared encoding (encoding="UFT-8")
        raise DecodeError("unreadable XML text: the XML declaration names an unknown encoding") from None
    except (UnicodeError, ValueError) as exc:
        raise DecodeError(f"unreadable XML text: {type(exc).__name__}") from None
    return root


class _TooDeep(ValueError):
    """Raised from inside the parser the moment nesting passes :data:`MAX_DEPTH`."""


class _DepthBoundBuilder(ET.TreeBuilder):
    """A tree builder that stops the parse at the first element deeper than :data:`MAX_DEPTH`.

    Checking depth after the tree is built let a 1 MiB, 140,000-deep body cost ~60 MB before it was
    refused; counting while parsing refuses it after 65 elements. (The walkers are recursive; SCRIPT
    is about 10 levels deep.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep(f"XML nests deeper than {MAX_DEPTH} levels")
        return super().start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


_EMBEDDED = re.compile(r"<([A-Za-z_][\w.-]*:)?Message[\s>/\[]")


def parse_script(data: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[ET.Element, str]:
    """Parse a SCRIPT document, unwrapping a gateway envelope; returns the Message and its text.

    The text (of the innermost document) is returned so exact substrings such as the
    ``DigitalSignature`` element can be carried unchanged.
    """
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 text (byte {exc.start}); SCRIPT messages are UTF-8") from None
    for _ in range(MAX_WRAPS + 1):
        root = parse_xml(text.encode("utf-8"), max_bytes)
        _refuse_legacy(root)
        if local(root.tag) == "Message":
            return root, text
        inner = _embedded_message(root)
        if inner is None:
            raise DecodeError(f"root element is <{local(root.tag)}>, expected a SCRIPT <Message> "
                              "(directly or escaped inside a wrapper element)")
        text = inner
    raise DecodeError(f"SCRIPT document wrapped more than {MAX_WRAPS} times")


def _embedded_message(root: ET.Element) -> str | None:
    """The text of the first element whose content is an escaped SCRIPT ``<Message>`` document."""
    for element in root.iter():
        text = element.text
        if text and text.lstrip().startswith("<") and _EMBEDDED.search(text[:4096]):
            return text
    return None


def _refuse_legacy(root: ET.Element) -> None:
    if namespace(root.tag) == LEGACY_NAMESPACE:
        raise DecodeError("SCRIPT 10.6 (namespace http://www.ncpdp.org/schema/SCRIPT) is not supported; "
                          "this plugin reads 2017071")


def strip_whitespace(element: ET.Element) -> ET.Element:
    """Drop indentation-only text and tails so a kept fragment compares equal after re-indenting."""
    for node in element.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return element


def fragment(element: ET.Element) -> str:
    """Serialize one element (not its tail) with indentation removed."""
    copy = deepcopy(element)
    copy.tail = None
    return ET.tostring(strip_whitespace(copy), encoding="unicode")

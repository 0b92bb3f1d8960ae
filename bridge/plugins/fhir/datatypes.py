"""FHIR data types to and from the canonical value types (Identifier, Coding, HumanName…).

Encoders return plain JSON dicts with empty parts left out; decoders read through
:class:`~.reader.Node` so a wrong JSON type names its path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge import (
    Address,
    Coding,
    ContactPoint,
    EncodeError,
    HumanName,
    Identifier,
    Period,
    Quantity,
)

from .constants import V2_0203
from .reader import Node
from .systems import system_name, system_uri

_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is None or empty, so absent record fields stay absent in FHIR."""
    return {key: value for key, value in data.items() if value not in (None, [], {}, "")}


# --- dates -------------------------------------------------------------------------------------


def fhir_datetime(value: str | None, field: str, options: Mapping[str, Any], *,
                  instant: bool = False, date_only: bool = False) -> str | None:
    """Write a record date-time as a FHIR date, dateTime or instant.

    FHIR requires minutes, seconds and a time zone whenever a time is given; HL7v2 feeds often
    carry neither. Minutes and seconds are padded, a ``+hhmm`` offset gets its colon. A missing
    zone is never guessed here: the channel's ``timezone`` gives records their offsets when they
    are decoded (right for each instant, daylight saving included). The fixed ``default_timezone``
    option is only a fallback for channels without one (checked at start by ``bridge check``).
    """
    if value is None:
        return None
    if _DATE.match(value):
        if instant:
            raise EncodeError(f"{field}: FHIR needs a full date-time with time zone here, got {value!r}")
        return value
    if date_only:
        raise EncodeError(f"{field}: FHIR needs a date here (YYYY-MM-DD), got a date-time {value!r}")
    match = _TIME.match(value)
    if not match:
        raise EncodeError(f"{field}: not an ISO 8601 date-time: {value!r}")
    day, hour, minute, second, fraction, zone = match.groups()
    zone = zone or options.get("default_timezone")
    if not zone:
        raise EncodeError(
            f"{field}: date-time {value!r} has no time zone; FHIR requires one "
            "(set timezone: on the channel that receives it, an IANA name such as America/Chicago)")
    if len(zone) == 5:
        zone = f"{zone[:3]}:{zone[3:]}"
    return f"{day}T{hour}:{minute or '00'}:{second or '00'}{fraction or ''}{zone}"


# --- identifiers and codes ---------------------------------------------------------------------


_SPACES = re.compile(r"\s+")


def code_out(code: str | None) -> str | None:
    """A FHIR ``code`` has no leading, trailing or repeated whitespace (``DONOR `` from a padded
    HL7v2 field is refused by validators): trim it, and collapse runs of blanks to one space."""
    return _SPACES.sub(" ", code).strip() or None if code else None


def identifier_out(ident: Identifier) -> dict[str, Any]:
    type_code = code_out(ident.type)
    type_ = {"coding": [{"system": V2_0203, "code": type_code}]} if type_code else None
    assigner = {"display": ident.assigner} if ident.assigner else None
    return compact({"type": type_, "system": system_uri(ident.system), "value": ident.value,
                    "assigner": assigner})


def identifier_in(node: Node) -> Identifier:
    value = node.str("value")
    type_code = None
    type_node = node.obj("type")
    if type_node is not None:
        codes = [c.str("code") for c in type_node.list("coding")]
        type_code = next((c for c in codes if c), None) or type_node.str("text")
    assigner = node.obj("assigner")
    return Identifier(value=value or "", system=system_name(node.str("system")), type=type_code,
                      assigner=assigner.str("display") if assigner else None)


def coding_out(coding: Coding) -> dict[str, Any]:
    return compact({"system": system_uri(coding.system), "code": code_out(coding.code),
                    "display": coding.display})


def coding_in(node: Node) -> Coding:
    return Coding(code=node.str("code") or "", system=system_name(node.str("system")),
                  display=node.str("display"))


def concept_out(coding: Coding | None) -> dict[str, Any] | None:
    """One Coding as a CodeableConcept (records carry one coding per concept)."""
    return {"coding": [coding_out(coding)]} if coding else None


def concept_in(node: Node | None) -> Coding | None:
    """The first coding of a CodeableConcept; a text-only concept becomes a code-less Coding."""
    if node is None:
        return None
    codings = node.list("coding")
    if codings:
        return coding_in(codings[0])
    text = node.str("text")
    return Coding(code="", display=text) if text else None


def concepts_in(nodes: list[Node]) -> list[Coding]:
    return [c for c in (concept_in(n) for n in nodes) if c is not None]


# --- people and places -------------------------------------------------------------------------


def name_out(name: HumanName | None) -> list[dict[str, Any]]:
    if name is None:
        return []
    return [compact({
        "use": name.use, "family": name.family, "given": list(name.given),
        "prefix": [name.prefix] if name.prefix else None,
        "suffix": [name.suffix] if name.suffix else None,
    })]


def name_in(nodes: list[Node]) -> HumanName | None:
    """The official name if marked, else the first (records carry one name)."""
    if not nodes:
        return None
    node = next((n for n in nodes if n.str("use") == "official"), nodes[0])
    prefixes, suffixes = node.strs("prefix"), node.strs("suffix")
    return HumanName(family=node.str("family"), given=node.strs("given"),
                     prefix=" ".join(prefixes) or None, suffix=" ".join(suffixes) or None,
                     use=node.str("use"))


def address_out(address: Address) -> dict[str, Any]:
    return compact({"use": address.use, "line": list(address.lines), "city": address.city,
                    "state": address.state, "postalCode": address.postal_code,
                    "country": address.country})


def address_in(node: Node) -> Address:
    return Address(lines=node.strs("line"), city=node.str("city"), state=node.str("state"),
                   postal_code=node.str("postalCode"), country=node.str("country"), use=node.str("use"))


def telecom_out(point: ContactPoint) -> dict[str, Any]:
    return compact({"system": point.system, "value": point.value, "use": point.use})


def telecom_in(node: Node) -> ContactPoint:
    return ContactPoint(value=node.str("value") or "", system=node.str("system"), use=node.str("use"))


def period_out(period: Period | None, field: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    if period is None:
        return None
    return compact({"start": fhir_datetime(period.start, f"{field}.start", options),
                    "end": fhir_datetime(period.end, f"{field}.end", options)}) or None


def period_in(node: Node | None) -> Period | None:
    if node is None:
        return None
    period = Period(start=node.datetime("start"), end=node.datetime("end"))
    return period if period.start or period.end else None


def quantity_out(quantity: Quantity | None) -> dict[str, Any] | None:
    if quantity is None:
        return None
    return compact({"value": quantity.value, "unit": quantity.unit, "system": system_uri(quantity.system),
                    "code": code_out(quantity.code)})


def quantity_in(node: Node | None) -> Quantity | None:
    if node is None:
        return None
    value = node.num("value")
    if value is None:
        return None
    return Quantity(value=value, unit=node.str("unit"), code=node.str("code"),
                    system=system_name(node.str("system")))


# --- extensions --------------------------------------------------------------------------------


def ext(url: str, value_type: str, value: Any) -> dict[str, Any] | None:
    """One simple extension, or None when there is no value to carry."""
    if value is None:
        return None
    return {"url": url, f"value{value_type}": value}


def complex_ext(url: str, parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    parts = [p for p in parts if p]
    return {"url": url, "extension": parts} if parts else None


def ext_nodes(node: Node, url: str) -> list[Node]:
    return [e for e in node.list("extension") if e.str("url") == url]


def ext_value(node: Node, url: str, value_type: str) -> Any:
    """The value of the first extension with this URL, type-checked."""
    for found in ext_nodes(node, url):
        getter = {"String": found.str, "Code": found.str, "Boolean": found.bool,
                  "DateTime": found.datetime, "Integer": found.int}[value_type]
        return getter(f"value{value_type}")
    return None

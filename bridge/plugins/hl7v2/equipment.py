"""HL7v2 OBX-18 (equipment instance identifier, EI, repeating) as the identifiers of the device that
made a result (FHIR ``Observation.device``).

The repetitions name one instrument by the ids its owners give it (Microsoft's converter and the
v2-to-FHIR IG make one Device of them). OBX-18 itself stays kept as read, so an HL7v2 round trip is
unchanged; an Observation built elsewhere gets OBX-18 written from these identifiers.
"""

from __future__ import annotations

from bridge import Identifier

from .header import Separators
from .reader import NULL, Segment, comp, esc, text

UNIVERSAL_ID_SYSTEMS = {"ISO": "urn:oid:", "UUID": "urn:uuid:", "GUID": "urn:uuid:"}
"""EI.4 universal id types (table 0301) whose ids have a URI form; another type's id stays as sent."""
RFC_3986 = "urn:ietf:rfc:3986"
"""The system of an identifier that is itself a URI: an EI with only a universal id (``^^1.2.3^ISO``)
names the instrument by that OID."""


def _universal(universal: str, kind: str) -> str:
    if universal.startswith(("urn:", "http:", "https:")):
        return universal
    return UNIVERSAL_ID_SYSTEMS.get(kind.upper(), "") + universal


def read(obx: Segment, seps: Separators) -> list[Identifier]:
    """OBX-18 repetitions: EI.1 id, EI.2 namespace (the assigner), EI.3/EI.4 universal id as system."""
    raw = obx.get(18)
    if not raw or raw == NULL:
        return []
    found: list[Identifier] = []
    for rep in raw.split(seps.repetition):
        parts = [text(p, seps) for p in rep.split(seps.component)] + ["", "", "", ""]
        value, namespace, universal, kind = parts[:4]
        system = _universal(universal, kind) if universal else None
        if value:
            found.append(Identifier(value=value, system=system, assigner=namespace or None))
        elif system:
            found.append(Identifier(value=system, system=RFC_3986, assigner=namespace or None))
    return found


def written(equipment: list[Identifier]) -> str:
    """OBX-18 of identifiers read as above (for an Observation that did not come from HL7v2)."""
    return "~".join(_ei(ident) for ident in equipment)


def _ei(ident: Identifier) -> str:
    if ident.system == RFC_3986:
        return comp("", esc(ident.assigner), *_split_universal(ident.value))
    return comp(esc(ident.value), esc(ident.assigner), *_split_universal(ident.system))


def _split_universal(system: str | None) -> tuple[str, str]:
    for kind, prefix in (("ISO", "urn:oid:"), ("UUID", "urn:uuid:")):
        if system and system.startswith(prefix):
            return esc(system[len(prefix):]), kind
    return (esc(system), "URI") if system else ("", "")

"""Shared by the coverage-pass tests: a message decoded to records, the records as a FHIR bundle that
must be valid (fhir.resources R4B) and meet its required bindings, and that bundle's resources by type."""

from __future__ import annotations

import json

from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge.plugins.fhir.bindings import bundle_violations
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2


def decode(data: bytes) -> list:
    return HL7V2.decode(data, {})


def bundle(records: list) -> dict:
    out = json.loads(FHIR.encode(records, {}))
    assert bundle_violations(out) == []
    R4BBundle.model_validate(out)
    return out


def resources(doc: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == rtype]


def replace_field(data: bytes, segment: str, number: int, value: str) -> bytes:
    """``data`` with field ``number`` of the first ``segment`` set to ``value`` (the segment padded
    with empty fields as needed): a corpus message varied one field at a time."""
    lines = data.decode("utf-8-sig").replace("\n", "\r").split("\r")
    for i, line in enumerate(lines):
        if line.startswith(segment + "|"):
            fields = line.split("|")
            fields += [""] * (number + 1 - len(fields))
            fields[number] = value
            lines[i] = "|".join(fields)
            break
    return "\r".join(lines).encode()

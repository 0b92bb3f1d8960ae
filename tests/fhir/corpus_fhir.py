"""The FHIR we produce from the whole public corpus, computed once per test session.

HL7v2: every corpus message that decodes, localized in a channel zone as the engine does, encoded to
a transaction Bundle. FHIR: every official R4 example, decoded and encoded again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from bridge import DecodeError, EncodeError, Record, localize_envelope, localize_records
from bridge.core.model.times import load_zone
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2
from tests.hl7v2.test_hl7v2_corpus import FOLDERS, corpus_files

from .conftest import FIXTURES

ZONE = "America/Chicago"


def corpus_messages() -> Iterator[tuple[str, bytes, list[Record]]]:
    """(folder/file, raw bytes, records) for every public-corpus HL7v2 message that decodes."""
    for folder in FOLDERS:
        for path in corpus_files(folder):
            raw = path.read_bytes()
            try:
                yield f"{folder}/{path.name}", raw, HL7V2.decode(raw, {})
            except DecodeError:
                continue


def decoded_corpus() -> Iterator[tuple[str, list[Record]]]:
    """(folder/file, records) for every public-corpus HL7v2 message that decodes, as it decodes."""
    for name, _, records in corpus_messages():
        yield name, records


def envelope_option(raw: bytes) -> dict[str, Any]:
    """What the engine adds to a FHIR destination's options for a message: its envelope (MSH, SFT,
    EVN) in the channel zone, so the corpus checks cover MessageHeader, Provenance and Device too."""
    envelope = HL7V2.envelope(raw)
    return {"source_envelope": localize_envelope(envelope, load_zone(ZONE))} if envelope else {}


@lru_cache(maxsize=1)
def hl7v2_outcomes() -> tuple[tuple[tuple[str, dict[str, Any]], ...], tuple[tuple[str, str], ...]]:
    """((file, Bundle) for every decoded message that encodes, (file, error) for those refused)."""
    bundles, refused = [], []
    for name, raw, records in corpus_messages():
        localize_records(records, ZONE)
        try:
            bundles.append((name, json.loads(FHIR.encode(records, envelope_option(raw)))))
        except EncodeError as exc:
            refused.append((name, str(exc)))
    return tuple(bundles), tuple(refused)


@lru_cache(maxsize=1)
def example_bundles() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(example, Bundle we write after decoding it) for every official example we decode."""
    out = []
    for path in sorted((FIXTURES / "r4-examples").glob("*.json")):
        try:
            records = FHIR.decode(path.read_bytes(), {})
        except DecodeError:
            continue
        if records:
            out.append((path.name, json.loads(FHIR.encode(records, {}))))
    return tuple(out)


def example_input(name: str) -> dict[str, Any]:
    """The official example as published (to tell its own faults from ours)."""
    return json.loads((FIXTURES / "r4-examples" / name).read_text(encoding="utf-8"))


def all_bundles() -> list[tuple[str, dict[str, Any]]]:
    return [*hl7v2_outcomes()[0], *example_bundles()]


def systems(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(element path, system) of every Identifier and Coding below ``node`` (not ContactPoint.system,
    which is a code, nor Quantity.system, which is checked with the same rule)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and not path.endswith("telecom"):
            found.append((path, node["system"]))
        for key, value in node.items():
            found += systems(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for item in node:
            found += systems(item, path)
    return found

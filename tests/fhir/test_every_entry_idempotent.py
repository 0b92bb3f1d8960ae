"""Issue 16 defect 8: every entry of every transaction Bundle is safe to deliver twice.

A plain ``POST`` creates a second resource when a delivery is repeated (a lost answer, a lease
lost): each entry must be a conditional update (``PUT Type?…``), a conditional create (``POST``
with ``ifNoneExist``), or an update at an id derived from the message (``PUT Type/id``: the envelope's
MessageHeader and Provenance, a merge's Linkage, which R4 gives no identifier), the same id on every
encoding. Checked over every Bundle we write from the public corpus.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .corpus_fhir import example_bundles, hl7v2_outcomes


def plain_writes(bundle: dict[str, Any]) -> list[str]:
    """``resourceType`` of each entry that a redelivery would create twice."""
    plain = []
    for entry in bundle.get("entry", []):
        request = entry.get("request") or {}
        method, url = request.get("method"), request.get("url", "")
        conditional = (method == "PUT" and ("?" in url or url.count("/") == 1)) or (
            method == "POST" and request.get("ifNoneExist"))
        if not conditional:
            plain.append(entry["resource"]["resourceType"])
    return plain


def test_every_entry_from_the_hl7v2_corpus_is_conditional():
    bundles, _ = hl7v2_outcomes()
    assert len(bundles) > 100
    found = Counter(rtype for _, bundle in bundles for rtype in plain_writes(bundle))
    where = [name for name, bundle in bundles if plain_writes(bundle)][:5]
    assert not found, f"entries without a conditional request: {dict(found)}, e.g. in {where}"


def test_every_entry_from_the_r4_examples_is_conditional():
    bundles = example_bundles()
    assert len(bundles) > 20
    found = Counter(rtype for _, bundle in bundles for rtype in plain_writes(bundle))
    where = [name for name, bundle in bundles if plain_writes(bundle)][:5]
    assert not found, f"entries without a conditional request: {dict(found)}, e.g. in {where}"


def test_an_entry_without_any_identifier_is_created_once_on_a_key_from_its_content():
    """A Practitioner without an NPI or any identifier (the case seen in issue 16) and other resources
    sent without identifiers: ``ifNoneExist`` on a ``_tag`` the encoder derives, stable across encodings."""
    import json

    from bridge.plugins.fhir.codec import FORMAT as FHIR

    bundles = [json.loads(FHIR.encode(FHIR.decode(json.dumps(doc).encode(), {}), {})) for doc in (
        {"resourceType": "Practitioner", "telecom": [{"system": "phone", "value": "555-0100"}]},
        {"resourceType": "Practitioner", "telecom": [{"system": "phone", "value": "555-0100"}]},
    )]
    (first,), (second,) = (b["entry"] for b in bundles)
    assert first["request"]["method"] == "POST" and first["request"]["ifNoneExist"].startswith("_tag=")
    assert first["request"] == second["request"] and first["fullUrl"] == second["fullUrl"]
    again = json.loads(FHIR.encode(FHIR.decode(json.dumps(first["resource"]).encode(), {}), {}))
    assert again["entry"][0]["request"] == first["request"]  # read back and encoded again: the same key
    assert again["entry"][0]["resource"]["meta"]["tag"] == first["resource"]["meta"]["tag"]

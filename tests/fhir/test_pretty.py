"""The Bundle's text, written entry by entry with reference entries' text reused, is byte for byte
what ``json.dumps(bundle, indent=…)`` writes, the first time and when the text is reused."""

from __future__ import annotations

import json

import pytest

from bridge.plugins.fhir import codec, pretty  # noqa: F401  (codec first: the package imports in that order)
from bridge.plugins.fhir.assigners import _authority_resource, authority
from bridge.plugins.fhir.encode import Writer, business_key

from . import records as R


@pytest.fixture(autouse=True)
def empty_memory():
    pretty.forget()
    yield
    pretty.forget()


@pytest.mark.parametrize("indent", [2, 0, 4, "\t", None])
def test_the_text_is_json_dumps_first_and_when_reused(indent):
    bundle = Writer({}).bundle([R.prescription()])
    assert any(e["resource"]["resourceType"] == "Organization" for e in bundle["entry"])
    expected = json.dumps(bundle, indent=indent, ensure_ascii=False)
    assert pretty.bundle_json(bundle, indent) == expected
    assert pretty.bundle_json(bundle, indent) == expected  # reference entries' text from memory


def test_an_entry_that_differs_is_written_again():
    bundle = Writer({}).bundle([R.prescription()])
    pretty.bundle_json(bundle, 2)
    org = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization")
    org["name"] = (org.get("name") or "") + " (changed) ünïcode"
    assert pretty.bundle_json(bundle, 2) == json.dumps(bundle, indent=2, ensure_ascii=False)


def test_encode_writes_the_same_bytes_as_before(fhir_format):
    records = [R.prescription()]
    bundle = Writer({}).bundle(records)
    expected = (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    assert fhir_format.encode(records, {}) == expected
    assert fhir_format.encode(records, {}) == expected


def test_an_assigning_authority_is_the_same_entry_built_once_or_again():
    """The assigner Organization built once per (assigner, system) is the one built from scratch,
    and each bundle gets its own copy (the writer may still tag it)."""
    for assigner, system in (("STATEREG", "urn:oid:2.16.840.1.113883.19.5"), ("LOCALCLINIC", None),
                             ("REGISTRY", "https://registry.example.org/ids")):
        built = _authority_resource(assigner, system)
        assert built is not None
        text, key = built
        fresh = Writer({}).resource(authority(assigner, system))
        assert json.loads(text) == fresh and key == business_key(fresh)
        assert json.loads(text)["name"] == assigner
    first, second = Writer({}), Writer({})
    for writer in (first, second):
        writer.add_resource(json.loads(text), key)
    (a,), (b,) = first.entries.values(), second.entries.values()
    assert a == b and a["resource"] is not b["resource"]


def _values(seed: int, depth: int = 0):
    """Deterministic JSON-shaped values with what the indented writer must get right: escapes,
    non-ASCII and line separators, empty containers, floats' special values, big integers."""
    import random

    rng = random.Random(seed)
    leaves = ["a", "ü\u2028\"\\\n\t\x00", "", 0, -1, 10**20, 1.5, -0.0, 1e300, float("nan"), float("inf"),
              -float("inf"), True, False, None, [], {}]

    def value(d: int):
        r = rng.random()
        if d > 4 or r < 0.4:
            return rng.choice(leaves)
        if r < 0.7:
            return [value(d + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(["k", "ü", '"q', "a b", ""]) + str(rng.randint(0, 9)): value(d + 1)
                for _ in range(rng.randint(0, 4))}
    return value(depth)


@pytest.mark.parametrize("indent", [2, 0, 4, "\t", "--", None])
def test_the_indented_writer_writes_what_json_dumps_writes(indent):
    for seed in range(2000):
        value = _values(seed)
        assert pretty.indented(value, indent) == json.dumps(value, indent=indent, ensure_ascii=False)
    for unusual in [(1, 2), {1: "x"}, {"a": (1,)}, {True: 1}, {"n": 2**70}]:  # left to json.dumps
        assert pretty.indented(unusual, indent) == json.dumps(unusual, indent=indent, ensure_ascii=False)
    with pytest.raises(TypeError):
        pretty.indented({"a": object()}, indent)

"""Paths: checked against the record classes at load; repetition rules at run time."""

from __future__ import annotations

import pytest

from bridge.core.maps.paths import PathError, objects_at, parse_path, read, records_of_kind, slots
from bridge.core.model.records import Coding, Condition, Encounter, Identifier, Patient


def patient() -> Patient:
    return Patient(identifiers=[Identifier("A1", type="MR", assigner="RIVERBEND"),
                                Identifier("B2", type="MR", assigner="OTHER"),
                                Identifier("123-45-6789", type="SS")])


@pytest.mark.parametrize("text, message", [
    ("encountr.class", "unknown record kind 'encountr' (did you mean 'encounter'?)"),
    ("encounter.clas", "Encounter has no field 'clas' (did you mean 'class'?)"),
    ("encounter", "name a field of Encounter after 'encounter'"),
    ("patient.identifiers[type=MR].valu", "Identifier has no field 'valu' (did you mean 'value'?)"),
    ("patient.identifiers[colour=red].value", "Identifier has no field 'colour'"),
    ("encounter.status[0]", "'status' is not a list, so it takes no [selector]"),
    ("patient.identifiers[type].value", "selector [type] must be [N], [*] or [FIELD=VALUE]"),
    ("encounter.status.code", "'code' cannot follow a str value"),
])
def test_unknown_paths_are_refused_with_the_part_that_is_wrong(text, message):
    with pytest.raises(PathError) as caught:
        parse_path(text)
    assert message in str(caught.value)


def test_class_is_the_encounter_class_and_extra_is_free():
    assert parse_path("encounter.class").segments[0].name == "encounter_class"
    assert parse_path("encounter.extra.hl7v2.fields").leaf.free


def test_repetition_rules_all_index_last_and_match():
    p = patient()
    assert read(p, parse_path("patient.identifiers.value")) == ["A1", "B2", "123-45-6789"]
    assert read(p, parse_path("patient.identifiers[*].value")) == ["A1", "B2", "123-45-6789"]
    assert read(p, parse_path("patient.identifiers[0].value")) == ["A1"]
    assert read(p, parse_path("patient.identifiers[-1].value")) == ["123-45-6789"]
    assert read(p, parse_path("patient.identifiers[7].value")) == []
    assert read(p, parse_path("patient.identifiers[type=MR].assigner")) == ["RIVERBEND", "OTHER"]
    assert read(p, parse_path("patient.identifiers[type=XX].value")) == []
    p.identifiers[0].system = "urn:oid:2.16.840.1.113883.3.1"
    assert read(p, parse_path("patient.identifiers[system=urn:oid:2.16.840.1.113883.3.1].value")) == ["A1"]


def test_a_root_reaches_records_nested_in_others_once_each():
    shared = patient()
    records = [Encounter(patient=shared), Condition(code=Coding("X"), patient=shared, encounter=Encounter(id="E2"))]
    assert records_of_kind(records, "Patient") == [shared]
    assert [e.id for e in records_of_kind(records, "Encounter")] == [None, "E2"]


def test_set_creates_an_absent_value_object_but_never_a_list_item():
    enc = Encounter()
    (slot,) = slots(enc, parse_path("encounter.period.start"), create=True)
    slot.put("2026-01-02")
    assert enc.period is not None and enc.period.start == "2026-01-02"
    assert slots(Patient(), parse_path("patient.identifiers[type=MR].value"), create=True) == []
    assert slots(Encounter(), parse_path("encounter.patient.gender"), create=True) == []  # records are not invented


def test_compiled_paths_resolve_selectors_through_records_lists_and_extra():
    """Each path compiles its reader and writer once (selectors resolved into them); they follow
    the same rules through a nested record, a selected list item and the free ``extra`` mapping."""
    enc = Encounter(patient=patient())
    path = parse_path("encounter.patient.identifiers[type=MR].value")
    assert path.read is path.read  # compiled once, then reused for every message
    assert read(enc, path) == ["A1", "B2"]
    for slot in slots(enc, path):
        slot.put(slot.get() + "!")
    assert [i.value for i in enc.patient.identifiers] == ["A1!", "B2!", "123-45-6789"]  # type: ignore[union-attr]
    assert objects_at(enc, parse_path("encounter.patient.identifiers[-1].value").parent)[0].type == "SS"
    assert slots(enc, parse_path("encounter.patient.identifiers[1]"))[0].index == 1
    assert read(Encounter(), path) == [] and slots(Encounter(), path) == []
    deep = parse_path("encounter.extra.a.b")
    (slot,) = slots(enc, deep, create=True)
    slot.put("x")
    assert enc.extra == {"a": {"b": "x"}} and read(enc, deep) == ["x"] and read(Encounter(), deep) == []

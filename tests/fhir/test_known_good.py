"""Reference resources whose exact content passed validation are not validated again; everything
else, and anything that differs by one character, still is, with errors naming the same entry."""

from __future__ import annotations

import pytest

from bridge import EncodeError
from bridge.plugins.fhir import codec, known_good

from . import records as R


@pytest.fixture(autouse=True)
def empty_memory():
    known_good.forget()
    yield
    known_good.forget()


def checked_types(monkeypatch, fhir_format, records) -> list[list[str]]:
    """The resource types fhirclient was given, per encode."""
    seen: list[list[str]] = []
    real = codec.validate

    def spy(bundle):
        seen.append([e["resource"]["resourceType"] for e in bundle["entry"] if "resource" in e])
        real(bundle)

    monkeypatch.setattr(codec, "validate", spy)
    fhir_format.encode(records, {})
    fhir_format.encode(records, {})
    return seen


def test_reference_resources_are_validated_once_per_content(monkeypatch, fhir_format):
    first, second = checked_types(monkeypatch, fhir_format, [R.prescription()])
    reused = [t for t in first if t in known_good.REUSED_TYPES]
    assert reused, first  # the prescription's bundle has reference resources (prescriber, organizations…)
    assert second == [t for t in first if t not in known_good.REUSED_TYPES]
    assert "MedicationRequest" in second and "Patient" in second  # what is new each time is checked each time


def test_a_resource_that_differs_is_validated_again(monkeypatch, fhir_format):
    rx = R.prescription()
    fhir_format.encode([rx], {})
    rx.prescriber.name.family = rx.prescriber.name.family + "x"  # type: ignore[union-attr]
    seen, _ = checked_types(monkeypatch, fhir_format, [rx])
    assert "Practitioner" in seen


def test_a_skipped_entry_keeps_its_place_so_errors_name_the_same_entry():
    organization = {"resourceType": "Organization", "name": "Riverbend Lab"}
    good = {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": "urn:uuid:1", "resource": organization}]}
    checked, keys = known_good.still_to_check(good)
    codec.validate(checked)
    known_good.remember(keys)
    bad = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": organization},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Organization", "name": 5}}]}
    checked, _ = known_good.still_to_check(bad)
    assert checked["entry"][0] == {} and "resource" in checked["entry"][1]  # the whole entry passed before
    with pytest.raises(EncodeError) as skipped:
        codec.validate(checked)
    with pytest.raises(EncodeError) as whole:
        codec.validate(bad)
    assert str(skipped.value) == str(whole.value) and "entry.1" in str(whole.value)


def test_a_refused_bundle_teaches_nothing(fhir_format):
    bad = {"resourceType": "Bundle", "type": "collection",
           "entry": [{"resource": {"resourceType": "Organization", "name": 5}}]}
    checked, keys = known_good.still_to_check(bad)
    with pytest.raises(EncodeError):
        codec.validate(checked)
    assert keys and known_good.still_to_check(bad)[0]["entry"][0].get("resource")  # not remembered


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(known_good, "MAX_REMEMBERED", 3)
    keys = [known_good.still_to_check({"entry": [{"resource": {"resourceType": "Organization", "name": f"O{i}"}}]})[1][0]
            for i in range(5)]
    known_good.remember(keys)
    assert list(known_good._passed) == keys[-3:]


def patient_bundle(*identifiers: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "identifier": list(identifiers)}}]}


REGISTRY = {"system": "urn:oid:2.16.840.1.113883.19.6", "assigner": {"reference": "urn:uuid:9"},
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}


def test_an_identifier_whose_shape_passed_is_not_validated_again_whatever_its_value():
    checked, keys = known_good.still_to_check(patient_bundle({**REGISTRY, "value": "A1"}))
    assert checked["entry"][0]["resource"]["identifier"] == [{**REGISTRY, "value": "A1"}]
    codec.validate(checked)
    codec.check_bindings(checked)
    known_good.remember(keys)
    other_system = {**REGISTRY, "system": "urn:oid:1.2.3", "value": "B2"}
    bundle = patient_bundle({**REGISTRY, "value": "B2"}, other_system)
    checked, _ = known_good.still_to_check(bundle)
    assert checked["entry"][0]["resource"]["identifier"] == [{}, other_system]  # indices kept
    checked, _ = known_good.still_to_check(patient_bundle(other_system, {**REGISTRY, "value": "C3"}))
    assert checked["entry"][0]["resource"]["identifier"] == [other_system]  # nothing after: left out
    checked, _ = known_good.still_to_check(patient_bundle({**REGISTRY, "value": "C3"}))
    assert checked["entry"][0]["resource"] == {"resourceType": "Patient"}
    assert bundle["entry"][0]["resource"]["identifier"][0]["value"] == "B2"  # the bundle itself is untouched


def test_an_identifier_that_differs_in_kind_of_value_or_in_a_code_is_checked_and_errors_keep_their_index(
        fhir_format):
    checked, keys = known_good.still_to_check(patient_bundle({**REGISTRY, "value": "A1"}))
    codec.validate(checked)
    known_good.remember(keys)
    for bad, problem in (({**REGISTRY, "value": 5}, "identifier.1.value"),
                         ({**REGISTRY, "value": "C3", "use": "nickname"}, "identifier.use")):
        bundle = patient_bundle({**REGISTRY, "value": "B2"}, bad)
        checked, _ = known_good.still_to_check(bundle)
        assert checked["entry"][0]["resource"]["identifier"][0] == {}
        with pytest.raises(EncodeError) as caught:
            codec.validate(checked)
            codec.check_bindings(checked)
        assert problem in str(caught.value)


def test_encoded_bundles_are_the_same_with_identifiers_remembered(fhir_format):
    rx = R.prescription()
    first = fhir_format.encode([rx], {"message_control_id": "M1"})
    second = fhir_format.encode([rx], {"message_control_id": "M1"})
    known_good.forget()
    assert first == second == fhir_format.encode([rx], {"message_control_id": "M1"})


def test_plain_references_after_the_last_other_item_are_not_checked_and_errors_keep_their_index():
    plain = [{"reference": f"urn:uuid:{n}"} for n in range(5)]
    provenance = {"resourceType": "Provenance", "recorded": "2026-12-06T10:00:00Z", "agent": [{"who": {"display": "x"}}]}
    all_plain = {"resourceType": "Bundle", "type": "collection",
                 "entry": [{"fullUrl": "urn:uuid:p", "resource": {**provenance, "target": plain}}]}
    checked, _ = known_good.still_to_check(all_plain)
    assert checked["entry"][0]["resource"]["target"] == plain[:1]  # one kept: the list is required
    codec.validate(checked)
    bad = {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:uuid:p", "resource": {
        **provenance, "target": [*plain[:2], {"reference": 5}, *plain[2:]]}}]}
    checked, _ = known_good.still_to_check(bad)
    assert checked["entry"][0]["resource"]["target"] == bad["entry"][0]["resource"]["target"][:3]
    with pytest.raises(EncodeError) as skipped:
        codec.validate(checked)
    with pytest.raises(EncodeError) as whole:
        codec.validate(bad)
    assert str(skipped.value) == str(whole.value) and "target.2" in str(whole.value)
    assert bad["entry"][0]["resource"]["target"][3:] == plain[2:]  # the bundle itself is not changed

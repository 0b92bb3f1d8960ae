"""Observation and DiagnosticReport in FHIR (issue 13): mapping, conditional keys, decode."""

from __future__ import annotations

import json

import pytest

from bridge import DiagnosticReport, Identifier, Observation, record_to_dict
from bridge.testing import assert_format_round_trip

from . import records as R
from .conftest import entries, resources_of

RESULT_KEY = "https://telemed-bridge.org/fhir/sid/result-key"


def test_report_results_are_observation_entries_referenced_from_the_report(fhir_format):
    raw = fhir_format.encode([R.lab_report()], {})
    (report,) = resources_of(raw, "DiagnosticReport")
    observations = resources_of(raw, "Observation")
    urls = {e["fullUrl"]: e["resource"] for e in entries(raw)}
    assert [urls[r["reference"]] for r in report["result"]] == observations
    (patient,) = [e for e in entries(raw) if e["resource"]["resourceType"] == "Patient"]
    # results without a patient of their own are filed under the report's
    assert all(o["subject"]["reference"] == patient["fullUrl"] for o in observations)
    assert report["status"] == "final" and report["issued"] == "2026-03-02T11:00:00-06:00"
    assert report["category"][0]["coding"][0]["code"] == "CH"


def test_observation_values_units_ranges_and_flags(fhir_format):
    raw = fhir_format.encode([R.lab_report(), R.pain_score()], {})
    low, corrected, ratio, span, coded, dated, text, pain = resources_of(raw, "Observation")
    assert low["valueQuantity"] == {"value": 0.5, "comparator": "<", "unit": "mg/dL",
                                    "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    assert low["interpretation"][0]["coding"][0]["code"] == "L"
    assert low["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
    assert corrected["status"] == "corrected"
    assert ratio["valueRatio"] == {"numerator": {"value": 1}, "denominator": {"value": 128}}
    assert span["valueRange"] == {"low": {"value": 0.6}, "high": {"value": 0.9}}
    assert coded["valueCodeableConcept"]["coding"][0]["code"] == "3092008"
    assert dated["valueDateTime"] == "2027-03-01"
    assert text["valueString"] == "Impression: normal." and text["code"] == {"text": "no code sent"}
    assert pain["referenceRange"] == [{"low": {"value": 0, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                               "code": "{score}"},
                                       "high": {"value": 10, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                                "code": "{score}"}, "text": "0-10"}]
    assert pain["note"] == [{"text": "Worse at night."}] and pain["performer"]


def test_results_are_conditional_updates_keyed_under_the_report(fhir_format):
    raw = fhir_format.encode([R.lab_report()], {})
    requests = [e["request"] for e in entries(raw) if e["resource"]["resourceType"] == "Observation"]
    assert all(r["method"] == "PUT" and r["url"].startswith(f"Observation?identifier={RESULT_KEY}|")
               for r in requests)
    assert len({r["url"] for r in requests}) == len(requests)  # two glucose results: two keys
    (report,) = [e["request"] for e in entries(raw) if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert report == {"method": "PUT", "url": "DiagnosticReport?identifier=urn:oid:1.2.3.4.12|F-100"}
    # A corrected report re-sent later (new values, same report and codes) updates the same results.
    corrected = R.lab_report()
    corrected.status, corrected.observations[0].value_quantity.value = "corrected", 0.7
    again = [e["request"] for e in entries(fhir_format.encode([corrected], {}))
             if e["resource"]["resourceType"] == "Observation"]
    assert again == requests
    # Another lab's report with the same filler number is another key.
    other = R.lab_report()
    other.identifiers[0].system = "urn:oid:9.9.9"
    others = [e["request"]["url"] for e in entries(fhir_format.encode([other], {}))
              if e["resource"]["resourceType"] == "Observation"]
    assert not set(others) & {r["url"] for r in requests}


def test_a_result_with_its_own_identifier_keeps_it_as_its_key(fhir_format):
    report = R.lab_report()
    report.observations[0].identifiers = [Identifier(value="OBX-77", system="urn:oid:1.2.3.4.14")]
    raw = fhir_format.encode([report], {})
    first = resources_of(raw, "Observation")[0]
    assert [i["value"] for i in first["identifier"]] == ["OBX-77"]
    assert_format_round_trip(fhir_format, [report])


def test_decoding_our_report_gives_back_the_records_unchanged(fhir_format):
    decoded = assert_format_round_trip(fhir_format, [R.lab_report(), R.pain_score()])
    report = decoded[0]
    assert isinstance(report, DiagnosticReport) and all(isinstance(o, Observation) for o in report.observations)
    assert all(o.patient is None and not o.identifiers for o in report.observations)


def test_a_report_from_another_server_is_read(fhir_format):
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "https://ehr.example.org/fhir/DiagnosticReport/r1", "search": {"mode": "match"},
         "resource": {"resourceType": "DiagnosticReport", "id": "r1", "status": "amended",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                      "subject": {"reference": "Patient/p1"}, "result": [{"reference": "Observation/o1"}]}},
        {"fullUrl": "https://ehr.example.org/fhir/Observation/o1", "search": {"mode": "include"},
         "resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                      "subject": {"reference": "Patient/p1"},
                      "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                        "code": "g/dL"},
                      "interpretation": [{"coding": [{"code": "N"}]}],
                      "referenceRange": [{"low": {"value": 12}, "high": {"value": 16}}]}},
        {"fullUrl": "https://ehr.example.org/fhir/Patient/p1", "search": {"mode": "include"},
         "resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
    ]}
    (report,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    assert report.status == "amended" and report.code[0].code == "58410-2" and report.patient.gender == "female"
    (obs,) = report.observations
    assert obs.value_quantity.value == 13.2 and obs.value_quantity.code == "g/dL"
    assert obs.reference_range.low.value == 12 and obs.interpretation[0].code == "N"
    assert obs.patient is None  # the report's patient


def test_a_bad_status_from_a_server_is_a_clear_error(fhir_format):
    resource = {"resourceType": "Observation", "status": "done",
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}}
    with pytest.raises(Exception, match="expected one of registered, preliminary, final") as caught:
        fhir_format.decode(json.dumps(resource).encode(), {})
    assert "Node" not in str(caught.value) and "object at 0x" not in str(caught.value)


def test_every_record_field_survives_a_round_trip(fhir_format):
    decoded = assert_format_round_trip(fhir_format, [R.pain_score()])
    assert record_to_dict(decoded[0]) == record_to_dict(R.pain_score())

"""ServiceRequest, MedicationAdministration, Immunization and HL7v2 dispenses as FHIR R4 (issue 13):
valid in fhir.resources, required-binding codes in their R4 value sets, systems absolute URIs,
conditional keys, and a FHIR round trip that gives the records back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge import (
    Coding,
    Immunization,
    MedicationAdministration,
    RelatedPerson,
    ServiceRequest,
    record_to_dict,
)
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2
from bridge.testing import assert_format_round_trip, plugin_manager
from tests.hl7v2.test_orders import INPUT, RAS

from .test_adt_background import check_valid, of_type, system_problems

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "messages"
REQUIRED = {
    "ServiceRequest": {
        "status": {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"},
        "intent": {"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order",
                   "instance-order", "option"},
        "priority": {"routine", "urgent", "asap", "stat"},
    },
    "MedicationAdministration": {
        "status": {"in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"}},
    "Immunization": {"status": {"completed", "entered-in-error", "not-done"}},
    "MedicationDispense": {"status": {"preparation", "in-progress", "cancelled", "on-hold", "completed",
                                      "entered-in-error", "stopped", "declined", "unknown"}},
}
"""FHIR R4 4.0.1 required bindings (request-status, request-intent, request-priority,
medication-admin-status, immunization-status, medicationdispense-status)."""
NEW_TYPES = (*REQUIRED, "RelatedPerson")
SAMPLES = ["ORM-O01-01", "ORM-O01-02", "ORM-O01-03", "ORM-O01-04", "ORM-O01-05", "OML-O21-01", "OML-O21-02",
           "OML-O21-03", "OMG-O19-01", "OMG-O19-02", "REF-I12-01", "REF-I12-02", "REF-I14-01", "REF-I14-02",
           "VXU-V04-01", "VXU-V04-02", "VXU", "RDS-O13-01", "RDS-O13-02", "MDHHS-OML-O21-1", "MDHHS-OML-O21-2"]
OUL = ["OUL-R22-01", "OUL-R22-02", "OUL-R23-01", "OUL-R23-02", "OUL-R24-01", "OUL-R24-02"]


def bundle_of(fhir_format: Any, records: list[Any]) -> dict[str, Any]:
    return json.loads(fhir_format.encode(records, {}))


def binding_problems(resource: dict[str, Any]) -> list[str]:
    return [f"{resource['resourceType']}.{k}={resource[k]!r}"
            for k, allowed in REQUIRED.get(resource["resourceType"], {}).items()
            if k in resource and resource[k] not in allowed]


def check_new(bundle: dict[str, Any]) -> int:
    """Valid in fhir.resources; the new resources meet their bindings and use absolute systems."""
    check_valid(bundle)
    count = 0
    for rtype in NEW_TYPES:
        for entry in of_type(bundle, rtype):
            assert binding_problems(entry["resource"]) == []
            assert system_problems(entry["resource"]) == [], rtype
            count += 1
    return count


@pytest.mark.parametrize("name", SAMPLES)
def test_every_corpus_order_immunization_and_dispense_is_valid_fhir(fhir_format, name: str) -> None:
    records = HL7V2.decode((INPUT / f"{name}.hl7").read_bytes(), {})
    assert check_new(bundle_of(fhir_format, records)) >= 1


@pytest.mark.parametrize("name", OUL)
def test_oul_results_are_valid_fhir_reports(fhir_format, name: str) -> None:
    bundle = bundle_of(fhir_format, HL7V2.decode((INPUT / f"{name}.hl7").read_bytes(), {}))
    check_valid(bundle)
    assert of_type(bundle, "DiagnosticReport") and of_type(bundle, "Observation")


def test_a_ras_is_a_valid_medication_administration_referencing_its_order(fhir_format) -> None:
    bundle = bundle_of(fhir_format, HL7V2.decode(RAS, {}))
    assert check_new(bundle) == 1
    (entry,) = of_type(bundle, "MedicationAdministration")
    given = entry["resource"]
    assert given["status"] == "completed" and given["effectiveDateTime"] == "2026-11-20T22:15:00-06:00"
    assert given["dosage"]["route"]["coding"][0]["code"] == "IV"
    assert given["dosage"]["dose"] == {"value": 2.0, "unit": "mg", "system": "http://unitsofmeasure.org",
                                       "code": "mg"}
    assert given["request"]["identifier"]["value"] == "RX-20261120-0042"
    # No identifier was sent: a derived key makes a re-delivered RAS update the same resource.
    assert entry["request"]["method"] == "PUT" and "administration-key" in entry["request"]["url"]
    assert bundle_of(fhir_format, HL7V2.decode(RAS, {})) == bundle


def test_orders_and_immunizations_are_conditional_updates_on_their_placer_id(fhir_format) -> None:
    for name, rtype in (("ORM-O01-01", "ServiceRequest"), ("VXU-V04-01", "Immunization")):
        bundle = bundle_of(fhir_format, HL7V2.decode((INPUT / f"{name}.hl7").read_bytes(), {}))
        # the order itself, not the OBR-29 parent it names by number (created if absent: see below)
        (entry, *_) = [e for e in of_type(bundle, rtype) if {"code", "vaccineCode"} & set(e["resource"])]
        placer = next(i["value"] for i in entry["resource"]["identifier"]
                      if i.get("type", {}).get("coding", [{}])[0].get("code") == "PLAC")
        assert entry["request"]["method"] == "PUT" and entry["request"]["url"].endswith(placer)


def test_vxu_next_of_kin_is_a_related_person_of_the_patient(fhir_format) -> None:
    bundle = bundle_of(fhir_format, HL7V2.decode((INPUT / "VXU-V04-01.hl7").read_bytes(), {}))
    check_new(bundle)
    # NK1, the GT1 guarantor, the IN1 insured (Coverage.subscriber), the PID-21 mother
    entry, guarantor, insured, mother = of_type(bundle, "RelatedPerson")
    (coverage,) = of_type(bundle, "Coverage")
    assert coverage["resource"]["subscriber"]["reference"] == insured["fullUrl"]
    (patient,) = of_type(bundle, "Patient")
    person = entry["resource"]
    assert mother["resource"]["relationship"][0]["coding"][0]["code"] == "MTH"
    assert guarantor["resource"]["relationship"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0063", "code": "BRO"}
    assert person["patient"]["reference"] == patient["fullUrl"]
    assert person["relationship"][1]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                                      "code": "O"}
    assert entry["request"]["method"] == "PUT"


def test_an_rds_dispense_is_a_conditional_update_on_a_derived_key(fhir_format) -> None:
    raw = (INPUT / "RDS-O13-01.hl7").read_bytes()
    bundle = bundle_of(fhir_format, HL7V2.decode(raw, {}))
    (entry,) = of_type(bundle, "MedicationDispense")
    assert entry["resource"]["status"] == "completed"
    assert entry["request"]["method"] == "PUT" and "sid/dispense-key|" in entry["request"]["url"]
    assert bundle_of(fhir_format, HL7V2.decode(raw, {})) == bundle  # the same key on re-delivery


def test_a_referral_names_both_providers_and_its_category(fhir_format) -> None:
    bundle = bundle_of(fhir_format, HL7V2.decode((INPUT / "REF-I12-01.hl7").read_bytes(), {}))
    (entry,) = of_type(bundle, "ServiceRequest")
    request = entry["resource"]
    assert request["category"][0]["coding"][0] == {"system": "http://snomed.info/sct", "code": "3457005",
                                                   "display": "Patient referral"}
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}

    def person(ref: dict[str, str]) -> dict[str, Any]:  # PRD-1 states the role: a PractitionerRole names them
        found = urls[ref["reference"]]
        return urls[found["practitioner"]["reference"]] if found["resourceType"] == "PractitionerRole" else found

    assert urls[request["requester"]["reference"]]["code"][0]["coding"][0]["code"] == "RP"
    assert person(request["requester"])["name"][0]["family"] == "POWELL"
    performers = [person(p) for p in request["performer"]]
    assert [p["name"][0]["family"] for p in performers if p["resourceType"] == "Practitioner"] == ["McWILLIAMS"]
    # and the authorized provider (RF1-19), see test_organizations.py
    assert [p["name"] for p in performers if p["resourceType"] == "Organization"] == ["Radiant Health Hospital"]


def example_records(name: str) -> list[Any]:
    spec = plugin_manager().format("bridge")
    return spec.decode((EXAMPLES / name).read_bytes(), {})


@pytest.mark.parametrize("name", ["service-request.json", "medication-administration.json", "immunization.json",
                                  "related-person.json"])
def test_the_examples_survive_a_fhir_round_trip_and_are_valid(fhir_format, name: str) -> None:
    records = example_records(name)
    assert check_new(bundle_of(fhir_format, records)) == 1
    decoded = assert_format_round_trip(fhir_format, records)
    assert [record_to_dict(r) for r in decoded[:1]] == [record_to_dict(r) for r in records]


def test_corpus_records_survive_a_fhir_round_trip(fhir_format) -> None:
    for name in ("OML-O21-01", "VXU-V04-01", "REF-I12-01"):
        records = [r for r in HL7V2.decode((INPUT / f"{name}.hl7").read_bytes(), {})
                   if isinstance(r, (ServiceRequest, Immunization))]
        decoded = fhir_format.decode(fhir_format.encode(records, {}), {})
        mine = [r for r in decoded if type(r) in (ServiceRequest, Immunization)]
        assert [coded(r) for r in mine] == [coded(r) for r in records], name


def coded(record: Any) -> dict[str, Any]:
    """The record's own coded and identifying fields (the patient's and visit's mappings, and the
    seconds FHIR adds to an HL7v2 time sent to the minute, are other tests' business)."""
    data = record_to_dict(record)
    for part in data.get("observations", ()):  # an Immunization's: theirs are the same patient and visit
        for key in ("patient", "encounter"):
            part.pop(key, None)
    return {k: v for k, v in data.items() if k not in ("patient", "encounter", "authored", "occurrence", "extra")}


@pytest.mark.parametrize(("record", "message_part"), [
    (ServiceRequest(), "ServiceRequest.patient is required"),
    (MedicationAdministration(), "MedicationAdministration.patient is required"),
    (Immunization(), "Immunization.patient is required"),
    (RelatedPerson(), "RelatedPerson.patient is required"),
])
def test_what_fhir_requires_is_refused_clearly(fhir_format, record: Any, message_part: str) -> None:
    with pytest.raises(Exception, match=message_part) as caught:
        fhir_format.encode([record], {})
    assert "object at 0x" not in str(caught.value)


def test_an_immunization_without_vaccine_or_time_is_refused_clearly(fhir_format) -> None:
    shot = example_records("immunization.json")[0]
    shot.vaccine = []
    with pytest.raises(Exception, match="vaccineCode"):
        fhir_format.encode([shot], {})
    shot.vaccine, shot.occurrence = [Coding(code="150", system="http://hl7.org/fhir/sid/cvx")], None
    with pytest.raises(Exception, match="occurrence is required"):
        fhir_format.encode([shot], {})


def test_a_status_outside_the_value_set_is_refused_on_decode(fhir_format) -> None:
    bundle = bundle_of(fhir_format, example_records("service-request.json"))
    (entry,) = of_type(bundle, "ServiceRequest")
    entry["resource"]["status"] = "cancelled"  # not an R4 request-status code
    with pytest.raises(Exception, match="expected one of draft, active"):
        fhir_format.decode(json.dumps(bundle).encode(), {})


def test_resources_written_elsewhere_decode_to_the_records(fhir_format) -> None:
    """An EHR's own ServiceRequest and Immunization (no extensions of ours, server ids)."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "https://ehr.example.org/fhir/Patient/p1",
         "resource": {"resourceType": "Patient", "id": "p1",
                      "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.999.2", "value": "MRN00012345"}]}},
        {"fullUrl": "https://ehr.example.org/fhir/ServiceRequest/s1",
         "resource": {"resourceType": "ServiceRequest", "id": "s1", "status": "active", "intent": "original-order",
                      "priority": "stat", "subject": {"reference": "Patient/p1"},
                      "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}],
                      "code": {"coding": [{"system": "http://loinc.org", "code": "24725-4"}], "text": "CT Head"},
                      "authoredOn": "2026-11-27T09:40:00-06:00"}},
        {"fullUrl": "https://ehr.example.org/fhir/Immunization/i1",
         "resource": {"resourceType": "Immunization", "id": "i1", "status": "not-done",
                      "statusReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                   "code": "PATOBJ"}]},
                      "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "150"}]},
                      "patient": {"reference": "Patient/p1"}, "occurrenceDateTime": "2026-10-15",
                      "primarySource": False}},
    ]}
    records = fhir_format.decode(json.dumps(bundle).encode(), {})
    (request,) = [r for r in records if isinstance(r, ServiceRequest)]
    (shot,) = [r for r in records if isinstance(r, Immunization)]
    assert (request.id, request.status, request.intent, request.priority, request.category) == (
        "s1", "active", "original-order", "stat", "imaging")
    assert [c.code for c in request.code] == ["24725-4", ""] and request.code[1].display == "CT Head"
    assert request.patient is not None and request.patient.identifiers[0].value == "MRN00012345"
    assert (shot.id, shot.status, shot.primary_source, shot.occurrence) == ("i1", "not-done", False, "2026-10-15")
    assert shot.status_reason is not None and shot.status_reason.code == "PATOBJ"
    assert shot.vaccine[0].system == "http://hl7.org/fhir/sid/cvx" and shot.patient is request.patient


def test_a_parent_order_named_by_number_is_created_if_absent_and_reads_back(fhir_format) -> None:
    records = HL7V2.decode((INPUT / "ORM-O01-01.hl7").read_bytes(), {})
    (order, *_) = [r for r in records if isinstance(r, ServiceRequest)]
    assert [(i.value, i.type) for i in order.parent_order] == [("FAI-29", "FILL")]  # OBR-29 ^FAI-29
    bundle = bundle_of(fhir_format, records)
    entries = {e["fullUrl"]: e for e in bundle["entry"]}
    (child,) = [e for e in of_type(bundle, "ServiceRequest") if e["resource"].get("basedOn")]
    (based_on,) = child["resource"]["basedOn"]
    parent = entries[based_on["reference"]]
    assert parent["request"] == {"method": "POST", "url": "ServiceRequest", "ifNoneExist": "identifier=FAI-29"}
    assert parent["resource"] == {
        "resourceType": "ServiceRequest", "status": "unknown", "intent": "order",  # no status is stated
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "FILL"}]}, "value": "FAI-29"}],
        "subject": child["resource"]["subject"]}
    back = [r for r in fhir_format.decode(json.dumps(bundle).encode(), {}) if isinstance(r, ServiceRequest)]
    assert [[i.value for i in r.parent_order] for r in back] == [["FAI-29"]]  # the stub is no order of its own
    out = HL7V2.encode(records, {}).decode()
    assert "^FAI-29" in next(s for s in out.split("\r") if s.startswith("OBR")).split("|")[29]  # kept as read

"""An ADT's allergies, diagnoses, insurance and merges as FHIR R4 (issue 13): valid in fhir.resources,
every code of a required binding in its R4 value set, every system an absolute URI."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import localize_records
from bridge.plugins.hl7v2.codec import decode as hl7v2_decode
from tests.hl7v2.test_adt_events import BACKGROUND, PID, PV1, message

from . import records as R

REQUIRED = {
    "AllergyIntolerance": {
        "clinicalStatus": ("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                           {"active", "inactive", "resolved"}),
        "verificationStatus": ("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                               {"unconfirmed", "confirmed", "refuted", "entered-in-error"}),
        "category": (None, {"food", "medication", "environment", "biologic"}),
        "reaction.severity": (None, {"mild", "moderate", "severe"}),
    },
    "Condition": {
        "clinicalStatus": ("http://terminology.hl7.org/CodeSystem/condition-clinical",
                           {"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
        "verificationStatus": ("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                               {"unconfirmed", "provisional", "differential", "confirmed", "refuted",
                                "entered-in-error"}),
    },
    "Coverage": {"status": (None, {"active", "cancelled", "draft", "entered-in-error"})},
    "Patient": {"link.type": (None, {"replaces", "replaced-by", "refer", "seealso"}),
                "gender": (None, {"male", "female", "other", "unknown"})},
}
"""R4 required bindings of the elements these resources fill (FHIR R4 4.0.1 value sets)."""


def values_at(resource: dict[str, Any], path: str) -> list[Any]:
    found: list[Any] = [resource]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in found:
            value = item.get(part) if isinstance(item, dict) else None
            nxt += value if isinstance(value, list) else [value] if value is not None else []
        found = nxt
    return found


def binding_problems(resource: dict[str, Any]) -> list[str]:
    problems = []
    for path, (system, allowed) in REQUIRED.get(resource["resourceType"], {}).items():
        for value in values_at(resource, path):
            codings = value.get("coding", []) if isinstance(value, dict) else [{"system": system, "code": value}]
            for coding in codings:
                if coding.get("code") not in allowed or coding.get("system") != system:
                    problems.append(f"{resource['resourceType']}.{path}: {coding}")
    return problems


def system_problems(data: Any, where: str = "") -> list[str]:
    """Every code and identifier system is an absolute URI (ContactPoint.system is a code)."""
    problems = []
    if isinstance(data, dict):
        for key, value in data.items():
            absolute = str(value).startswith(("http://", "https://", "urn:"))
            if key == "system" and "telecom" not in where and not absolute:
                problems.append(f"{where}.system = {value!r}")
            problems += system_problems(value, f"{where}.{key}")
    elif isinstance(data, list):
        for item in data:
            problems += system_problems(item, where)
    return problems


def adt_bundle(fhir_format, raw: bytes) -> dict[str, Any]:
    records = hl7v2_decode(raw, {})
    localize_records(records, "America/Chicago")
    return json.loads(fhir_format.encode(records, {}))


def check_valid(bundle: dict[str, Any]) -> None:
    R4BBundle.model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        module = importlib.import_module(f"fhir.resources.R4B.{resource['resourceType'].lower()}")
        getattr(module, resource["resourceType"]).model_validate(resource)
        assert binding_problems(resource) == []


def of_type(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def test_an_adt_with_al1_dg1_in1_gives_allergy_condition_and_coverage(fhir_format):
    bundle = adt_bundle(fhir_format, message("A01", PID, PV1, *BACKGROUND))
    check_valid(bundle)
    allergies, conditions = of_type(bundle, "AllergyIntolerance"), of_type(bundle, "Condition")
    (coverage,) = of_type(bundle, "Coverage")
    (patient,) = of_type(bundle, "Patient")
    (encounter,) = of_type(bundle, "Encounter")
    assert len(allergies) == 2 and len(conditions) == 2
    penicillin = allergies[0]["resource"]
    assert penicillin["patient"]["reference"] == patient["fullUrl"]
    assert penicillin["reaction"][0]["severity"] == "severe" and penicillin["category"] == ["medication"]
    assert penicillin["code"]["coding"][0]["code"] == "7980"
    pain = conditions[0]["resource"]
    assert pain["code"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G89.4",
                                         "display": "Chronic pain syndrome"}
    assert pain["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert pain["encounter"]["reference"] == encounter["fullUrl"]
    assert pain["recordedDate"] == "2026-11-20T10:45:00-06:00"
    cover = coverage["resource"]
    assert cover["status"] == "active" and cover["beneficiary"]["reference"] == patient["fullUrl"]
    assert cover["payor"][0]["display"] == "Prairie Health Insurance"
    classes = {c["type"]["coding"][0]["code"]: c["value"] for c in cover["class"]}
    assert classes == {"group": "GRP-4410", "plan": "PPO-GOLD"}
    assert cover["relationship"]["coding"][0]["code"] == "self"
    # Re-delivery updates what the first delivery created: every clinical entry is a conditional update.
    for entry in allergies + conditions + [coverage]:
        assert entry["request"]["method"] == "PUT" and "?identifier=" in entry["request"]["url"]


def test_codes_and_identifiers_of_the_new_resources_use_absolute_uris(fhir_format):
    raw = message("A01", PID, PV1, "AL1|1|MA|12345^Latex^L|MI|Rash", "DG1|1||99^Local dx^99LOC|", *BACKGROUND[4:6])
    bundle = adt_bundle(fhir_format, raw)
    check_valid(bundle)
    for rtype in ("AllergyIntolerance", "Condition", "Coverage"):
        for entry in of_type(bundle, rtype):
            assert system_problems(entry["resource"]) == [], rtype
    latex = of_type(bundle, "AllergyIntolerance")[0]["resource"]
    assert latex["code"]["coding"][0]["system"] == "https://telemed-bridge.org/fhir/CodeSystem/v2-local/L"
    assert "category" not in latex  # MA, miscellaneous allergy, has no FHIR category


def test_an_a40_merge_is_delivered_as_a_patient_link(fhir_format):
    raw = message("A40", PID, "MRG|MRN00099999^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR")
    bundle = adt_bundle(fhir_format, raw)
    check_valid(bundle)
    (entry,) = of_type(bundle, "Patient")
    (link,) = entry["resource"]["link"]
    assert link["type"] == "replaces"
    assert link["other"]["identifier"]["value"] == "MRN00099999"
    assert link["other"]["identifier"]["system"] == "urn:oid:2.16.840.1.113883.3.999.2"
    # A create that found the survivor would drop the merge: a merged patient is a conditional update.
    assert entry["request"]["method"] == "PUT"


@pytest.mark.parametrize("kind", ["AllergyIntolerance", "Condition", "Coverage", "MergedPatient"])
def test_every_field_of_the_new_records_meets_the_required_bindings(fhir_format, kind):
    bundle = json.loads(fhir_format.encode([R.ALL[kind]()], {}))
    check_valid(bundle)


def test_entered_in_error_allergy_carries_no_clinical_status(fhir_format):
    allergy = R.allergy()
    allergy.verification_status = "entered-in-error"
    (entry,) = of_type(json.loads(fhir_format.encode([allergy], {})), "AllergyIntolerance")
    assert "clinicalStatus" not in entry["resource"]  # FHIR ait-2


@pytest.mark.parametrize(("change", "message_part"), [
    (lambda r: setattr(r, "patient", None), "patient is required"),
    (lambda r: setattr(r, "clinical_status", None), "clinical_status is required"),
])
def test_allergy_without_what_fhir_requires_is_refused_clearly(fhir_format, change, message_part):
    allergy = R.allergy()
    change(allergy)
    with pytest.raises(Exception, match=message_part) as caught:
        fhir_format.encode([allergy], {})
    assert "object at 0x" not in str(caught.value)


def test_coverage_without_a_payer_is_refused_clearly(fhir_format):
    coverage = R.coverage()
    coverage.payer_name, coverage.payer_identifiers = None, []
    with pytest.raises(Exception, match="needs a payer"):
        fhir_format.encode([coverage], {})

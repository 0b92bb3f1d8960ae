"""Agreement of our decoded records with Microsoft's FHIR converter on clinical fields (>= 90 %).

The comparison lives in benchmarks/hl7v2_conformance.py (which prints the table); run this test
with ``-s`` to see it here too. Disagreements are explained in docs/hl7v2.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hl7v2_conformance.py"
FIELDS = (
    "patient.identifiers", "patient.name", "patient.birth_date", "patient.gender", "patient.address",
    "encounter.class", "encounter.status", "encounter.period", "encounter.visit_number",
    "prescription.status", "prescription.intent", "prescription.medication", "prescription.quantity",
    "prescription.refills", "prescription.authored",
)


def load_conformance():
    spec = importlib.util.spec_from_file_location("hl7v2_conformance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def agreement() -> dict[str, tuple[int, int]]:
    module = load_conformance()
    result = module.table(module.all_rows())
    for field, (agree, total) in result.items():
        print(f"{field:28} {agree:>3}/{total:<3} {100 * agree / total:5.1f} %")
    return result


def test_every_sample_is_compared(agreement: dict[str, tuple[int, int]]) -> None:
    assert set(FIELDS) <= set(agreement)
    assert agreement["patient.name"][1] == 13  # 11 ADT (A01, A04, A08) + 2 RDE samples
    assert agreement["encounter.class"][1] == 11
    assert agreement["prescription.medication"][1] == 3  # RDE-O11-02 carries two orders
    assert "prescription.matched" not in agreement


@pytest.mark.parametrize("field", FIELDS)
def test_field_agrees_on_at_least_90_percent(agreement: dict[str, tuple[int, int]], field: str) -> None:
    agree, total = agreement[field]
    assert agree / total >= 0.9, f"{field}: {agree}/{total}"


def test_every_field_but_one_period_agrees_on_the_first_samples(agreement: dict[str, tuple[int, int]]) -> None:
    """ADT-A04-01's expected discharge (PV2-9) is the one difference left (docs/hl7v2.md)."""
    assert {f for f, (agree, total) in agreement.items() if agree < total} == {"encounter.period"}
    assert agreement["encounter.period"] == (10, 11)


def test_comparison_detects_a_wrong_value() -> None:
    """The comparison is not vacuous: a wrong gender or class is counted as a disagreement."""
    module = load_conformance()
    from bridge import HumanName, Patient

    wrong = Patient(name=HumanName(family="EVERYMAN", given=["ADAM"]), gender="female", birth_date="1988-08-18")
    fields = module.patient_fields(wrong, {"name": [{"family": "EVERYMAN", "given": ["ADAM", "A"]}],
                                           "gender": "male", "birthDate": "1988-08-18"})
    assert fields["patient.name"] and fields["patient.birth_date"]
    assert not fields["patient.gender"] and not fields["patient.identifiers"]


@pytest.fixture(scope="module")
def wide_samples() -> list[dict]:
    """The wide measurement of the benchmark, over the samples copied into the fixtures."""
    module = load_conformance()
    return module.wide(module.CORPUS / "fhir-converter-input", module.CORPUS / "fhir-converter-expected")


def test_every_fixture_sample_translates_to_fhir(wide_samples: list[dict]) -> None:
    assert len(wide_samples) >= 34  # ADT A01/A04/A05/A08/A13/A14/A16/A25, BAR, MDM, orders, ORU, OUL, RDE, REF, VXU
    assert [s["name"] for s in wide_samples if not s["translated"]] == []


def test_type_coverage_counts_their_resources_with_a_counterpart(wide_samples: list[dict]) -> None:
    """Each of their resources is covered at most once by one of ours of the same type."""
    for sample in wide_samples:
        for rtype, count in sample["theirs"].items():
            assert min(count, sample["ours"].get(rtype, 0)) <= count
        assert sample["theirs"].get("Patient", 0) == 0 or sample["ours"].get("Patient", 0) >= 1, sample["name"]
    oru = [s for s in wide_samples if s["name"] == "LAB-ORU-1"]
    assert oru and oru[0]["ours"]["Observation"] >= oru[0]["theirs"]["Observation"]


WIDE_FIELDS = (*FIELDS, "allergy.code", "condition.code", "coverage.payor", "coverage.subscriber_id",
               "observation.value", "observation.unit", "observation.interpretation", "immunization.vaccine",
               "immunization.lot", "service_request.code", "service_request.status", "service_request.intent")
EXPLAINED = {
    ("ADT-A04-01", "encounter.period"), ("ADT-A16-01", "encounter.period"),  # PV2-9 is no end of a visit
    ("REF-I14-01", "service_request.status"),  # a cancelled referral is revoked, not entered-in-error
    # the order a result reports on is an `order`, as the v2-to-FHIR IG's OBR map says (Microsoft: ORU filler-order)
    ("LRI_2.0-NG_CBC_Typ_Message", "service_request.intent"), ("ORU-R01-01", "service_request.intent"),
    ("RDE-O11-01", "observation.value"), ("RDE-O25-01", "observation.value"),  # CWE 160~120: both codes read
    ("RDS-O13-01", "observation.value"),  # the same OBX in a dispense
}
"""The disagreements over the fixture samples, each explained in docs/hl7v2.md."""


def test_wide_field_agreement_holds_where_both_produce_the_resource(wide_samples: list[dict]) -> None:
    module = load_conformance()
    result = module.table([row for sample in wide_samples for row in sample["rows"]])
    assert set(WIDE_FIELDS) <= set(result)
    assert result["patient.gender"][1] >= 34 and result["encounter.status"][1] >= 29
    for field, (agree, total) in result.items():
        # The fixtures over-represent the explained cases (period 27 of 29 here, 97 of 101 over all of
        # Microsoft's samples; referral status 5 of 6 here, 19 of 24 over all; the two ORUs' order
        # intent, 72 of 75 over all): those fields are held to exactly the explained misses below instead.
        if field not in ("encounter.period", "service_request.status", "service_request.intent"):
            assert agree / total >= 0.95, f"{field}: {agree}/{total}"
    misses = {(name.split("/")[0], field) for sample in wide_samples for name, field, ok in sample["rows"] if not ok}
    assert misses == EXPLAINED


def test_encounter_status_outside_adt_agrees_with_microsoft(wide_samples: list[dict]) -> None:
    """MDM, BAR, ORU, OUL, orders and pharmacy read the status from PV1 like an ADT update."""
    rows = [(s["name"], ok) for s in wide_samples for _, field, ok in s["rows"] if field == "encounter.status"]
    outside = [ok for name, ok in rows if not name.startswith("ADT")]
    assert len(outside) >= 12 and all(outside)


def test_new_record_fields_detect_a_wrong_value() -> None:
    """The added comparisons are not vacuous: a changed value, unit, code or status is a disagreement."""
    module = load_conformance()
    none = lambda ref: None  # noqa: E731
    theirs = {"resourceType": "Observation", "code": {"coding": [{"code": "8867-4"}]},
              "valueQuantity": {"value": 60, "unit": "/min", "code": "/min"},
              "interpretation": [{"coding": [{"code": "H"}]}]}
    same = module.resource_fields("Observation", theirs, theirs, none, none)
    assert all(same.values())
    wrong = {**theirs, "valueQuantity": {"value": 61, "unit": "beats", "code": "/min"}, "interpretation": []}
    assert not any(module.resource_fields("Observation", wrong, theirs, none, none).values())
    order = {"resourceType": "ServiceRequest", "code": {"coding": [{"code": "57698-3"}]}, "status": "active",
             "intent": "order"}
    other = {**order, "status": "revoked", "code": {"coding": [{"code": "24331-1"}]}}
    fields = module.resource_fields("ServiceRequest", order, other, none, none)
    assert fields == {"service_request.code": False, "service_request.status": False, "service_request.intent": True}
    cover = {"resourceType": "Coverage", "subscriberId": "HMO-1", "payor": [{"display": "Prairie Health"}]}
    fields = module.resource_fields("Coverage", cover, {**cover, "subscriberId": "HMO-2 "}, none, none)
    assert fields == {"coverage.payor": True, "coverage.subscriber_id": False}


def test_observations_pair_by_code_and_value_type_first() -> None:
    """Two OBX with one code (an image and a coded reading) pair with theirs of the same value type."""
    module = load_conformance()
    image = {"code": {"coding": [{"code": "AREA"}]}}
    coded = {"code": {"coding": [{"code": "AREA"}]}, "valueCodeableConcept": {"coding": [{"code": "OB-5"}]}}
    pairs = module.pair_by([image, coded], [coded], module.observation_codes, module.value_kind)
    assert pairs == [(coded, coded)]

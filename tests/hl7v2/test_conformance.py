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
    assert len(wide_samples) >= 18  # ADT A01/A04/A08, ORU R01, RDE O11
    assert [s["name"] for s in wide_samples if not s["translated"]] == []


def test_type_coverage_counts_their_resources_with_a_counterpart(wide_samples: list[dict]) -> None:
    """Each of their resources is covered at most once by one of ours of the same type."""
    for sample in wide_samples:
        for rtype, count in sample["theirs"].items():
            assert min(count, sample["ours"].get(rtype, 0)) <= count
        assert sample["theirs"].get("Patient", 0) == 0 or sample["ours"].get("Patient", 0) >= 1, sample["name"]
    oru = [s for s in wide_samples if s["name"] == "LAB-ORU-1"]
    assert oru and oru[0]["ours"]["Observation"] >= oru[0]["theirs"]["Observation"]


def test_wide_field_agreement_holds_where_both_produce_the_resource(wide_samples: list[dict]) -> None:
    module = load_conformance()
    result = module.table([row for sample in wide_samples for row in sample["rows"]])
    assert result["patient.gender"][1] >= 18
    for field, (agree, total) in result.items():
        if field != "encounter.status":
            assert agree / total >= 0.9, f"{field}: {agree}/{total}"
    # Known (docs/hl7v2.md): outside ADT we read no Encounter status from PV1 (ORU, RDE samples).
    status_misses = {name.split("/")[0] for sample in wide_samples for name, field, ok in sample["rows"]
                     if field == "encounter.status" and not ok}
    assert status_misses and not any(name.startswith("ADT") for name in status_misses)

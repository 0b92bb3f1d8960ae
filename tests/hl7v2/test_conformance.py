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

"""BAR and DFT: the patient's diagnoses, insurance, relatives, guarantors and observations become
records (billing_background.py, guarantors.py), carried, so the message still goes back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import bridge.plugins.fhir as fhir_plugin
from bridge import Condition, Coverage, Encounter, Observation, RelatedPerson, ServiceRequest
from bridge.plugins.fhir.bindings import bundle_violations
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages
from bridge.testing import plugin_manager
from tests.hl7v2 import fidelity

INPUT = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
FHIR_OPTS = {"default_timezone": "+00:00"}


def sample(name: str) -> bytes:
    return (INPUT / f"{name}.hl7").read_bytes()


def of(records: list, kind: type) -> list:
    return [r for r in records if isinstance(r, kind)]


def test_a_bills_diagnoses_insurance_and_people_are_records_of_its_patient() -> None:
    records = decode(sample("BAR-P01-01"), {})
    visit = records[0]
    assert isinstance(visit, Encounter) and visit.patient is not None
    (condition,) = of(records, Condition)
    assert condition.code.code == "422504002" and condition.patient is visit.patient  # DG1-3
    (coverage,) = of(records, Coverage)
    assert coverage.subscriber_id and coverage.patient is visit.patient  # IN1
    kin, guarantor, mother = of(records, RelatedPerson)
    assert kin.name.family == "Evan"  # NK1-2
    assert (guarantor.name.family, [c.code for c in guarantor.relationship]) == ("RADIANT", ["BRO"])  # GT1-3, -11
    assert [i.value for i in guarantor.identifiers] == ["1516"]  # GT1-2
    assert [c.code for c in mother.relationship] == ["MTH"]  # PID-21
    heart_rate, injury = of(records, Observation)  # the OBX; ACC-8 (test_death_accident_observations.py)
    assert heart_rate.code[0].code == "8867-4" and heart_rate.encounter is visit
    assert injury.code[0].code == "11374-6" and injury.patient is visit.patient
    assert all(r.extra["hl7v2"]["carried"] for r in records[1:])


def test_a_bill_with_its_new_records_still_goes_back_unchanged() -> None:
    raw = sample("DFT-P03-01")
    records = decode(raw, {})
    assert [c.code.code for c in of(records, Condition)] == ["29857009", "68235000"]  # both DG1
    (billed,) = of(records, ServiceRequest)  # the charge's common order: ORC RE, ORC-5 CM, OBR-4
    assert (billed.status, billed.intent, billed.code[0].code) == ("completed", "order", "57698-3")
    assert {i.value for i in billed.identifiers} == {"PLACER", "FILLER"}
    tally = fidelity.compare(read_messages(raw)[0], read_messages(encode(records, FHIR_OPTS))[0])
    assert tally.ratio == 1.0, tally.losses


def test_a_bill_reaches_fhir_with_each_record_as_a_resource() -> None:
    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")
    bundle = json.loads(fhir.encode(decode(sample("BAR-P01-01"), {}), FHIR_OPTS))
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    for rtype in ("Condition", "Coverage", "RelatedPerson", "Observation", "AllergyIntolerance"):
        assert rtype in types, rtype
    assert not bundle_violations(bundle)


SELF_GUARANTEED = (
    "MSH|^~\\&|BILL|HOSP|FIN|HOSP|20260105120000||BAR^P01^BAR_P01|B1|P|2.5\r"
    "EVN|P01|20260105120000\r"
    "PID|1||MRN1^^^HOSP^MR||DOE^JANE||19800101|F\r"
    "PV1|1|O\r"
    "GT1|1|G1|DOE^JANE||||||||SEL\r"
    "GT1|2||||||||||||||||||||HOSPITAL FOUNDATION\r"  # GT1-21: an organization
    "DG1|1||R52^Pain, unspecified^I10\r"
    "PID|2||MRN2^^^HOSP^MR||ROE^RICHARD||19700101|M\r"
    "PV1|1|O\r"
    "DG1|1||M54.5^Low back pain^I10\r"
).encode()


def test_a_guarantor_who_is_the_patient_or_names_nobody_is_no_related_person() -> None:
    records = decode(SELF_GUARANTEED, {})
    assert of(records, RelatedPerson) == []  # GT1-11 SEL is the patient; the second GT1 names no one
    # Only the first patient's segments are read: the second PID group's DG1 stays kept, not read.
    assert [c.code.code for c in of(records, Condition)] == ["R52"]
    assert all(c.patient is records[0].patient for c in of(records, Condition))

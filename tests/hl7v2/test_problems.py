"""PPR^PC1/PC2/PC3: a patient's problem list as Condition records (problem-list-item), back to HL7v2
unchanged and to FHIR valid — chronic pain is a problem the Texas rule asks about."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle

from bridge import Condition, DecodeError, localize_records
from bridge.plugins.fhir.bindings import bundle_violations
from bridge.testing import plugin_manager

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
SAMPLES = {"PC1-Problem-Add-v2.3.1.hl7": ("596.5", "active", None),
           "PC1-Problem-Update-v2.3.1.hl7": ("786.5", "resolved", None),
           "PC1-Problem-Delete-v2.3.1.hl7": ("300.7", None, "entered-in-error")}


@pytest.fixture(scope="module")
def formats():
    found = plugin_manager().formats()
    return found["hl7v2"], found["fhir"]


@pytest.mark.parametrize("name", SAMPLES)
def test_each_problem_is_a_condition_back_unchanged_and_valid_in_fhir(formats, name):
    hl7, fhir = formats
    raw = (CORPUS / name).read_bytes()
    (problem,) = hl7.decode(raw, {})
    code, clinical, verification = SAMPLES[name]
    assert isinstance(problem, Condition) and problem.category == "problem-list-item"
    assert (problem.code.code, problem.code.system) == (code, "I9")
    assert (problem.clinical_status, problem.verification_status) == (clinical, verification)
    assert problem.patient.name.family == "KARLS" and problem.onset == "2004-06-29"
    again = hl7.encode([problem], {}).decode().split("\r")
    sent = raw.decode("utf-8-sig").replace("\n", "\r").split("\r")
    assert [s.strip() for s in again[1:] if s.strip()] == [s.strip() for s in sent[1:] if s.strip()]
    localize_records([problem], ZoneInfo("America/Chicago"))
    bundle = json.loads(fhir.encode([problem], {}))
    Bundle.model_validate(bundle)
    assert bundle_violations(bundle) == []
    (resource,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"]
    assert resource["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-9-cm"
    assert ("clinicalStatus" in resource) == (clinical is not None)  # con-5: none on an entered-in-error


def test_a_problem_message_without_a_patient_or_a_problem_is_refused_with_the_reason(formats):
    hl7, _ = formats
    raw = (CORPUS / "PC1-Problem-Add-v2.3.1.hl7").read_bytes().decode("utf-8-sig").replace("\n", "\r")
    without_pid = "\r".join(s for s in raw.split("\r") if not s.startswith("PID"))
    with pytest.raises(DecodeError, match="PPR\\^PC1 names no patient .*: nothing says whose problem list it is"):
        hl7.decode(without_pid.encode(), {})
    without_prb = "\r".join(s for s in raw.split("\r") if not s.startswith("PRB"))
    with pytest.raises(DecodeError, match="PPR\\^PC1 has no PRB segment: no problem to record"):
        hl7.decode(without_prb.encode(), {})


def test_a_vxu_without_rxa_is_its_patients_record_with_a_warning(formats):
    """Real feeds update a registry's demographics with a VXU that carries no vaccination: its patient
    is decoded (warned), written back unchanged, and valid in FHIR; with no patient either it is refused."""
    hl7, fhir = formats
    raw = (b"MSH|^~\\&|EHR|CLINIC|IIS|STATE|20240501083000||VXU^V04^VXU_V04|V1|P|2.5.1\r"
           b"PID|1||MRN-V1^^^CLINIC^MR||Testkid^Riley||20200101|F\r"
           b"NK1|1|Testkid^Jordan|MTH^Mother^HL70063\r")
    records = hl7.decode(raw, {})
    patient = records[0]
    assert patient.kind == "Patient" and patient.name.family == "Testkid"
    assert patient.extra["hl7v2"]["warnings"] == ["VXU^V04 without RXA: the patient's record decoded, no vaccination"]
    assert [r.kind for r in records[1:]] == ["RelatedPerson"]
    assert hl7.encode(records, {}).split(b"\r")[1:] == raw.split(b"\r")[1:]
    Bundle.model_validate(json.loads(fhir.encode(records, {})))

"""Issue 13, first slice, done when: a lab ORU arrives at a FHIR server as a DiagnosticReport with one
Observation per OBX (values, units, flags), exactly once even when delivered again, and a pain score
sent as an OBX arrives as a survey Observation a registry can follow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.testing import engine_from_dict
from bridge.testing.fakes.fhir_server import FakeFhirServer
from tests.e2e.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
CBC = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input" / "LRI_2.0-NG_CBC_Typ_Message.hl7"
PAIN = (
    "MSH|^~\\&|EHR|CLINIC|TB|TB|20261127091500||ORU^R01^ORU_R01|PAIN-1|P|2.5.1\r"
    "PID|1||MRN00012345^^^CLINIC^MR||TESTPATIENT^ALEX||19800412|F\r"
    "OBR|1|PA-77^CLINIC||38208-5^Pain severity - Reported^LN|||20261127090400|||||||||||||||||F\r"
    "OBX|1|NM|72514-3^Pain severity - 0-10 verbal numeric rating [Score] - Reported^LN||6||||||F|||20261127090400\r"
)


@pytest.fixture
def lab_engine(tmp_path):
    with FakeFhirServer() as server:
        config = {
            "channels": {
                "lab-in": {"source": "mllp://127.0.0.1:0", "format": "hl7v2", "timezone": "America/Chicago",
                           "routes": [{"when": {"record": ["DiagnosticReport", "Observation"]},
                                       "to": ["ehr-fhir"]}]},
            },
            "destinations": {"ehr-fhir": {"url": server.base.replace("http://", "fhir+http://"), "format": "fhir"}},
            "engine": {"poll_seconds": 0.05},
        }
        engine = engine_from_dict(config, tmp_path)
        engine.start()
        try:
            yield engine, server
        finally:
            engine.stop()


def _delivered(engine, receipt) -> bool:
    return engine.store.get_message(receipt.message_id).status == "delivered"


def test_cbc_arrives_as_a_report_with_one_observation_per_obx_exactly_once(lab_engine):
    engine, server = lab_engine
    receipt = engine.submit("lab-in", CBC.read_bytes())
    wait_for(lambda: _delivered(engine, receipt))
    (report,) = server.all("DiagnosticReport")
    observations = {f"Observation/{o['id']}": o for o in server.all("Observation")}
    (patient,) = server.all("Patient")
    assert len(observations) == 28 and len(report["result"]) == 28
    assert {r["reference"] for r in report["result"]} == set(observations)
    assert report["subject"]["reference"] == f"Patient/{patient['id']}"
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations.values()}
    wbc = by_code["26464-8"]
    assert wbc["valueQuantity"]["value"] == 105600 and wbc["valueQuantity"]["code"] == "{cells}/uL"
    assert wbc["interpretation"][0]["coding"][0]["code"] == "HH"
    assert wbc["subject"]["reference"] == f"Patient/{patient['id']}"
    hemoglobin = by_code["718-7"]
    assert (hemoglobin["valueQuantity"]["value"], hemoglobin["valueQuantity"]["unit"]) == (12.5, "grams per milliliter")
    assert hemoglobin["interpretation"][0]["coding"][0]["code"] == "L"
    assert by_code["6742-1"]["valueString"] == "Many spherocytes present."

    engine.store.replay(receipt.message_id, reason="lab resent the report", actor="test", force=True)
    wait_for(lambda: [m.status for m in engine.store.search(channel="lab-in")] == ["delivered"] * 2)
    assert server.count()["Observation"] == 28 and server.count()["DiagnosticReport"] == 1


def test_pain_score_arrives_as_a_survey_observation(lab_engine):
    engine, server = lab_engine
    receipt = engine.submit("lab-in", PAIN.encode())
    wait_for(lambda: _delivered(engine, receipt))
    (pain,) = server.all("Observation")
    assert pain["category"][0]["coding"][0]["code"] == "survey"
    assert pain["valueQuantity"] == {"value": 6, "unit": "{score}", "system": "http://unitsofmeasure.org",
                                     "code": "{score}"}
    assert pain["effectiveDateTime"] == "2026-11-27T09:04:00-06:00"  # the channel's zone, not a guess

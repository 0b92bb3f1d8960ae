"""Issues 3 and 4, done when:

- `bridge run` with an MLLP channel receives a telehealth ADT^A04 from `bridge send`, answers AA after
  storing it, and delivers the decoded encounter to its routes (two real processes on loopback);
- an HL7v2 telehealth ADT^A04 sent over MLLP comes out at a FHIR server on loopback as a valid Patient
  and a VR Encounter, exactly once even when delivered twice; and a prescription arriving as canonical
  JSON becomes a MedicationRequest there, exactly once too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge import Delivery
from bridge.plugins.hl7v2.mllp import MLLPDestination
from bridge.testing import engine_from_dict
from bridge.testing.fakes.fhir_server import FakeFhirServer
from tests.e2e.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ADT = ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7"
PRESCRIPTION = ROOT / "examples" / "messages" / "prescription.json"





def test_bridge_send_to_bridge_run_over_mllp(tmp_path):
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          adt-in:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            routes: [{{when: {{record: Encounter}}, to: [visits]}}]
        destinations:
          visits: {{url: "file://outbox", format: bridge}}
    """))
    env = {**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"}
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: _accepts(port))
        sent = subprocess.run([sys.executable, "-m", "bridge.cli", "send", "--to", f"mllp://127.0.0.1:{port}",
                               str(ADT)], capture_output=True, text=True, timeout=60, env=env)
        assert sent.returncode == 0, sent.stderr
        assert "AA" in sent.stdout and "TV20261127-0001" in sent.stdout
        delivered = wait_for(lambda: list((tmp_path / "outbox").glob("*.json")) if (tmp_path / "outbox").exists()
                             else None)
        (encounter,) = json.loads(delivered[0].read_text())["records"]
        assert encounter["kind"] == "Encounter" and encounter["modality"] == "video"
        assert encounter["patient_location"]["state"] == "IA"
        assert encounter["patient"]["identifiers"][0]["value"] == "MRN00012345"
    finally:
        engine.terminate()
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    assert "Traceback" not in err


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def fhir_engine(tmp_path):
    with FakeFhirServer() as server:
        config = {
            "channels": {
                "adt-in": {"source": "mllp://127.0.0.1:0", "format": "hl7v2",
                           "routes": [{"when": {"record": "Encounter"}, "to": ["ehr-fhir"]}]},
                "platform": {"source": "file://inbox", "format": "bridge",
                             "routes": [{"when": {"record": "Prescription"}, "to": ["ehr-fhir"]}]},
            },
            "destinations": {"ehr-fhir": {"url": server.base.replace("http://", "fhir+http://"), "format": "fhir",
                                          "options": {"default_timezone": "-06:00"}}},
            "engine": {"poll_seconds": 0.05},
        }
        engine = engine_from_dict(config, tmp_path)
        engine.start()
        try:
            yield engine, server
        finally:
            engine.stop()


def send_mllp(port: int, raw: bytes, attempt: int = 1) -> str:
    sender = MLLPDestination(_dest_ctx(f"mllp://127.0.0.1:{port}"))
    try:
        return sender.send(Delivery(outbox_id=attempt, message_id=attempt, destination="test", payload=raw,
                                    media_type="x-application/hl7-v2+er7", file_extension="hl7", attempt=1))
    finally:
        sender.close()


def _dest_ctx(url: str):
    from bridge import DestinationContext

    return DestinationContext(url=url, name="test", options={}, config_dir=".")


def test_adt_over_mllp_lands_once_at_a_fhir_server_as_patient_and_vr_encounter(fhir_engine):
    engine, server = fhir_engine
    port = next(s.port for s in engine.sources if getattr(s, "scheme", "") == "mllp")
    assert send_mllp(port, ADT.read_bytes()).startswith("AA")
    wait_for(lambda: server.count().get("Encounter"))
    (patient,) = server.all("Patient")
    (encounter,) = server.all("Encounter")
    assert encounter["class"]["code"] == "VR"
    assert encounter["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    assert any(i["value"] == "MRN00012345" for i in patient["identifier"])

    # delivered twice: a corrected resend (new control id, same visit) and an operator replay
    resend = ADT.read_bytes().replace(b"TV20261127-0001", b"TV20261127-0002")
    assert send_mllp(port, resend, attempt=2).startswith("AA")
    first = engine.store.search(channel="adt-in")[-1]
    engine.store.replay(first.id, reason="EHR asked for a resend", actor="test")
    wait_for(lambda: len([m for m in engine.store.search(channel="adt-in") if m.status == "delivered"]) == 3)
    assert server.count()["Patient"] == 1 and server.count()["Encounter"] == 1  # exactly once


def test_canonical_json_prescription_becomes_one_medication_request(fhir_engine):
    engine, server = fhir_engine
    raw = PRESCRIPTION.read_bytes()
    first = engine.submit("platform", raw)
    wait_for(lambda: engine.store.get_message(first.message_id).status == "delivered")
    (request,) = server.all("MedicationRequest")
    number = json.loads(raw)["records"][0]["prescriber_order_number"]
    assert any(i["value"] == number for i in request["identifier"])
    assert request["intent"] and request["dispenseRequest"]["quantity"]["value"] > 0
    codings = request.get("medicationCodeableConcept", {}).get("coding", []) or [
        c for m in server.all("Medication") for c in m["code"]["coding"]]
    assert any(c["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm" for c in codings)
    engine.store.replay(first.message_id, reason="delivered twice on purpose", actor="test", force=True)
    wait_for(lambda: all(m.status == "delivered" for m in engine.store.search(channel="platform")))
    assert server.count()["MedicationRequest"] == 1

"""Issue 6: a BLOCKed prescription is refused to its source at once — HL7v2 AR with the reasons in ERR
over MLLP, HTTP 422 with an OperationOutcome for FHIR — while the bytes are kept and the decision
recorded. The example prescription, turned into an audio-only oxycodone one, is the case."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge import record_from_dict
from bridge.plugins.hl7v2.ack import ack_code_of
from bridge.plugins.hl7v2.mllp import MLLPClient
from bridge.testing import listening_engine, plugin_manager

ROOT = Path(__file__).resolve().parents[2]


def audio_only_oxycodone():
    doc = json.loads((ROOT / "examples" / "messages" / "prescription.json").read_text())
    rx = copy.deepcopy(doc["records"][0])
    rx["medication"] = {"description": "oxycodone hydrochloride 5 MG Oral Tablet", "rxnorm": "7804",
                        "dea_schedule": "CII", "strength": "5 mg", "form": "tablet"}
    rx["refills"] = 0
    rx["encounter"]["modality"] = "audio_only"
    rx["encounter"].pop("last_in_person_visit", None)
    return record_from_dict(rx)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("TB_INBOUND_TOKEN", "inbound-secret")
    config = {
        "channels": {
            "orders-mllp": {"source": "mllp://127.0.0.1:0", "format": "hl7v2", "routes": [{"to": ["out"]}]},
            "orders-fhir": {"source": "fhir+http://127.0.0.1:0/fhir/r4", "format": "fhir",
                            "options": {"token_env": "TB_INBOUND_TOKEN"}, "routes": [{"to": ["out"]}]},
        },
        "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
    }
    with listening_engine(config, tmp_path, plugin_manager()) as engine:
        yield engine


def source(engine, channel):
    return next(s for s in engine.sources if s.ctx.channel == channel)


def test_blocked_prescription_gets_ar_with_the_rules_over_mllp(engine):
    rde = plugin_manager().format("hl7v2").encode([audio_only_oxycodone()], {"message_control_id": "RX-AUDIO-1"})
    client = MLLPClient("127.0.0.1", source(engine, "orders-mllp").port, ack_timeout=10)
    try:
        answer = client.exchange(rde)
    finally:
        client.close()
    code, control, text = ack_code_of(answer)
    assert (code, control) == ("AR", "RX-AUDIO-1")
    assert "blocked by policy" in text and "R6" in text and "1307.41" in text  # the rule and its basis
    (stored,) = engine.store.search(channel="orders-mllp")
    engine.drain()
    message = engine.store.get_message(stored.id)
    assert message.status == "rejected" and "R6" in message.error
    assert engine.store.outbox_rows(message_id=stored.id) == []


def test_blocked_prescription_gets_422_with_the_rules_over_fhir(engine):
    bundle = plugin_manager().format("fhir").encode([audio_only_oxycodone()], {})
    port = source(engine, "orders-fhir").port
    request = urllib.request.Request(f"http://127.0.0.1:{port}/fhir/r4", data=bundle, method="POST", headers={
        "Content-Type": "application/fhir+json", "Authorization": "Bearer inbound-secret"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422
    outcome = json.load(refused.value)
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "business-rule"
    assert "R6" in diagnostics and "blocked by policy" in diagnostics
    (stored,) = engine.store.search(channel="orders-fhir")
    engine.drain()
    assert engine.store.get_message(stored.id).status == "rejected"


def test_a_prescription_held_for_review_is_acknowledged_aa(engine):
    """REVIEW is not a refusal: the message is accepted and waits for an operator."""
    doc = json.loads((ROOT / "examples" / "messages" / "prescription-needs-review.json").read_text())
    rde = plugin_manager().format("hl7v2").encode([record_from_dict(doc["records"][0])],
                                                  {"message_control_id": "RX-OK-1"})
    client = MLLPClient("127.0.0.1", source(engine, "orders-mllp").port, ack_timeout=10)
    try:
        code, control, _ = ack_code_of(client.exchange(rde))
    finally:
        client.close()
    assert (code, control) == ("AA", "RX-OK-1")
    engine.drain()
    (stored,) = engine.store.search(channel="orders-mllp")
    assert engine.store.get_message(stored.id).status == "held"

"""Lanes end to end in one engine: order keys read at intake, batches of lane heads, per-key order."""

from __future__ import annotations

import pytest

from bridge.core.config import ChannelConfig
from bridge.core.intake import order_key_for
from bridge.core.store.base import NewOutbox, ProcessingResult
from bridge.errors import ConfigError
from bridge.plugin_types import MessageHeader
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import encounter_message, prescription_message
from tests.core.test_pipeline import make_engine


def channel(by: str) -> ChannelConfig:
    return ChannelConfig(name="visits", source="", format="bridge", order_by=by)


@pytest.mark.parametrize("by, expected", [
    ("patient", "patient:MRN7"), ("encounter", "encounter:V9"), ("prescription", "prescription:RX1"),
    ("channel", "channel:visits"), ("none", None),
])
def test_order_key_follows_order_by(by, expected):
    header = MessageHeader(patient_id="MRN7", encounter_id="V9", prescription_number="RX1", keys_read=True)
    assert order_key_for(channel(by), header) == expected


def test_a_peek_that_reads_no_keys_keeps_the_channel_in_one_lane():
    assert order_key_for(channel("patient"), MessageHeader(control_id="C1")) == "channel:visits"


def test_a_message_without_the_key_is_a_lane_of_its_own():
    assert order_key_for(channel("encounter"), MessageHeader(patient_id="MRN7", keys_read=True)) is None


def test_each_builtin_format_reads_its_order_keys_at_intake():
    from pathlib import Path

    plugins = plugin_manager()
    root = Path(__file__).resolve().parents[2]
    hl7 = plugins.format("hl7v2").peek((root / "examples/messages/adt-a04-telehealth.hl7").read_bytes())
    assert (hl7.patient_id, hl7.encounter_id, hl7.keys_read) == ("MRN00012345", "V100234", True)
    rde = plugins.format("hl7v2").peek((root / "examples/messages/rde-o11-inpatient-morphine.hl7").read_bytes())
    assert rde.prescription_number == "RB-ORD-7781"
    ncpdp = plugins.format("ncpdp").peek((root / "tests/fixtures/ncpdp/rxchangerequest.xml").read_bytes())
    assert (ncpdp.patient_id, ncpdp.prescription_number) == ("MRN-000417", "TB-ORD-1001")
    fhir = plugins.format("fhir").peek(
        (root / "tests/fixtures/fhir/r4-examples/medicationrequest0321.json").read_bytes())
    assert (fhir.patient_id, fhir.prescription_number, fhir.keys_read) == ("pat1", "medrx0321", True)
    bridge = plugins.format("bridge").peek(prescription_message("RX-9", patient="MRN5", encounter="E1"))
    assert (bridge.patient_id, bridge.encounter_id, bridge.prescription_number) == ("MRN5", "E1", "RX-9")
    assert plugins.format("bridge").peek(b"{not json").keys_read is False


def test_the_hl7v2_lane_key_is_the_patient_the_decoder_finds():
    from pathlib import Path

    from bridge import keys_of

    fmt = plugin_manager().format("hl7v2")
    raw = (Path(__file__).resolve().parents[2] / "examples/messages/adt-a04-telehealth.hl7").read_bytes()
    assert fmt.peek(raw).patient_id == keys_of(fmt.decode(raw, {})).patient_id


def test_a_batch_processes_different_patients_together_and_one_patient_in_order(tmp_path, scripted):
    engine = make_engine(tmp_path, scripted)
    a = engine.submit("visits", encounter_message(1, patient="P1"))
    b = engine.submit("visits", encounter_message(2, patient="P1"))
    c = engine.submit("visits", encounter_message(3, patient="P2"))
    assert engine.process_batch() == 2  # the heads of P1 and P2; b waits behind a
    assert engine.store.get_message(b.message_id).status == "received"
    assert engine.deliver_batch() == 2
    assert engine.process_batch() == 1 and engine.deliver_batch() == 1
    sent = [d.message_id for d in scripted.sent["ehr"]]
    assert sorted(sent[:2]) == sorted([a.message_id, c.message_id]) and sent[2] == b.message_id
    assert engine.store.outbox_rows(message_id=b.message_id)[0].order_key == "patient:P1"


def test_order_by_channel_is_one_lane_for_the_whole_channel(tmp_path, scripted):
    engine = make_engine(tmp_path, scripted, order={"by": "channel"})
    for n in range(3):
        engine.submit("visits", encounter_message(n, patient=f"P{n}"))
    assert engine.process_batch() == 1 and engine.process_batch() == 1


def test_a_result_the_store_refuses_fails_alone(tmp_path, scripted, monkeypatch):
    engine = make_engine(tmp_path, scripted)
    bad = engine.submit("visits", encounter_message(1, patient="P1"))
    good = engine.submit("visits", encounter_message(2, patient="P2"))
    real = engine.processor._judge

    def unstorable_once(decoded, trace):
        if decoded.claim.id == bad.message_id:  # a NULL payload breaks a NOT NULL constraint in the store
            return ProcessingResult(status="routed", outbox=[NewOutbox("ehr", None, "x", "x", None, "strict")])
        return real(decoded, trace)

    monkeypatch.setattr(engine.processor, "_judge", unstorable_once)
    assert engine.process_batch() == 2
    assert engine.store.get_message(bad.message_id).status == "failed"
    assert "internal error while storing" in engine.store.get_message(bad.message_id).error
    assert engine.store.get_message(good.message_id).status == "routed"


@pytest.mark.parametrize("engine_body, problem", [
    ({"processes": -1}, ("engine.processes", "must be at least 0, got -1")),
    ({"batch_size": 0}, ("engine.batch_size", "must be at least 1, got 0")),
    ({"processes": "two"}, ("engine.processes", "expected a whole number, got 'two'")),
])
def test_engine_processes_and_batch_size_are_checked(tmp_path, engine_body, problem):
    config = {"engine": engine_body, "channels": {}, "destinations": {}}
    with pytest.raises(ConfigError) as err:
        engine_from_dict(config, tmp_path, plugin_manager())
    assert problem in err.value.problems


def test_order_by_names_channel_among_the_choices(tmp_path):
    config = {"channels": {"v": {"source": "file://in", "format": "bridge", "order": {"by": "ward"}}},
              "destinations": {}}
    with pytest.raises(ConfigError) as err:
        engine_from_dict(config, tmp_path, plugin_manager())
    assert ("channels.v.order.by", "expected one of patient, encounter, prescription, channel, none, got 'ward'") \
        in err.value.problems

"""The prescription lifecycle across messages: sent, accepted, dispensed, cancelled; correlation."""

from __future__ import annotations

import json

import pytest

from bridge import FormatSpec, MessageHeader, hookimpl
from bridge.core.lifecycle import InboundEvent, advance, target_state
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import prescription_message


@pytest.mark.parametrize("event, current, expected", [
    (InboundEvent("Status", code="000"), "sent", "accepted"),
    (InboundEvent("Status", code="010"), "sent", None),
    (InboundEvent("Error", code="900"), "sent", "rejected"),
    (InboundEvent("RxFill", fill_status="Dispensed"), "accepted", "dispensed"),
    (InboundEvent("RxFill", fill_status="PartiallyDispensed"), "accepted", "partially-dispensed"),
    (InboundEvent("RxFill", fill_status="NotDispensed"), "accepted", "not-dispensed"),
    (InboundEvent("RxFill", fill_status="Transferred"), "accepted", "transferred"),
    (InboundEvent("RxFill", fill_status="Dispensed"), "partially-dispensed", "dispensed"),
    (InboundEvent("RxFill", fill_status="Dispensed"), "sent", "dispensed"),         # Status 000 lost
    (InboundEvent("Status", code="000"), "dispensed", None),                        # late: no regress
    (InboundEvent("CancelRxResponse", code="Approved"), "cancel-requested", "cancelled"),
    (InboundEvent("CancelRxResponse", code="Denied"), "cancel-requested", "cancel-denied"),
    (InboundEvent("RxRenewalRequest"), "dispensed", None),
])
def test_transitions_only_move_forward(event, current, expected):
    assert advance(current, target_state(event)) == expected


class FakeScript:
    """A format standing in for SCRIPT: encodes `NEWRX|<id>` or `CANCELRX|<id>`, peeks the transaction."""

    @hookimpl
    def bridge_formats(self):
        def encode(records, options):
            kind = "CANCELRX" if records[0].status == "cancel-requested" else "NEWRX"
            return f"{kind}|{options['message_control_id']}".encode()

        def peek(raw):
            kind, control = raw.decode().split("|")
            return MessageHeader(control_id=control, message_type={"NEWRX": "NewRx", "CANCELRX": "CancelRx"}[kind])

        return [FormatSpec(name="fake-script", media_type="text/plain", decode=lambda r, o: [], encode=encode,
                           peek=peek)]


def event_message(event_type, *, relates_to=None, number=None, message_id, **fields):
    record = {"kind": "PrescriptionEvent", "event_type": event_type, "message_id": message_id, **fields}
    if relates_to:
        record["relates_to_message_id"] = relates_to
    if number:
        record["prescriber_order_number"] = number
    envelope = {"schema": "telemed-bridge/1", "message_id": f"cb-{message_id}", "records": [record]}
    return json.dumps(envelope).encode()


@pytest.fixture
def engine(tmp_path, scripted):
    plugins = plugin_manager(("scripted", scripted.plugin()), ("fake-script", FakeScript()),
                             disabled=("telehealth_policy",))  # the gate has its own suite
    config = {
        "channels": {
            "platform": {"source": "file://in", "format": "bridge",
                         "routes": [{"when": {"record": "Prescription"}, "to": ["switch"]},
                                    {"when": {"record": "PrescriptionEvent"}, "to": ["ehr"]}]},
            "callbacks": {"source": "file://cb", "format": "bridge",
                          "routes": [{"when": {"record": "PrescriptionEvent"}, "to": ["ehr"]}]},
        },
        "destinations": {"switch": {"url": "script://switch", "format": "fake-script"},
                         "ehr": {"url": "script://ehr", "format": "bridge"}},
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_destinations()
    return engine


def test_a_prescription_story_in_one_timeline(engine, scripted):
    rx = engine.submit("platform", prescription_message("RX-100")).message_id
    engine.drain()
    assert engine.store.prescription("RX-100").state == "sent"
    control_id = scripted.sent["switch"][0].payload.decode().split("|")[1]

    status = engine.submit("callbacks", event_message("Status", relates_to=control_id, code="000",
                                                      message_id="SW-1")).message_id
    fill = engine.submit("callbacks", event_message("RxFill", number="RX-100", fill_status="Dispensed",
                                                    message_id="PH-2")).message_id
    again = engine.submit("callbacks", event_message("RxFill", number="RX-100", fill_status="Dispensed",
                                                     message_id="PH-2"))
    assert again.duplicate  # switches retry callbacks: idempotent on the NCPDP MessageID
    engine.drain()

    assert engine.store.prescription("RX-100").state == "dispensed"
    story = [(e.detail["event_type"], e.detail["to"]) for e in engine.store.events(rx) if e.kind == "prescription"]
    assert story == [("NewRx", "sent"), ("Status", "accepted"), ("RxFill", "dispensed")]
    trace = engine.store.get_message(rx).trace_id
    assert engine.store.get_message(status).trace_id == trace  # linked by RelatesToMessageID
    assert engine.store.get_message(fill).trace_id == trace    # linked by the order number
    by = [e["matched_by"] for e in engine.store.prescription_events("RX-100")]
    assert by == ["outbound", "relates_to_message_id", "prescriber_order_number"]
    assert len(scripted.sent["ehr"]) == 2  # the events are routed onward too


def test_out_of_order_callbacks_do_not_regress(engine, scripted):
    rx = engine.submit("platform", prescription_message("RX-200")).message_id
    engine.drain()
    engine.submit("callbacks", event_message("RxFill", number="RX-200", fill_status="Dispensed", message_id="A"))
    engine.submit("callbacks", event_message("Status", number="RX-200", code="000", message_id="B"))
    engine.drain()
    assert engine.store.prescription("RX-200").state == "dispensed"
    last = [e for e in engine.store.events(rx) if e.kind == "prescription"][-1]
    assert last.detail["event_type"] == "Status" and "out of order" in last.detail["note"]


def test_unmatched_event_is_kept_and_visible(engine):
    orphan = engine.submit("callbacks", event_message("RxFill", number="NOPE", fill_status="Dispensed",
                                                      message_id="X-1")).message_id
    engine.drain()
    (row,) = engine.store.prescription_events(unmatched=True)
    assert row["message_id"] == orphan and row["event_type"] == "RxFill"
    assert "unmatched" in [e.kind for e in engine.store.events(orphan)]
    assert engine.store.get_message(orphan).status == "delivered"  # still routed onward, never dropped


def test_renewal_request_opens_a_task(engine):
    engine.submit("platform", prescription_message("RX-300"))
    engine.drain()
    engine.submit("callbacks", event_message("RxRenewalRequest", number="RX-300", message_id="R-1"))
    engine.drain()
    state = engine.store.prescription("RX-300")
    assert state.open_task == "renewal" and state.state == "sent"

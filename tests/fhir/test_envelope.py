"""The inbound message's envelope (HL7v2 MSH, SFT, EVN) as FHIR MessageHeader, Provenance, Device
and Organization: read, localized in the channel's zone, stable across redelivery, optional."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge import MessageEnvelope, localize_envelope, localize_records
from bridge.core.model.times import load_zone
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2
from bridge.testing import engine_from_dict

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
ADT = ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7"
ZONE = "America/Chicago"


def _raw(name: str = "ADT-A01-01.hl7") -> bytes:
    return (CORPUS / name).read_bytes()


def _bundle(raw: bytes, **options: Any) -> dict[str, Any]:
    """HL7v2 → FHIR as the engine does it: records and envelope localized in the channel zone."""
    records = HL7V2.decode(raw, {})
    localize_records(records, ZONE)
    envelope = HL7V2.envelope(raw)
    assert envelope is not None
    return json.loads(FHIR.encode(records, {"source_envelope": localize_envelope(envelope, load_zone(ZONE)),
                                            **options}))


def _of(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def test_hl7v2_envelope_reads_msh_sft_and_evn() -> None:
    env = HL7V2.envelope(_raw())
    assert isinstance(env, MessageEnvelope)
    assert (env.message_type, env.control_id, env.sent_at) == ("ADT^A01^ADT_A01", "MSG00001", "1989-08-18T11:26+02:15")
    assert env.sending_application.name == "ADTApp"
    assert (env.sending_facility.name, env.sending_facility.universal_id) == ("GHHSFacility", "2.16.840.1.122848.1.30")
    assert env.receiving_application.name == "EHRApp" and env.receiving_facility.name == "GHHRFacility"
    (sft,) = env.software
    assert (sft.vendor, sft.version, sft.product, sft.binary_id) == ("Orion", "2.4.3.52854", "Rhapsody", "2.4.3")
    assert (env.event_reason.code, env.event_reason.system) == ("01", "HL70062")
    assert env.operator.name.family == "Woolfson" and env.event_recorded == "2029-08-01T07:06:24+01:15"


def test_a_batch_has_no_single_envelope() -> None:
    one = ADT.read_bytes().strip()
    assert HL7V2.envelope(one) is not None
    assert HL7V2.envelope(one + b"\r" + one.replace(b"TV20261127-0001", b"TV2")) is None


def test_message_header_names_event_sender_receiver_software_and_focus() -> None:
    bundle = _bundle(_raw())
    (header,) = [e["resource"] for e in _of(bundle, "MessageHeader")]
    assert header["eventCoding"] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0003", "code": "A01",
                                     "display": "ADT^A01^ADT_A01"}
    assert header["source"]["name"] == "ADTApp"
    assert (header["source"]["software"], header["source"]["version"]) == ("Rhapsody", "2.4.3.52854")
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    sender = by_url[header["sender"]["reference"]]
    assert sender["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.840.1.122848.1.30"}]
    assert by_url[header["destination"][0]["receiver"]["reference"]]["name"] == "GHHRFacility"
    assert by_url[header["destination"][0]["target"]["reference"]]["deviceName"][0]["name"] == "EHRApp"
    assert by_url[header["enterer"]["reference"]]["resourceType"] == "Practitioner"
    roots = [e["fullUrl"] for e in bundle["entry"] if e.get("extension")]
    assert [f["reference"] for f in header["focus"]] == roots  # the message's records


def test_provenance_of_the_message_and_of_the_event() -> None:
    bundle = _bundle(_raw())
    message, event = [e["resource"] for e in _of(bundle, "Provenance")]
    others = {e["fullUrl"] for e in bundle["entry"]
              if e["resource"]["resourceType"] not in ("MessageHeader", "Provenance", "Device")}
    assert {t["reference"] for t in message["target"]} >= {e["fullUrl"] for e in bundle["entry"]
                                                           if e.get("extension")}
    assert {t["reference"] for t in message["target"]} <= others | {e["fullUrl"] for e in _of(bundle, "Device")}
    assert message["recorded"] == "1989-08-18T11:26:00+02:15"  # MSH-7, with the offset it was sent with
    assert message["entity"][0]["what"]["identifier"]["value"] == "MSG00001"
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    assert by_url[message["agent"][0]["who"]["reference"]]["resourceType"] == "Device"
    assert event["recorded"] == "2029-08-01T07:06:24+01:15" and event["occurredDateTime"].startswith("2021-08-17")
    assert event["agent"][0]["type"]["coding"][0]["code"] == "enterer"
    assert event["reason"][0]["coding"][0]["code"] == "01"


def test_redelivery_gives_the_same_bundle_and_another_message_other_ids() -> None:
    raw = _raw()
    assert _bundle(raw) == _bundle(raw)
    other = _bundle(raw.replace(b"|MSG00001|", b"|MSG00002|"))
    first = {e["resource"]["id"] for e in _of(_bundle(raw), "MessageHeader") + _of(_bundle(raw), "Provenance")}
    second = {e["resource"]["id"] for e in _of(other, "MessageHeader") + _of(other, "Provenance")}
    assert first and not first & second
    (entry,) = _of(_bundle(raw), "MessageHeader")
    assert entry["request"] == {"method": "PUT", "url": f"MessageHeader/{entry['resource']['id']}"}
    devices = _of(_bundle(raw), "Device")
    assert devices and all(d["request"]["method"] == "POST" and "ifNoneExist" in d["request"] for d in devices)


def test_envelope_false_leaves_the_envelope_out() -> None:
    bundle = _bundle(_raw(), envelope=False)
    assert not _of(bundle, "MessageHeader") and not _of(bundle, "Provenance")
    # the applications' Devices go; the instrument of an OBX-18 is the result's own (Observation.device)
    devices = [d["fullUrl"] for d in _of(bundle, "Device")]
    results = [e["resource"] for e in _of(bundle, "Observation")]
    assert devices and sorted(devices) == sorted({o["device"]["reference"] for o in results if "device" in o})
    assert _of(_bundle(_raw(), envelope="false"), "MessageHeader") == []  # as --option gives it


def test_a_time_without_offset_gives_no_provenance_rather_than_a_guessed_one() -> None:
    raw = _raw()
    records = HL7V2.decode(raw, {})
    localize_records(records, ZONE)
    envelope = HL7V2.envelope(raw.replace(b"198908181126+0215", b"198908181126"))  # not localized
    bundle = json.loads(FHIR.encode(records, {"source_envelope": envelope}))
    assert len(_of(bundle, "MessageHeader")) == 1
    assert len(_of(bundle, "Provenance")) == 1  # the event's (EVN-2 has an offset); not the message's


def test_the_engine_passes_the_localized_envelope_to_a_fhir_destination(tmp_path) -> None:
    config = {"channels": {"adt": {"source": "file://inbox", "format": "hl7v2", "timezone": ZONE,
                                   "routes": [{"to": ["ehr-fhir"], "when": {"record": ["Encounter"]}}]}},
              "destinations": {"ehr-fhir": {"url": "file://outbox", "format": "fhir", "retry": {"max_attempts": 1}}}}
    engine = engine_from_dict(config, tmp_path)
    engine.open_destinations()
    raw = ADT.read_bytes().replace(b"20261127092500-0600||ADT", b"20261127092500||ADT")  # MSH-7 local time
    receipt = engine.submit("adt", raw)
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "delivered"
    (path,) = sorted((tmp_path / "outbox").glob("*.json"))
    bundle = json.loads(path.read_text())
    (header,) = [e["resource"] for e in _of(bundle, "MessageHeader")]
    assert header["eventCoding"]["code"] == "A04" and header["source"]["name"] == "TELEVISIT"
    (message,) = [e["resource"] for e in _of(bundle, "Provenance") if "entity" in e["resource"]]
    assert message["recorded"] == "2026-11-27T09:25:00-06:00"  # the channel's zone made MSH-7 exact


def test_an_envelope_reader_that_raises_costs_only_the_envelope(tmp_path) -> None:
    import dataclasses

    def broken(raw: bytes) -> MessageEnvelope:
        raise RuntimeError("a plugin bug")

    config = {"channels": {"adt": {"source": "file://inbox", "format": "hl7v2", "timezone": ZONE,
                                   "routes": [{"to": ["ehr-fhir"]}]}},
              "destinations": {"ehr-fhir": {"url": "file://outbox", "format": "fhir", "retry": {"max_attempts": 1}}}}
    engine = engine_from_dict(config, tmp_path)
    plans = engine.processor.channels
    plans["adt"] = dataclasses.replace(plans["adt"], format=dataclasses.replace(plans["adt"].format, envelope=broken))
    engine.open_destinations()
    receipt = engine.submit("adt", ADT.read_bytes())
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "delivered"
    (path,) = sorted((tmp_path / "outbox").glob("*.json"))
    bundle = json.loads(path.read_text())
    assert _of(bundle, "Encounter") and not _of(bundle, "MessageHeader")

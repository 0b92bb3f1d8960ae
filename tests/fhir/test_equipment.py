"""The instrument of a result (HL7v2 OBX-18, issue 13): an Observation's equipment identifiers, a FHIR
Device the Observation references (created once, never overwritten), and back."""

from __future__ import annotations

import json

from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import DiagnosticReport, Identifier, Observation
from bridge.plugins.fhir.bindings import bundle_violations
from bridge.plugins.fhir.equipment import SID_EQUIPMENT_KEY
from bridge.plugins.hl7v2.codec import decode as hl7_decode
from bridge.plugins.hl7v2.codec import encode as hl7_encode

OPTS = {"message_datetime": "2026-11-26T10:00:00-06:00"}
EQUIPMENT = "EI12.3^NI2^426d2726-51fc-89fe-a946-8596e80a80eb^GUID~^^1.3.6.1.4.1.44750.1.2.2^ISO"


def oru(obx_18: str = EQUIPMENT, control: str = "1") -> bytes:
    obx = "|".join(["OBX", "1", "NM", "718-7^Hemoglobin^LN", "", "11.8", "g/dL", "12.0-16.0", "L", "", "", "F",
                    "", "", "", "", "", "", obx_18])
    return "\r".join([
        f"MSH|^~\\&|LAB|RIVERBEND|TB|TB|20261126110200||ORU^R01^ORU_R01|CTL{control}|P|2.5",
        "PID|1||MRN00012345^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR||Testpatient^Alex^J||19800412|F",
        "OBR|1|ORD-5521|LAB-778120|58410-2^CBC panel^LN|||20261126074500-0600", obx]).encode() + b"\r"


def result(raw: bytes) -> Observation:
    (report,) = [r for r in hl7_decode(raw, OPTS) if isinstance(r, DiagnosticReport)]
    (obs,) = report.observations
    return obs


def bundle(fhir_format, raw: bytes) -> dict:
    return json.loads(fhir_format.encode(hl7_decode(raw, OPTS), {}))


def devices(doc: dict) -> list[dict]:
    return [e for e in doc["entry"] if e["resource"]["resourceType"] == "Device"]


def test_obx_18_repetitions_are_the_instruments_identifiers() -> None:
    assert result(oru()).equipment == [
        Identifier(value="EI12.3", system="urn:uuid:426d2726-51fc-89fe-a946-8596e80a80eb", assigner="NI2"),
        Identifier(value="urn:oid:1.3.6.1.4.1.44750.1.2.2", system="urn:ietf:rfc:3986")]
    assert result(oru("")).equipment == []


def test_the_observation_references_one_device_created_if_absent(fhir_format) -> None:
    doc = bundle(fhir_format, oru())
    (device,) = devices(doc)
    (obs,) = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert obs["device"] == {"reference": device["fullUrl"]}
    first, second = device["resource"]["identifier"]
    assert second == {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.3.6.1.4.1.44750.1.2.2"}
    assigner = first.pop("assigner")
    assert first == {"system": "urn:uuid:426d2726-51fc-89fe-a946-8596e80a80eb", "value": "EI12.3"}
    authority = next(e["resource"] for e in doc["entry"] if e["fullUrl"] == assigner["reference"])
    assert assigner["display"] == "NI2" and authority["resourceType"] == "Organization"  # EI.2, as every assigner
    assert device["request"] == {"method": "POST", "url": "Device",
                                 "ifNoneExist": "identifier=urn:uuid:426d2726-51fc-89fe-a946-8596e80a80eb|EI12.3"}
    assert bundle_violations(doc) == []
    R4BBundle.model_validate(doc)


def test_an_instrument_named_only_in_a_namespace_gets_a_stable_derived_key(fhir_format) -> None:
    def key(raw: bytes) -> str:
        (device,) = devices(bundle(fhir_format, raw))
        return device["request"]["ifNoneExist"]

    assert key(oru("Unknown^3DHISTECH")).startswith(f"identifier={SID_EQUIPMENT_KEY}|")
    assert key(oru("Unknown^3DHISTECH", "1")) == key(oru("Unknown^3DHISTECH", "2"))
    assert key(oru("Unknown^3DHISTECH")) != key(oru("Unknown^LEICA"))


def test_the_equipment_decodes_back_from_fhir(fhir_format) -> None:
    for raw in (oru(), oru("Unknown^3DHISTECH")):
        back = fhir_format.decode(fhir_format.encode(hl7_decode(raw, OPTS), {}), {})
        (report,) = [r for r in back if isinstance(r, DiagnosticReport)]
        assert report.observations[0].equipment == result(raw).equipment  # our derived key left out


def test_obx_18_round_trips_as_sent_and_is_written_for_a_result_from_elsewhere() -> None:
    records = hl7_decode(oru(), OPTS)
    (obx,) = [s for s in hl7_encode(records, {}).decode().split("\r") if s.startswith("OBX")]
    assert obx.split("|")[18] == EQUIPMENT
    (report,) = [r for r in records if isinstance(r, DiagnosticReport)]
    report.observations[0].extra = {}  # as if built from FHIR: nothing kept
    (obx,) = [s for s in hl7_encode(records, {}).decode().split("\r") if s.startswith("OBX")]
    assert obx.split("|")[18] == "EI12.3^NI2^426d2726-51fc-89fe-a946-8596e80a80eb^UUID~^^1.3.6.1.4.1.44750.1.2.2^ISO"

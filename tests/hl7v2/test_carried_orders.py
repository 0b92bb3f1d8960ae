"""Issue 13, resource counts: the companion records of SIU, MDM, ORU, OUL and RDE^O11 — the orders
behind them, an SIU's booked services and patient group, an OUL's loose specimens, the PID-21
mother, an RDE^O11's insurance — decoded from Microsoft's samples, carried (the HL7v2 output is the
one the main records alone give), and rendered as FHIR resources with stable, conditional keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bridge.plugins.fhir as fhir_plugin
from bridge import (
    Appointment,
    ClinicalNote,
    Condition,
    Coverage,
    DiagnosticReport,
    Identifier,
    Observation,
    Patient,
    Prescription,
    RelatedPerson,
    ServiceRequest,
    Specimen,
    record_to_dict,
)
from bridge.plugins.fhir.bindings import bundle_violations
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages
from bridge.testing import plugin_manager
from tests.hl7v2 import fidelity

INPUT = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "sending_application": "TB"}
FHIR_OPTS = {"default_timezone": "+00:00"}


def sample(name: str) -> bytes:
    return (INPUT / f"{name}.hl7").read_bytes()


def of(records: list, cls: type) -> list:
    return [r for r in records if isinstance(r, cls)]


def main(records: list) -> list:
    return [r for r in records if not r.extra.get("hl7v2", {}).get("carried")]


def fhir_bundle(records: list) -> dict:
    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")
    return json.loads(fhir.encode(records, FHIR_OPTS))


@pytest.mark.parametrize("name", ["SIU-S12-01", "SIU-S12-02", "SIU-S15-02", "MDM-T02-02", "MDM-T02-03",
                                  "ORU-R01-01", "LRI_2.0-NG_CBC_Typ_Message", "OUL-R22-01", "OUL-R24-02",
                                  "RDE-O11-01", "RDE-O11-02"])
def test_companions_follow_the_main_records_and_add_nothing_to_the_hl7v2_output(name: str) -> None:
    records = decode(sample(name), {})
    first = main(records)
    assert records[:len(first)] == first and len(records) > len(first)  # main records first, then companions
    assert all(r.extra == {"hl7v2": {"carried": True}}
               for r in records[len(first):] if r.kind != "DiagnosticReport")  # an OUL's reports keep more
    out = encode(records, OPTS)
    assert out == encode(first, OPTS)  # the encoder writes nothing for a carried record
    assert fidelity.compare(read_messages(sample(name))[0], read_messages(out)[0]).ratio == 1.0
    assert [record_to_dict(r) for r in decode(out, {})] == [record_to_dict(r) for r in records]


def test_an_siu_books_a_service_per_ais() -> None:
    records = decode(sample("SIU-S12-02"), {})
    appointment = records[0]
    assert isinstance(appointment, Appointment)
    cbc, xray = of(records, ServiceRequest)
    assert [c.code for c in cbc.code] == ["58410-2"] and [c.code for c in xray.code] == ["42272-5"]  # AIS-3
    assert cbc.notes == ["Fasting for Blood sugar before appointment"]  # the NTE right after the AIS
    assert (cbc.status, cbc.intent, cbc.identifiers) == ("active", "filler-order", [])  # AIS-10 Booked
    assert cbc.patient is appointment.patient
    with_start = of(decode(sample("SIU-S12-01"), {}), ServiceRequest)[0]
    assert with_start.occurrence.start == "2021-09-24T09:30:00+02:15"  # AIS-4


@pytest.mark.parametrize(("name", "status"), [
    ("SIU-S17-02", "entered-in-error"),  # AIS-10 Deleted
    ("SIU-S26-02", "active"),  # AIS-10 Noshow: the order stands, the slot was missed
    ("SIU-S15-02", "revoked"),  # AIS-10 empty: the appointment's cancellation is the service's
    ("SIU-S13-02", "active"),
])
def test_a_booked_services_status_is_its_filler_status_else_the_appointments(name: str, status: str) -> None:
    assert {r.status for r in of(decode(sample(name), {}), ServiceRequest)} == {status}


def test_a_changed_filler_status_changes_the_service_only() -> None:
    raw = sample("SIU-S12-02").replace(b"LN|||||||Booked|", b"LN|||||||Cancelled|", 1)
    cbc, xray = of(decode(raw, {}), ServiceRequest)
    assert (cbc.status, xray.status) == ("revoked", "active")


def test_an_siu_patient_group_gives_its_observation_and_diagnosis() -> None:
    records = decode(sample("SIU-S12-01"), {})
    (rate,) = of(records, Observation)
    (colitis,) = of(records, Condition)
    assert rate.code[0].code == "8867-4" and rate.value_quantity.value == 72  # OBX before RGS
    assert colitis.code.code == "64766004"  # DG1-3
    (mother,) = of(records, RelatedPerson)
    assert mother.relationship[0].code == "MTH" and mother.identifiers[0].value == "1212121"  # PID-21
    assert {r.patient is records[0].patient for r in records[1:]} == {True}


def test_a_result_with_its_orc_names_the_order_it_fulfils() -> None:
    records = decode(sample("ORU-R01-01"), {})
    report, order, document, patient_obx, *billing = records
    assert patient_obx.kind == "Observation"  # the OBX before the order (PATIENT_OBSERVATION)
    assert [r.kind for r in billing] == ["EpisodeOfCare", "ChargeItem"]  # PV1-54, FT1 (docs/hl7v2.md)
    # TXA: the document the result announces (TXA-2 DIS, TXA-17 AU), read as an MDM's, without text
    assert (document.kind, document.note_type.code, document.status, document.text) == (
        "ClinicalNote", "DIS", "final", None)
    assert document.patient is report.patient and document.extra["hl7v2"]["carried"]
    assert isinstance(report, DiagnosticReport) and isinstance(order, ServiceRequest)
    assert order.status == "completed" and order.intent == "order"  # ORC-5 CM; intent as the IG's OBR map
    assert order.filler_view  # the lab's view of it: keyed by its filler number in FHIR
    # ORC-3 is the filler number; ORC-2 is empty, so the placer number is OBR-2's (the IG's rule)
    assert {(i.value, i.type) for i in order.identifiers} == {("986", "FILL"), ("845439", "PLAC")}
    assert order.code[0].code == report.code[0].code == "625-4"
    assert order.patient is report.patient


def test_a_result_without_orc_names_no_order_so_a_report_we_write_decodes_to_itself() -> None:
    records = decode(sample("LAB-ORU-1"), {})
    assert [r.kind for r in records] == ["DiagnosticReport", "DiagnosticReport", "Account"]  # and PID-18's
    raw = sample("LAB-ORU-1").decode().replace("\n", "\r")
    obr = next(line for line in raw.split("\r") if line.startswith("OBR"))
    with_orc = raw.replace(obr, "ORC|RE|88502218|82503246\r" + obr, 1).encode()
    (order,) = of(decode(with_orc, {}), ServiceRequest)
    # ORC-1 RE (results follow) says nothing of the order's state, ORC-5 is empty: unknown
    assert order.status == "unknown" and [i.value for i in order.identifiers] == ["88502218", "82503246"]


def test_an_oul_gives_its_orders_and_the_specimen_no_report_holds() -> None:
    records = decode(sample("OUL-R22-01"), {})
    (order,) = of(records, ServiceRequest)
    (specimen,) = of(records, Specimen)  # SPM before the OBR: no report's group reads it
    assert specimen.specimen_type.code == "SKBP" and specimen.extra == {"hl7v2": {"carried": True}}
    assert order.status == "completed"  # ORC-5 CM (the OUL's ORC follows its OBR)
    later = decode(sample("OUL-R24-01"), {})  # SPM after the OBR: the report's own, not repeated
    assert of(later, Specimen) == [] and of(later, DiagnosticReport)[0].specimens


def test_a_documents_orders_are_service_requests_but_its_text_is_no_observation() -> None:
    records = decode(sample("MDM-T02-03"), {})
    note, order = records[0], of(records, ServiceRequest)
    assert isinstance(note, ClinicalNote) and note.text.count("\n") == 28  # 29 TX lines: the document
    assert of(records, Observation) == []
    (order,) = order
    assert order.intent == "order" and order.code[0].code == "625-4" and order.status == "active"  # ORC-1 NW


def test_an_rde_o11_carries_the_patients_insurance_and_mother() -> None:
    records = decode(sample("RDE-O11-02"), {})
    assert [r.kind for r in records[:2]] == ["Prescription", "Prescription"]
    (coverage,) = of(records, Coverage)
    (mother,) = of(records, RelatedPerson)
    assert coverage.patient is records[0].patient and mother.patient is records[0].patient
    assert of(records, Prescription) == records[:2]
    one = decode(sample("RDE-O11-01"), {})
    (rate,) = of(one, Observation)  # the OBX of the order group
    assert rate.code[0].code == "8867-4" and rate.patient is one[0].patient
    assert rate.extra == {"hl7v2": {"carried": True}}
    assert [o.code[0].code for o in of(decode(sample("RDE-O25-01"), {}), Observation)] == ["8867-4"]


def test_companions_reach_fhir_valid_and_with_stable_conditional_keys() -> None:
    for name in ("SIU-S12-02", "ORU-R01-01", "MDM-T02-02", "OUL-R22-02", "RDE-O11-01"):
        bundle = fhir_bundle(decode(sample(name), {}))
        assert bundle_violations(bundle) == [], name
        again = fhir_bundle(decode(sample(name), {}))
        assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in bundle["entry"]], name
        requests = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
        assert bool(requests) == (name != "RDE-O11-01"), name
        # conditional: a re-sent message updates them instead of adding more
        assert all("?" in e["request"]["url"] or "ifNoneExist" in e["request"] for e in requests), name


def test_a_filler_order_is_keyed_by_its_filler_number_never_the_placers() -> None:
    bundle = fhir_bundle(decode(sample("ORU-R01-01"), {}))
    entry, parent = sorted((e for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"),
                           key=lambda e: "code" not in e["resource"])
    # ORC-8 names the parent order by number: created only if absent, so it overwrites nothing either
    assert parent["request"] == {"method": "POST", "url": "ServiceRequest", "ifNoneExist": "identifier=PAI-8.1"}
    assert entry["request"]["url"].endswith("identifier=urn:oid:2.16.840.1.114222.4.3.3.5.1.2|986")
    patient = Patient(identifiers=[Identifier(value="MRN1", type="MR", system="urn:oid:1.2.3")])
    placer_only = ServiceRequest(identifiers=[Identifier(value="P1", type="PLAC")], status="active",
                                 intent="filler-order", patient=patient)
    lab_view = ServiceRequest(identifiers=[Identifier(value="P1", type="PLAC")], status="active",
                              intent="order", filler_view=True, patient=patient)
    placed = ServiceRequest(identifiers=[Identifier(value="P1", type="PLAC")], status="active",
                            intent="order", patient=patient)
    urls = [e["request"]["url"] for e in fhir_bundle([placer_only, lab_view, placed])["entry"]
            if e["resource"]["resourceType"] == "ServiceRequest"]
    assert urls[2].endswith("identifier=P1")  # the placer's own order, by its number
    # not P1: neither may overwrite the placer's; the filler's view is not a matter of intent
    assert all("service-request-key" in url for url in urls[:2])


def test_the_filler_view_survives_a_fhir_round_trip() -> None:
    """The flag travels as the filler-view extension, so a FHIR hop keeps the keying."""
    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")
    records = decode(sample("ORU-R01-01"), {})
    order = next(r for r in records if isinstance(r, ServiceRequest))
    back = next(r for r in fhir.decode(fhir.encode(records, FHIR_OPTS), {}) if isinstance(r, ServiceRequest))
    assert (order.filler_view, back.filler_view, back.intent) == (True, True, "order")


def test_a_booked_services_derived_key_follows_patient_code_and_start() -> None:
    def key(raw: bytes) -> list[str]:
        return [e["request"]["url"] for e in fhir_bundle(decode(raw, {}))["entry"]
                if e["resource"]["resourceType"] == "ServiceRequest"]

    raw = sample("SIU-S12-01")
    assert key(raw) == key(raw) and "service-request-key" in key(raw)[0]
    assert key(raw.replace(b"20210924093000+0215|||50", b"20210925093000+0215|||50", 1)) != key(raw)


def test_the_derived_key_does_not_come_back_from_fhir() -> None:
    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")
    records = decode(sample("SIU-S12-01"), {})
    back = of(fhir.decode(fhir.encode(records, FHIR_OPTS), {}), ServiceRequest)
    assert back and all(r.identifiers == [] for r in back)

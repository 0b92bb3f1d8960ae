"""Issue 13, resource counts: the records an ADT (and a message kept whole) carries beside its
visit — NK1 next of kin and the PID-21 mother as RelatedPersons, OBX as Observations — decoded from
Microsoft's samples, rendered as FHIR, and written back to HL7v2 unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bridge.plugins.fhir as fhir_plugin
from bridge import Encounter, Observation, RelatedPerson, record_to_dict
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages
from bridge.testing import plugin_manager
from tests.hl7v2 import fidelity

INPUT = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "sending_application": "TB"}
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

VRDR = {"85699-7", "74497-9", "11374-6"}  # PDA/ACC flags (test_death_accident_observations.py)


def sample(name: str) -> bytes:
    return (INPUT / f"{name}.hl7").read_bytes()


def of(records: list, cls: type) -> list:
    return [r for r in records if isinstance(r, cls)]


def test_an_adt_gives_its_mother_next_of_kin_and_observations() -> None:
    records = decode(sample("ADT-A01-01"), {})
    visit = records[0]
    assert isinstance(visit, Encounter)
    mother, kin = of(records, RelatedPerson)
    assert [(c.code, c.system) for c in mother.relationship] == [("MTH", ROLE)]
    assert mother.identifiers[0].value == "1212121" and mother.identifiers[0].type == "AND"  # PID-21
    assert mother.name.family == "SMITH" and mother.name.use == "maiden"  # PID-6, her maiden name
    assert kin.name.family == "Evan" and kin.relationship[0].code == "EMC"  # NK1-2, NK1-3
    (obs,) = [o for o in of(records, Observation) if o.code[0].code not in VRDR]  # the OBX
    assert obs.code[0].code == "8867-4" and obs.status == "preliminary"  # OBX-3, OBX-11 P
    for record in (mother, kin, obs):
        assert record.patient is visit.patient and record.extra == {"hl7v2": {"carried": True}}
    assert obs.encounter is visit


def test_an_adt_observation_keeps_value_units_and_range() -> None:
    (obs,) = [o for o in of(decode(sample("ADT-A06-01"), {}), Observation) if o.code[0].code not in VRDR]
    # OBX-6 beats/min^^ISO: a code and its system, no text; FHIR's unit is text, so none is invented
    quantity = obs.value_quantity
    assert (quantity.value, quantity.code, quantity.system, quantity.unit) == (44.0, "beats/min", "ISO", None)
    assert obs.units.code == "beats/min"  # all of OBX-6, written back as sent
    assert obs.reference_range.text == "70-80" and obs.status == "final"
    assert obs.effective == "1999-07-02"


@pytest.mark.parametrize("name", ["ADT-A01-01", "ADT-A06-01", "ADT-A28-01", "ADT04-23"])
def test_companions_go_back_inside_the_adt_they_came_with(name: str) -> None:
    raw = sample(name)
    records = decode(raw, {})
    assert of(records, RelatedPerson)
    out = encode(records, OPTS)
    assert len(read_messages(out)) == 1
    assert fidelity.compare(read_messages(raw)[0], read_messages(out)[0]).ratio == 1.0
    assert [record_to_dict(r) for r in decode(out, {})] == [record_to_dict(r) for r in records]


def test_no_mother_without_her_identifier() -> None:
    raw = sample("ADT-A01-01").decode("utf-8-sig").replace("\n", "\r")
    pid = next(line for line in raw.split("\r") if line.startswith("PID"))
    fields = pid.split("|")
    fields[21] = ""  # PID-6 (maiden name) alone identifies no one
    records = decode(raw.replace(pid, "|".join(fields)).encode(), {})
    assert [p.relationship[0].code for p in of(records, RelatedPerson)] == ["EMC"]


def test_a_kept_message_carries_the_mother_last() -> None:
    """Orders, referrals, dispenses and immunizations: the mother follows the message's own records,
    so a group the encoder writes as one message stays together. An SIU's appointment stays first,
    its companions (tests/hl7v2/test_carried_orders.py) carried, so it is still written as one SIU."""
    records = decode(sample("RDS-O13-01"), {})
    assert isinstance(records[-1], RelatedPerson) and records[-1].relationship[0].code == "MTH"
    assert records[-1].patient is records[0].patient
    assert encode(records, OPTS).count(b"MSH|") == 1
    siu = decode(sample("SIU-S12-01"), {})
    assert siu[0].kind == "Appointment" and all(r.extra["hl7v2"].get("carried") for r in siu[1:])
    assert encode(siu, OPTS).count(b"MSH|") == 1


def test_companions_reach_fhir_as_resources_of_the_patient() -> None:
    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")
    bundle = json.loads(fhir.encode(decode(sample("ADT-A01-01"), {}), {}))
    resources = [e["resource"] for e in bundle["entry"]]
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    people = [r for r in resources if r["resourceType"] == "RelatedPerson"]
    assert len(people) == 3 and all(p["patient"]["reference"] == patient_url for p in people)
    mother = next(p for p in people if p["relationship"][0]["coding"][0]["code"] == "MTH")
    # IN1-17 SPO: the insured is the patient's spouse, a person of her own that Coverage.subscriber names
    (coverage,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Coverage"]
    insured = next(e for e in bundle["entry"] if e["fullUrl"] == coverage["resource"]["subscriber"]["reference"])
    assert insured["resource"]["name"][0]["family"] == "Doe" and "contained" not in coverage["resource"]
    assert insured["resource"]["identifier"][0]["value"] == "HMO-12345"  # IN1-49, with its OID system
    assert insured["request"]["url"].startswith("RelatedPerson?identifier=urn:oid:2.16.840.1.113883.1.3")
    assert mother["name"][0]["use"] == "maiden" and mother["name"][0]["family"] == "SMITH"
    (obs,) = [r for r in resources if r["resourceType"] == "Observation"
              and r["code"]["coding"][0]["code"] not in VRDR]
    assert obs["subject"]["reference"] == patient_url and obs["code"]["coding"][0]["code"] == "8867-4"
    again = json.loads(fhir.encode(decode(sample("ADT-A01-01"), {}), {}))
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in bundle["entry"]]  # stable ids


def test_a_lab_orders_specimens_are_records_of_the_patient() -> None:
    from bridge import ServiceRequest, Specimen
    records = decode(sample("OML-O21-01"), {})
    (sample_,) = of(records, Specimen)
    (order,) = of(records, ServiceRequest)
    assert [(i.value, i.type) for i in sample_.identifiers] == [("2012545", "PLAC"), ("2012999999", "FILL")]
    assert sample_.specimen_type.code == "ASERU" and sample_.collection_method.code == "BCAE"  # SPM-4, SPM-7
    assert sample_.collected.start == "2011-01-03T14:34:28-08:00" and sample_.received == "2012-03-01"
    assert sample_.patient is order.patient and sample_.extra == {"hl7v2": {"carried": True}}
    assert [c.code for c in order.specimen_types] == ["ASERU"]  # the order still names what it needs
    three = of(decode(sample("OML-O21-03"), {}), Specimen)
    assert len(three) == sum(1 for line in sample("OML-O21-03").split(b"\n") if line.startswith(b"SPM"))
    out = encode(records, OPTS)
    assert fidelity.compare(read_messages(sample("OML-O21-01"))[0], read_messages(out)[0]).ratio == 1.0


def test_a_referrals_results_are_reports_with_their_observations() -> None:
    from bridge import DiagnosticReport, ServiceRequest
    raw = sample("REF-I12-02")
    records = decode(raw, {})
    (referral,) = of(records, ServiceRequest)
    first, second = of(records, DiagnosticReport)
    assert first.code[0].code == "22310-7" and second.code[0].code == "SCAN"  # OBR-4 of each OBR
    positive = first.observations[0]
    assert (positive.value_text, [c.code for c in positive.interpretation]) == ("Positive", ["A"])
    assert [o.code[0].code for o in first.observations] == ["22310-7", "3DHISTECH_PREVIEWCAM"]
    assert [o.code[0].code for o in second.observations] == ["8867-4"]
    for report in (first, second):
        assert report.patient is referral.patient and report.extra == {"hl7v2": {"carried": True}}
        assert all(o.extra == {} for o in report.observations)
    out = encode(records, OPTS)
    assert fidelity.compare(read_messages(raw)[0], read_messages(out)[0]).ratio == 1.0
    assert [record_to_dict(r) for r in decode(out, {})] == [record_to_dict(r) for r in records]


def test_a_dispense_carries_the_order_it_fills() -> None:
    from bridge import Prescription, PrescriptionEvent
    records = decode(sample("RDS-O13-01"), {})
    (fill,) = of(records, PrescriptionEvent)
    (order,) = of(records, Prescription)
    assert order.prescriber_order_number == fill.prescriber_order_number == "1163422591"
    assert order.intent == "filler-order" and order.medication.ndc == "01151327"  # the RXE, as an RDE's
    assert order.patient is fill.patient and order.extra == {"hl7v2": {"carried": True}}
    two = of(decode(sample("RDS-O13-02"), {}), Prescription)
    assert [rx.medication.codings[0].code for rx in two] == ["01151327", "0143963401"]  # one per ORC
    out = encode(records, OPTS)
    assert fidelity.compare(read_messages(sample("RDS-O13-01"))[0], read_messages(out)[0]).ratio == 1.0


def test_a_refill_order_carries_the_patients_insurance() -> None:
    from bridge import Coverage, Prescription
    records = decode(sample("RDE-O25-01"), {})
    (coverage,) = of(records, Coverage)
    first = of(records, Prescription)[0]
    assert coverage.patient is first.patient and coverage.extra == {"hl7v2": {"carried": True}}
    assert coverage.payer_name or coverage.payer_identifiers
    o11 = decode(sample("RDE-O11-01"), {})  # an RDE^O11 carries it too, after its orders
    (carried,) = of(o11, Coverage)
    assert carried.extra == {"hl7v2": {"carried": True}} and isinstance(o11[0], Prescription)


def test_a_units_text_is_the_senders_and_a_bare_code_stays_readable() -> None:
    """FHIR's Quantity.unit is the human-readable text: the sender's CWE.2, never a code copied in;
    a code without a system cannot be a Quantity code (qty-3), so it stays readable as the unit."""
    from bridge import Coding
    from bridge.plugins.hl7v2.results import quantity

    texted = quantity(5.0, Coding(code="mg/dL", display="milligrams per decilitre", system="UCUM"))
    coded = quantity(5.0, Coding(code="mg/dL", system="UCUM"))
    bare = quantity(5.0, Coding(code="mg/dL"))
    assert (texted.unit, texted.code) == ("milligrams per decilitre", "mg/dL")
    assert (coded.unit, coded.code) == (None, "mg/dL")
    assert (bare.unit, bare.code) == ("mg/dL", None)


def test_the_insured_person_survives_fhir_and_hl7v2_round_trips() -> None:
    """IN1-16/17/19/49 → Coverage.subscriber (a RelatedPerson entry) → back, with the name twice as before."""
    from bridge import Coverage

    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")
    records = decode(sample("ADT-A01-01"), {})
    (coverage,) = of(records, Coverage)
    insured = coverage.subscriber
    assert insured.name == coverage.subscriber_name and insured.name.family == "Doe"
    assert [c.code for c in insured.relationship] == ["SPO"] and insured.addresses[0].city == "Midnight"
    (back,) = of(fhir.decode(fhir.encode(records, {}), {}), Coverage)
    assert back.subscriber.name == insured.name and back.subscriber_name == insured.name
    assert [i.value for i in back.subscriber.identifiers] == ["HMO-12345"]
    self_insured = of(decode(sample("ADT-A01-01").replace(b"|SPO^Spouse|", b"|SEL^Self|"), {}), Coverage)[0]
    assert self_insured.relationship == "self" and self_insured.subscriber is None  # the patient is the insured

"""Orders, referrals, dispenses, administrations and immunizations from HL7v2 (issue 13, orders slice).

Each new message type is decoded from Microsoft's FHIR-Converter samples and its main fields are
compared with Microsoft's expected FHIR output (tests/fixtures/.../fhir-converter-expected); the
HL7v2 round trip (decode → encode) must give every non-MSH segment back unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bridge import (
    DecodeError,
    Immunization,
    Observation,
    MedicationAdministration,
    Prescription,
    PrescriptionEvent,
    RelatedPerson,
    ServiceRequest,
)
from bridge.plugins.hl7v2.codec import FORMAT

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus"
INPUT = CORPUS / "fhir-converter-input"
EXPECTED = CORPUS / "fhir-converter-expected"


def decode(name: str) -> list[Any]:
    return FORMAT.decode((INPUT / f"{name}.hl7").read_bytes(), {})


def of(records: list[Any], cls: type) -> list[Any]:
    return [r for r in records if isinstance(r, cls)]


def expected(folder: str, name: str, rtype: str) -> list[dict[str, Any]]:
    bundle = json.loads((EXPECTED / folder / f"{name}-expected.json").read_text(encoding="utf-8-sig"))
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def instant(value: str) -> datetime:
    """An ISO date-time as an aware instant (Microsoft writes times in another offset than sent)."""
    return datetime.fromisoformat(value)


def body(raw: bytes) -> list[str]:
    """The non-MSH segments of one message, as sent."""
    text = raw.decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r")
    return [s for s in text.split("\r") if s and not s.startswith("MSH")]


# --- decode, compared with Microsoft's expected output ---------------------------------------------


@pytest.mark.parametrize("folder,name", [("ORM_O01", "ORM-O01-01"), ("OML_O21", "OML-O21-01")])
def test_a_lab_or_imaging_order_becomes_a_service_request_like_microsofts(folder: str, name: str) -> None:
    records = decode(name)
    (request,) = [r for r in records if isinstance(r, ServiceRequest)]
    theirs = expected(folder, name, "ServiceRequest")
    # Microsoft also emits a parent order from OBR-29 (OML-O21-01): compare with the one of the same placer id.
    placer = next(i.value for i in request.identifiers if i.type == "PLAC")
    (match,) = [r for r in theirs if any(i.get("value") == placer for i in r.get("identifier", []))]
    assert request.status == match["status"] and request.intent == match["intent"]
    assert [(c.code, c.system) for c in request.code] == [(c["code"], c["system"]) for c in match["code"]["coding"]]
    assert instant(request.authored) == instant(match["authoredOn"])
    assert {i.value for i in request.identifiers} == {i["value"] for i in match["identifier"]}
    assert request.patient is not None and request.patient.name.family == "EVERYMAN"
    assert request.requester is not None and request.requester.name.family == "ORDPROVIDER"


def test_oml_reads_priority_specimen_and_notes_from_tq1_spm_and_nte() -> None:
    (request,) = [r for r in decode("OML-O21-01") if isinstance(r, ServiceRequest)]
    assert request.priority == expected("OML_O21", "OML-O21-01", "ServiceRequest")[1]["priority"] == "routine"
    assert request.category == "laboratory"  # an OML is a laboratory order
    assert request.specimen_types and request.specimen_types[0].code
    assert request.notes  # the NTE right after the OBR


def test_omg_orders_are_on_hold_as_orc5_says() -> None:
    requests = [r for r in decode("OMG-O19-01") if isinstance(r, ServiceRequest)]
    theirs = expected("OMG_O19", "OMG-O19-01", "ServiceRequest")
    assert [r.status for r in requests] == [t["status"] for t in theirs] == ["on-hold", "on-hold"]
    assert [r.code[0].code for r in requests] == [t["code"]["coding"][0]["code"] for t in theirs]


def test_a_referral_is_a_service_request_with_both_providers() -> None:
    records = decode("REF-I12-01")
    (request,) = of(records, ServiceRequest)
    assert records[0] is request  # the first record holds the message; the others are carried
    (theirs, *_) = expected("REF_I12", "REF-I12-01", "ServiceRequest")
    assert isinstance(request, ServiceRequest) and request.category == "referral"
    assert request.status == theirs["status"] == "on-hold"  # RF1-1 P (pending)
    assert request.priority == "routine" and request.authored == theirs["authoredOn"]
    assert request.occurrence is not None
    assert (request.occurrence.start, request.occurrence.end) == (
        theirs["occurrencePeriod"]["start"], theirs["occurrencePeriod"]["end"])
    assert {i.value for i in request.identifiers} == {i["value"] for i in theirs["identifier"]}
    assert request.requester is not None and request.requester.name.family == "POWELL"
    assert [p.name.family for p in request.performers] == ["McWILLIAMS"]
    assert "K63.3" in {c.code for c in request.reason}  # the DG1 diagnosis


def test_a_referral_cancel_is_revoked() -> None:
    (request,) = of(decode("REF-I14-01"), ServiceRequest)
    assert request.status == "revoked" and request.category == "referral"


def test_vxu_gives_an_immunization_like_microsofts() -> None:
    (shot,) = of(decode("VXU-V04-01"), Immunization)
    (theirs,) = expected("VXU_V04", "VXU-V04-01", "Immunization")
    assert isinstance(shot, Immunization)
    assert shot.status == theirs["status"] == "completed"
    assert [(c.code, c.system) for c in shot.vaccine] == [
        (c["code"], c["system"]) for c in theirs["vaccineCode"]["coding"]]
    assert shot.lot_number == theirs["lotNumber"] and shot.expiration_date == theirs["expirationDate"]
    assert shot.occurrence == theirs["occurrenceDateTime"]
    assert shot.dose is not None and shot.dose.value == theirs["doseQuantity"]["value"]
    assert shot.manufacturer is not None and shot.manufacturer.code == "PMC"
    assert shot.manufacturer.system == "http://hl7.org/fhir/sid/mvx"
    assert shot.route is not None and shot.route.code == theirs["route"]["coding"][0]["code"]
    assert shot.site is not None and shot.site.code == theirs["site"]["coding"][0]["code"]
    assert shot.funding_source is not None and shot.funding_source.code == theirs["fundingSource"]["coding"][0]["code"]
    assert [c.code for c in shot.program_eligibility] == [
        p["coding"][0]["code"] for p in theirs["programEligibility"]]
    assert shot.primary_source is True  # RXA-9 00: a new record
    assert {i.value for i in shot.identifiers} == {i["value"] for i in theirs["identifier"]}


def test_vxu_next_of_kin_is_a_related_person() -> None:
    records = decode("VXU-V04-01")
    (shot,), (kin, guarantor, mother) = of(records, Immunization), of(records, RelatedPerson)
    # GT1-11 BRO: the guarantor is the patient's brother, a RelatedPerson too (guarantors.py)
    assert guarantor.name.family == "RADIANT" and [c.code for c in guarantor.relationship] == ["BRO"]
    assert guarantor.extra["hl7v2"]["carried"]
    assert isinstance(kin, RelatedPerson) and kin.patient is shot.patient
    assert [c.code for c in mother.relationship] == ["MTH"] and mother.extra["hl7v2"]["carried"]  # PID-21
    assert kin.name is not None and kin.name.family == "Evan"
    assert [(c.code, c.system) for c in kin.relationship] == [("EMC", "ACR"), ("O", "HL70131")]
    assert [t.value for t in kin.telecom] == ["78788788", "121111", "88888888", "6666666"]
    assert kin.addresses[0].city == "GREENSBORO"
    assert kin.extra["hl7v2"]["carried"] is True  # its NK1 travels in the Immunization's kept message


@pytest.mark.parametrize("completion,action,status", [("CP", "A", "completed"), ("RE", "A", "not-done"),
                                                      ("NA", "", "not-done"), ("CP", "D", "entered-in-error")])
def test_vxu_status_from_rxa20_and_rxa21(completion: str, action: str, status: str) -> None:
    raw = (b"MSH|^~\\&|IIS|CLINIC|||20261015142000-0500||VXU^V04^VXU_V04|V1|P|2.5.1\r"
           b"PID|1||MRN00012345^^^CLINIC^MR||Testpatient^Alex||19800101|F\r"
           b"ORC|RE||IZ-77^CLINIC\r"
           b"RXA|0|1|20261015142000-0500||150^Influenza, quadrivalent^CVX|0.5|mL^mL^UCUM||01^Historical^NIP001"
           + f"|||||||||||{completion}|{action}".encode() + b"\r")
    (shot,) = FORMAT.decode(raw, {})
    assert shot.status == status
    assert shot.primary_source is False  # RXA-9 01: from history
    assert shot.vaccine[0].system == "http://hl7.org/fhir/sid/cvx"


def test_rds_gives_a_dispense_as_an_rxfill_event() -> None:
    (fill,) = of(decode("RDS-O13-01"), PrescriptionEvent)  # (and the PID-21 mother, see test_companions)
    theirs = expected("RDS_O13", "RDS-O13-01", "MedicationDispense")[0]
    assert isinstance(fill, PrescriptionEvent) and fill.event_type == "RxFill" and fill.fill_status == "Dispensed"
    assert fill.occurred_at == theirs["whenHandedOver"]
    assert fill.quantity is not None and fill.quantity.value == theirs["quantity"]["value"]
    assert fill.quantity.code == theirs["quantity"]["code"]
    assert fill.medication is not None and fill.medication.ndc == "01151327"
    assert fill.prescriber_order_number == "1163422591"
    assert fill.description == theirs["note"][0]["text"] == "After Food"


def test_an_order_carries_its_observations_allergies_diagnoses_and_insurance() -> None:
    records = decode("ORM-O01-02")
    kinds = [r.kind for r in records]
    assert kinds[0] == "ServiceRequest"
    assert {"Observation", "AllergyIntolerance", "Condition", "Coverage"} <= set(kinds)
    assert all(r.extra["hl7v2"]["carried"] for r in records[1:])
    (weight, *_) = of(records, Observation)
    assert weight.patient is records[0].patient and weight.code


@pytest.mark.parametrize("name", ["OUL-R22-01", "OUL-R23-02", "OUL-R24-01"])
def test_oul_results_by_specimen_are_reports_like_an_oru(name: str) -> None:
    records = decode(name)
    reports = [r for r in records if r.kind == "DiagnosticReport"]
    assert reports and records[:len(reports)] == reports  # the reports first, then their companions
    orders = [r for r in records if r.kind == "ServiceRequest"]  # each OBR's order (OBR with its ORC)
    assert orders and all(o.intent == "order" and o.filler_view and o.extra["hl7v2"]["carried"] for o in orders)
    assert {i.value for o in orders for i in o.identifiers} <= {i.value for r in reports for i in r.identifiers}
    assert all(r.observations for r in reports)
    assert "message" in reports[0].extra["hl7v2"]  # written back whole, with its SPM, SAC and INV


def test_rde_o25_is_a_refill_order_like_o11() -> None:
    records = [r for r in decode("RDE-O25-01") if not r.extra.get("hl7v2", {}).get("carried")]  # companions
    assert records and all(isinstance(r, Prescription) for r in records)
    assert records[0].extra["hl7v2"]["event"] == "O25"
    assert records[0].status == "active" and records[0].prescriber_order_number == "1163422591"


RAS = (b"MSH|^~\\&|EMAR|HOSP|||20261120221500-0600||RAS^O17^RAS_O17|R1|P|2.5\r"
       b"PID|1||MRN00012345^^^HOSP^MR||Testpatient^Alex||19800101|F\r"
       b"PV1|1|I|4W^401^A\r"
       b"ORC|RE|RX-20261120-0042^HOSP\r"
       b"RXA|0|1|20261120221500-0600||1732138^morphine 2 MG/ML^RXNORM|2|mg^mg^UCUM|||555^Example^Riley"
       b"||||||||||CP|A\r"
       b"RXR|IV^Intravenous^HL70162\r")


def test_ras_gives_a_medication_administration() -> None:
    (given,) = FORMAT.decode(RAS, {})
    assert isinstance(given, MedicationAdministration)
    assert given.status == "completed" and given.start == "2026-11-20T22:15:00-06:00"
    assert given.medication is not None and given.medication.rxnorm == "1732138"
    assert given.dose is not None and (given.dose.value, given.dose.code) == (2.0, "mg")
    assert given.route is not None and given.route.code == "IV"
    assert given.performer is not None and given.performer.name.family == "Example"
    assert given.prescriber_order_number == "RX-20261120-0042"
    assert given.encounter is not None and given.encounter.encounter_class == "IMP"


@pytest.mark.parametrize("completion,action,status", [("PA", "A", "stopped"), ("RE", "A", "not-done"),
                                                      ("CP", "D", "entered-in-error")])
def test_ras_status_from_rxa20_and_rxa21(completion: str, action: str, status: str) -> None:
    raw = RAS.replace(b"||CP|A\r", f"||{completion}|{action}\r".encode())
    assert raw != RAS
    (given,) = FORMAT.decode(raw, {})
    assert given.status == status


def test_rgv_gives_an_administration_in_progress() -> None:
    raw = (b"MSH|^~\\&|PHARM|HOSP|||20261120200000-0600||RGV^O15^RGV_O15|G1|P|2.5\r"
           b"PID|1||MRN00012345^^^HOSP^MR||Testpatient^Alex\r"
           b"ORC|NW|RX-20261120-0042^HOSP\r"
           b"RXG|1||^^^20261120220000-0600|1732138^morphine 2 MG/ML^RXNORM|2||mg^mg^UCUM\r"
           b"TQ1|1||Q4H|||||20261120220000-0600\r"
           b"RXR|IV^Intravenous^HL70162\r")
    (give,) = FORMAT.decode(raw, {})
    assert isinstance(give, MedicationAdministration) and give.status == "in-progress"
    assert give.dose is not None and give.dose.value == 2
    assert give.route is not None and give.route.code == "IV"


# --- grammar breaks: decoded with a warning when the meaning is clear, else refused ---------------

RDE_HEAD = (b"MSH|^~\\&|PHARM|HOSP|||20261120200000-0600||RDE^O11^RDE_O11|E1|P|2.5\r"
            b"PID|1||MRN00012345^^^HOSP^MR||Testpatient^Alex\r")
RXE = b"RXE|^^^20261120|1732138^morphine 2 MG/ML^RXNORM|2||mg^mg^UCUM\r"


def test_rde_without_orc_but_one_rxe_is_decoded_with_a_warning() -> None:
    (order,) = FORMAT.decode(RDE_HEAD + RXE, {})
    assert isinstance(order, Prescription) and order.medication is not None
    assert order.medication.rxnorm == "1732138"
    assert any("without ORC" in w for w in order.extra["hl7v2"]["warnings"])


def test_rde_without_orc_and_two_rxe_is_refused_with_the_reason() -> None:
    with pytest.raises(DecodeError, match="no ORC segment and 2 RXE segments"):
        FORMAT.decode(RDE_HEAD + RXE + RXE, {})


def test_an_order_message_without_any_order_is_refused() -> None:
    raw = (b"MSH|^~\\&|LAB|HOSP|||20261120200000-0600||ORM^O01|O1|P|2.3\r"
           b"PID|1||MRN00012345^^^HOSP^MR||Testpatient^Alex\r")
    with pytest.raises(DecodeError, match=r"ORM\^O01 has no order"):
        FORMAT.decode(raw, {})


def test_an_oml_without_orc_is_read_from_its_obr_with_a_warning() -> None:
    (request,) = of(decode("MDHHS-OML-O21-1"), ServiceRequest)
    assert isinstance(request, ServiceRequest) and request.code
    assert any("without ORC" in w for w in request.extra["hl7v2"]["warnings"])


def test_an_orm_with_rxo_is_a_prescription() -> None:
    records = decode("ORM-O01-06")
    assert type(records[0]).__name__ == "Prescription" and len(of(records, Prescription)) == 1


# --- round trip: HL7v2 → records → HL7v2 -----------------------------------------------------------

ROUND_TRIP = ["OUL-R22-01", "OUL-R24-02", "ORM-O01-01", "ORM-O01-03", "RDE-O25-01", "RDE-O25-02", "OML-O21-01", "OML-O21-02", "OMG-O19-01",
              "REF-I12-01", "REF-I14-01",
              "VXU-V04-01", "VXU-V04-02", "RDS-O13-01", "RDS-O13-02"]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_hl7v2_round_trip_gives_every_segment_back(name: str) -> None:
    raw = (INPUT / f"{name}.hl7").read_bytes()
    records = FORMAT.decode(raw, {})
    again = FORMAT.encode(records, {"message_control_id": "RT1"})
    assert body(again) == body(raw)
    assert [r.kind for r in FORMAT.decode(again, {})] == [r.kind for r in records]


def test_ras_round_trip_and_message_type() -> None:
    again = FORMAT.encode(FORMAT.decode(RAS, {}), {"message_control_id": "RT2"})
    assert b"|RAS^O17^RAS_O17|" in again.split(b"\r")[0]
    assert body(again) == body(RAS)


def test_rde_without_orc_round_trips_without_inventing_an_orc() -> None:
    records = FORMAT.decode(RDE_HEAD + RXE, {})
    again = FORMAT.encode(records, {"message_control_id": "RT3"})
    assert not any(s.startswith("ORC") for s in body(again))
    (order,) = FORMAT.decode(again, {})
    assert order.medication is not None and order.medication.rxnorm == "1732138"
    assert any("without ORC" in w for w in order.extra["hl7v2"]["warnings"])


def test_a_service_request_built_elsewhere_is_refused_by_the_hl7v2_encoder_with_the_reason() -> None:
    from bridge import EncodeError

    with pytest.raises(EncodeError, match="no message for a ServiceRequest") as caught:
        FORMAT.encode([ServiceRequest(status="active", intent="order")], {})
    assert "written back as that message" in str(caught.value) and "object at 0x" not in str(caught.value)


def test_the_store_keys_of_an_administration_name_patient_visit_and_order() -> None:
    from bridge import keys_of

    keys = keys_of(FORMAT.decode(RAS, {}))
    assert keys.prescription_number == "RX-20261120-0042"
    assert keys.patient_id and "MRN00012345" in keys.patient_id


def test_referral_and_contact_segments_are_scrubbed_from_logs() -> None:
    from bridge.core.redaction import scrub

    for line in ("PRD|RP^Referring Provider^HL70286|POWELL^ROBERT^^^DR^MD|1031 HEALTHCARE DRIVE",
                 "CTD|C^Emergency Contact^HL70131|Doe^Rosallie|115 MAINSTREET",
                 "RXG|1||^^^20261120220000-0600|1732138^morphine 2 MG/ML^RXNORM"):
        cleaned = scrub(f"peer said: {line}")
        assert line.split("|", 1)[1] not in cleaned and "[redacted]" in cleaned


def test_an_order_messages_next_of_kin_are_related_persons() -> None:
    records = decode("ORM-O01-02") + decode("REF-I12-01")
    people = of(records, RelatedPerson)
    assert people and all(p.patient is not None and p.name for p in people)


def test_a_referral_type_is_a_category_not_the_requested_service() -> None:
    """RF1-3 (Med, Lab, Rad…) says what kind of referral it is; ServiceRequest.code would claim it is
    the service asked for. It goes to a second category, as Microsoft writes it, and comes back."""
    from bridge.testing import plugin_manager

    (request,) = of(decode("REF-I12-01"), ServiceRequest)
    assert request.code == [] and request.referral_type is not None
    assert (request.referral_type.code, request.referral_type.display) == ("Med", "Medical")
    fhir = plugin_manager().format("fhir")
    bundle = json.loads(fhir.encode([request], {}))
    (resource,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    (theirs, *_) = expected("REF_I12", "REF-I12-01", "ServiceRequest")
    assert "code" not in resource and "code" not in theirs
    assert [c["coding"][0]["code"] for c in resource["category"]] == ["3457005", "Med"]
    assert "Med" in {c["coding"][0]["code"] for c in theirs["category"]}
    (again,) = of(fhir.decode(json.dumps(bundle).encode(), {}), ServiceRequest)
    assert again.referral_type is not None and again.referral_type.code == "Med" and again.code == []

"""Encoding records as an R4 transaction Bundle: validity, mapping, idempotency, round trips."""

from __future__ import annotations

import importlib
import json
import uuid

import pytest
from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import EncodeError, Encounter, PrescriptionEvent, record_to_dict
from bridge.testing import assert_format_round_trip

from . import records as R
from .conftest import entries, resources_of

EXT = "https://telemed-bridge.org/fhir/StructureDefinition/"


def all_records():
    return [make() for make in R.ALL.values()]


@pytest.mark.parametrize("kind", sorted(R.ALL))
def test_every_record_kind_round_trips(fhir_format, kind):
    assert_format_round_trip(fhir_format, [R.ALL[kind]()])


def test_a_message_of_every_kind_round_trips_in_order(fhir_format):
    decoded = assert_format_round_trip(fhir_format, all_records())
    assert [r.kind for r in decoded] == [r.kind for r in all_records()]


def test_round_trip_in_a_collection_bundle(fhir_format):
    raw = fhir_format.encode(all_records(), {"bundle_type": "collection"})
    assert json.loads(raw)["type"] == "collection"
    assert all("request" not in e for e in entries(raw))
    assert_format_round_trip(fhir_format, all_records(), {"bundle_type": "collection"})


def test_every_resource_validates_with_r4b_and_fhirclient(fhir_format):
    raw = fhir_format.encode(all_records(), {})
    bundle = json.loads(raw)
    R4BBundle.model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        rtype = resource["resourceType"]
        r4b = importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}")
        getattr(r4b, rtype).model_validate(resource)
        client = importlib.import_module(f"fhirclient.models.{rtype.lower()}")
        getattr(client, rtype)(resource, strict=True)
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert kinds == {"Patient", "Practitioner", "Organization", "Medication", "Encounter", "Appointment",
                     "MedicationRequest", "MedicationDispense", "DocumentReference", "Observation",
                     "DiagnosticReport", "AllergyIntolerance", "Condition", "Coverage",
                     "Linkage"}  # the patient's merge link, also as a Linkage


def test_same_records_give_the_same_bytes(fhir_format):
    assert fhir_format.encode(all_records(), {}) == fhir_format.encode(all_records(), {})


def test_entries_are_conditional_on_business_identifiers(fhir_format):
    raw = fhir_format.encode([R.prescription()], {})
    # the pharmacy, not the MRN's assigning authority (an Organization too, see test_assigners.py)
    requests = {e["resource"]["resourceType"]: e["request"] for e in entries(raw)
                if e["resource"].get("name") != "Acme Health"}
    assert requests["Patient"] == {"method": "POST", "url": "Patient",
                                   "ifNoneExist": "identifier=urn:oid:1.2.3.4.5|MRN-77123"}
    assert requests["Practitioner"]["ifNoneExist"] == "identifier=http://hl7.org/fhir/sid/us-npi|1234567893"
    assert requests["Organization"]["ifNoneExist"] == (
        "identifier=http://terminology.hl7.org/NamingSystem/NCPDPProviderIdentificationNumber|4512345")
    assert requests["Medication"]["ifNoneExist"] == "code=http://www.nlm.nih.gov/research/umls/rxnorm|312940"
    assert requests["Encounter"] == {"method": "PUT", "url": "Encounter?identifier=urn:oid:1.2.3.4.6|V-100200"}
    assert requests["MedicationRequest"] == {
        "method": "PUT",
        "url": "MedicationRequest?identifier=https://telemed-bridge.org/fhir/sid/prescriber-order-number|PON-88001"}


def test_search_values_are_escaped(fhir_format):
    patient = R.patient()
    patient.identifiers[0].value = "A|B,C$D E"
    raw = fhir_format.encode([patient], {})
    assert entries(raw)[0]["request"]["ifNoneExist"] == r"identifier=urn:oid:1.2.3.4.5|A%5C%7CB%5C%2CC%5C%24D%20E"


def test_full_urls_derive_from_business_identifiers_not_content(fhir_format):
    first = fhir_format.encode([R.prescription()], {})
    changed = R.prescription()
    changed.sig, changed.patient.telecom = "Take 2 tablets daily", []
    changed.encounter.patient = changed.patient
    second = fhir_format.encode([changed], {})
    urls = lambda raw: {e["resource"]["resourceType"]: e["fullUrl"] for e in entries(raw)}  # noqa: E731
    assert urls(first) == urls(second)
    assert first != second
    for url in urls(first).values():
        assert uuid.UUID(url.removeprefix("urn:uuid:")).version == 5


def test_references_point_at_entries_and_shared_records_are_one_entry(fhir_format):
    raw = fhir_format.encode([R.encounter(), R.prescription(), R.clinical_note()], {})
    full_urls = {e["fullUrl"] for e in entries(raw)}
    assert len(resources_of(raw, "Patient")) == 1
    assert len(resources_of(raw, "Encounter")) == 1
    text = raw.decode()
    for ref in {part.split('"')[0] for part in text.split('"reference": "')[1:]}:
        assert ref in full_urls


def test_telehealth_encounter(fhir_format):
    enc = R.encounter()
    enc.encounter_class = None
    (res,) = resources_of(fhir_format.encode([enc], {}), "Encounter")
    assert res["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}
    exts = {e["url"]: e for e in res["extension"]}
    assert exts[EXT + "modality"]["valueCode"] == "video"
    location = {e["url"]: e for e in exts[EXT + "patient-location"]["extension"]}
    assert location["state"]["valueString"] == "TX" and location["atHome"]["valueBoolean"] is True
    assert exts[EXT + "practitioner-state"]["valueString"] == "TX"
    assert exts[EXT + "telehealth-consent"]["valueBoolean"] is True
    assert res["participant"][0]["type"][0]["coding"][0]["code"] == "PPRF"
    assert res["appointment"][0]["identifier"]["value"] == "appt-9"


def test_in_person_encounter_is_amb_and_a_remote_visit_is_always_vr(fhir_format):
    enc = R.encounter()
    enc.modality, enc.encounter_class = "in_person", None
    (res,) = resources_of(fhir_format.encode([enc], {}), "Encounter")
    assert res["class"]["code"] == "AMB"
    enc.modality, enc.encounter_class = "video", "AMB"  # HL7 PV1-2 "O", or Epic's AMB video visit
    (res,) = resources_of(fhir_format.encode([enc], {}), "Encounter")
    assert res["class"]["code"] == "VR"  # telehealth is VR at a FHIR server
    exts = {e["url"]: e for e in res["extension"]}
    assert exts[EXT + "source-encounter-class"]["valueString"] == "AMB"
    assert fhir_format.decode(fhir_format.encode([enc], {}), {})[0].encounter_class == "AMB"  # kept


def test_medication_request_fields(fhir_format):
    raw = fhir_format.encode([R.controlled_prescription()], {})
    (req,) = resources_of(raw, "MedicationRequest")
    (med,) = resources_of(raw, "Medication")
    assert req["dispenseRequest"]["expectedSupplyDuration"] == {
        "value": 30, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}
    assert req["dispenseRequest"]["numberOfRepeatsAllowed"] == 0
    assert req["dispenseRequest"]["quantity"]["value"] == 30.0
    assert req["substitution"] == {"allowedBoolean": True}
    assert req["dosageInstruction"] == [{"text": "Take 1 tablet by mouth once daily"}]
    assert req["authoredOn"] == "2026-03-02T14:20:00-06:00"
    assert {"system": "https://telemed-bridge.org/fhir/sid/prescriber-order-number", "value": "PON-88002",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]}
            } in req["identifier"]
    assert {"url": EXT + "dea-schedule", "valueCode": "CIV"} in med["extension"]
    assert med["code"]["coding"][0] == {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197901"}
    (practitioner,) = resources_of(raw, "Practitioner")
    assert {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"} in practitioner["identifier"]
    (org,) = [o for o in resources_of(raw, "Organization") if o.get("name") != "Acme Health"]  # not the MRN's authority
    assert org["identifier"][1:] == [
        {"system": "http://terminology.hl7.org/NamingSystem/NCPDPProviderIdentificationNumber", "value": "4512345"},
        {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1487654321"}]
    assert req["dispenseRequest"]["performer"]["reference"] == next(
        e["fullUrl"] for e in entries(raw) if e["resource"] is org or e["resource"] == org)


def test_order_number_system_is_an_option(fhir_format):
    options = {"order_number_system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.798268"}
    raw = fhir_format.encode([R.prescription()], options)
    (req,) = resources_of(raw, "MedicationRequest")
    assert any(i["system"] == options["order_number_system"] and i["value"] == "PON-88001"
               for i in req["identifier"])
    assert fhir_format.decode(raw, options)[0].prescriber_order_number == "PON-88001"


def test_uncoded_medication_is_contained(fhir_format):
    rx = R.prescription()
    rx.medication.rxnorm = rx.medication.ndc = None
    rx.medication.codings = []
    raw = fhir_format.encode([rx], {})
    assert resources_of(raw, "Medication") == []
    (req,) = resources_of(raw, "MedicationRequest")
    assert req["contained"][0]["resourceType"] == "Medication"
    assert req["medicationReference"] == {"reference": "#med"}
    assert_format_round_trip(fhir_format, [rx])


def test_rx_fill_is_a_medication_dispense(fhir_format):
    raw = fhir_format.encode([R.rx_fill()], {})
    (disp,) = resources_of(raw, "MedicationDispense")
    assert disp["status"] == "completed"
    assert disp["whenHandedOver"] == "2026-03-03T09:15:00-06:00"
    assert disp["authorizingPrescription"][0]["identifier"]["value"] == "PON-88001"
    event = R.rx_fill()
    event.fill_status = "Returned"  # not one we map to a status: carried in an extension
    (disp,) = resources_of(fhir_format.encode([event], {}), "MedicationDispense")
    assert disp["status"] == "unknown"
    assert {"url": EXT + "fill-status", "valueString": "Returned"} in disp["extension"]
    assert_format_round_trip(fhir_format, [event])


def test_clinical_note_is_a_base64_document_reference(fhir_format):
    raw = fhir_format.encode([R.clinical_note()], {})
    (doc,) = resources_of(raw, "DocumentReference")
    attachment = doc["content"][0]["attachment"]
    import base64
    assert base64.b64decode(attachment["data"]).decode() == R.clinical_note().text
    assert doc["type"]["coding"][0] == {"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}
    assert doc["docStatus"] == "final" and doc["status"] == "current"
    encounter_url = next(e["fullUrl"] for e in entries(raw) if e["resource"]["resourceType"] == "Encounter")
    assert doc["context"]["encounter"] == [{"reference": encounter_url}]


def test_other_formats_extra_travels_in_an_extension(fhir_format):
    (res,) = resources_of(fhir_format.encode([R.patient()], {}), "Patient")
    (carried,) = [e for e in res["extension"] if e["url"] == EXT + "record-extra"]
    assert json.loads(carried["valueString"]) == {"hl7v2": {"PID-10": "2106-3"}}


@pytest.mark.parametrize("change, message", [
    (lambda e: setattr(e, "period", type(e.period)(start="2026-03-02T14:00:00")), "no time zone"),
    (lambda e: setattr(e.patient, "birth_date", "1984-03-09T10:00"), "no time zone"),
])
def test_unwritable_dates_are_clear_errors(fhir_format, change, message):
    enc = R.encounter()
    change(enc)
    with pytest.raises(EncodeError, match=message) as info:
        fhir_format.encode([enc], {})
    assert "records[0] (Encounter)" in str(info.value)


def test_default_timezone_option_completes_local_times(fhir_format):
    enc = R.encounter()
    enc.period.start = "2026-03-02T14:00"
    (res,) = resources_of(fhir_format.encode([enc], {"default_timezone": "-0600"}), "Encounter")
    assert res["period"]["start"] == "2026-03-02T14:00:00-06:00"


def test_records_fhir_cannot_carry_are_refused_clearly(fhir_format):
    with pytest.raises(EncodeError, match="event_type 'Status' has no FHIR mapping"):
        fhir_format.encode([PrescriptionEvent(event_type="Status", code="000")], {})
    appt = R.appointment()
    appt.status = None
    with pytest.raises(EncodeError, match="Appointment.status is required"):
        fhir_format.encode([appt], {})
    with pytest.raises(EncodeError, match="bundle_type"):
        fhir_format.encode([R.patient()], {"bundle_type": "document"})
    with pytest.raises(EncodeError, match="no records"):
        fhir_format.encode([], {})


def test_a_prescription_without_medication_is_refused_by_name(fhir_format):
    rx = R.prescription()
    rx.medication = None  # MedicationRequest.medication[x] is required in R4 (an RDE without RXE)
    with pytest.raises(EncodeError, match="Prescription has no medication") as caught:
        fhir_format.encode([rx], {})
    assert "object at 0x" not in str(caught.value)


def test_fhirclient_validation_failures_become_encode_errors_without_python_reprs():
    from bridge.plugins.fhir.codec import validate

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                      "subject": {"reference": "Patient/1"}}}]}
    with pytest.raises(EncodeError, match="does not validate.*medication") as caught:
        validate(bundle)
    text = str(caught.value)
    assert "MedicationRequest" in text and "object at 0x" not in text and "<fhirclient" not in text


def test_empty_encounter_status_is_written_unknown(fhir_format):
    enc = Encounter(id="e1", modality="async")
    (res,) = resources_of(fhir_format.encode([enc], {}), "Encounter")
    assert res["status"] == "unknown" and res["class"]["code"] == "VR"
    assert record_to_dict(fhir_format.decode(fhir_format.encode([enc], {}), {})[0]) == record_to_dict(enc)


def test_a_birth_time_uses_the_patient_birth_time_extension(fhir_format):
    patient = R.patient()
    patient.birth_date = "1984-03-09T10:15:00-06:00"
    (res,) = resources_of(fhir_format.encode([patient], {}), "Patient")
    assert res["birthDate"] == "1984-03-09"
    assert res["_birthDate"] == {"extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1984-03-09T10:15:00-06:00"}]}
    assert_format_round_trip(fhir_format, [patient])


@pytest.mark.parametrize("status, sent", [("revoked", "cancelled"), ("cancel-requested", "active"),
                                          (None, "unknown"), ("stopped", "stopped")])
def test_medication_request_status_is_an_r4_code(fhir_format, status, sent):
    """MedicationRequest.status has a required binding: what records may say otherwise is translated."""
    from dataclasses import replace

    raw = fhir_format.encode([replace(R.prescription(), status=status)], {})
    assert resources_of(raw, "MedicationRequest")[0]["status"] == sent


def test_a_status_outside_the_value_set_is_refused_by_name(fhir_format):
    from dataclasses import replace

    with pytest.raises(EncodeError, match="Prescription.status 'paused' is not an R4 MedicationRequest status"):
        fhir_format.encode([replace(R.prescription(), status="paused")], {})

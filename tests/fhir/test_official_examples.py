"""The official FHIR R4 examples (tests/fixtures/fhir/r4-examples, CC0) decode without loss."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import ClinicalNote, Encounter, Prescription, PrescriptionEvent, record_to_dict

from .conftest import FIXTURES, example_bytes, load_example

EXAMPLES = sorted(p.name for p in (FIXTURES / "r4-examples").glob("*.json"))
SINGLE = [n for n in EXAMPLES if load_example(n)["resourceType"] not in
          ("Bundle", "MessageHeader")]
BUNDLES = [n for n in EXAMPLES if load_example(n)["resourceType"] == "Bundle"
           and load_example(n)["type"] != "transaction-response"]


def our_resource(raw: bytes) -> dict:
    """The resource of the (single) record we wrote, found by its record-index mark."""
    from bridge.plugins.fhir.keep import without_entry_key

    resource = next(e["resource"] for e in json.loads(raw)["entry"] if e.get("extension"))
    return without_entry_key(resource)  # the create-once key we add to a resource without identifiers


def test_the_examples_cover_every_resource_type_we_map():
    kinds = {load_example(n)["resourceType"] for n in SINGLE}
    assert {"Patient", "Practitioner", "Encounter", "MedicationRequest", "Appointment",
            "DocumentReference", "MedicationDispense"} <= kinds
    assert sum(n.startswith("medicationrequest03") for n in EXAMPLES) == 38


@pytest.mark.parametrize("name", SINGLE)
def test_single_resources_come_back_unchanged(fhir_format, name):
    original = load_example(name)
    records = fhir_format.decode(example_bytes(name), {})
    assert len(records) == 1
    raw = fhir_format.encode(records, {})
    assert our_resource(raw) == original
    R4BBundle.model_validate(json.loads(raw))
    again = fhir_format.decode(raw, {})
    assert [record_to_dict(r) for r in again] == [record_to_dict(r) for r in records]
    assert fhir_format.encode(again, {}) == raw


@pytest.mark.parametrize("name", BUNDLES)
def test_bundles_decode_and_round_trip(fhir_format, name):
    bundle = load_example(name)
    records = fhir_format.decode(example_bytes(name), {})
    supported = [e for e in bundle["entry"] if e.get("resource", {}).get("resourceType") in
                 ("Patient", "Practitioner")]
    assert len(records) == len(supported)
    raw = fhir_format.encode(records, {})
    assert [record_to_dict(r) for r in fhir_format.decode(raw, {})] == [record_to_dict(r) for r in records]


def test_transaction_response_bundles_are_refused(fhir_format):
    from bridge import DecodeError
    with pytest.raises(DecodeError, match="'transaction-response' is not supported"):
        fhir_format.decode(example_bytes("bundle-response.json"), {})


def test_medicationrequest0301_field_by_field(fhir_format):
    options = {"order_number_system": "http://www.bmc.nl/portal/prescriptions"}
    (rx,) = fhir_format.decode(example_bytes("medicationrequest0301.json"), options)
    assert isinstance(rx, Prescription)
    assert rx.id == "medrx0301" and rx.prescriber_order_number == "12345689" and rx.identifiers == []
    assert (rx.status, rx.intent, rx.written_date) == ("completed", "order", "2015-01-15")
    assert rx.medication.codings[0].code == "430127000"  # contained #med0310, SNOMED coded
    assert rx.medication.description == "Oral Form Oxycodone (product)"
    assert (rx.quantity.value, rx.quantity.unit, rx.quantity.code) == (30.0, "TAB", "TAB")
    assert (rx.days_supply, rx.refills, rx.substitution_allowed) == (10, 0, True)
    assert rx.sig == "one to two tablets every 4-6 hours as needed for rib pain"
    assert rx.note == "Patient told to take with food"
    assert [(c.system, c.code) for c in rx.diagnosis] == [("http://snomed.info/sct", "297217002")]
    assert rx.patient is None and rx.prescriber is None  # references outside the document…
    kept = rx.extra["fhir"]["elements"]
    assert kept["subject"]["value"] == {"reference": "Patient/pat1", "display": "Donald Duck"}  # …are kept
    assert kept["requester"]["value"]["reference"] == "Practitioner/f007"


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n.startswith("medicationrequest03")])
def test_every_medication_request_maps_its_core_fields(fhir_format, name):
    original = load_example(name)
    (rx,) = fhir_format.decode(example_bytes(name), {})
    assert rx.status == original["status"] and rx.intent == original["intent"]
    assert rx.written_date == original.get("authoredOn")
    assert rx.identifiers[0].value == original["identifier"][0]["value"]
    dosage = original.get("dosageInstruction") or [{}]
    assert rx.sig == dosage[0].get("text")
    dispense = original.get("dispenseRequest", {})
    assert rx.refills == dispense.get("numberOfRepeatsAllowed")
    if "quantity" in dispense:
        assert rx.quantity.value == float(dispense["quantity"]["value"])
    if "allowedBoolean" in original.get("substitution", {}):
        assert rx.substitution_allowed is original["substitution"]["allowedBoolean"]
    assert rx.medication is not None
    if "medicationCodeableConcept" in original:
        concept = original["medicationCodeableConcept"]
    else:
        contained = next(c for c in original["contained"] if c["resourceType"] == "Medication")
        if "code" not in contained:  # a compound: described by its form and ingredients
            form = contained["form"]
            assert rx.medication.form == form.get("text", form["coding"][0]["display"])
            return
        concept = contained["code"]
    coding = concept["coding"][0]
    mapped = {"http://www.nlm.nih.gov/research/umls/rxnorm": rx.medication.rxnorm,
              "http://hl7.org/fhir/sid/ndc": rx.medication.ndc}
    assert mapped.get(coding["system"], rx.medication.codings[0].code if rx.medication.codings else None) \
        == coding["code"]


def test_patient_example_field_by_field(fhir_format):
    (patient,) = fhir_format.decode(example_bytes("patient-example.json"), {})
    assert patient.id == "example" and patient.gender == "male"
    assert patient.birth_date == "1974-12-25T14:35:45-05:00"  # birthDate + the patient-birthTime extension
    assert patient.identifiers[0].value == "12345" and patient.identifiers[0].type == "MR"
    assert patient.identifiers[0].assigner == "Acme Healthcare"
    assert patient.name.family == "Chalmers" and patient.name.given == ["Peter", "James"]
    assert patient.addresses[0].city == "PleasantVille" and patient.addresses[0].postal_code == "3999"
    assert [t.value for t in patient.telecom if t.value] == ["(03) 5555 6473", "(03) 3410 5613", "(03) 5555 8834"]
    assert "_birthDate" not in patient.extra.get("fhir", {}).get("elements", {})  # mapped, not kept


def test_practitioner_example_field_by_field(fhir_format):
    (prac,) = fhir_format.decode(example_bytes("practitioner-example.json"), {})
    assert prac.identifiers[0].system == "http://www.acme.org/practitioners"
    assert prac.name.family == "Careful" and prac.name.prefix == "Dr"
    assert prac.npi is None and prac.dea_registrations == []  # its qualification is kept, not a DEA


def test_encounter_home_field_by_field(fhir_format):
    (enc,) = fhir_format.decode(example_bytes("encounter-example-home.json"), {})
    assert isinstance(enc, Encounter)
    assert enc.status == "finished" and enc.encounter_class == "HH"
    assert enc.period.start == "2015-01-17T16:00:00+10:00" and enc.period.end == "2015-01-17T16:30:00+10:00"
    assert enc.practitioner is None and "participant" in enc.extra["fhir"]["elements"]


def test_appointment_example_field_by_field(fhir_format):
    (appt,) = fhir_format.decode(example_bytes("appointment-example.json"), {})
    assert appt.status == "booked" and appt.start == "2013-12-10T09:00:00Z" and appt.end == "2013-12-10T11:00:00Z"
    assert appt.appointment_type.code == "FOLLOWUP"
    assert appt.patient is None and "participant" in appt.extra["fhir"]["elements"]


def test_document_reference_example_field_by_field(fhir_format):
    (note,) = fhir_format.decode(example_bytes("documentreference-example.json"), {})
    assert isinstance(note, ClinicalNote)
    assert note.status == "preliminary" and note.note_type.code == "34108-1"
    assert note.note_type.system == "http://loinc.org" and note.title == "Physical"
    assert note.content_type == "application/hl7-v3+xml" and note.text is None  # a URL, not inline data
    assert note.authored == "2005-12-24T09:43:41+11:00"
    assert note.author.name.family == "Smitty"  # the contained author #a2


def test_medication_dispense_example_field_by_field(fhir_format):
    (event,) = fhir_format.decode(example_bytes("medicationdispense0301.json"), {})
    assert isinstance(event, PrescriptionEvent) and event.event_type == "RxFill"
    assert event.fill_status == "PartiallyDispensed"  # status in-progress
    assert event.medication.ndc == "0069-2587-10"
    assert (event.quantity.value, event.quantity.unit) == (12.0, "Vial")


def test_our_own_organization_fixture(fhir_format):
    (pharmacy,) = fhir_format.decode((FIXTURES / "organization-pharmacy.json").read_bytes(), {})
    assert pharmacy.ncpdp_id == "0123456" and pharmacy.npi == "1098765432"
    assert pharmacy.name == "Bridge Test Pharmacy" and pharmacy.address.state == "OR"
    assert pharmacy.epcs_capable is True


def test_our_own_note_fixture_has_inline_text(fhir_format):
    raw = (FIXTURES / "documentreference-telehealth-note.json").read_bytes()
    (note,) = fhir_format.decode(raw, {})
    data = json.loads(raw)["content"][0]["attachment"]["data"]
    assert note.text == base64.b64decode(data).decode("utf-8")
    assert note.note_type.code == "11506-3"


assert Path  # noqa: B018 - keep the import for type readers

"""Decoding FHIR: Bundle types, reference resolution, what is kept in extra, and clear errors."""

from __future__ import annotations

import copy
import json

import pytest

from bridge import DecodeError, Prescription, record_to_dict
from bridge.testing import assert_decode_error_is_clear

from . import records as R
from .conftest import entries

EXT = "https://telemed-bridge.org/fhir/StructureDefinition/"


def our_bundle(fhir_format, records) -> dict:
    return json.loads(fhir_format.encode(records, {}))


def unmarked(bundle: dict, btype: str) -> dict:
    """Our Bundle as another system would send it: no record-index marks, no requests."""
    bundle = copy.deepcopy(bundle)
    bundle["type"] = btype
    for entry in bundle["entry"]:
        entry.pop("extension", None)
        if btype != "batch":
            entry.pop("request", None)
    return bundle


def test_a_prescription_is_rebuilt_with_everything_it_references(fhir_format):
    bundle = unmarked(our_bundle(fhir_format, [R.prescription()]), "collection")
    (rx,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    assert isinstance(rx, Prescription)
    assert rx.patient.name.family == "Rivera" and rx.prescriber.npi == "1234567893"
    assert rx.pharmacy.ncpdp_id == "4512345" and rx.medication.rxnorm == "312940"
    assert rx.encounter.modality == "video" and rx.encounter.patient.identifiers[0].value == "MRN-77123"
    assert record_to_dict(rx) == record_to_dict(R.prescription())


@pytest.mark.parametrize("btype", ["transaction", "batch", "collection"])
def test_unmarked_bundles_yield_the_unreferenced_resources(fhir_format, btype):
    bundle = unmarked(our_bundle(fhir_format, [R.prescription(), R.clinical_note()]), btype)
    decoded = fhir_format.decode(json.dumps(bundle).encode(), {})
    assert [r.kind for r in decoded] == ["Prescription", "ClinicalNote"]


def test_searchset_yields_matches_not_includes(fhir_format):
    bundle = unmarked(our_bundle(fhir_format, [R.encounter()]), "searchset")
    for entry in bundle["entry"]:
        mode = "match" if entry["resource"]["resourceType"] == "Encounter" else "include"
        entry["search"] = {"mode": mode}
    (enc,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    assert enc.kind == "Encounter" and enc.practitioner.name.family == "Okafor"


def test_message_bundle_yields_the_focus(fhir_format):
    bundle = unmarked(our_bundle(fhir_format, [R.prescription()]), "message")
    focus = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    header = {"resourceType": "MessageHeader", "eventCoding": {"code": "patient-link"},
              "source": {"endpoint": "urn:example"}, "focus": [{"reference": focus}]}
    bundle["entry"].insert(0, {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": header})
    (patient,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    assert patient.kind == "Patient" and patient.name.family == "Rivera"


def test_message_bundle_must_start_with_a_header(fhir_format):
    bundle = unmarked(our_bundle(fhir_format, [R.patient()]), "message")
    with pytest.raises(DecodeError, match=r"Bundle.entry\[0\]: a message Bundle must start with a MessageHeader"):
        fhir_format.decode(json.dumps(bundle).encode(), {})


def test_searchset_with_server_ids_resolves_relative_references(fhir_format):
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Ng"}]}
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
           "subject": {"reference": "Patient/p1"}}
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "https://ehr.example/fhir/Encounter/e1", "resource": enc, "search": {"mode": "match"}},
        {"fullUrl": "https://ehr.example/fhir/Patient/p1", "resource": patient, "search": {"mode": "include"}}]}
    (decoded,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    assert decoded.id == "e1" and decoded.patient.id == "p1" and decoded.patient.name.family == "Ng"
    assert decoded.encounter_class == "VR" and decoded.modality is None


def test_unknown_elements_and_extensions_are_kept_and_written_back(fhir_format):
    bundle = our_bundle(fhir_format, [R.patient()])
    resource = bundle["entry"][0]["resource"]
    resource["maritalStatus"] = {"text": "Married"}
    resource["extension"].append({"url": "http://example.org/ext/pronouns", "valueString": "she/her"})
    resource["identifier"][1]["period"] = {"start": "2001-01-01"}
    (patient,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    kept = patient.extra["fhir"]
    assert kept["elements"]["maritalStatus"]["value"] == {"text": "Married"}
    assert kept["extension"] == [{"url": "http://example.org/ext/pronouns", "valueString": "she/her"}]
    again = json.loads(fhir_format.encode([patient], {}))["entry"][0]["resource"]
    assert again == resource


def test_a_changed_field_wins_over_the_kept_original(fhir_format):
    bundle = our_bundle(fhir_format, [R.patient()])
    resource = bundle["entry"][0]["resource"]
    resource["identifier"][1]["period"] = {"start": "2001-01-01"}
    resource["extension"].append({"url": "http://example.org/ext/x", "valueBoolean": True})
    (patient,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    patient.identifiers[0].value = "MRN-NEW"
    again = json.loads(fhir_format.encode([patient], {}))["entry"][0]["resource"]
    assert [i["value"] for i in again["identifier"]] == ["pat-100", "MRN-NEW", "999-00-1234"]
    assert "period" not in again["identifier"][2]
    assert {"url": "http://example.org/ext/x", "valueBoolean": True} in again["extension"]


def test_unsupported_resources_in_a_bundle_are_skipped(fhir_format):
    bundle = our_bundle(fhir_format, [R.patient()])
    bundle["entry"].append({"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                            "resource": {"resourceType": "Basic", "code": {"text": "x"}}})
    assert [r.kind for r in fhir_format.decode(json.dumps(bundle).encode(), {})] == ["Patient"]


# --- bad input -----------------------------------------------------------------------------------


def prescription_resource(fhir_format) -> dict:
    bundle = our_bundle(fhir_format, [R.prescription()])
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest")


def test_wrong_type_names_its_path(fhir_format):
    resource = prescription_resource(fhir_format)
    resource["dispenseRequest"]["quantity"]["value"] = "thirty"
    with pytest.raises(DecodeError) as info:
        fhir_format.decode(json.dumps(resource).encode(), {})
    assert str(info.value) == "MedicationRequest.dispenseRequest.quantity.value: expected a number"


def test_wrong_type_inside_a_bundle_names_the_entry(fhir_format):
    bundle = our_bundle(fhir_format, [R.prescription()])
    index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "MedicationRequest")
    bundle["entry"][index]["resource"]["dispenseRequest"]["numberOfRepeatsAllowed"] = 1.5
    with pytest.raises(DecodeError) as info:
        fhir_format.decode(json.dumps(bundle).encode(), {})
    assert str(info.value) == (
        f"Bundle.entry[{index}].MedicationRequest.dispenseRequest.numberOfRepeatsAllowed: expected a whole number")


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "invalid JSON at line 1 column 2"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[]", "$: expected an object"),
    (b'{"id": "x"}', "missing resourceType"),
    (b'{"resourceType": "Pateint"}', "unknown resourceType 'Pateint'"),
    (b'{"resourceType": "Basic", "code": {"text": "x"}}', "resourceType Basic is not supported"),
    (b'{"resourceType": "Bundle", "type": "history", "entry": []}', "Bundle.type: 'history' is not supported"),
    (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', "holds no supported resource"),
    (b'{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Nope"}}]}',
     "Bundle.entry[0].Nope: unknown resourceType 'Nope'"),
    (b'{"resourceType": "Patient", "name": [{"given": "Ana"}]}', "Patient.name[0].given: expected a list"),
    (b'{"resourceType": "Patient", "gender": "f"}', "Patient.gender: expected one of male, female"),
    (b'{"resourceType": "Patient", "birthDate": "09/03/1984"}', "Patient.birthDate: expected a FHIR date"),
    (b'{"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": {"data": "@@@"}}]}',
     "DocumentReference.content[0].attachment.data: not valid base64"),
    (b'{"resourceType": "Encounter", "status": "planned", "class": {"code": "VR"}, "extension": '
     b'[{"url": "https://telemed-bridge.org/fhir/StructureDefinition/modality", "valueCode": "hologram"}]}',
     "Encounter.extension(modality): expected one of video"),
])
def test_bad_input_is_a_clear_decode_error(fhir_format, raw, message):
    error = assert_decode_error_is_clear(fhir_format, raw)
    assert message in str(error)


def test_references_outside_the_document_are_kept_as_they_are(fhir_format):
    enc = {"resourceType": "Encounter", "id": "a", "status": "planned", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": "Practitioner/p", "display": "Dr P"}}]}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": enc}]}
    (decoded,) = fhir_format.decode(json.dumps(bundle).encode(), {})
    assert decoded.practitioner is None and decoded.encounter_class == "AMB"  # no system: kept as sent
    assert decoded.extra["fhir"]["elements"]["participant"]["value"] == enc["participant"]
    again = json.loads(fhir_format.encode([decoded], {}))["entry"][0]["resource"]
    from bridge.plugins.fhir.keep import without_entry_key  # no identifier: it is created once on a content key

    assert without_entry_key(again) == enc


# --- intake helpers --------------------------------------------------------------------------------


def test_peek_and_detect(fhir_format):
    raw = fhir_format.encode([R.patient()], {})
    header = fhir_format.peek(raw)
    assert header.message_type == "Bundle/transaction"
    assert fhir_format.detect(raw)
    assert not fhir_format.detect(b'{"schema": "telemed-bridge/1", "kind": "Patient"}')
    assert not fhir_format.detect(b"MSH|^~\\&|")
    assert fhir_format.peek(b"garbage").message_type is None
    tagged = {"resourceType": "Bundle", "type": "message", "identifier": {"system": "urn:x", "value": "m-1"}}
    assert fhir_format.peek(json.dumps(tagged).encode()).dedupe_key == "fhir:urn:x|m-1"
    assert entries(raw)[0]["resource"]["resourceType"] == "Patient"


def test_peek_of_a_payload_just_encoded_reads_what_parsing_it_reads():
    """The encoder keeps its last payload's header (the engine peeks at every payload it encodes);
    that header must be the one parsing the bytes gives, and other bytes are still parsed."""
    import threading
    from pathlib import Path

    from bridge.testing import plugin_manager

    plugins = plugin_manager()
    fhir = plugins.format("fhir")
    examples = Path(__file__).resolve().parents[2] / "examples" / "messages"
    compared = 0
    for path in sorted(examples.glob("*.json")) + sorted(examples.glob("*.hl7")):
        source = plugins.format("hl7v2" if path.suffix == ".hl7" else "bridge")
        try:
            records = source.decode(path.read_bytes(), {})
            payload = fhir.encode(records, {"message_control_id": "TB7", "trace_id": "0" * 32,
                                            "default_timezone": "+00:00"})
        except Exception:  # an example another format speaks, or one FHIR refuses: not this test's
            continue
        assert fhir.peek(payload) == fhir.peek(bytes(bytearray(payload))), path.name  # (a copy is parsed)
        compared += 1
    assert compared >= 10
    other: list = []
    worker = threading.Thread(target=lambda: other.append(fhir.peek(payload)))  # another thread parses
    worker.start()
    worker.join()
    assert other == [fhir.peek(payload)]

"""The acme-json format: the kit's format contract, plus the exact shape Acme documents."""

from __future__ import annotations

import json

import pytest

import acme_bridge
from bridge import ClinicalNote, DecodeError, EncodeError, Encounter, Identifier, Period, Practitioner, HumanName
from bridge import PatientLocation, Prescription
from bridge.testing import FAKE_PHI, FormatContract, fake_patient


def visit(number: str = "V1001") -> list:
    """A finished video visit with a note; the patient carries the kit's seeded fake PHI."""
    patient = fake_patient(identifiers=[Identifier(value=FAKE_PHI.mrn, type="MR")])
    encounter = Encounter(identifiers=[Identifier(value=number, type="VN")], status="finished", modality="video",
                          period=Period(start="2024-05-01T10:00:00-05:00", end="2024-05-01T10:20:00-05:00"),
                          patient=patient, patient_location=PatientLocation(state="OR"),
                          practitioner=Practitioner(npi="1234567893", name=HumanName(family="Okafor", given=["Ada"])))
    note = ClinicalNote(id="N1", title="Visit note", text="Ottoline Quillfeather reports a dry cough for 3 days.",
                        content_type="text/plain", authored="2024-05-01T10:25:00-05:00",
                        author=Practitioner(npi="1234567893"))
    return [encounter, note]


class TestAcmeVisitJson(FormatContract):
    plugin, plugin_name = acme_bridge, "acme"
    format_name = "acme-json"
    sample_records = [visit("V1001"), visit("V1002")[:1]]
    bad_inputs = [
        b"{",
        b'{"acme": "visit/2", "visit": {}}',
        b'{"acme": "visit/1"}',
        b'{"acme": "visit/1", "visit": {"visit_number": "V1", "state": "done", "patient": {"mrn": "M"}}}',
        b'{"acme": "visit/1", "visit": {"visit_number": "V1", "state": "completed",'
        b' "patient": {"mrn": "M", "last_name": "Quillfeather", "dob": "23/04/1937"}}}',
    ]
    bad_records = [
        visit()[1:],  # a note without its visit
        [visit()[0], Prescription(id="RX1", patient=fake_patient())],
        [Encounter(identifiers=[Identifier(value="V9", type="VN")], status="arrived", patient=fake_patient())],
    ]


def test_the_document_has_the_documented_shape(bridge_register):
    spec = bridge_register(acme_bridge, "acme").format("acme-json")
    doc = json.loads(spec.encode(visit(), {}))
    assert doc["acme"] == "visit/1"
    assert doc["visit"]["visit_number"] == "V1001" and doc["visit"]["state"] == "completed"
    assert doc["visit"]["patient"] == {
        "mrn": FAKE_PHI.mrn, "last_name": FAKE_PHI.family, "first_names": [FAKE_PHI.given],
        "dob": FAKE_PHI.birth_date, "sex": "F", "phone": FAKE_PHI.phone,
        "address": {"lines": [FAKE_PHI.street], "state": "OR", "zip": "97201"}}
    assert doc["visit"]["clinician"] == {"npi": "1234567893", "last_name": "Okafor", "first_names": ["Ada"]}
    assert doc["notes"][0]["body"].startswith("Ottoline") and doc["notes"][0]["author_npi"] == "1234567893"


def test_errors_name_the_place(bridge_register):
    spec = bridge_register(acme_bridge, "acme").format("acme-json")
    with pytest.raises(DecodeError) as caught:
        spec.decode(b'{"acme": "visit/1", "visit": {"visit_number": "V1", "state": "completed",'
                    b' "patient": {"mrn": "M", "dob": "yesterday"}}}', {})
    assert caught.value.path == "visit.patient.dob" and "ISO 8601" in str(caught.value)
    with pytest.raises(DecodeError, match=r"notes\[0\].body: is required"):
        spec.decode(b'{"acme": "visit/1", "visit": {"visit_number": "V1", "state": "completed",'
                    b' "patient": {"mrn": "M"}}, "notes": [{"title": "t"}]}', {})
    with pytest.raises(EncodeError, match="MRN"):
        spec.encode([Encounter(identifiers=[Identifier(value="V1", type="VN")], status="finished",
                               patient=fake_patient(identifiers=[]))], {})

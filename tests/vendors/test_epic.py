"""The ``epic`` profile through a real engine: HL7v2 visit and prescription → the requests Epic documents."""

from __future__ import annotations

import base64
import copy
import json
import time

import pytest
import responses

from bridge import ConfigError

from .helpers import (
    MRN,
    VISIT,
    JwtTokenEndpoint,
    adt,
    body_json,
    calls,
    deliver,
    fixture,
    rde,
    vendor_engine,
    write_key,
)

BASE = "https://ehr.example.test/interconnect-fhir-oauth/api/FHIR/R4"
TOKEN_URL = "https://ehr.example.test/interconnect-fhir-oauth/oauth2/token"
MRN_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"
VISIT_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8"
PATIENT = "eTbPat1xYz0aBcDeF3"
ENCOUNTER = "eTbEnc9QrStUvWx3"
NOTE_QUERY = (f"/DocumentReference?patient={PATIENT}"
              f"&identifier=https://telemed-bridge.org/fhir/sid/note-id%7Cvisit-{VISIT}")
PATH = "/interconnect-fhir-oauth/api/FHIR/R4"

VISIT_TEXT = (
    "Telehealth visit note\nVisit number: V20260301\nModality: video\nStatus: finished\n"
    "Visit period: 2026-03-01T10:00:00-05:00 to 2026-03-01T10:30:00-05:00\n"
    "Patient location during the visit: TX, US (at home; patient-reported)\n"
    "Practitioner: CASEY CARE (NPI 1234567893), practising from TX\nReason: Cough (R05)\n"
    "Telehealth consent: captured")
RX_SECTION = (
    "\n\nPrescriptions written during this visit\n"
    "- [Rx RX-77] Amoxicillin 500 MG Oral Capsule (RxNorm 308182); quantity 30 capsule; "
    "sig: Take 1 capsule by mouth three times daily for 10 days; refills 0; pharmacy: none given; status active")


NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PRACTITIONER = "eTbPrac7"
MARK = "\n\nFiled by Telemed Bridge [telemed-bridge note-id {}]"
NOTE_SEARCH = f"/DocumentReference?patient={PATIENT}&type=http://loinc.org%7C11506-3"
VITAL_SEARCH = f"/Observation?patient={PATIENT}&category=vital-signs&code=http://loinc.org%7C8867-4"


def epic_options(tmp_path, key, **extra) -> dict:
    return {"base_url": BASE, "environment": "non-production",
            "client_ids": {"non-production": "tb-nonprod-client", "production": "tb-prod-client"},
            "token_url": TOKEN_URL, "kid": "tb-2026", "alg": "RS384", "key_file": write_key(tmp_path, key),
            "mrn_system": MRN_SYSTEM, "visit_number_system": VISIT_SYSTEM, "provider_id_system": NPI_SYSTEM,
            "default_timezone": "-05:00", "timeout": 5, **extra}


class EpicFake:
    """Epic's documented answers (responses callbacks) with the notes it holds, so searches see writes.
    The exact-request tests live here; behaviour against Epic's rules is tested on the simulator."""

    def __init__(self, mock: responses.RequestsMock, public_key):
        self.token = JwtTokenEndpoint(TOKEN_URL, public_key, "RS384", "tb-nonprod-client", "tb-2026")
        self.notes: list[dict] = []
        self.observations: list[dict] = []
        mock.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        mock.add(responses.GET, f"{BASE}/Patient", json=fixture("epic/patient-search.json"))
        mock.add(responses.GET, f"{BASE}/Encounter", json=fixture("epic/encounter-search.json"))
        mock.add(responses.GET, f"{BASE}/Practitioner", json=json.loads(self.searchset(
            [{"resourceType": "Practitioner", "id": PRACTITIONER}])[2]))
        mock.add_callback(responses.GET, f"{BASE}/DocumentReference", callback=self.search_notes)
        mock.add_callback(responses.POST, f"{BASE}/DocumentReference", callback=self.create_note)
        mock.add_callback(responses.GET, f"{BASE}/Observation", callback=self.search_observations)
        mock.add_callback(responses.POST, f"{BASE}/Observation", callback=self.create_observation)

    @staticmethod
    def searchset(resources: list[dict]) -> tuple[int, dict, str]:
        if not resources:
            return 200, {}, json.dumps(fixture("epic/search-empty.json"))
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "searchset", "total": len(resources),
                                    "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]})

    def search_notes(self, request):
        return self.searchset(self.notes)

    def create_note(self, request):
        self.notes.append({**json.loads(request.body), "id": f"eTbDoc{len(self.notes) + 1}"})
        return 201, {"Location": f"{BASE}/DocumentReference/{self.notes[-1]['id']}"}, ""

    def search_observations(self, request):
        return self.searchset(self.observations)

    def create_observation(self, request):
        self.observations.append({**json.loads(request.body), "id": "eTbObs1"})
        return 201, {"Location": f"{BASE}/Observation/eTbObs1"}, ""


def note_text(call) -> str:
    return base64.b64decode(body_json(call)["content"][0]["attachment"]["data"]).decode()


def test_visit_and_prescription_over_hl7v2_become_the_documented_epic_requests(tmp_path, rsa_key):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        epic = EpicFake(mock, rsa_key.public_key())
        engine = vendor_engine(tmp_path, "epic", epic_options(tmp_path, rsa_key))

        started = deliver(engine, adt("A04", "TM0001"))  # Epic's encounter is open: the vitals go now
        assert started.status == "delivered", started.last_error
        assert calls(mock) == [
            ("POST", "/interconnect-fhir-oauth/oauth2/token"),
            ("GET", f"{PATH}/Patient?identifier={MRN_SYSTEM}%7C{MRN}"),
            ("GET", f"{PATH}/Encounter?identifier={VISIT_SYSTEM}%7C{VISIT}"),
            ("GET", PATH + VITAL_SEARCH),
            ("POST", f"{PATH}/Observation"),
        ]
        epic.token.assert_valid_assertion()
        assert epic.token.forms[0]["scope"].split() == [
            "system/Patient.read", "system/Encounter.read", "system/Practitioner.read",
            "system/DocumentReference.read", "system/DocumentReference.write", "system/Binary.read",
            "system/Observation.read", "system/Observation.write"]
        assert body_json(mock.calls[4]) == {
            "resourceType": "Observation",
            "identifier": [{"system": "https://telemed-bridge.org/fhir/sid/observation-id",
                            "value": f"{ENCOUNTER}-8867-4-2026-03-01T10:10:00-05:00"}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs", "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "encounter": {"reference": f"Encounter/{ENCOUNTER}"},
            "valueQuantity": {"value": 72.0, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            "effectiveDateTime": "2026-03-01T10:10:00-05:00",
        }

        before = len(mock.calls)
        finished = deliver(engine, adt("A03", "TM0002"))
        assert finished.status == "delivered", finished.last_error
        assert calls(mock, before) == [
            ("GET", f"{PATH}/Patient?identifier={MRN_SYSTEM}%7C{MRN}"),
            ("GET", f"{PATH}/Encounter?identifier={VISIT_SYSTEM}%7C{VISIT}"),
            ("GET", PATH + VITAL_SEARCH),  # the reading is there: not sent again
            ("GET", PATH + NOTE_SEARCH),
            ("GET", f"{PATH}/Practitioner?identifier={NPI_SYSTEM}%7C1234567893"),
            ("POST", f"{PATH}/DocumentReference"),
        ]
        create = mock.calls[-1]
        assert create.request.headers["Authorization"] == "Bearer vendor-token"
        assert create.request.headers["Content-Type"] == "application/fhir+json"
        assert body_json(create) == {
            "resourceType": "DocumentReference",
            "identifier": [{"system": "https://telemed-bridge.org/fhir/sid/note-id", "value": f"visit-{VISIT}"}],
            "status": "current", "docStatus": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}],
                     "text": "Progress note"},
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/"
                                                "us-core-documentreference-category",
                                      "code": "clinical-note", "display": "Clinical Note"}]}],
            "subject": {"reference": f"Patient/{PATIENT}"},
            "date": "2026-03-01T10:30:00-05:00",
            "author": [{"reference": f"Practitioner/{PRACTITIONER}"}],
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(
                (VISIT_TEXT + MARK.format(f"visit-{VISIT}")).encode()).decode()}}],
            "context": {"encounter": [{"reference": f"Encounter/{ENCOUNTER}"}]},
        }

        before = len(mock.calls)
        prescribed = deliver(engine, rde())
        assert prescribed.status == "delivered", prescribed.last_error
        assert [c for c in calls(mock, before) if c[0] != "GET"] == [("POST", f"{PATH}/DocumentReference")]
        assert note_text(mock.calls[-1]) == ("Prescription written during telehealth visit V20260301\n"
                                             + RX_SECTION.split("\n")[-1] + MARK.format("rx-RX-77"))
        assert len(epic.token.forms) == 1  # the token was cached across deliveries

        before = len(mock.calls)
        assert deliver(engine, rde("TM0009")).status == "delivered"  # found by its marker: nothing sent
        assert {m for m, _ in calls(mock, before)} == {"GET"} and len(epic.notes) == 2


def test_429_is_retried_after_the_vendor_s_retry_after(tmp_path, rsa_key):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        epic = EpicFake(mock, rsa_key.public_key())
        mock.replace(responses.GET, f"{BASE}/Patient", status=429, headers={"Retry-After": "120"},
                     json={"resourceType": "OperationOutcome",
                           "issue": [{"severity": "error", "code": "throttled", "diagnostics": "Too many requests"}]})
        engine = vendor_engine(tmp_path, "epic", epic_options(tmp_path, rsa_key))
        row = deliver(engine, adt("A03", "TM0002"))
        assert row.status not in ("delivered", "dead")
        assert "HTTP 429" in row.last_error and "Too many requests" in row.last_error
        assert row.next_attempt_at - time.time() > 110
        assert epic.notes == []


def test_operation_outcome_text_is_kept_and_a_4xx_is_a_dead_letter(tmp_path, rsa_key):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        EpicFake(mock, rsa_key.public_key())
        mock.replace(responses.POST, f"{BASE}/DocumentReference", status=400, json={
            "resourceType": "OperationOutcome", "issue": [{
                "severity": "fatal", "code": "value", "details": {"text": "Invalid note type"},
                "diagnostics": "type.coding[0] is not a valid note type for this organization"}]})
        engine = vendor_engine(tmp_path, "epic", epic_options(tmp_path, rsa_key, write_vitals=False))
        row = deliver(engine, adt("A03", "TM0002"))
        assert row.status == "dead"
        assert "HTTP 400" in row.last_error and "Invalid note type" in row.last_error
        assert "not a valid note type for this organization" in row.last_error


def test_a_visit_unknown_to_epic_waits_and_a_wrong_patient_is_refused(tmp_path, rsa_key):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        EpicFake(mock, rsa_key.public_key())
        mock.replace(responses.GET, f"{BASE}/Encounter", json=fixture("epic/search-empty.json"))
        engine = vendor_engine(tmp_path, "epic", epic_options(tmp_path, rsa_key))
        row = deliver(engine, adt("A03", "TM0002"))
        assert row.status not in ("delivered", "dead") and "no encounter with this visit number" in row.last_error

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        EpicFake(mock, rsa_key.public_key())
        other = copy.deepcopy(fixture("epic/encounter-search.json"))
        other["entry"][0]["resource"]["subject"]["reference"] = "Patient/eSomeoneElse"
        mock.replace(responses.GET, f"{BASE}/Encounter", json=other)
        (tmp_path / "b").mkdir()
        engine = vendor_engine(tmp_path / "b", "epic", epic_options(tmp_path / "b", rsa_key))
        row = deliver(engine, adt("A03", "TM0002"))
        assert row.status == "dead" and "belongs to another patient" in row.last_error


@pytest.mark.parametrize("change, path, message", [
    ({"mrn_system": None}, "options.mrn_system", "is required"),
    ({"environment": "production", "client_ids": {"non-production": "x"}}, "options.client_ids.production",
     "is required (environment is production)"),
    ({"environment": "prod"}, "options.environment", "expected one of production, non-production"),
    ({"key_file": None}, "options.key_file", "needs key_file"),
    ({"alg": "HS256"}, "options.alg", "expected one of RS384, ES384"),
    ({"base_url": "fhir.epic.com/R4"}, "options.base_url", "expected an https:// URL"),
])
def test_configuration_errors_name_the_key(tmp_path, rsa_key, change, path, message):
    options = {k: v for k, v in {**epic_options(tmp_path, rsa_key), **change}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        vendor_engine(tmp_path, "epic", options)
    assert any(p == f"destinations.ehr.{path}" and message in m for p, m in caught.value.problems), \
        caught.value.problems


def test_a_key_file_that_is_not_a_key_is_a_config_error_naming_it(tmp_path, rsa_key):
    options = epic_options(tmp_path, rsa_key)
    (tmp_path / "keys" / "backend.pem").write_text("not a key")
    with pytest.raises(ConfigError, match=r"destinations\.ehr\.options\.key_file: not an unencrypted PEM"):
        vendor_engine(tmp_path, "epic", options)

"""The ``athena`` profile through a real engine: HL7v2 visit and prescription → athenahealth's v1 requests."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

import pytest
import responses

from bridge import ConfigError

from .helpers import MRN, adt, calls, deliver, fixture, form_of, rde, vendor_engine, write_key
from .test_epic import RX_SECTION, VISIT_TEXT

HOST = "https://api.preview.platform.athenahealth.com"
MRN_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.5.999.1"
VISIT_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.3.999.8"
DOCS = "/v1/195900/patients/14545/documents/encounterdocument"
LIST = f"{DOCS}?departmentid=1&documentsubclass=PROGRESSNOTE"
PATIENT_SEARCH = (f"/fhir/r4/Patient?identifier={MRN_SYSTEM}%7C{MRN}"
                  "&ah-practice=Organization/a-1.Practice-195900")


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("ATHENA_SECRET", "athena-secret")


def athena_options(**extra) -> dict:
    return {"practice_id": "195900", "department_id": "1", "environment": "non-production",
            "client_ids": {"non-production": "0oa-preview-client", "production": "0oa-prod-client"},
            "client_secret_env": "ATHENA_SECRET", "mrn_system": MRN_SYSTEM, "visit_number_system": VISIT_SYSTEM,
            "timeout": 5, **extra}


class AthenaFake:
    def __init__(self, mock: responses.RequestsMock):
        self.documents: list[dict] = []
        self.token_requests = []
        mock.add_callback(responses.POST, f"{HOST}/oauth2/v1/token", callback=self.token)
        mock.add(responses.GET, f"{HOST}/fhir/r4/Patient", json=fixture("athena/patient-search.json"))
        mock.add_callback(responses.GET, f"{HOST}{DOCS}", callback=self.list_documents)
        mock.add_callback(responses.POST, f"{HOST}{DOCS}", callback=self.create_document)

    def token(self, request):
        self.token_requests.append(request)
        return 200, {}, json.dumps({"access_token": "athena-token", "expires_in": "3600", "token_type": "Bearer",
                                    "scope": "athena/service/Athenanet.MDP.*"})

    def list_documents(self, request):
        answer = fixture("athena/encounterdocuments-empty.json")
        answer["encounterdocuments"] = self.documents
        answer["totalcount"] = len(self.documents)
        return 200, {}, json.dumps(answer)

    def create_document(self, request):
        form = parse_qs(request.body.decode())
        created = fixture("athena/encounterdocument-created.json")
        created["encounterdocumentid"] += len(self.documents)
        self.documents.append({"encounterdocumentid": created["encounterdocumentid"],
                               "internalnote": form["internalnote"][0],
                               "documentsubclass": "ENCOUNTERDOCUMENT_PROGRESSNOTE"})
        return 200, {}, json.dumps(created)


def test_visit_and_prescription_over_hl7v2_become_the_documented_athena_requests(tmp_path, secret):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        athena = AthenaFake(mock)
        engine = vendor_engine(tmp_path, "athena", athena_options())
        assert deliver(engine, adt("A04", "TM0001")).status == "delivered" and calls(mock) == []

        finished = deliver(engine, adt("A03", "TM0002"))
        assert finished.status == "delivered", finished.last_error
        assert calls(mock) == [("POST", "/oauth2/v1/token"), ("GET", PATIENT_SEARCH), ("GET", LIST), ("POST", DOCS)]
        token = athena.token_requests[0]
        assert token.headers["Authorization"] == "Basic " + base64.b64encode(b"0oa-preview-client:athena-secret").decode()
        assert form_of(mock.calls[0]) == {"grant_type": "client_credentials",
                                          "scope": "athena/service/Athenanet.MDP.* system/Patient.read"}
        create = mock.calls[3].request
        assert create.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert create.headers["Authorization"] == "Bearer athena-token"
        assert create.headers["Accept"] == "application/json"
        assert form_of(mock.calls[3]) == {
            "departmentid": "1", "documentsubclass": "PROGRESSNOTE", "documentdata": VISIT_TEXT,
            "internalnote": "Filed by Telemed Bridge [telemed-bridge note-id visit-V20260301]"}
        assert mock.calls[1].request.headers["Accept"] == "application/fhir+json"

        before = len(mock.calls)
        prescribed = deliver(engine, rde())
        assert prescribed.status == "delivered", prescribed.last_error
        assert calls(mock, before) == [("GET", PATIENT_SEARCH), ("GET", LIST), ("POST", DOCS)]
        rx_line = RX_SECTION.split("\n")[-1]
        assert form_of(mock.calls[-1]) == {
            "departmentid": "1", "documentsubclass": "PROGRESSNOTE",
            "documentdata": f"Prescription written during telehealth visit V20260301\n{rx_line}",
            "internalnote": "Filed by Telemed Bridge [telemed-bridge note-id rx-RX-77]"}

        before = len(mock.calls)
        assert deliver(engine, rde("TM0009")).status == "delivered"  # sent again: found, not created twice
        assert [m for m, _ in calls(mock, before)] == ["GET", "GET"] and len(athena.documents) == 2


def test_a_refused_create_keeps_athena_s_error_text(tmp_path, secret):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        AthenaFake(mock)
        mock.replace(responses.POST, f"{HOST}{DOCS}", status=400,
                     json={"error": "Invalid departmentid", "detailedmessage": "Department 1 is not active"})
        engine = vendor_engine(tmp_path, "athena", athena_options())
        row = deliver(engine, adt("A03", "TM0002"))
        assert row.status == "dead"
        assert "HTTP 400 — Invalid departmentid — Department 1 is not active" in row.last_error


def test_wrong_practice_is_a_configuration_error_naming_it(tmp_path, secret):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        AthenaFake(mock)
        mock.replace(responses.GET, f"{HOST}/fhir/r4/Patient", status=403, json={"error": "Forbidden"})
        engine = vendor_engine(tmp_path, "athena", athena_options())
        row = deliver(engine, adt("A03", "TM0002"))
        assert row.status == "dead"
        assert "Practice not valid or accessible: check destinations.ehr.options.practice_id = 195900" \
            in row.last_error


def test_private_key_jwt_es384_for_athena(tmp_path, ec_key):
    import jwt

    options = athena_options(auth_method="private_key_jwt", kid="athena-es", alg="ES384",
                             key_file=write_key(tmp_path, ec_key, "athena.pem"))
    del options["client_secret_env"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        AthenaFake(mock)
        engine = vendor_engine(tmp_path, "athena", options)
        assert deliver(engine, adt("A03", "TM0002")).status == "delivered"
        form = form_of(mock.calls[0])
        claims = jwt.decode(form["client_assertion"], ec_key.public_key(), algorithms=["ES384"],
                            audience=f"{HOST}/oauth2/v1/token", issuer="0oa-preview-client")
        assert claims["sub"] == "0oa-preview-client" and jwt.get_unverified_header(form["client_assertion"])[
            "kid"] == "athena-es"
        assert "Authorization" not in mock.calls[0].request.headers  # no Basic auth with private_key_jwt


@pytest.mark.parametrize("change, path, message", [
    ({"practice_id": None}, "options.practice_id", "is required"),
    ({"practice_id": "a-195900"}, "options.practice_id", "numeric id"),
    ({"department_id": None}, "options.department_id", "is required"),
    ({"client_ids": {"prod": "x"}}, "options.client_ids", "unknown environment(s) prod"),
])
def test_configuration_errors_name_the_key(tmp_path, secret, change, path, message):
    options = {k: v for k, v in {**athena_options(), **change}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        vendor_engine(tmp_path, "athena", options)
    assert any(p == f"destinations.ehr.{path}" and message in m for p, m in caught.value.problems), \
        caught.value.problems

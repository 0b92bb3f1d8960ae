"""The ``oracle_health`` profile through a real engine: HL7v2 visit and prescription → Millennium's requests."""

from __future__ import annotations

import base64
import json

import pytest
import responses

from bridge import ConfigError

from .helpers import MRN, VISIT, body_json, calls, deliver, fixture, rde, adt, vendor_engine

TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
BASE = f"https://fhir-ehr-code.cerner.com/r4/{TENANT}"
PATH = f"/r4/{TENANT}"
TOKEN_URL = f"https://authorization.cerner.com/tenants/{TENANT}/protocols/oauth2/profiles/smart-v1/token"
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.6.1000"
VISIT_SYSTEM = "urn:oid:2.16.840.1.113883.3.13.6"
PATIENT = "12724066"
VIDEO_TYPE = "2560523697"


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("ORACLE_SECRET", "s3cr3t-value")
    return "s3cr3t-value"


def oracle_options(**extra) -> dict:
    return {"tenant": TENANT, "base_url": BASE, "environment": "non-production",
            "client_ids": {"non-production": "tb-oracle-np", "production": "tb-oracle-prod"},
            "auth_method": "client_secret_basic", "client_secret_env": "ORACLE_SECRET",
            "mrn_system": MRN_SYSTEM, "visit_number_system": VISIT_SYSTEM,
            "encounter_types": {"video": VIDEO_TYPE, "default": "309308"},
            "modality_attribute": {"code": "4048128", "code_set": 100026},
            "service_provider": "675844", "default_timezone": "-05:00", "timeout": 5, **extra}


class OracleFake:
    """Millennium's documented answers, holding the encounters and medications written to it."""

    def __init__(self, mock: responses.RequestsMock):
        self.encounters: dict[str, dict] = {}
        self.medications: list[dict] = []
        self.token_requests = []
        mock.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        mock.add(responses.GET, f"{BASE}/Patient", json=fixture("oracle_health/patient-search.json"))
        mock.add_callback(responses.GET, f"{BASE}/Encounter", callback=lambda r: self.searchset(
            list(self.encounters.values())))
        mock.add_callback(responses.POST, f"{BASE}/Encounter", callback=self.create_encounter)
        mock.add_callback(responses.PATCH, f"{BASE}/Encounter/97953477", callback=self.patch_encounter)
        mock.add_callback(responses.GET, f"{BASE}/MedicationRequest", callback=lambda r: self.searchset(
            self.medications))
        mock.add_callback(responses.POST, f"{BASE}/MedicationRequest", callback=self.create_medication)

    def token(self, request):
        self.token_requests.append(request)
        return 200, {}, json.dumps({"access_token": "oracle-token", "scope": "system/Encounter.write",
                                    "token_type": "Bearer", "expires_in": 570})

    @staticmethod
    def searchset(resources):
        doc = fixture("oracle_health/search-empty.json")
        if resources:
            doc["entry"] = [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r,
                             "search": {"mode": "match"}} for r in resources]
        return 200, {}, json.dumps(doc)

    def create_encounter(self, request):
        self.encounters["97953477"] = {**json.loads(request.body), "id": "97953477", "meta": {"versionId": "0"}}
        return 201, {"Location": f"{BASE}/Encounter/97953477", "ETag": 'W/"0"',
                     "opc-request-id": "A1B2C3D4E5"}, ""

    def patch_encounter(self, request):
        current = self.encounters["97953477"]
        if request.headers.get("If-Match") != f'W/"{current["meta"]["versionId"]}"':
            return 412, {}, json.dumps({"resourceType": "OperationOutcome",
                                        "issue": [{"severity": "error", "code": "conflict"}]})
        for op in json.loads(request.body):
            _, *keys = op["path"].split("/")
            target = current
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = op["value"]
        current["meta"] = {"versionId": str(int(current["meta"]["versionId"]) + 1)}
        return 200, {"ETag": f'W/"{current["meta"]["versionId"]}"'}, ""

    def create_medication(self, request):
        self.medications.append({**json.loads(request.body), "id": "313757847"})
        return 201, {"Location": f"{BASE}/MedicationRequest/313757847"}, ""


def test_visit_and_prescription_over_hl7v2_become_the_documented_millennium_requests(tmp_path, secret):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        oracle = OracleFake(mock)
        engine = vendor_engine(tmp_path, "oracle_health", oracle_options())

        started = deliver(engine, adt("A04", "TM0001"))
        assert started.status == "delivered", started.last_error
        encounter_search = f"{PATH}/Encounter?patient={PATIENT}&identifier={VISIT_SYSTEM}%7C{VISIT}"
        assert calls(mock) == [
            ("POST", f"/tenants/{TENANT}/protocols/oauth2/profiles/smart-v1/token"),
            ("GET", f"{PATH}/Patient?identifier={MRN_SYSTEM}%7C{MRN}"),
            ("GET", encounter_search),
            ("POST", f"{PATH}/Encounter"),
        ]
        token = oracle.token_requests[0]
        assert token.headers["Authorization"] == "Basic " + base64.b64encode(b"tb-oracle-np:s3cr3t-value").decode()
        assert "grant_type=client_credentials" in token.body
        create = mock.calls[3].request
        assert create.headers["Authorization"] == "Bearer oracle-token"
        assert create.headers["Content-Type"] == "application/fhir+json"
        assert body_json(mock.calls[3]) == {
            "resourceType": "Encounter",
            "extension": [{"url": "https://fhir-ehr.cerner.com/r4/StructureDefinition/custom-attribute",
                           "extension": [
                               {"url": "custom-attribute-name", "valueCodeableConcept": {"coding": [
                                   {"system": f"https://fhir.cerner.com/{TENANT}/codeSet/100026",
                                    "code": "4048128"}]}},
                               {"url": "custom-attribute-value", "valueString": "video"}]}],
            "identifier": [{"system": VISIT_SYSTEM, "value": VISIT}],
            "status": "in-progress",
            "type": [{"coding": [{"system": f"https://fhir.cerner.com/{TENANT}/codeSet/71", "code": VIDEO_TYPE,
                                  "userSelected": True}]}],
            "subject": {"reference": f"Patient/{PATIENT}"},
            "period": {"start": "2026-03-01T10:00:00-05:00"},
            "serviceProvider": {"reference": "Organization/675844"},
        }
        assert "class" not in body_json(mock.calls[3])

        before = len(mock.calls)
        finished = deliver(engine, adt("A03", "TM0002"))
        assert finished.status == "delivered", finished.last_error
        assert calls(mock, before) == [("GET", f"{PATH}/Patient?identifier={MRN_SYSTEM}%7C{MRN}"),
                                       ("GET", encounter_search),
                                       ("PATCH", f"{PATH}/Encounter/97953477")]
        patch = mock.calls[before + 2]
        assert patch.request.headers["Content-Type"] == "application/json-patch+json"
        assert patch.request.headers["If-Match"] == 'W/"0"'
        assert body_json(patch) == [{"op": "replace", "path": "/status", "value": "finished"},
                                    {"op": "add", "path": "/period/end", "value": "2026-03-01T10:30:00-05:00"}]

        before = len(mock.calls)
        prescribed = deliver(engine, rde())
        assert prescribed.status == "delivered", prescribed.last_error
        assert calls(mock, before) == [("GET", f"{PATH}/Patient?identifier={MRN_SYSTEM}%7C{MRN}"),
                                       ("GET", encounter_search),
                                       ("GET", f"{PATH}/MedicationRequest?patient={PATIENT}"),
                                       ("POST", f"{PATH}/MedicationRequest")]
        assert body_json(mock.calls[-1]) == {
            "resourceType": "MedicationRequest",
            "identifier": [{"system": "https://telemed-bridge.org/fhir/sid/prescriber-order-number",
                            "value": "RX-77"}],
            "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                      "code": "community", "display": "Community"}]}],
            "reportedBoolean": True,
            "medicationCodeableConcept": {"text": "Amoxicillin 500 MG Oral Capsule", "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "308182",
                 "display": "Amoxicillin 500 MG Oral Capsule"}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "encounter": {"reference": "Encounter/97953477"},
            "authoredOn": "2026-03-01T10:20:00-05:00",
            "dosageInstruction": [{"text": "Take 1 capsule by mouth three times daily for 10 days"}],
            "dispenseRequest": {"quantity": {"value": 30.0, "unit": "capsule"}, "numberOfRepeatsAllowed": 0},
            "note": [{"text": "Prescribed on the telemedicine platform (order RX-77) and sent to the pharmacy by "
                              "it; documented here, not e-prescribed from Millennium."}],
        }

        before = len(mock.calls)  # everything again: searches only, nothing written twice
        for raw in (adt("A03", "TM0012"), rde("TM0013")):
            assert deliver(engine, raw).status == "delivered"
        assert {m for m, _ in calls(mock, before)} == {"GET"}
        assert len(oracle.encounters) == 1 and len(oracle.medications) == 1


def test_wrong_tenant_is_a_configuration_error_naming_it(tmp_path, secret):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        OracleFake(mock)
        mock.replace(responses.GET, f"{BASE}/Patient", status=403, json=fixture("oracle_health/tenant-403.json"))
        engine = vendor_engine(tmp_path, "oracle_health", oracle_options())
        row = deliver(engine, adt("A04", "TM0001"))
        assert row.status == "dead"
        assert row.last_error.startswith(f"permanent failure: Tenant not valid or accessible: check "
                                         f"destinations.ehr.options.tenant = {TENANT}")
        assert "HTTP 403" in row.last_error


def test_encounter_type_missing_for_the_modality_is_a_clear_dead_letter(tmp_path, secret):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        oracle = OracleFake(mock)
        engine = vendor_engine(tmp_path, "oracle_health", oracle_options(encounter_types={"audio_only": "1"}))
        row = deliver(engine, adt("A04", "TM0001"))
        assert row.status == "dead" and "options.encounter_types.video" in row.last_error
        assert oracle.encounters == {}


@pytest.mark.parametrize("change, path, message", [
    ({"tenant": "not-a-guid"}, "options.tenant", "expected the tenant GUID"),
    ({"base_url": "https://fhir-ehr.cerner.com/r4/0000"}, "options.base_url", "must be the tenant's base"),
    ({"encounter_types": {"zoom": "1"}}, "options.encounter_types.zoom", "unknown modality"),
    ({"encounter_types": {"video": "VR"}}, "options.encounter_types.video", "code set 71 code value"),
    ({"client_secret_env": None}, "options.client_secret_file", "needs client_secret_file or client_secret_env"),
    ({"auth_method": "magic"}, "options.auth_method", "expected one of private_key_jwt, client_secret_basic"),
])
def test_configuration_errors_name_the_key(tmp_path, secret, change, path, message):
    options = {k: v for k, v in {**oracle_options(), **change}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        vendor_engine(tmp_path, "oracle_health", options)
    assert any(p == f"destinations.ehr.{path}" and message in m for p, m in caught.value.problems), \
        caught.value.problems

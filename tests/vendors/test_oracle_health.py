"""The ``oracle_health`` profile through a real engine against the Oracle Health simulator.

HL7v2 in (a video visit, its note as MDM^T02, the prescription as RDE^O11), Millennium's documented
requests out, checked by :class:`bridge.testing.OracleHealthSimulator`, which refuses whatever the
Oracle documentation says a tenant refuses. Lost answers and stale versions are scripted there.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
import responses

from bridge import ConfigError
from bridge.testing import OracleHealthSimulator

from .helpers import MRN, NPI, VISIT, adt, deliver, fixture, rde, segment, vendor_engine

TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.6.1000"
VISIT_SYSTEM = "urn:oid:2.16.840.1.113883.3.13.6"
PATIENT = "12724066"
VIDEO_TYPE = "2560523697"
SECRET = "s3cr3t-value"
ORACLE_DOCS = ("https://docs.oracle.com/en/industries/health/", "https://fhir.cerner.com/millennium/r4/")


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("ORACLE_SECRET", SECRET)
    return SECRET


@pytest.fixture
def oracle(secret):
    with OracleHealthSimulator(tenant=TENANT, client_id="tb-oracle-np", client_secret=SECRET) as sim:
        sim.add_patient(MRN_SYSTEM, MRN, PATIENT)
        yield sim


def oracle_options(sim: OracleHealthSimulator | None = None, **extra) -> dict:
    base = sim.base if sim else f"https://fhir-ehr-code.cerner.com/r4/{TENANT}"
    options = {"tenant": TENANT, "base_url": base, "environment": "non-production",
               "client_ids": {"non-production": "tb-oracle-np", "production": "tb-oracle-prod"},
               "auth_method": "client_secret_basic", "client_secret_env": "ORACLE_SECRET",
               "mrn_system": MRN_SYSTEM, "visit_number_system": VISIT_SYSTEM,
               "encounter_types": {"video": VIDEO_TYPE, "default": "309308"},
               "modality_attribute": {"id": "ENCNTR:4048128", "name": "Telehealth modality"},
               "service_provider": "675844", "default_timezone": "-05:00", "timeout": 2}
    if sim:
        options["token_url"] = sim.token_url
    return {**options, **extra}


def mdm(control_id: str = "TM0004", status: str = "AU") -> bytes:
    """The visit note: MDM^T02 with TXA (document TN-501) and its text in OBX."""
    lines = [
        f"MSH|^~\\&|TELEMED|VCLINIC|EHR|HOSP|20260301103500-0500||MDM^T02^MDM_T02|{control_id}|P|2.5",
        "EVN|T02|20260301103500-0500",
        f"PID|1||{MRN}^^^HOSP^MR||PATIENT^TEST||19800215|F",
        segment("PV1", {1: "1", 2: "O", 19: f"{VISIT}^^^HOSP^VN", 44: "20260301100000-0500"}),
        segment("TXA", {1: "1", 2: "PN", 3: "TX", 4: "20260301103400-0500",
                        9: f"{NPI}^CARE^CASEY^^^^^^NPI", 12: "TN-501", 17: status}),
        "OBX|1|TX|11506-3^Progress note^LN||Cough for three days; no fever. Advised fluids.||||||F",
    ]
    return ("\r".join(lines) + "\r").encode()


def writes(sim: OracleHealthSimulator) -> list[tuple[str, str]]:
    return [(r.method, r.path.split("?")[0].rsplit(f"/r4/{TENANT}", 1)[-1]) for r in sim.requests
            if r.method in ("POST", "PATCH") and "/r4/" in r.path]


def settle(engine, raw: bytes, rounds: int = 40):
    """Deliver, then keep draining while a retry is scheduled (backoff is 10 ms in these tests)."""
    row = deliver(engine, raw)
    for _ in range(rounds):
        if row.status not in ("pending", "retry", "due"):
            return row
        time.sleep(0.05)
        engine.drain()
        (row,) = [r for r in engine.store.outbox_rows(message_id=row.message_id)]
    return row


def test_a_telehealth_visit_with_note_and_prescription_goes_through_with_nothing_refused(tmp_path, oracle):
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle))

    started = deliver(engine, adt("A04", "TM0001"))
    assert started.status == "delivered", started.last_error
    (encounter,) = oracle.all("Encounter")
    assert encounter["identifier"][0]["type"]["coding"][0]["code"] == "VN"
    assert encounter["type"][0]["coding"][0] == {"system": f"https://fhir.cerner.com/{TENANT}/codeSet/71",
                                                 "code": VIDEO_TYPE, "userSelected": True}
    assert "class" not in encounter and encounter["serviceProvider"] == {"reference": "Organization/675844"}
    name, value = encounter["extension"][0]["extension"]
    assert name == {"id": "ENCNTR:4048128", "url": "custom-attribute-name", "valueString": "Telehealth modality"}
    assert value == {"url": "custom-attribute-value", "valueString": "video"}

    lost = oracle.lose_answer("POST", "/DocumentReference")  # written, but the answer never comes back
    noted = deliver(engine, mdm())
    assert noted.status == "delivered", noted.last_error
    assert lost.done
    (document,) = oracle.all("DocumentReference")
    assert document["docStatus"] == "final" and "identifier" not in document
    assert document["content"][0]["attachment"]["contentType"] == "text/plain;charset=utf-8"
    assert document["context"] == {"encounter": [{"reference": f"Encounter/{encounter['id']}"}],
                                   "period": {"start": "2026-03-01T10:00:00-05:00",
                                              "end": "2026-03-01T10:34:00-05:00"}}

    prescribed = deliver(engine, rde())
    assert prescribed.status == "delivered", prescribed.last_error
    (medication,) = oracle.all("MedicationRequest")
    assert medication["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    assert medication["dispenseRequest"]["quantity"]["code"] == "C48480"
    assert "unit" not in medication["dispenseRequest"]["quantity"]

    oracle.conflict_next_patch(encounter["id"])  # someone edits the encounter first: 409 on our PATCH
    finished = deliver(engine, adt("A03", "TM0002"))
    assert finished.status == "delivered", finished.last_error
    (encounter,) = oracle.all("Encounter")
    assert encounter["period"]["end"] == "2026-03-01T10:30:00-05:00"
    assert [r.status for r in oracle.violations] == [409]  # the stale version, then the patch went through

    for raw in (adt("A04", "TM0011"), mdm("TM0014"), rde("TM0013"), adt("A03", "TM0012")):  # all again
        assert deliver(engine, raw).status == "delivered"
    assert {k: len(oracle.all(k)) for k in ("Encounter", "DocumentReference", "MedicationRequest")} == \
        {"Encounter": 1, "DocumentReference": 1, "MedicationRequest": 1}
    assert [r.status for r in oracle.violations] == [409]


def test_the_requests_are_the_documented_ones(tmp_path, oracle):
    """Exact bodies: what each Millennium page lists, and nothing it does not."""
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle))
    for raw in (adt("A04", "TM0001"), mdm(), rde(), adt("A03", "TM0002")):
        assert deliver(engine, raw).status == "delivered"
    assert writes(oracle) == [("POST", "/Encounter"), ("POST", "/DocumentReference"),
                              ("POST", "/MedicationRequest"), ("PATCH", "/Encounter/97953477")]
    posts = {r.path.rsplit("/", 1)[-1]: r for r in oracle.requests if r.method == "POST" and "/r4/" in r.path}
    note = posts["DocumentReference"].json()
    text = base64.b64decode(note["content"][0]["attachment"].pop("data")).decode()
    assert "Advised fluids" in text
    assert note == {
        "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "content": [{"attachment": {"contentType": "text/plain;charset=utf-8",
                                    "title": "Telehealth visit note [tb-note TN-501]",
                                    "creation": "2026-03-01T10:34:00-05:00"}}],
        "context": {"encounter": [{"reference": "Encounter/97953477"}],
                    "period": {"start": "2026-03-01T10:00:00-05:00", "end": "2026-03-01T10:34:00-05:00"}},
    }
    medication = posts["MedicationRequest"].json()
    assert medication["dispenseRequest"] == {"quantity": {"value": 30.0, "system": medication["dispenseRequest"]
                                                          ["quantity"]["system"], "code": "C48480"},
                                             "numberOfRepeatsAllowed": 0}
    assert not {"identifier", "category", "authoredOn"} & set(medication)
    assert medication["note"][0]["text"].endswith("[tb-rx RX-77]")
    patch = [r for r in oracle.requests if r.method == "PATCH"][0]
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert patch.headers["If-Match"] == 'W/"0"'
    assert patch.json() == [{"op": "replace", "path": "/period/end", "value": "2026-03-01T10:30:00-05:00"}]
    encounter_search = [r.path for r in oracle.requests if r.method == "GET" and "/Encounter?" in r.path][0]
    assert encounter_search.endswith(f"/Encounter?identifier={VISIT_SYSTEM}%7C{VISIT}")
    assert oracle.violations == []


@pytest.mark.parametrize("resource, raws", [
    ("Encounter", lambda: [adt("A04", "TM0001")]),
    ("MedicationRequest", lambda: [adt("A04", "TM0001"), rde()]),
])
def test_a_lost_answer_is_reconciled_and_a_redelivery_writes_nothing_twice(tmp_path, oracle, resource, raws):
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle))
    lost = oracle.lose_answer("POST", f"/{resource}")
    for raw in raws():
        row = deliver(engine, raw)
        assert row.status == "delivered", row.last_error
    assert lost.done and len(oracle.all(resource)) == 1
    for raw in raws():
        assert deliver(engine, raw.replace(b"|TM000", b"|TM009")).status == "delivered"
    assert len(oracle.all(resource)) == 1 and oracle.violations == []


def test_the_earlier_write_is_found_on_a_later_page(tmp_path, oracle):
    """A patient with a long medication list: ours is found past the first page, so nothing is doubled."""
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle))
    assert deliver(engine, adt("A04", "TM0001")).status == "delivered"
    for n in range(150):  # documented home medications filed by others before ours
        oracle.resources.setdefault("MedicationRequest", {})[f"m{n}"] = {
            "resourceType": "MedicationRequest", "id": f"m{n}", "subject": {"reference": f"Patient/{PATIENT}"},
            "intent": "plan", "note": [{"text": "home med"}]}
    assert deliver(engine, rde()).status == "delivered"
    assert deliver(engine, rde("TM0023")).status == "delivered"
    assert len(oracle.all("MedicationRequest")) == 151
    pages = [r.path for r in oracle.requests if "/MedicationRequest?" in r.path]
    assert any("-offset=100" in p for p in pages)


def test_a_500_for_a_missing_field_dead_letters_at_once_and_other_5xx_are_retried(tmp_path, oracle):
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle), max_attempts=5)
    oracle.inject(status=503, text="maintenance", when=lambda r: r.method == "POST")
    row = settle(engine, adt("A04", "TM0001"))
    assert row.status == "delivered" and row.attempts == 2, row.last_error

    required = {"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "required",
                                                               "location": ["/f:MedicationRequest/f:status"]}]}
    oracle.inject(status=500, body=required, when=lambda r: r.method == "GET" and "/Encounter?" in r.full_path)
    row = settle(engine, adt("A03", "TM0002"))  # a read's 500 'required' is Millennium's own data: retried
    assert row.status == "delivered" and row.attempts == 2, row.last_error

    oracle.inject(status=500, body=required, when=lambda r: r.method == "POST")
    row = settle(engine, rde())
    assert row.status == "dead" and row.attempts == 1, (row.status, row.attempts)
    assert "missing required field" in row.last_error and "re-validated" in row.last_error
    assert oracle.all("MedicationRequest") == []


def test_a_conflict_on_every_patch_is_retried_later_not_dead_lettered(tmp_path, oracle):
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle), max_attempts=5)
    assert deliver(engine, adt("A04", "TM0001")).status == "delivered"
    for _ in range(2):
        oracle.conflict_next_patch()
    row = settle(engine, adt("A03", "TM0002"))
    assert row.status == "delivered" and row.attempts == 2, (row.status, row.last_error)
    assert [r.status for r in oracle.violations] == [409, 409]


def test_a_draft_note_is_refused_with_the_documented_reason(tmp_path, oracle):
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle))
    assert deliver(engine, adt("A04", "TM0001")).status == "delivered"
    row = deliver(engine, mdm(status="IP"))
    assert row.status == "dead" and "final or amended" in row.last_error
    assert oracle.all("DocumentReference") == [] and oracle.violations == []


def test_a_location_instead_of_a_service_provider(tmp_path, oracle):
    options = {k: v for k, v in oracle_options(oracle, location="21250409").items() if k != "service_provider"}
    engine = vendor_engine(tmp_path, "oracle_health", options)
    assert deliver(engine, adt("A04", "TM0001")).status == "delivered"
    (encounter,) = oracle.all("Encounter")
    assert encounter["location"] == [{"location": {"reference": "Location/21250409"}}]
    assert "serviceProvider" not in encounter


# --- the simulator refuses what Oracle documents as refused -----------------------------------------


def token(sim: OracleHealthSimulator) -> dict[str, str]:
    answer = requests.post(sim.token_url, data={"grant_type": "client_credentials"},
                           auth=("tb-oracle-np", SECRET), timeout=5)
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "Content-Type": "application/fhir+json"}


def test_the_simulator_wants_a_token_for_its_tenant(oracle):
    assert requests.post(oracle.token_url, data={"grant_type": "client_credentials"}, auth=("tb-oracle-np", "wrong"),
                         timeout=5).status_code == 401
    search = f"{oracle.base}/Patient?identifier={MRN_SYSTEM}%7C{MRN}"
    assert requests.get(search, timeout=5).status_code == 401
    headers = token(oracle)
    assert requests.get(search, headers=headers, timeout=5).json()["entry"][0]["resource"]["id"] == PATIENT
    other = search.replace(TENANT, "00000000-0000-0000-0000-000000000000")
    answer = requests.get(other, headers=headers, timeout=5)
    assert answer.status_code == 403 and "Tenant not valid or accessible" in answer.text
    assert requests.get(f"{oracle.base}/MedicationRequest", headers=headers, timeout=5).status_code == 400


GOOD_ENCOUNTER = {"resourceType": "Encounter", "status": "in-progress",
                  "type": [{"coding": [{"system": f"https://fhir.cerner.com/{TENANT}/codeSet/71", "code": "1"}]}],
                  "subject": {"reference": f"Patient/{PATIENT}"}, "serviceProvider": {"reference": "Organization/1"}}


@pytest.mark.parametrize("change, status, code", [
    ({"identifier": [{"system": VISIT_SYSTEM, "value": "V1"}]}, 500, "required"),       # identifier without type
    ({"class": {"code": "AMB"}}, 422, "not-supported"),                                    # class is inferred
    ({"serviceProvider": None}, 500, "required"),                                          # no place
    ({"location": [{"location": {"reference": "Location/1"}}]}, 422, "business-rule"),   # both places
    ({"status": "cancelled"}, 422, "business-rule"),
    ({"extension": [{"url": "https://fhir-ehr.cerner.com/r4/StructureDefinition/custom-attribute", "extension": [
        {"url": "custom-attribute-name", "valueCodeableConcept": {"coding": [{"code": "4048128"}]}},
        {"url": "custom-attribute-value", "valueString": "video"}]}]}, 422, "business-rule"),
    ({"period": {"start": "2026-03-01"}}, 422, "business-rule"),                          # no time
])
def test_the_simulator_refuses_encounters_as_documented(oracle, change, status, code):
    body = {k: v for k, v in {**GOOD_ENCOUNTER, **change}.items() if v is not None}
    answer = requests.post(f"{oracle.base}/Encounter", data=json.dumps(body), headers=token(oracle), timeout=5)
    assert answer.status_code == status, answer.text
    (issue,) = answer.json()["issue"]
    assert issue["code"] == code and issue["severity"] == ("fatal" if status == 500 else "error")
    (violation,) = oracle.violations  # logged like Epic's and athena's, citing the page it enforces
    assert (violation.method, violation.status, violation.text) == ("POST", status, issue["diagnostics"])
    assert violation.path.endswith("/Encounter") and violation.source.startswith(ORACLE_DOCS)
    assert violation.source in violation.text


def test_the_simulator_accepts_only_the_documented_patch_operations(oracle):
    headers = token(oracle)
    created = requests.post(f"{oracle.base}/Encounter", data=json.dumps(GOOD_ENCOUNTER), headers=headers, timeout=5)
    assert created.status_code == 201 and created.headers["ETag"] == 'W/"0"'
    url = created.headers["Location"]
    patch = {**headers, "Content-Type": "application/json-patch+json", "If-Match": 'W/"0"'}
    for ops in ([{"op": "replace", "path": "/status", "value": "finished"}],
                [{"op": "add", "path": "/period/end", "value": "2026-03-01T10:30:00-05:00"}],
                [{"op": "add", "path": "/period", "value": {"end": "2026-03-01T10:30:00-05:00"}}]):
        answer = requests.patch(url, data=json.dumps(ops), headers=patch, timeout=5)
        assert answer.status_code == 422 and answer.json()["issue"][0]["code"] == "not-supported", ops
    ok = [{"op": "replace", "path": "/period/end", "value": "2026-03-01T10:30:00-05:00"}]
    assert requests.patch(url, data=json.dumps(ok), headers=patch, timeout=5).headers["ETag"] == 'W/"1"'
    stale = requests.patch(url, data=json.dumps(ok), headers=patch, timeout=5)
    assert stale.status_code == 409 and stale.json()["issue"][0]["code"] == "conflict"
    assert [v.status for v in oracle.violations] == [422, 422, 422, 409]
    assert oracle.violations[-1].source == "https://fhir.cerner.com/millennium/r4/#client-errors"


def test_the_simulator_loses_an_answer_after_the_write(oracle):
    """The shared ``lose_answer``: Millennium files the encounter, the client only sees a reset."""
    lost = oracle.lose_answer("POST", "/Encounter")
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{oracle.base}/Encounter", data=json.dumps(GOOD_ENCOUNTER), headers=token(oracle), timeout=5)
    assert lost.done and len(oracle.all("Encounter")) == 1 and oracle.violations == []
    again = requests.post(f"{oracle.base}/Encounter", data=json.dumps(GOOD_ENCOUNTER), headers=token(oracle),
                          timeout=5)
    assert again.status_code == 201 and len(oracle.all("Encounter")) == 2  # each loss happens once


@pytest.mark.parametrize("change, status", [
    ({"docStatus": "preliminary"}, 422),
    ({"context": {"period": {"start": "2026-03-01T10:00:00-05:00"}}}, 500),      # no period.end
    ({"content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]}, 422),   # no charset
])
def test_the_simulator_refuses_documents_as_documented(oracle, change, status):
    body = {"resourceType": "DocumentReference", "status": "current", "docStatus": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "content": [{"attachment": {"contentType": "text/plain;charset=utf-8", "data": "aGk="}}],
            "context": {"period": {"end": "2026-03-01T10:30:00-05:00"}}, **change}
    answer = requests.post(f"{oracle.base}/DocumentReference", data=json.dumps(body), headers=token(oracle), timeout=5)
    assert answer.status_code == status, answer.text


def test_the_simulator_ignores_identifiers_and_refuses_a_quantity_unit(oracle):
    headers = token(oracle)
    body = {"resourceType": "MedicationRequest", "status": "active", "intent": "plan", "reportedBoolean": True,
            "identifier": [{"system": "urn:x", "value": "RX-1"}], "medicationCodeableConcept": {"text": "x"},
            "subject": {"reference": f"Patient/{PATIENT}"}}
    assert requests.post(f"{oracle.base}/MedicationRequest", data=json.dumps(body), headers=headers,
                         timeout=5).status_code == 201
    (stored,) = oracle.all("MedicationRequest")
    assert "identifier" not in stored
    body["dispenseRequest"] = {"quantity": {"value": 30, "unit": "capsule"}}
    answer = requests.post(f"{oracle.base}/MedicationRequest", data=json.dumps(body), headers=headers, timeout=5)
    assert answer.status_code == 422


# --- configuration and the wrong tenant -----------------------------------------------------------


def test_wrong_tenant_is_a_configuration_error_naming_it(tmp_path, secret):
    base = f"https://fhir-ehr-code.cerner.com/r4/{TENANT}"
    token_url = f"https://authorization.cerner.com/tenants/{TENANT}/protocols/oauth2/profiles/smart-v1/token"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, token_url, json={"access_token": "t", "token_type": "Bearer", "expires_in": 570})
        mock.add(responses.GET, f"{base}/Patient", status=403, json=fixture("oracle_health/tenant-403.json"))
        engine = vendor_engine(tmp_path, "oracle_health", oracle_options())
        row = deliver(engine, adt("A04", "TM0001"))
        assert row.status == "dead"
        assert row.last_error.startswith(f"permanent failure: Tenant not valid or accessible: check "
                                         f"destinations.ehr.options.tenant = {TENANT}")
        assert "HTTP 403" in row.last_error


def test_encounter_type_missing_for_the_modality_is_a_clear_dead_letter(tmp_path, oracle):
    engine = vendor_engine(tmp_path, "oracle_health", oracle_options(oracle, encounter_types={"audio_only": "1"}))
    row = deliver(engine, adt("A04", "TM0001"))
    assert row.status == "dead" and "options.encounter_types.video" in row.last_error
    assert oracle.all("Encounter") == []


@pytest.mark.parametrize("change, path, message", [
    ({"tenant": "not-a-guid"}, "options.tenant", "expected the tenant GUID"),
    ({"base_url": "https://fhir-ehr.cerner.com/r4/0000"}, "options.base_url", "must be the tenant's base"),
    ({"encounter_types": {"zoom": "1"}}, "options.encounter_types.zoom", "unknown modality"),
    ({"encounter_types": {"video": "VR"}}, "options.encounter_types.video", "code set 71 code value"),
    ({"client_secret_env": None}, "options.client_secret_file", "needs client_secret_file or client_secret_env"),
    ({"auth_method": "magic"}, "options.auth_method", "expected one of private_key_jwt, client_secret_basic"),
    ({"service_provider": None}, "options.service_provider", "requires serviceProvider or location"),
    ({"location": "21250409"}, "options.location", "set only one of service_provider and location"),
    ({"modality_attribute": {"code": "4048128", "name": "Modality"}}, "options.modality_attribute.id",
     "id: ENCNTR:4048128"),
    ({"modality_attribute": {"id": "ENCNTR:4048128"}}, "options.modality_attribute.name", "is required"),
])
def test_configuration_errors_name_the_key(tmp_path, secret, change, path, message):
    options = {k: v for k, v in {**oracle_options(), **change}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        vendor_engine(tmp_path, "oracle_health", options)
    assert any(p == f"destinations.ehr.{path}" and message in m for p, m in caught.value.problems), \
        caught.value.problems

"""The ``athena`` profile end to end against the athenahealth simulator (real sockets, the engine's delivery path)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from bridge.testing.vendor_sims.athena import AthenaSimulator

from .helpers import MRN, adt, deliver, rde, vendor_engine
from .test_athena import MRN_SYSTEM, VISIT_SYSTEM
from .test_epic import RX_SECTION, VISIT_TEXT

SECRET = "athena-secret"


@pytest.fixture
def athena(monkeypatch):
    monkeypatch.setenv("ATHENA_SECRET", SECRET)
    with AthenaSimulator(client_id="0oa-preview-client", client_secret=SECRET) as sim:
        sim.patient = sim.add_patient(MRN_SYSTEM, MRN)
        yield sim


def options(sim: AthenaSimulator, **extra) -> dict:
    return {"practice_id": "195900", "department_id": "1", "environment": "non-production", "base_url": sim.url,
            "client_ids": {"non-production": "0oa-preview-client"}, "client_secret_env": "ATHENA_SECRET",
            "mrn_system": MRN_SYSTEM, "visit_number_system": VISIT_SYSTEM, "timeout": 5, **extra}


def detail(engine, row) -> str:
    return json.dumps([e.detail for e in engine.store.events(row.message_id)])


def test_a_telehealth_visit_with_a_prescription_goes_through_athena_with_nothing_refused(tmp_path, athena):
    engine = vendor_engine(tmp_path, "athena", options(athena))
    assert deliver(engine, adt("A04", "TM0001")).status == "delivered" and athena.documents == {}

    finished = deliver(engine, adt("A03", "TM0002"))
    assert finished.status == "delivered", finished.last_error
    (visit,) = athena.documents.values()
    assert visit["documentdata"] == VISIT_TEXT and visit["documentsubclass"] == "ENCOUNTERDOCUMENT_PROGRESSNOTE"
    assert visit["internalnote"] == "Filed by Telemed Bridge [telemed-bridge note-id visit-V20260301]"

    athena.lose_answer("POST", "/encounterdocument")  # athena files it; the answer never comes
    prescribed = deliver(engine, rde())
    assert prescribed.status == "delivered", prescribed.last_error
    assert "reconciled" in detail(engine, prescribed)
    again = deliver(engine, rde("TM0009"))  # redelivered under a new control id
    assert again.status == "delivered" and "exists" in detail(engine, again)

    assert len(athena.documents) == 2
    rx = next(d for d in athena.documents.values() if d is not visit)
    assert rx["documentdata"] == ("Prescription written during telehealth visit V20260301\n"
                                  + RX_SECTION.split("\n")[-1])
    assert athena.violations == []
    assert len(athena.token_times) == 1  # one token, reused for every delivery until it expires


def test_an_api_429_waits_for_retry_after_and_files_nothing(tmp_path, athena):
    athena.inject(status=429, headers={"Retry-After": "30"}, text="Rate limit exceeded",
                  when=lambda r: r.method == "POST" and "encounterdocument" in r.path)
    engine = vendor_engine(tmp_path, "athena", options(athena))
    row = deliver(engine, adt("A03", "TM0002"))
    assert row.status not in ("delivered", "dead") and "HTTP 429" in row.last_error
    assert 25 < row.next_attempt_at - time.time() <= 31
    assert athena.documents == {}


def test_the_token_limit_blocks_for_the_rest_of_the_minute(tmp_path, athena):
    athena.token_limit = 0  # the app already spent this minute's new tokens (e.g. other processes)
    engine = vendor_engine(tmp_path, "athena", options(athena))
    row = deliver(engine, adt("A03", "TM0002"))
    assert row.status not in ("delivered", "dead")
    assert "HTTP 429" in row.last_error and "rest of this minute" in row.last_error
    assert 0 < row.next_attempt_at - time.time() <= 62
    assert athena.documents == {}


def test_the_simulator_refuses_what_athena_does_not_document(athena):
    athena.tokens.issued.add("t")
    auth = {"Authorization": "Bearer t"}
    base = f"{athena.url}/v1/195900/patients/{athena.patient}/documents/encounterdocument"
    wrong_field = requests.post(base, data={"departmentid": "1", "documentsubclass": "PROGRESSNOTE",
                                            "textdata": "note"}, headers=auth, timeout=5)
    assert wrong_field.status_code == 400 and "textdata" in wrong_field.json()["error"]
    made = requests.post(base, data={"departmentid": "1", "documentsubclass": "PROGRESSNOTE",
                                     "documentdata": "note"}, headers=auth, timeout=5).json()
    edit = requests.put(f"{base}/{made['encounterdocumentid']}", data={"departmentid": "1", "documentdata": "x"},
                        headers=auth, timeout=5)
    assert edit.status_code == 400 and "documentdata" in edit.json()["error"]
    department = requests.get(f"{athena.url}/fhir/r4/Encounter", headers=auth, timeout=5, params={
        "ah-practice": "Organization/a-1.Practice-195900", "ah-department": "Organization/a-195900.Department-1"})
    assert department.status_code == 400
    assert [v.source for v in athena.violations] == [
        "https://docs.athenahealth.com/api/api-ref/document-type-encounter-document"] * 2 + [
        "https://api.platform.athenahealth.com/fhir/r4/metadata"]


def test_the_token_is_reused_until_it_expires_then_renewed(tmp_path, athena):
    athena.tokens.expires_in = 2  # renewed one second before expiry: within the test
    engine = vendor_engine(tmp_path, "athena", options(athena))
    assert deliver(engine, adt("A03", "TM0002")).status == "delivered"
    assert deliver(engine, rde()).status == "delivered"
    assert len(athena.token_times) == 1
    time.sleep(1.2)
    assert deliver(engine, rde("TM0009")).status == "delivered"
    assert len(athena.token_times) == 2 and athena.violations == []

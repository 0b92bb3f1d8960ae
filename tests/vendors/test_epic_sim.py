"""The ``epic`` profile end to end against the Epic simulator (real sockets, the engine's delivery path)."""

from __future__ import annotations

import json

import pytest

from bridge import ConfigError
from bridge.testing.vendor_sims.epic import EpicSimulator

from .helpers import MRN, NPI, VISIT, adt, deliver, rde, vendor_engine, write_key
from .test_epic import MRN_SYSTEM, RX_SECTION, VISIT_SYSTEM, VISIT_TEXT

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


def detail(engine, row) -> str:
    """What the message's timeline says of its deliveries (the destination's outcome text)."""
    return json.dumps([e.detail for e in engine.store.events(row.message_id)])


@pytest.fixture
def epic(rsa_key):
    with EpicSimulator(client_id="tb-nonprod-client", public_key=rsa_key.public_key(), kid="tb-2026") as sim:
        sim.patient = sim.add_patient(MRN_SYSTEM, MRN)
        sim.encounter = sim.add_encounter(sim.patient, VISIT_SYSTEM, VISIT, status="in-progress")
        sim.doctor = sim.add_practitioner(NPI_SYSTEM, NPI)
        yield sim


def options(tmp_path, key, sim: EpicSimulator, **extra) -> dict:
    return {"base_url": sim.base, "token_url": sim.token_url, "environment": "non-production",
            "client_ids": {"non-production": "tb-nonprod-client"}, "kid": "tb-2026",
            "key_file": write_key(tmp_path, key), "mrn_system": MRN_SYSTEM, "visit_number_system": VISIT_SYSTEM,
            "provider_id_system": NPI_SYSTEM, "default_timezone": "-05:00", "timeout": 5, **extra}


def test_a_telehealth_visit_with_a_prescription_goes_through_epic_with_nothing_refused(tmp_path, rsa_key, epic):
    engine = vendor_engine(tmp_path, "epic", options(tmp_path, rsa_key, epic))

    started = deliver(engine, adt("A04", "TM0001"))  # the visit is open in Epic: its vitals go now
    assert started.status == "delivered", started.last_error
    (reading,) = epic.observations.values()
    assert reading["encounter"] == {"reference": f"Encounter/{epic.encounter}"}
    assert reading["effectiveDateTime"] == "2026-03-01T10:10:00-05:00" and reading["valueQuantity"]["value"] == 72

    epic.set_encounter_status(epic.encounter, "finished")  # Epic closes its encounter when the visit ends
    finished = deliver(engine, adt("A03", "TM0002"))
    assert finished.status == "delivered", finished.last_error
    assert "Observation/" in detail(engine, finished) and "exists" in detail(engine, finished)
    (visit_note,) = epic.notes
    assert epic.note_text(visit_note) == VISIT_TEXT + "\n\nFiled by Telemed Bridge [telemed-bridge note-id visit-V20260301]"
    assert epic.notes[visit_note]["author"] == [{"reference": f"Practitioner/{epic.doctor}"}]
    assert epic.notes[visit_note]["docStatus"] == "final"

    epic.lose_answer("POST", "/DocumentReference")  # Epic files the prescription note; the answer never comes
    prescribed = deliver(engine, rde())
    assert prescribed.status == "delivered", prescribed.last_error
    assert "reconciled" in detail(engine, prescribed)
    again = deliver(engine, rde("TM0009"))  # the same prescription redelivered under a new control id
    assert again.status == "delivered" and "exists" in detail(engine, again)

    assert len(epic.notes) == 2 and len(epic.observations) == 1
    rx_note = next(n for n in epic.notes if n != visit_note)
    assert epic.note_text(rx_note) == ("Prescription written during telehealth visit V20260301\n"
                                       + RX_SECTION.split("\n")[-1]
                                       + "\n\nFiled by Telemed Bridge [telemed-bridge note-id rx-RX-77]")
    assert epic.violations == [] and epic.background_signed == []
    assert not any(r.method == "PUT" for r in epic.requests)
    assert len(epic.token_endpoint.issued) == 1  # one token for the whole visit


def test_vitals_after_epic_closed_the_encounter_are_not_sent(tmp_path, rsa_key, epic):
    epic.set_encounter_status(epic.encounter, "finished")
    engine = vendor_engine(tmp_path, "epic", options(tmp_path, rsa_key, epic))
    row = deliver(engine, adt("A03", "TM0002"))
    assert row.status == "delivered", row.last_error
    assert "vital 8867-4 not filed: the Epic encounter is finished" in detail(engine, row)
    assert epic.observations == {} and len(epic.notes) == 1 and epic.violations == []


def test_a_vital_whose_answer_was_lost_is_reconciled_and_not_sent_twice(tmp_path, rsa_key, epic):
    engine = vendor_engine(tmp_path, "epic", options(tmp_path, rsa_key, epic))
    epic.lose_answer("POST", "/Observation")
    first = deliver(engine, adt("A04", "TM0001"))
    assert first.status == "delivered" and "reconciled" in detail(engine, first)
    assert len(epic.observations) == 1 and epic.violations == []


def test_a_reading_epic_refuses_as_a_repeat_is_taken_as_filed(tmp_path, rsa_key, epic):
    engine = vendor_engine(tmp_path, "epic", options(tmp_path, rsa_key, epic))
    assert deliver(engine, adt("A04", "TM0001")).status == "delivered"
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
    epic.inject(status=200, body=empty, when=lambda r: r.method == "GET" and r.path.endswith("/Observation"))
    again = deliver(engine, adt("A04", "TM0005"))  # our search misses it; Epic refuses the repeat
    assert again.status == "delivered", again.last_error
    assert "already filed (Epic refused the repeat)" in detail(engine, again)
    assert len(epic.observations) == 1
    assert [v.status for v in epic.violations] == [400] and "already filed" in epic.violations[0].text


def test_a_403_names_the_refused_interaction_and_keeps_epic_s_text(tmp_path, rsa_key, epic):
    epic.inject(status=403, when=lambda r: r.method == "POST" and r.path.endswith("/DocumentReference"),
                body={"resourceType": "OperationOutcome", "issue": [{
                    "severity": "error", "code": "forbidden",
                    "details": {"text": "The authenticated user is not authorized to create this note type"}}]})
    engine = vendor_engine(tmp_path, "epic", options(tmp_path, rsa_key, epic, write_vitals=False))
    row = deliver(engine, adt("A03", "TM0002"))
    assert row.status == "dead"
    assert "Epic refused create DocumentReference (HTTP 403" in row.last_error
    assert "not authorized to create this note type" in row.last_error
    assert "background user has security" in row.last_error


def test_429_waits_for_retry_after_and_files_nothing(tmp_path, rsa_key, epic):
    epic.inject(status=429, headers={"Retry-After": "90"}, text="Too many requests")
    engine = vendor_engine(tmp_path, "epic", options(tmp_path, rsa_key, epic, write_vitals=False))
    row = deliver(engine, adt("A03", "TM0002"))
    assert row.status not in ("delivered", "dead") and "HTTP 429" in row.last_error
    assert epic.notes == {}


def test_a_final_note_needs_a_provider_id_system_at_start(tmp_path, rsa_key, epic):
    opts = options(tmp_path, rsa_key, epic)
    del opts["provider_id_system"]
    with pytest.raises(ConfigError) as caught:
        vendor_engine(tmp_path, "epic", opts)
    assert any(p == "destinations.ehr.options.provider_id_system" and "background user" in m
               for p, m in caught.value.problems)
    engine = vendor_engine(tmp_path, "epic", {**opts, "doc_status": "preliminary", "write_vitals": False})
    row = deliver(engine, adt("A03", "TM0002"))
    assert row.status == "delivered", row.last_error
    (note,) = epic.notes.values()
    assert note["docStatus"] == "preliminary" and "author" not in note and epic.background_signed == []


def test_an_unknown_author_is_not_signed_as_the_background_user(tmp_path, rsa_key, epic):
    epic.practitioners.clear()
    engine = vendor_engine(tmp_path, "epic", options(tmp_path, rsa_key, epic, write_vitals=False))
    row = deliver(engine, adt("A03", "TM0002"))
    assert row.status == "dead" and "not filed without its author" in row.last_error
    assert epic.notes == {}


def test_the_simulator_refuses_an_update_of_a_clinical_note(epic):
    import requests

    epic.token_endpoint.issued.add("t")
    answer = requests.put(f"{epic.base}/DocumentReference/x", json={"resourceType": "DocumentReference"},
                          headers={"Authorization": "Bearer t", "Content-Type": "application/fhir+json"}, timeout=5)
    assert answer.status_code == 405
    (violation,) = epic.violations
    assert violation.source == "https://open.epic.com/Interface/FHIR"

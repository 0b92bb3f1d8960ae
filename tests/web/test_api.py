"""The admin API against a real store with real messages: search, detail, replay, holds, channels,
dead letters, jobs, traces, audit, tokens and users — and what each role may see."""

from __future__ import annotations

import sqlite3
import time

from .conftest import encounter


def items(response) -> list:
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def test_search_by_business_keys_status_channel_and_time(site):
    api = site.api("analyst")
    found = items(api.get("/api/v1/messages?patient_id=MRN-A1"))
    assert [m["id"] for m in found] == [site.ids["rx1"], site.ids["enc1"]]
    assert {m["patient_id"] for m in found} == {"MRN-A1"}
    assert [m["id"] for m in items(api.get("/api/v1/messages?prescription_number=RX-77"))] == [site.ids["rx1"]]
    assert [m["id"] for m in items(api.get("/api/v1/messages?status=dead"))] == [site.ids["lab"]]
    assert [m["id"] for m in items(api.get("/api/v1/messages?channel=lab"))] == [site.ids["lab"]]
    trace = site.store.get_message(site.ids["enc1"]).trace_id
    assert {m["id"] for m in items(api.get(f"/api/v1/messages?trace_id={trace}"))} == {site.ids["enc1"], site.ids["rx1"]}
    assert items(api.get("/api/v1/messages?since=2999-01-01T00:00:00Z")) == []
    assert len(items(api.get("/api/v1/messages?until=2999-01-01"))) == 4
    bad = api.get("/api/v1/messages?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.get_json()["message"]
    # a lookup of a person is audited with who asked for whom
    entry = site.store.search_audit(action="message.search")[0]
    assert entry.actor == "token:analyst-token" and entry.detail["keys"] == {"prescription_number": "RX-77"}


def test_search_pages_with_a_cursor(site):
    api = site.api("viewer")
    first = api.get("/api/v1/messages?limit=3").get_json()
    assert [m["id"] for m in first["items"]] == [4, 3, 2] and first["next_before_id"] == 2
    second = api.get(f"/api/v1/messages?limit=3&before_id={first['next_before_id']}").get_json()
    assert [m["id"] for m in second["items"]] == [1] and second["next_before_id"] is None
    assert api.get("/api/v1/messages?limit=zero").status_code == 400


def test_a_viewer_sees_metadata_but_no_phi(site):
    viewer = site.api("viewer")
    listed = items(viewer.get("/api/v1/messages"))
    assert all("patient_id" not in m and "error" not in m and "origin" not in m for m in listed)
    assert listed[-1]["record_kinds"] == ["Encounter"]
    refused = viewer.get("/api/v1/messages?patient_id=MRN-A1")
    assert refused.status_code == 403 and "analyst" in refused.get_json()["message"]
    detail = viewer.get(f"/api/v1/messages/{site.ids['lab']}").get_json()
    assert "records" not in detail and "raw" not in detail
    assert "MRN-C3" not in viewer.get(f"/api/v1/messages/{site.ids['lab']}").get_data(as_text=True)
    dead = [e for e in detail["timeline"] if e["kind"] == "dead_letter"][0]
    assert "detail" not in dead["detail"] and dead["detail"]["destination"] == "broken"
    assert detail["deliveries"][0] == {**detail["deliveries"][0], "has_error": True}
    assert "last_error" not in detail["deliveries"][0]
    hold = items(viewer.get("/api/v1/holds"))[0]
    assert hold["reasons"][0]["id"] == "R25" and "reason" not in hold["reasons"][0]
    assert not site.store.search_audit(action="message.view"), "metadata views are not PHI views"


def test_an_analyst_reads_records_and_payload_and_the_view_is_audited(site):
    response = site.api("analyst").get(f"/api/v1/messages/{site.ids['enc1']}")
    detail = response.get_json()
    assert detail["records"][0]["kind"] == "Encounter"
    assert '"MRN-A1"' in detail["raw"]["text"] and detail["raw"]["encoding"] == "utf-8"
    assert [e["kind"] for e in detail["timeline"]][:2] == ["received", "decoded"]
    assert detail["deliveries"][0]["status"] == "delivered"
    entry = site.store.search_audit(action="message.view")[0]
    assert (entry.actor, entry.target) == ("token:analyst-token", f"message:{site.ids['enc1']}")
    missing = site.api("analyst").get("/api/v1/messages/999")
    assert missing.status_code == 404 and missing.get_json() == {"error": "not_found",
                                                                 "message": "no message with id 999"}


def test_replay_one_and_many_with_a_reason(site):
    operator = site.api("operator")
    assert operator.post(f"/api/v1/messages/{site.ids['lab']}/replay", json={}).status_code == 400
    one = operator.post(f"/api/v1/messages/{site.ids['lab']}/replay", json={"reason": "peer fixed"})
    assert one.status_code == 201
    new_id = one.get_json()["replayed_as"]
    assert site.store.get_message(new_id).replay_of == site.ids["lab"]
    many = operator.post("/api/v1/replay", json={"ids": [site.ids["enc2"], 999], "reason": "EHR restored"})
    results = many.get_json()["results"]
    assert results[0]["replayed_as"] > new_id and "no message with id 999" in results[1]["error"]
    replays = site.store.search_audit(action="replay")
    assert {(e.actor, e.detail["reason"]) for e in replays} == {("token:operator-token", "peer fixed"),
                                                                ("token:operator-token", "EHR restored")}
    site.engine.drain()
    assert site.store.get_message(results[0]["replayed_as"]).status == "delivered"
    assert operator.post("/api/v1/replay", json={"ids": "all", "reason": "x"}).status_code == 400


def test_release_and_reject_holds_with_audit(site):
    operator = site.api("operator")
    held = site.ids["rx1"]
    assert operator.post(f"/api/v1/holds/{held}/release", json={"reason": ""}).status_code == 400
    released = operator.post(f"/api/v1/holds/{held}/release", json={"reason": "verified with prescriber"})
    assert released.get_json()["status"] == "released"
    again = operator.post(f"/api/v1/holds/{held}/reject", json={"reason": "late"})
    assert again.status_code == 409 and "no open hold" in again.get_json()["message"]
    site.engine.drain()
    assert site.store.get_message(held).status == "delivered"
    assert items(operator.get("/api/v1/holds")) == []
    assert [h["message_id"] for h in items(operator.get("/api/v1/holds?status=released"))] == [held]
    entry = site.store.search_audit(action="hold.")[0]
    assert (entry.action, entry.actor, entry.detail["reason"]) == ("hold.release", "token:operator-token",
                                                                   "verified with prescriber")


def test_reject_keeps_the_message_from_being_routed(site):
    site.api("operator").post(f"/api/v1/holds/{site.ids['rx1']}/reject", json={"reason": "no DEA number"})
    site.engine.drain()
    assert site.store.get_message(site.ids["rx1"]).status == "rejected"
    assert site.store.search_audit(action="hold.reject")[0].detail == {"reason": "no DEA number"}


def test_pausing_a_channel_stops_its_processing_until_resumed(site):
    operator = site.api("operator")
    assert operator.post("/api/v1/channels/intake/pause", json={"reason": "EHR maintenance"}).status_code == 200
    waiting = site.engine.submit("intake", encounter(9, "MRN-Z9")).message_id
    site.engine.submit("lab", encounter(10, "MRN-Z10"))
    site.engine.drain()
    assert site.store.get_message(waiting).status == "received"  # intake goes on, processing waits
    channels = {c["name"]: c for c in items(operator.get("/api/v1/channels"))}
    assert channels["intake"]["state"] == "paused" and channels["intake"]["queue_depth"] == 1
    assert channels["intake"]["paused_reason"] == "EHR maintenance" and channels["intake"]["oldest_waiting_at"]
    assert channels["lab"]["state"] == "running" and channels["lab"]["queue_depth"] == 0
    assert channels["lab"]["errors_last_hour"] == 2 and channels["lab"]["error_rate"] == 1.0
    assert operator.post("/api/v1/channels/intake/resume", json={"reason": "done"}).status_code == 200
    site.engine.drain()
    assert site.store.get_message(waiting).status == "delivered"
    assert [e.action for e in site.store.search_audit(action="channel.")] == ["channel.resume", "channel.pause"]
    assert operator.post("/api/v1/channels/nope/pause", json={"reason": "x"}).status_code == 404


def test_dead_letters_destinations_and_plugins(site):
    viewer = site.api("viewer")
    dead = items(viewer.get("/api/v1/dead-letters"))
    assert [(d["message_id"], d["destination"], d["status"]) for d in dead] == [(site.ids["lab"], "broken", "dead")]
    destinations = {d["name"]: d for d in items(viewer.get("/api/v1/destinations"))}
    assert destinations["broken"]["outbox"] == {"dead": 1} and destinations["ehr"]["outbox"]["delivered"] == 2
    assert "failing" in {p["name"] for p in items(viewer.get("/api/v1/plugins"))}


def test_config_view_masks_secrets(site):
    text = site.api("admin").get("/api/v1/config").get_data(as_text=True)
    assert "hunter2" not in text and '"password":"***"' in text.replace(" ", "")


def test_jobs_list_history_and_run_now(site):
    path = site.store.path
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO job_runs (job, slot, status, owner, started_at, finished_at, detail)"
                     " VALUES ('poll-ehr', '2026-03-01T12:00', 'succeeded', 'host:1', ?, ?, '{\"new\": 3}')",
                     (time.time() - 5, time.time()))
    viewer = site.api("viewer")
    jobs = items(viewer.get("/api/v1/jobs"))
    assert jobs[0]["name"] == "poll-ehr" and jobs[0]["last_run"]["status"] == "succeeded"
    runs = items(viewer.get("/api/v1/jobs/poll-ehr/runs"))
    assert runs[0]["detail"] == {"new": 3} and runs[0]["started_at"].endswith("Z")
    missing = site.api("operator").post("/api/v1/jobs/poll-ehr/run")
    assert missing.status_code == 404 and "no job named" in missing.get_json()["message"]


def test_trace_shows_the_whole_journey_in_order(site):
    trace_id = site.store.get_message(site.ids["enc1"]).trace_id
    site.api("operator").post(f"/api/v1/holds/{site.ids['rx1']}/release", json={"reason": "ok"})
    site.engine.drain()
    trace = site.api("analyst").get(f"/api/v1/traces/{trace_id}").get_json()
    assert [m["id"] for m in trace["messages"]] == [site.ids["enc1"], site.ids["rx1"]]
    times = [e["at"] for e in trace["timeline"]]
    assert times == sorted(times)
    kinds = [(e["message_id"], e["kind"]) for e in trace["timeline"]]
    assert kinds.index((site.ids["rx1"], "held")) < kinds.index((site.ids["rx1"], "released"))
    assert (site.ids["rx1"], "delivered") in kinds and (site.ids["enc1"], "delivered") in kinds
    assert set(trace["records"]) == {str(site.ids["enc1"]), str(site.ids["rx1"])}
    assert site.store.search_audit(action="trace.view")[0].detail["messages"] == [site.ids["enc1"], site.ids["rx1"]]
    assert site.api("viewer").get("/api/v1/traces/nope").status_code == 404


def test_audit_search_and_verify(site):
    admin = site.api("admin")
    site.api("operator").post(f"/api/v1/holds/{site.ids['rx1']}/reject", json={"reason": "bad"})
    entries = items(admin.get("/api/v1/audit?action=hold.&actor=token:operator-token"))
    assert [e["action"] for e in entries] == ["hold.reject"]
    assert len(items(admin.get("/api/v1/audit?action=user.create"))) == 4
    assert admin.get("/api/v1/audit/verify").get_json() == {"intact": True, "first_broken_id": None}
    # a tampered entry is found (the triggers refuse UPDATE, so drop them as an attacker with file access would)
    with sqlite3.connect(site.store.path) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET actor='someone-else' WHERE id=2")
    assert admin.get("/api/v1/audit/verify").get_json() == {"intact": False, "first_broken_id": 2}


def test_tokens_and_users_through_the_api_are_audited(site):
    admin = site.api("admin")
    created = admin.post("/api/v1/tokens", json={"name": "prometheus", "role": "viewer"})
    assert created.status_code == 201
    token = created.get_json()["token"]
    client = site.app.test_client()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json()["name"] == "prometheus"
    assert admin.post("/api/v1/tokens", json={"name": "prometheus", "role": "viewer"}).status_code == 409
    listed = admin.get("/api/v1/tokens")
    assert token not in listed.get_data(as_text=True) and all("token" not in t for t in items(listed))
    assert admin.delete("/api/v1/tokens/prometheus").status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert admin.post("/api/v1/users", json={"name": "carol", "role": "analyst", "password": "short"}).status_code == 400
    assert admin.post("/api/v1/users", json={"name": "carol", "role": "analyst",
                                             "password": "long enough pw"}).status_code == 201
    assert admin.patch("/api/v1/users/carol", json={"disabled": True}).get_json()["disabled"] is True
    actions = [e.action for e in site.store.search_audit(actor="token:admin-token")]
    assert actions == ["user.update", "user.create", "token.revoke", "token.create"]


def test_errors_are_json_with_a_message(site):
    viewer = site.api("viewer")
    for response, status in ((viewer.get("/api/v1/nothing"), 404), (viewer.delete("/api/v1/messages"), 405),
                             (site.api("operator").post("/api/v1/replay", data="not json",
                                                        content_type="application/json"), 400)):
        assert response.status_code == status
        body = response.get_json()
        assert body["message"] and body["error"]

"""Replay through the admin API and the dashboard (issue 11 §1): destinations, force, refusals (409),
and a dead letter that its replay's delivery resolves — off the dead-letter list and the overview count,
linked both ways. A real engine and SQLite store behind a Flask test client."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.testing import engine_from_dict, plugin_manager
from bridge.web import create_app
from bridge.web.auth import hash_password, new_token, token_digest
from tests.core.helpers import ScriptedDestinations, encounter_message

from .conftest import PASSWORD, csrf_from, login, prescription as incomplete_prescription

PRESCRIPTION = Path(__file__).resolve().parents[2] / "examples" / "messages" / "prescription.json"
CONFIG = {
    "channels": {
        "intake": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["ehr", "pharmacy"]}]},
    },
    "destinations": {
        "ehr": {"url": "script://ehr", "format": "bridge"},
        "pharmacy": {"url": "script://pharmacy", "format": "bridge", "retry": {"max_attempts": 1}},
        "archive": {"url": "script://archive", "format": "bridge"},
    },
}


class Site:
    def __init__(self, tmp_path):
        self.scripted = ScriptedDestinations()
        self.scripted.script("pharmacy", ["permanent", "permanent"])  # the prescription and the visit
        plugins = plugin_manager(("scripted", self.scripted.plugin()))
        self.engine = engine_from_dict(CONFIG, tmp_path, plugins)
        self.engine.open_destinations()
        self.store = self.engine.store
        self.rx = self.engine.submit("intake", PRESCRIPTION.read_bytes()).message_id
        self.held = self.engine.submit("intake", incomplete_prescription("RX-2", "MRN1", "ENC-1")).message_id
        self.visit = self.engine.submit("intake", encounter_message(1)).message_id
        self.engine.drain()
        self.token = new_token()
        self.store.create_token("ops", token_digest(self.token), "operator", actor="test")
        self.store.create_user("ops-user", hash_password(PASSWORD), "operator", actor="test")
        self.app = create_app(self.engine.config, plugins, self.store, engine=self.engine)

    def api(self):
        client = self.app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.token}"
        return client


@pytest.fixture
def site(tmp_path):
    built = Site(tmp_path)
    yield built
    built.store.close()


def test_api_refuses_a_delivered_prescription_without_force_and_a_held_message(site):
    api = site.api()
    refused = api.post(f"/api/v1/messages/{site.rx}/replay", json={"reason": "resend", "destinations": ["ehr"]})
    assert refused.status_code == 409
    assert refused.get_json()["error"] == "replay_refused"
    assert "already delivered to ehr" in refused.get_json()["message"]
    held = api.post(f"/api/v1/messages/{site.held}/replay", json={"reason": "again"})
    assert held.status_code == 409 and "release or reject it instead" in held.get_json()["message"]
    forced = api.post(f"/api/v1/messages/{site.rx}/replay",
                      json={"reason": "pharmacist asked", "destinations": ["ehr"], "force": True})
    assert forced.status_code == 201
    entry = site.store.search_audit(action="replay")[0]
    assert entry.actor == "token:ops" and entry.detail["force"] is True
    assert site.store.get_message(forced.get_json()["replayed_as"]).replay_destinations == ["ehr"]


def test_api_checks_destination_names_and_types(site):
    api = site.api()
    unknown = api.post(f"/api/v1/messages/{site.visit}/replay", json={"reason": "x", "destinations": ["nope"]})
    assert unknown.status_code == 400
    assert unknown.get_json()["message"] == ("destinations: unknown destination 'nope'"
                                             " (configured: archive, ehr, pharmacy)")
    as_text = api.post(f"/api/v1/messages/{site.visit}/replay", json={"reason": "x", "destinations": "ehr"})
    assert as_text.status_code == 201  # a single name as text is accepted, as the dashboard form sends it
    assert api.post(f"/api/v1/messages/{site.visit}/replay",
                    json={"reason": "x", "destinations": [1]}).status_code == 400
    assert api.post(f"/api/v1/messages/{site.visit}/replay",
                    json={"reason": "x", "force": "yes"}).status_code == 400
    never = api.post(f"/api/v1/messages/{site.visit}/replay", json={"reason": "x", "destinations": ["archive"]})
    assert never.status_code == 409 and "never went to destination 'archive'" in never.get_json()["message"]


def test_api_bulk_replay_reports_refusals_per_id(site):
    results = site.api().post("/api/v1/replay", json={"ids": [site.visit, site.held, site.rx], "reason": "x",
                                                      "destinations": ["pharmacy"]}).get_json()["results"]
    assert "replayed_as" in results[0]
    assert results[1]["refused"] is True and "held for review" in results[1]["error"]
    assert "replayed_as" in results[2]  # the pharmacy never got the prescription (dead letter): no force needed


def test_a_dead_letter_resolved_by_its_replay_leaves_the_list_and_the_count(site):
    """Seen: a dead letter whose replay was delivered stayed dead, on the page and in the overview count."""
    api = site.api()
    dead = api.get("/api/v1/dead-letters").get_json()["items"]
    assert {d["message_id"] for d in dead} == {site.rx, site.visit}
    client = site.app.test_client()
    login(client, "ops-user", PASSWORD)
    assert "2 dead letter(s)" in client.get("/").get_data(as_text=True)

    page = client.get("/dead-letters").get_data(as_text=True)
    assert "Replay to pharmacy" in page
    response = client.post(f"/messages/{site.visit}/replay", data={
        "reason": "pharmacy fixed", "destination": "pharmacy", "csrf_token": csrf_from(page), "next": "/dead-letters"})
    assert response.status_code == 302
    replay = site.store.search(limit=1)[0]
    assert replay.replay_of == site.visit and replay.replay_destinations == ["pharmacy"]
    site.engine.drain()

    assert {d["message_id"] for d in api.get("/api/v1/dead-letters").get_json()["items"]} == {site.rx}
    assert "1 dead letter(s)" in client.get("/").get_data(as_text=True)
    assert site.store.get_message(site.visit).status == "resolved"
    original = api.get(f"/api/v1/messages/{site.visit}").get_json()
    row = next(d for d in original["deliveries"] if d["destination"] == "pharmacy")
    assert row["status"] == "resolved" and row["resolved_by_message"] == replay.id
    assert any(e["kind"] == "dead_letter_resolved" and e["detail"]["by_message"] == replay.id
               for e in original["timeline"])
    forward = api.get(f"/api/v1/messages/{replay.id}").get_json()
    assert forward["message"]["replay_of"] == site.visit
    assert any(e["kind"] == "resolves_dead_letter" and e["detail"]["message"] == site.visit
               for e in forward["timeline"])
    resolved_page = client.get("/dead-letters").get_data(as_text=True)
    assert "Resolved by a replay" in resolved_page and f'href="/messages/{replay.id}"' in resolved_page
    message_page = client.get(f"/messages/{site.visit}").get_data(as_text=True)
    assert f'class="resolved-by" href="/messages/{replay.id}"' in message_page


def test_the_message_page_replays_to_chosen_destinations_with_force(site):
    client = site.app.test_client()
    login(client, "ops-user", PASSWORD)
    page = client.get(f"/messages/{site.rx}").get_data(as_text=True)
    assert 'name="destination" value="ehr"' in page and 'name="force"' in page
    refused = client.post(f"/messages/{site.rx}/replay", data={
        "reason": "again", "destination": "ehr", "csrf_token": csrf_from(page)}, follow_redirects=True)
    assert "already delivered to ehr" in refused.get_data(as_text=True)
    done = client.post(f"/messages/{site.rx}/replay", data={
        "reason": "again", "destination": "ehr", "force": "on", "csrf_token": csrf_from(page)}, follow_redirects=True)
    assert "replayed as message" in done.get_data(as_text=True)
    site.engine.drain()
    resend = site.scripted.sent["ehr"][-1]
    assert resend.message_id != site.rx and resend.original_message_id == site.rx
    assert resend.idempotency_key == site.scripted.sent["ehr"][0].idempotency_key


def test_the_holds_page_lists_a_hold_waiting_behind_the_open_one(site):
    resend = site.engine.submit("intake", incomplete_prescription("RX-2", "MRN1 ", "ENC-1")).message_id
    site.engine.drain()
    assert [h.message_id for h in site.store.holds("waiting")] == [resend]
    client = site.app.test_client()
    login(client, "ops-user", PASSWORD)
    page = client.get("/holds").get_data(as_text=True)
    assert f'id="hold-{site.held}"' in page and f'id="hold-{resend}"' not in page
    assert "Waiting behind an open hold" in page and f'href="/messages/{resend}"' in page
    waiting = site.api().get("/api/v1/holds?status=waiting").get_json()["items"]
    assert [h["message_id"] for h in waiting] == [resend]
    refused = site.api().post(f"/api/v1/holds/{resend}/release", json={"reason": "x"})
    assert refused.status_code == 409 and f"waits behind the hold of message {site.held}" in refused.get_json()["message"]


def test_a_waiting_hold_is_not_listed_as_recently_resolved(site):
    """Review of issue 11: the holds page listed every hold that is not open under "Recently resolved",
    so a hold still waiting for its turn looked decided."""
    resend = site.engine.submit("intake", incomplete_prescription("RX-2", "MRN1 ", "ENC-1")).message_id
    site.engine.drain()
    client = site.app.test_client()
    login(client, "ops-user", PASSWORD)
    page = client.get("/holds").get_data(as_text=True)
    resolved = page.split("<h2>Recently resolved</h2>", 1)[1]
    assert f'href="/messages/{resend}"' not in resolved
    assert "waiting" not in resolved

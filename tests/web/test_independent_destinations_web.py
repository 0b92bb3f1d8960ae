"""Issue 12: the admin API and the dashboard say which destination of a message failed, where (encode or
send) and — for analysts — why; the dead-letter page replays an encode failure to its destination once
the cause is fixed. A real engine and SQLite store behind a Flask test client."""

from __future__ import annotations

import pytest

from bridge.testing import engine_from_dict, plugin_manager
from bridge.web import create_app
from bridge.web.auth import hash_password, new_token, token_digest
from tests.core.helpers import ScriptedDestinations, encounter_message
from tests.core.test_independent_destinations import Picky

from .conftest import PASSWORD, csrf_from, login

CONFIG = {
    "channels": {"visits": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["ehr", "fhir", "lab"]}]}},
    "destinations": {
        "ehr": {"url": "script://ehr", "format": "bridge"},
        "fhir": {"url": "script://fhir", "format": "picky"},
        "lab": {"url": "script://lab", "format": "bridge", "retry": {"max_attempts": 1}},
    },
}


class Site:
    def __init__(self, tmp_path):
        self.scripted = ScriptedDestinations()
        self.scripted.script("lab", ["permanent"])
        self.picky = Picky({"ENC-1"})
        plugins = plugin_manager(("scripted", self.scripted.plugin()), ("picky", self.picky),
                                 disabled=("telehealth_policy",))
        self.engine = engine_from_dict(CONFIG, tmp_path, plugins)
        self.engine.open_destinations()
        self.store = self.engine.store
        self.visit = self.engine.submit("visits", encounter_message(1)).message_id
        self.engine.drain()
        self.tokens = {}
        for role in ("viewer", "analyst", "operator"):
            self.tokens[role] = new_token()
            self.store.create_token(role, token_digest(self.tokens[role]), role, actor="test")
        self.store.create_user("ops-user", hash_password(PASSWORD), "operator", actor="test")
        self.app = create_app(self.engine.config, plugins, self.store, engine=self.engine)

    def api(self, role: str):
        client = self.app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.tokens[role]}"
        return client


@pytest.fixture
def site(tmp_path):
    built = Site(tmp_path)
    yield built
    built.store.close()


def test_the_message_json_names_each_destination_and_what_failed(site):
    detail = site.api("analyst").get(f"/api/v1/messages/{site.visit}").get_json()
    assert detail["message"]["status"] == "dead"
    outcomes = detail["destinations"]
    assert outcomes["ehr"]["status"] == "delivered" and "failed_at" not in outcomes["ehr"]
    assert outcomes["fhir"]["failed_at"] == "encode" and outcomes["fhir"]["attempts"] == 0
    assert outcomes["fhir"]["error"] == "encoding picky for fhir failed: Encounter ENC-1: period.start has no time zone"
    assert outcomes["lab"]["failed_at"] == "send" and "peer refused" in outcomes["lab"]["error"]
    assert {d["destination"]: d["failed_at"] for d in detail["deliveries"]} == {
        "ehr": None, "fhir": "encode", "lab": "send"}
    routed = next(e for e in detail["timeline"] if e["kind"] == "routed")
    assert routed["detail"]["encode_failed"] == ["fhir"]


def test_a_viewer_sees_which_destination_failed_but_not_the_error_text(site):
    detail = site.api("viewer").get(f"/api/v1/messages/{site.visit}").get_json()
    fhir = detail["destinations"]["fhir"]
    assert fhir == {"status": "dead", "outbox_id": fhir["outbox_id"], "attempts": 0, "failed_at": "encode"}
    assert "time zone" not in str(detail)  # an encoder's error can quote the message
    routed = next(e for e in detail["timeline"] if e["kind"] == "routed")
    assert routed["detail"]["encode_failed"] == ["fhir"]  # destination names only: no content


def test_the_dead_letter_list_says_where_each_failed(site):
    items = site.api("analyst").get("/api/v1/dead-letters").get_json()["items"]
    assert {(d["destination"], d["failed_at"]) for d in items} == {("fhir", "encode"), ("lab", "send")}


def test_the_dashboard_names_the_failed_destination_and_replays_it_after_the_fix(site):
    client = site.app.test_client()
    assert login(client, "ops-user", PASSWORD).status_code == 302
    page = client.get(f"/messages/{site.visit}").get_data(as_text=True)
    summary = page.split('id="destinations">', 1)[1].split("</dd>", 1)[0]
    assert "fhir" in summary and "failed at encode" in summary and "lab" in summary and "failed at send" in summary
    assert "ehr" in summary and "delivered" in summary
    assert "period.start has no time zone" in page  # an operator may read the reason

    dead_page = client.get("/dead-letters").get_data(as_text=True)
    fhir_row = next(r for r in dead_page.split("<tr>") if "Replay to fhir" in r)
    assert '<td class="failed-at">encode</td>' in fhir_row and "no time zone" in fhir_row

    site.picky.refuse.clear()  # the cause is fixed
    answer = client.post(f"/messages/{site.visit}/replay", data={
        "reason": "time zone configured", "destination": "fhir", "csrf_token": csrf_from(dead_page),
        "next": "/dead-letters"})
    assert answer.status_code == 302
    site.engine.drain()
    outcomes = site.api("analyst").get(f"/api/v1/messages/{site.visit}").get_json()["destinations"]
    assert outcomes["fhir"]["status"] == "resolved" and outcomes["fhir"]["resolved_by_message"]
    assert [d.message_id for d in site.scripted.sent["fhir"]] == [outcomes["fhir"]["resolved_by_message"]]
    remaining = site.api("analyst").get("/api/v1/dead-letters").get_json()["items"]
    assert [d["destination"] for d in remaining] == ["lab"]

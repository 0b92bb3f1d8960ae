"""Issue 15, the dashboard for an analyst: the message view (each destination's payload and answer,
readable timeline, times in the site's zone, related messages), HTML error pages, live refresh, and
the search by type, destination, date range and content (audited), through the app and the API."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.web.readable import Field, detail_fields, fields_html, time_html

from .conftest import CONFIG, build_site, csrf_from

CHICAGO = {**CONFIG, "web": {"timezone": "America/Chicago"}}


@pytest.fixture
def chicago(tmp_path):
    built = build_site(tmp_path, config=CHICAGO)
    yield built
    built.engine.store.close()


def main_part(page: str) -> str:
    return page.split("<main", 1)[1].split("</main>", 1)[0]


def test_the_message_page_shows_what_each_destination_was_sent_and_what_it_answered(site):
    lab = site.ids["lab"]
    (row,) = site.store.outbox_rows(message_id=lab)
    page = site.login("analyst").get(f"/messages/{lab}").get_data(as_text=True)
    for pane in ("pane-input", f"pane-out-{row.id}", "pane-timeline"):
        assert f'role="tabpanel" id="{pane}"' in page
    assert 'id="raw"' in page and 'id="records"' in page  # side by side in the input pane
    sent = page.split(f'id="payload-{row.id}"', 1)[1].split("</pre>", 1)[0]
    assert row.control_id in sent and "MRN-C3" in sent  # the encoded payload as the store keeps it
    answers = page.split(f'id="answers-{row.id}"', 1)[1].split("</table>", 1)[0]
    assert "dead letter" in answers and "permanent failure: peer refused (test)" in answers
    audit = site.store.search_audit(action="message.view")[0]
    assert audit.detail["parts"] == ["records", "raw", "payloads", "responses"]


def test_a_viewer_sees_each_destination_outcome_but_no_payload_or_answer_text(site):
    lab = site.ids["lab"]
    page = site.login("viewer").get(f"/messages/{lab}").get_data(as_text=True)
    assert "dead letter" in page and "The payload needs the analyst role" in page
    assert "MRN-C3" not in page and "peer refused" not in page
    detail = site.api("viewer").get(f"/api/v1/messages/{lab}").get_json()
    (pane,) = detail["destination_panes"]
    assert "payload" not in pane and "text" not in pane["answers"][0] and pane["answers"][0]["attempt"] == 1


def test_the_api_gives_each_destination_payload_and_answers_to_analysts(site):
    detail = site.api("analyst").get(f"/api/v1/messages/{site.ids['enc1']}").get_json()
    (pane,) = detail["destination_panes"]
    assert pane["delivery"]["destination"] == "ehr" and pane["delivery"]["status"] == "delivered"
    assert '"MRN-A1"' in pane["payload"]["text"] and pane["payload"]["size"] > 100
    assert [a["kind"] for a in pane["answers"]] == ["delivered"] and pane["answers"][0]["text"]


def test_the_timeline_reads_as_fields_in_the_site_zone_with_utc_on_hover(chicago):
    page = chicago.login("analyst").get(f"/messages/{chicago.ids['lab']}").get_data(as_text=True)
    timeline = page.split('id="timeline"', 1)[1].split("</table>", 1)[0]
    assert "{" not in timeline and "\\u0027" not in timeline and "&#34;" not in timeline  # no JSON
    assert '<span class="label">channel</span> lab' in timeline
    times = re.findall(r'<time datetime="([^"]+)" title="([^"]+) UTC">([^<]+)</time>', timeline)
    assert times, timeline[:500]
    for _, utc_text, shown in times:
        assert shown.endswith((" CST", " CDT")) and utc_text[:19] != shown[:19] and len(utc_text) == 23
    assert "times in America/Chicago" in page


def test_event_details_become_labelled_fields_with_times_and_message_links():
    detail = {"destination": "ehr", "next_attempt_at": 1796483345.14, "as": 12, "force": True,
              "origin": {"peer": "10.0.0.5"}, "rules": [{"id": "R2", "outcome": "REVIEW"}], "empty": ""}
    fields = detail_fields(detail)
    assert fields == [Field("destination", "ehr"), Field("next attempt at", at=1796483345.14),
                      Field("as", message_id=12), Field("force", "yes"), Field("origin · peer", "10.0.0.5"),
                      Field("rules", "id R2 outcome REVIEW")]
    html = fields_html(fields, "Europe/Berlin", lambda i: f"/messages/{i}")
    assert "1796483345" not in html and '<a href="/messages/12">message 12</a>' in html
    assert 'title="2026-12-05 ' in html and "CET</time>" in html
    assert str(time_html(None)) == "-"
    with pytest.raises(ValueError, match="without an offset"):
        time_html("2026-03-01T12:00:00")  # never guess the zone of a time


def test_replays_link_both_ways_and_the_trace_link_stays(site):
    client = site.login("operator")
    enc1 = site.ids["enc1"]
    page = client.get(f"/messages/{enc1}").get_data(as_text=True)
    client.post(f"/messages/{enc1}/replay", data={"reason": "EHR asked again", "csrf_token": csrf_from(page)})
    replay = site.store.search(limit=1)[0]
    original = client.get(f"/messages/{enc1}").get_data(as_text=True)
    assert f'<a class="related" href="/messages/{replay.id}">replayed as message {replay.id}</a>' in original
    copy = client.get(f"/messages/{replay.id}").get_data(as_text=True)
    assert f'<a class="related" href="/messages/{enc1}">replay of message {enc1}</a>' in copy
    assert 'id="trace-link"' in copy
    related = site.api("viewer").get(f"/api/v1/messages/{enc1}").get_json()["related"]
    assert related == [{"id": replay.id, "how": "replayed as"}]


def test_dashboard_errors_are_pages_and_api_errors_stay_json(site):
    def boom():
        raise RuntimeError("Testpatient's payload text must not reach the page")

    boom.bridge_role = "viewer"
    site.app.add_url_rule("/boom", "boom", boom)
    client = site.login("viewer")
    missing = client.get("/messages/99999")
    assert missing.status_code == 404 and missing.content_type.startswith("text/html")
    assert "no message with id 99999" in main_part(missing.get_data(as_text=True))
    assert client.get("/no-such-page").content_type.startswith("text/html")
    refused = client.get("/audit")
    assert refused.status_code == 403 and "needs the admin role" in refused.get_data(as_text=True)
    crashed = client.get("/boom")
    text = crashed.get_data(as_text=True)
    assert crashed.status_code == 500 and "<h1>500</h1>" in text and "Testpatient" not in text
    api = site.api("viewer").get("/api/v1/messages/99999")
    assert api.status_code == 404 and api.get_json()["error"] == "not_found"


def test_live_pages_ask_for_a_refresh_and_searches_and_finished_messages_do_not(site):
    def refresh(client, url: str) -> int:
        page = client.get(url).get_data(as_text=True)
        return int(re.search(r'<meta name="bridge-refresh" content="(\d+)">', page)[1])

    viewer, analyst = site.login("viewer"), site.login("analyst")
    pages = ("/", "/holds", "/dead-letters", "/jobs", "/messages")
    assert [refresh(viewer, u) for u in pages] == [15] * 5
    assert refresh(viewer, "/messages?status=held") == 0  # a search is not repeated (nor audited) by itself
    assert refresh(viewer, f"/messages/{site.ids['rx1']}") == 10  # held: it may change
    assert refresh(viewer, f"/messages/{site.ids['enc1']}") == 0  # delivered
    # for analysts each view of these pages is an audited look at PHI: at most one a minute
    assert [refresh(analyst, u) for u in pages] == [15, 60, 60, 15, 60]
    assert refresh(analyst, f"/messages/{site.ids['rx1']}") == 60
    script = site.app.test_client().get("/static/bridge.js")
    assert script.status_code == 200 and b"location.reload" in script.data


def test_search_by_status_type_destination_and_date_range_in_the_site_zone(chicago):
    client = chicago.login("viewer")
    page = client.get("/messages").get_data(as_text=True)
    statuses = page.split('id="q-status"', 1)[1].split("</select>", 1)[0]
    assert "<option >held</option>" in statuses and "<option >dead</option>" in statuses
    assert "<option >broken</option>" in page.split('id="q-destination"', 1)[1].split("</select>", 1)[0]
    assert 'name="q"' not in page  # content search is for analysts

    def found(query: str) -> set[int]:
        return {int(i) for i in re.findall(r'class="message-link" href="/messages/(\d+)"',
                                           client.get(f"/messages?{query}").get_data(as_text=True))}

    assert found("status=held") == {chicago.ids["rx1"]}
    assert found("destination=broken") == {chicago.ids["lab"]}
    assert found("destination=ehr&message_type=Encounter") == {chicago.ids["enc1"], chicago.ids["enc2"]}
    last = max(chicago.store.get_message(i).received_at for i in chicago.ids.values())
    wall = datetime.fromtimestamp(last, ZoneInfo("America/Chicago")).replace(tzinfo=None, microsecond=0)
    assert chicago.ids["lab"] in found(f"since={wall.isoformat()}")  # a Chicago wall time…
    later = (wall + timedelta(minutes=2)).isoformat()
    assert found(f"since={later}") == set()  # …not UTC, which would be six hours earlier and find all
    assert found(f"until={later}") == set(chicago.ids.values())
    bad = client.get("/messages?destination=nowhere").get_data(as_text=True)
    assert "no destination named" in bad


def test_content_search_looks_inside_payloads_for_analysts_and_every_search_is_audited(site):
    client = site.login("analyst")
    page = client.get("/messages?q=Testpatient&channel=lab").get_data(as_text=True)
    assert re.findall(r'class="message-link" href="/messages/(\d+)"', page) == [str(site.ids["lab"])]
    entry = site.store.search_audit(action="message.content_search")[0]
    assert entry.actor == "user:analyst-user" and entry.detail["text"] == "Testpatient"
    assert entry.detail["message_ids"] == [site.ids["lab"]]
    api = site.api("analyst")
    nothing = api.get("/api/v1/messages?q=Nobodyhere").get_json()
    assert nothing["items"] == []
    assert site.store.search_audit(action="message.content_search")[0].detail == {
        "text": "Nobodyhere", "keys": {}, "results": 0, "message_ids": []}  # audited though it found none
    ehr_word = api.get("/api/v1/messages?q=Ibuprofen").get_json()["items"]
    assert [m["id"] for m in ehr_word] == [site.ids["rx1"]]
    refused = site.api("viewer").get("/api/v1/messages?q=Testpatient")
    assert refused.status_code == 403 and "analyst" in refused.get_json()["message"]
    no_word = api.get("/api/v1/messages?q=%22%2A")
    assert no_word.status_code == 400 and "no word" in no_word.get_json()["message"]
    assert api.get("/api/v1/messages?q=" + "a" * 201).status_code == 400


def test_the_site_zone_is_checked_when_the_config_is_read(tmp_path):
    from bridge.core.config import parse_config
    from bridge.errors import ConfigError

    assert parse_config({**CHICAGO}, config_dir=str(tmp_path)).web["timezone"] == "America/Chicago"
    for wrong in ("Mars/Olympus", "-05:00"):
        with pytest.raises(ConfigError) as caught:
            parse_config({**CONFIG, "web": {"timezone": wrong}}, config_dir=str(tmp_path))
        assert "web.timezone" in str(caught.value)


def test_a_destination_reply_is_shown_with_the_answer_and_linked_both_ways(site):
    from .conftest import encounter

    message_id = site.engine.submit("intake", encounter(9, "MRN-R9")).message_id
    assert site.engine.process_batch()
    claim = site.store.claim_delivery("test-deliverer", 60)
    assert claim.row.message_id == message_id
    ack = b"MSH|^~\\&|EHR|HOSP|BRIDGE|CLINIC|20260301120000||ACK|A1|P|2.5\rMSA|AA|TB9\r"
    reply_id = site.store.finish_delivery(claim, "delivered", "HTTP 201 Created", reply=("ehr-replies", "hl7v2", ack))
    client = site.login("analyst")
    page = client.get(f"/messages/{message_id}").get_data(as_text=True)
    answers = page.split(f'id="answers-{claim.row.id}"', 1)[1].split("</table>", 1)[0]
    assert "HTTP 201 Created" in answers and f'href="/messages/{reply_id}">reply: message {reply_id}</a>' in answers
    assert "MSA|AA|TB9" in page.split(f'id="reply-{reply_id}"', 1)[1].split("</pre>", 1)[0]
    assert f'href="/messages/{reply_id}">answer from ehr message {reply_id}</a>' in page
    reply_page = client.get(f"/messages/{reply_id}").get_data(as_text=True)
    assert f'href="/messages/{message_id}">answer to the delivery of message {message_id}</a>' in reply_page

"""Dashboard pages through the test client: what each role sees, actions, and their audit entries."""

from __future__ import annotations

from .conftest import csrf_from


def test_overview_lists_channels_with_their_numbers(site):
    page = site.login("viewer").get("/").get_data(as_text=True)
    assert "intake" in page and "lab" in page and "1 open hold(s)" in page and "1 dead letter(s)" in page
    assert "Pause" not in page  # viewers cannot pause
    assert "Pause" in site.login("operator").get("/").get_data(as_text=True)


def test_search_finds_a_patient_and_the_lookup_is_audited(site):
    client = site.login("analyst")
    page = client.get("/messages?patient_id=MRN-A1").get_data(as_text=True)
    assert page.count('class="message-link"') == 2 and "MRN-A1" in page and "MRN-B2" not in page
    assert site.store.search_audit(action="message.search")[0].detail["keys"] == {"patient_id": "MRN-A1"}
    refused = site.login("viewer").get("/messages?patient_id=MRN-A1").get_data(as_text=True)
    assert "needs the analyst role" in refused and "MRN-A1" not in refused.split('id="results"', 1)[1]


def test_message_page_shows_payload_to_analysts_only(site):
    url = f"/messages/{site.ids['enc1']}"
    analyst_page = site.login("analyst").get(url).get_data(as_text=True)
    assert 'id="raw"' in analyst_page and "MRN-A1" in analyst_page
    viewer_page = site.login("viewer").get(url).get_data(as_text=True)
    assert 'id="raw"' not in viewer_page and "MRN-A1" not in viewer_page and "Testpatient" not in viewer_page
    assert [e.actor for e in site.store.search_audit(action="message.view")] == ["user:analyst-user"]


def test_release_from_the_holds_page(site):
    client = site.login("operator")
    page = client.get("/holds").get_data(as_text=True)
    assert f'id="hold-{site.ids["rx1"]}"' in page and "R25" in page
    response = client.post(f"/holds/{site.ids['rx1']}/release",
                           data={"reason": "confirmed", "csrf_token": csrf_from(page)}, follow_redirects=True)
    assert "hold released" in response.get_data(as_text=True)
    assert site.store.get_message(site.ids["rx1"]).status == "received"
    assert site.store.search_audit(action="hold.release")[0].actor == "user:operator-user"
    again = client.post(f"/holds/{site.ids['rx1']}/release", data={"reason": "twice", "csrf_token": csrf_from(page)},
                        follow_redirects=True)
    assert "no open hold" in again.get_data(as_text=True)


def test_replay_a_dead_letter_from_its_page(site):
    client = site.login("operator")
    page = client.get("/dead-letters").get_data(as_text=True)
    assert "broken" in page and "peer refused" in page
    response = client.post(f"/messages/{site.ids['lab']}/replay",
                           data={"reason": "retry after fix", "csrf_token": csrf_from(page), "next": "/dead-letters"})
    assert response.status_code == 302 and response.location == "/dead-letters"
    assert site.store.search(channel="lab")[0].replay_of == site.ids["lab"]
    off_site = client.post(f"/messages/{site.ids['lab']}/replay",
                           data={"reason": "again", "csrf_token": csrf_from(page), "next": "https://evil.example/"})
    assert off_site.location == f"/messages/{site.ids['lab']}"


def test_viewer_cannot_act_even_with_a_valid_form(site):
    client = site.login("viewer")
    token = csrf_from(client.get("/holds").get_data(as_text=True))
    response = client.post(f"/holds/{site.ids['rx1']}/release", data={"reason": "x", "csrf_token": token})
    assert response.status_code == 403
    assert site.store.get_message(site.ids["rx1"]).status == "held"


def test_trace_jobs_and_audit_pages(site):
    client = site.login("admin")
    trace_id = site.store.get_message(site.ids["enc1"]).trace_id
    trace = client.get(f"/traces/{trace_id}").get_data(as_text=True)
    assert f"#{site.ids['enc1']}" in trace and f"#{site.ids['rx1']}" in trace and "held" in trace
    assert "No jobs configured" in client.get("/jobs").get_data(as_text=True)
    audit = client.get("/audit?action=login.").get_data(as_text=True)
    assert "The hash chain is intact" in audit and "login.success" in audit and "user.create" not in audit
    assert site.login("operator").get("/audit").status_code == 403


def test_pages_are_not_cached_and_refuse_framing(site):
    response = site.login("viewer").get("/")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert site.app.test_client().get("/static/bridge.css").status_code == 200

"""Bulk replay of a search result from the dashboard (issue 15): review with the count and the
destinations, confirm by typing the count, each message replayed with its original identities."""

from __future__ import annotations

from .conftest import csrf_from


def review(client, query: str) -> str:
    page = client.get(f"/messages/replay?{query}")
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    return page.get_data(as_text=True)


def form_of(page: str, **fields) -> dict:
    ids = page.split('name="ids" value="', 1)[1].split('"', 1)[0]
    return {"csrf_token": csrf_from(page), "ids": ids, "next": "/messages/replay?x=1", **fields}


def test_a_search_result_is_replayed_after_the_count_is_confirmed(site):
    client = site.login("operator")
    listing = client.get("/messages?destination=ehr").get_data(as_text=True)
    assert 'href="/messages/replay?destination=ehr" id="bulk-replay-link"' in listing
    page = review(client, "destination=ehr")
    assert "It finds <b>2</b> message(s)" in page and "ehr (2 message(s))" in page
    before = len(site.store.search(limit=100))

    wrong = client.post("/messages/replay", data=form_of(page, reason="EHR lost a day", destination="ehr",
                                                         confirm_count="3"), follow_redirects=True)
    assert "type the number of messages (2)" in wrong.get_data(as_text=True)
    assert len(site.store.search(limit=100)) == before  # nothing replayed

    none = client.post("/messages/replay", data=form_of(page, reason="x", confirm_count="2"), follow_redirects=True)
    assert "choose at least one destination" in none.get_data(as_text=True)

    done = client.post("/messages/replay", data=form_of(page, reason="EHR lost a day", destination="ehr",
                                                        confirm_count="2"), follow_redirects=True)
    assert "2 message(s) replayed, 0 refused, 0 skipped" in done.get_data(as_text=True)
    replays = site.store.search(limit=2)
    assert {m.replay_of for m in replays} == {site.ids["enc1"], site.ids["enc2"]}
    assert all(m.replay_destinations == ["ehr"] for m in replays)
    site.engine.drain()
    for copy in replays:  # the receiver sees the original's identity again: a resend, not a new message
        (row,) = site.store.outbox_rows(message_id=copy.id)
        assert row.original_message_id == copy.replay_of and row.status == "delivered"
    entry = site.store.search_audit(action="replay.bulk")[0]
    assert entry.actor == "user:operator-user" and entry.detail["replayed"] == 2
    assert entry.detail["destinations"] == ["ehr"] and entry.detail["reason"] == "EHR lost a day"


def test_held_and_never_routed_messages_are_reported_not_replayed(site):
    client = site.login("operator")
    page = review(client, "status=held")
    assert "It finds <b>1</b> message(s)" in page and "also the 1 message(s) never routed" in page
    skipped = client.post("/messages/replay", data=form_of(page, reason="x", destination="ehr", confirm_count="1"),
                          follow_redirects=True).get_data(as_text=True)
    assert "0 message(s) replayed, 0 refused, 1 skipped" in skipped
    refused = client.post("/messages/replay", data=form_of(page, reason="x", include_unrouted="on",
                                                           confirm_count="1"), follow_redirects=True)
    text = refused.get_data(as_text=True)
    assert "0 message(s) replayed, 1 refused" in text and "held" in text
    assert site.store.get_message(site.ids["rx1"]).status == "held"


def test_bulk_replay_needs_an_operator_a_search_and_a_narrow_enough_one(site):
    assert site.login("viewer").get("/messages/replay?status=dead").status_code == 403
    assert 'id="bulk-replay-link"' not in site.login("viewer").get("/messages?status=dead").get_data(as_text=True)
    client = site.login("operator")
    assert client.get("/messages/replay").status_code == 302  # no search: back to the search page
    nothing = review(client, "status=rejected")
    assert "finds no message" in nothing and 'id="bulk-replay"' not in nothing
    forged = client.post("/messages/replay", data={"csrf_token": csrf_from(nothing), "ids": "1,x",
                                                   "confirm_count": "2", "reason": "x", "destination": "ehr"},
                         follow_redirects=True)
    assert "ids: expected message ids" in forged.get_data(as_text=True)

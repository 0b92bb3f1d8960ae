"""The destinations' state in /api/v1/destinations and on the overview, per role: a viewer sees the
state and the numbers, an analyst also the last error's text (it may quote a message)."""

from __future__ import annotations


def by_name(items: list[dict]) -> dict[str, dict]:
    return {item["name"]: item for item in items}


def test_the_api_gives_each_destination_its_state_and_hides_error_text_from_viewers(site):
    viewer = by_name(site.api("viewer").get("/api/v1/destinations").get_json()["items"])
    assert viewer["broken"]["state"] == "failing" and viewer["broken"]["dead_letters"] == 1
    assert viewer["broken"]["attempts_last_hour"] == 1 and viewer["broken"]["failures_last_hour"] == 1
    assert viewer["broken"]["failing_since"] and viewer["broken"]["last_success_at"] is None
    assert viewer["broken"]["feeding_channels"] == ["lab"] and "last_error" not in viewer["broken"]
    assert viewer["ehr"]["state"] == "flowing" and viewer["ehr"]["backlog"] == 0 and viewer["ehr"]["last_success_at"]
    assert viewer["broken"]["outbox"] == {"dead": 1} and "hunter2" not in str(viewer)
    analyst = by_name(site.api("analyst").get("/api/v1/destinations").get_json()["items"])
    assert "peer refused (test)" in analyst["broken"]["last_error"]


def test_the_overview_lists_destinations_with_their_state(site):
    page = site.login("viewer").get("/").get_data(as_text=True)
    assert 'id="destinations"' in page
    assert 'class="destination-failing"' in page and 'class="destination-flowing"' in page
    assert "peer refused" not in page
    assert "peer refused (test)" in site.login("analyst").get("/").get_data(as_text=True)


def test_pausing_every_feed_of_a_destination_shows_it_paused(site):
    site.store.set_channel_paused("intake", True, reason="EHR maintenance window", actor="test")
    items = by_name(site.api("viewer").get("/api/v1/destinations").get_json()["items"])
    assert items["ehr"]["state"] == "paused" and items["broken"]["state"] == "failing"

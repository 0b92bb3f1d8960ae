"""The dashboard in a real headless Chromium: log in, find a patient's messages, follow the trace,
release a held prescription, and keep a screenshot in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.web.server import start_admin_server

from .conftest import PASSWORD
from .webdriver import Browser, find_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def browser(tmp_path):
    found = find_chromium()
    if found is None:
        pytest.skip("no Chromium: the dashboard browser test needs Debian's `chromium` and `chromium-driver` "
                    "packages (apt-get install -y chromium chromium-driver); .ci/run installs them")
    chrome = Browser(*found, profile=tmp_path / "chromium-profile")
    yield chrome
    chrome.close()


@pytest.fixture
def served(site):
    server, thread = start_admin_server(site.app, "127.0.0.1", 0)
    yield site, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_operator_finds_a_patient_follows_the_trace_and_releases_the_hold(served, browser):
    site, base = served
    print(f"Chromium {browser.version}")
    browser.go(f"{base}/messages")
    assert "/login" in browser.url  # deny by default: the dashboard sends an anonymous visitor to log in
    browser.type("#username", "operator-user")
    browser.type("#password", PASSWORD)
    browser.click("#login-submit")
    assert browser.text("#whoami") == "operator-user (operator)"

    browser.type("#q-patient_id", "MRN-A1")
    browser.click("#search-submit")
    browser.wait_for_url("MRN-A1")  # the search's own page, not the overview's list of recent messages
    browser.find("a.message-link")
    assert browser.count("a.message-link") == 2
    assert "MRN-B2" not in browser.text("#results")

    browser.click("a.trace-link")
    timeline = browser.text("#trace-timeline")
    assert "held" in timeline and "decoded" in timeline and "Trace" in browser.text("h1")

    browser.go(f"{base}/holds")
    row = f"#hold-{site.ids['rx1']}"
    browser.type(f"{row} input[name=reason]", "prescriber confirmed the written date by phone")
    browser.click(f"{row} button[type=submit]")
    assert "hold released" in browser.text(".flash.ok")
    assert browser.text("#no-holds") == "No open holds."

    site.engine.drain()
    trace_id = site.store.get_message(site.ids["rx1"]).trace_id
    browser.go(f"{base}/traces/{trace_id}")
    timeline = browser.text("#trace-timeline")
    assert "released" in timeline and "delivered" in timeline
    shot = browser.screenshot(ARTIFACTS / "dashboard-trace.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    assert site.store.search_audit(action="hold.release")[0].actor == "user:operator-user"
    assert site.store.search_audit(action="login.success")[0].actor == "user:operator-user"


def test_operator_replays_a_message_to_one_destination_from_its_page(served, browser):
    site, base = served
    browser.go(f"{base}/login")
    browser.type("#username", "operator-user")
    browser.type("#password", PASSWORD)
    browser.click("#login-submit")
    browser.find("#whoami")  # signed in (the click returns before the login's redirect has landed)
    browser.go(f"{base}/messages/{site.ids['enc1']}")
    browser.type("form.replay input[name=reason]", "EHR asked for the visit again")
    browser.click("form.replay input[name=destination][value=ehr]")
    browser.click("form.replay button[type=submit]")
    assert f"message {site.ids['enc1']} replayed as message" in browser.text(".flash.ok")
    replay = site.store.search(limit=1)[0]
    assert replay.replay_of == site.ids["enc1"] and replay.replay_destinations == ["ehr"]
    assert site.store.search_audit(action="replay")[0].detail["destinations"] == ["ehr"]

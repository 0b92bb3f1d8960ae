"""Issue 15 in a real headless Chromium: an analyst searches inside payloads, reads a message tab by
tab with the keyboard, follows the compact trace, meets an HTML error page; a screenshot of every
page the issue changed goes to test-artifacts/ (CI keeps them)."""

from __future__ import annotations

from .conftest import PASSWORD
from .test_browser import ARTIFACTS, browser, served  # noqa: F401  (fixtures)
from .webdriver import KEYS

SCRIPT_HEIGHT = "return document.documentElement.scrollHeight"


def log_in(browser, base: str, name: str) -> None:  # noqa: F811
    browser.go(f"{base}/login")
    browser.type("#username", name)
    browser.type("#password", PASSWORD)
    browser.click("#login-submit")
    browser.find("#whoami")


def shot(browser, name: str) -> None:  # noqa: F811
    path = browser.screenshot(ARTIFACTS / f"issue15-{name}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_an_analyst_searches_payloads_and_reads_a_message_tab_by_tab(served, browser):  # noqa: F811
    site, base = served
    lab = site.ids["lab"]
    (row,) = site.store.outbox_rows(message_id=lab)
    log_in(browser, base, "analyst-user")

    browser.go(f"{base}/messages")
    browser.type("#q-text", "Testpatient")
    browser.type("#q-destination", "broken")  # a select takes the typed option, as with a keyboard
    browser.click("#search-submit")
    browser.wait_for_url("q=Testpatient")
    assert browser.count("a.message-link") == 1
    assert site.store.search_audit(action="message.content_search")[0].detail["text"] == "Testpatient"
    shot(browser, "messages-search")

    browser.click("a.message-link")
    browser.wait_for_url(f"/messages/{lab}")
    assert browser.attribute("#tab-input", "aria-selected") == "true"
    assert browser.displayed("#raw") and browser.displayed("#records")  # side by side
    assert not browser.displayed(f"#pane-out-{row.id}")
    assert "UTC" in browser.attribute("#content time", "title")
    shot(browser, "message-input")

    browser.click("#tab-input")
    browser.keys(KEYS["right"])  # the arrow moves to the destination's tab and shows its pane
    assert browser.focused_id() == f"tab-out-{row.id}"
    assert browser.displayed(f"#payload-{row.id}") and not browser.displayed("#raw")
    assert "peer refused" in browser.text(f"#answers-{row.id}")
    assert browser.url.endswith(f"#pane-out-{row.id}")
    shot(browser, "message-destination")

    browser.keys(KEYS["end"])
    assert browser.focused_id() == "tab-timeline" and browser.displayed("#timeline")
    timeline = browser.text("#timeline")
    assert "dead letter" in timeline and "{" not in timeline
    shot(browser, "message-timeline")
    browser.go(f"{base}/messages/{lab}#pane-timeline")  # a link to a tab opens that tab
    assert browser.attribute("#tab-timeline", "aria-selected") == "true"

    browser.click("#trace-link")
    browser.find(".trace-message")
    assert browser.displayed(".trace-message .scroll")
    shot(browser, "trace")

    browser.go(f"{base}/messages/99999")
    assert browser.text("h1") == "404" and "no message with id 99999" in browser.text(".flash.error")
    shot(browser, "error-404")


def test_live_pages_refresh_and_the_dashboard_works_from_the_keyboard(served, browser):  # noqa: F811
    site, base = served
    log_in(browser, base, "admin-user")
    browser.go(f"{base}/jobs")
    assert "updates every 15 s" in browser.text("footer")
    browser.click("#refresh-toggle")
    assert "updates paused" in browser.text("footer") and browser.text("#refresh-toggle") == "Resume updates"
    browser.click("#refresh-toggle")
    browser.go(f"{base}/holds")
    assert "updates every 60 s" in browser.text("footer")  # audited for an admin: once a minute
    shot(browser, "holds")

    browser.go(f"{base}/")
    browser.keys(KEYS["tab"])  # the first Tab reaches the skip link, Enter goes to the content
    assert browser.text(":focus") == "Skip to content"
    shot(browser, "overview")
    for page, name in (("/dead-letters", "dead-letters"), ("/jobs", "jobs"), ("/audit", "audit")):
        browser.go(base + page)
        browser.find("main h1")
        shot(browser, name)
    assert "{" not in browser.text("#audit")  # audit details as fields, not JSON

    browser.go(f"{base}/messages?destination=ehr")
    browser.click("#bulk-replay-link")
    assert "It finds 2 message(s)" in browser.text("#replay-count")
    browser.type("#bulk-replay input[name=reason]", "the EHR restored yesterday's backup")
    browser.type("#confirm-count", "2")
    shot(browser, "bulk-replay-confirm")
    browser.click("#bulk-replay-submit")
    assert "2 message(s) replayed" in browser.text(".flash")

    trace_id = site.store.get_message(site.ids["rx1"]).trace_id
    browser.go(f"{base}/traces/{trace_id}")
    assert browser.count(".trace-message") == 3  # the visit, its prescription and the visit's replay
    height = browser._call("POST", browser._s("/execute/sync"), {"script": SCRIPT_HEIGHT, "args": []})
    assert height < 1000, f"the trace page is {height} px tall"  # cards side by side on a laptop screen

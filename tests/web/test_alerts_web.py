"""Alert state in the admin API (``/api/v1/alerts``) and on the dashboard's Alerts page: what the
store holds after real monitor rounds, viewer role and up, no PHI."""

from __future__ import annotations

import time

import pytest

from bridge.core.alerts import AlertMonitor
from bridge.testing import engine_from_dict, plugin_manager
from bridge.web import create_app
from bridge.web.auth import LoginLimiter, hash_password, new_token, token_digest
from tests.web.conftest import PASSWORD, FailingTransport, encounter, login
from tests.web.test_browser import browser  # noqa: F401  (fixture: headless Chromium, skipped without it)

CONFIG = {
    "channels": {"intake": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["broken"]}]}},
    "destinations": {"broken": {"url": "fail://nowhere", "format": "bridge",
                                "retry": {"max_attempts": 50, "initial_seconds": 60}}},
    "alerts": {"notify": {"webhook": {"url": "https://hooks.hospital.example/bridge"}},
               "rules": {"intake-stuck": {"when": "backlog", "channel": "intake", "minutes": 5},
                         "broken-down": {"when": "destination_failing", "destination": "broken", "minutes": 5,
                                         "repeat_minutes": 15}}},
}


class Recorder:
    name = "webhook"

    def __init__(self):
        self.notices = []

    def send(self, notice):
        self.notices.append(notice)


@pytest.fixture
def alerting_site(tmp_path):
    plugins = plugin_manager(("failing", FailingTransport()))
    engine = engine_from_dict(CONFIG, tmp_path, plugins)
    engine.open_destinations()
    engine.submit("intake", encounter(1, "MRN-SECRET-1"))
    engine.process_batch()
    token = new_token()
    engine.store.create_token("viewer-token", token_digest(token), "viewer", actor="test")
    engine.store.create_user("viewer-user", hash_password(PASSWORD), "viewer", actor="test")
    app = create_app(engine.config, plugins, engine.store, engine=engine, limiter=LoginLimiter())
    yield engine, app, token
    engine.store.close()


def test_the_api_lists_rules_and_alert_state_firing_first(alerting_site):
    engine, app, token = alerting_site
    recorder = Recorder()
    AlertMonitor(engine.store, engine.config, notifiers={"webhook": recorder}).evaluate_once(now=time.time() + 600)
    assert [n.subject for n in recorder.notices] == ["destination:broken"]
    client = app.test_client()
    assert client.get("/api/v1/alerts").status_code == 401
    answer = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["firing"] == 1 and body["notifiers"] == ["webhook"]
    assert {r["name"]: r["when"] for r in body["rules"]} == {"intake-stuck": "backlog",
                                                           "broken-down": "destination_failing"}
    [alert] = body["alerts"]
    assert (alert["rule"], alert["subject"], alert["state"], alert["notices"]) == \
        ("broken-down", "destination:broken", "firing", 1)
    assert alert["last_notice_at"].endswith("Z") and alert["facts"]["pending"] == 1
    assert "MRN-SECRET-1" not in answer.get_data(as_text=True)


def test_the_alerts_page_shows_firing_and_resolved_alerts_and_refreshes(alerting_site):
    engine, app, _ = alerting_site
    engine.store.alert_seen("intake-stuck", "channel:intake", "channel intake: 3 waiting", {"waiting": 3}, 100.0)
    engine.store.alert_cleared("intake-stuck", "channel:intake", 200.0)
    engine.store.alert_seen("broken-down", "destination:broken", "destination broken has delivered nothing",
                            {}, 300.0)
    client = app.test_client()
    assert login(client, "viewer-user", PASSWORD).status_code == 302
    page = client.get("/alerts")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<meta http-equiv="refresh" content="60">' in html
    assert html.index("destination:broken") < html.index("channel:intake")  # firing first
    assert "s-firing" in html and "s-resolved" in html and "1 firing" in html
    assert "every 15 min" in html and 'href="/alerts"' in client.get("/").get_data(as_text=True)


def test_the_alerts_page_in_chromium(alerting_site, browser):  # noqa: F811
    from bridge.web.server import start_admin_server
    from tests.web.test_browser import ARTIFACTS

    engine, app, _ = alerting_site
    now = time.time()
    engine.store.alert_seen("broken-down", "destination:broken", "destination broken has delivered nothing for"
                            " 5.0 min: 1 waiting (1 failing), 0 dead letter(s) in the window", {"pending": 1}, now - 60)
    claimed = engine.store.claim_alert_notice("broken-down", "destination:broken", "n", now - 60, 900, 30)
    engine.store.finish_alert_notice(claimed, "n", sent=True, error="email: SMTP 451", now=now - 59)
    engine.store.alert_seen("intake-stuck", "channel:intake", "channel intake: 3 waiting, the oldest for 7.0 min"
                            " (limit 5.0 min)", {"waiting": 3}, time.time() - 900)
    engine.store.alert_cleared("intake-stuck", "channel:intake", time.time() - 300)
    server, thread = start_admin_server(app, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        browser.go(f"{base}/alerts")
        browser.type("#username", "viewer-user")
        browser.type("#password", PASSWORD)
        browser.click("#login-submit")
        browser.wait_for_url("/alerts")
        table = browser.text("#alerts")
        assert "destination:broken" in table and "firing" in table and "resolved" in table
        assert "backlog" in browser.text("#alert-rules")
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.screenshot(ARTIFACTS / "alerts.png").stat().st_size > 10_000
    finally:
        server.shutdown()
        thread.join(5)

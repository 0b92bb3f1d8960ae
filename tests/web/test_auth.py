"""Deny by default, roles, tokens, sessions, CSRF and login throttling, with their audit entries."""

from __future__ import annotations

import re

import pytest

from bridge.web import load_openapi
from bridge.web.auth import ROLES, LoginLimiter, has_role, hash_password, verify_password

from .conftest import PASSWORD, build_site, csrf_from, login

PUBLIC_PATHS = {"/healthz", "/readyz", "/login", "/static/<path:filename>"}


def concrete(rule: str, trace_id: str) -> str:
    """A URL for a rule: ints become 1, strings a plausible name."""
    url = re.sub(r"<int:[^>]+>", "1", rule)
    url = re.sub(r"<path:[^>]+>", "bridge.css", url)
    url = url.replace("<trace_id>", trace_id)
    return re.sub(r"<[^>]+>", "intake", url)


def test_every_route_denies_an_anonymous_caller(site):
    trace_id = site.store.get_message(site.ids["enc1"]).trace_id
    checked = 0
    for rule in site.app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = site.api(None).open(concrete(rule.rule, trace_id), method=method)
            checked += 1
            if rule.rule in PUBLIC_PATHS:
                assert response.status_code in (200, 400), (rule.rule, method, response.status_code)
                continue
            if rule.rule.startswith("/api/") or rule.rule == "/metrics":
                assert response.status_code == 401, (rule.rule, method)
                assert response.get_json()["message"], "401s explain themselves"
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            else:
                assert response.status_code == 302, (rule.rule, method, response.status_code)
                assert response.location.startswith("/login?next=")
    assert checked > 40
    # an unknown URL is not an oracle either
    assert site.api(None).get("/api/v1/nothing-here").status_code == 401


def call(client, method: str, url: str):
    body = {"reason": "role test", "ids": [1]} if method in ("POST", "PATCH", "DELETE") else None
    return client.open(url, method=method, json=body)


def test_each_api_operation_enforces_its_documented_role(site):
    """Every role below an operation's x-role gets 403; the role itself and above get past authorisation."""
    trace_id = site.store.get_message(site.ids["enc1"]).trace_id
    doc = load_openapi()
    for path, operations in doc["paths"].items():
        url = "/api/v1" + path.replace("{message_id}", "1").replace("{trace_id}", trace_id).replace("{name}", "intake")
        for method, spec in operations.items():
            needed = spec["x-role"]
            for role in ROLES:
                response = call(site.api(role), method.upper(), url)
                if has_role(role, needed):
                    assert response.status_code not in (401, 403), (method, path, role, response.get_json())
                else:
                    assert response.status_code == 403, (method, path, role, response.status_code)
                    assert needed in response.get_json()["message"]


def test_revoked_wrong_and_malformed_tokens_are_refused(site):
    assert site.api("viewer").get("/api/v1/me").get_json() == {"name": "viewer-token", "role": "viewer",
                                                                "kind": "token"}
    site.store.revoke_token("viewer-token", actor="test")
    response = site.api("viewer").get("/api/v1/me")
    assert response.status_code == 401 and "revoked" in response.get_json()["message"]
    client = site.app.test_client()
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer tbk_not-a-real-token"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert [t.last_used_at is not None for t in site.store.tokens() if t.name == "viewer-token"] == [True]


def test_password_hashes_are_salted_scrypt():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password(PASSWORD, first) and not verify_password(PASSWORD + "x", first)
    assert not verify_password(PASSWORD, "md5$whatever")
    with pytest.raises(ValueError):
        hash_password("short")


def test_login_sets_a_strict_http_only_cookie_and_is_audited(site):
    client = site.app.test_client()
    response = login(client, "analyst-user", PASSWORD)
    assert response.status_code == 302 and response.location == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert client.get("/").status_code == 200
    entry = site.store.search_audit(action="login.success")[0]
    assert (entry.actor, entry.target, entry.detail["address"]) == ("user:analyst-user", "user:analyst-user",
                                                                    "127.0.0.1")


def test_cookies_are_secure_when_tls_is_on(tmp_path):
    site = build_site(tmp_path, secure_cookies=True)
    response = login(site.app.test_client(), "viewer-user", PASSWORD)
    assert "Secure" in response.headers["Set-Cookie"]


def test_login_needs_its_csrf_token(site):
    client = site.app.test_client()
    client.get("/login")
    response = client.post("/login", data={"username": "admin-user", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # not logged in


def test_forms_need_the_session_csrf_token(site):
    client = site.login("operator")
    held = site.ids["rx1"]
    refused = client.post(f"/holds/{held}/release", data={"reason": "checked by phone"})
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    assert site.store.get_message(held).status == "held"
    forged = client.post(f"/holds/{held}/release", data={"reason": "x", "csrf_token": "forged"})
    assert forged.status_code == 400
    token = csrf_from(client.get("/holds").get_data(as_text=True))
    done = client.post(f"/holds/{held}/release", data={"reason": "checked by phone", "csrf_token": token})
    assert done.status_code == 302
    assert site.store.holds("released")[0].resolved_by == "user:operator-user"


def test_failed_logins_are_throttled_per_user_and_audited(site):
    client = site.app.test_client()
    for _ in range(3):
        assert login(client, "admin-user", "wrong password!").status_code == 401
    blocked = login(client, "admin-user", PASSWORD)  # right password, but the user is locked for the window
    assert blocked.status_code == 429
    assert login(client, "viewer-user", PASSWORD, address="10.0.0.9").status_code == 302  # others unaffected
    failures = site.store.search_audit(action="login.failure")
    assert len(failures) == 3 and all(e.detail["why"] == "bad password" for e in failures)
    assert site.store.search_audit(action="login.blocked")[0].target == "user:admin-user"


def test_failed_logins_are_throttled_per_address(site):
    client = site.app.test_client()
    for n in range(5):
        assert login(client, f"nobody-{n}", "guessing-1234", address="10.1.1.1").status_code == 401
    assert login(client, "viewer-user", PASSWORD, address="10.1.1.1").status_code == 429
    assert login(client, "viewer-user", PASSWORD, address="10.1.1.2").status_code == 302


def test_limiter_window_slides():
    limiter = LoginLimiter(per_user=2, per_address=100, window_seconds=60)
    keys = [("user", "a"), ("address", "x")]
    limiter.failed(keys, now=0)
    limiter.failed(keys, now=30)
    assert limiter.blocked(keys, now=59)
    assert not limiter.blocked(keys, now=61)  # the first failure left the window


def test_disabling_a_user_or_changing_a_password_ends_their_sessions(site):
    client = site.login("analyst")
    assert client.get("/messages").status_code == 200
    site.store.update_user("analyst-user", actor="test", password_hash=hash_password("a new password"))
    assert client.get("/messages").status_code == 302
    client = site.login("viewer")
    site.store.update_user("viewer-user", actor="test", disabled=True)
    assert client.get("/").status_code == 302
    assert login(site.app.test_client(), "viewer-user", PASSWORD).status_code == 401


def test_logout_clears_the_session(site):
    client = site.login("viewer")
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302
    assert site.store.search_audit(action="logout")[0].actor == "user:viewer-user"


def test_a_session_can_use_the_api_with_its_role(site):
    client = site.login("viewer")
    assert client.get("/api/v1/me").get_json()["kind"] == "user"
    assert client.get("/api/v1/audit").status_code == 403
    # a state change through the API by session also needs the CSRF header
    client = site.login("operator")
    assert client.post("/api/v1/channels/intake/pause", json={"reason": "x"}).status_code == 400
    token = csrf_from(client.get("/").get_data(as_text=True))
    response = client.post("/api/v1/channels/intake/pause", json={"reason": "x"}, headers={"X-CSRF-Token": token})
    assert response.status_code == 200


def test_undeclared_views_need_admin(tmp_path):
    """A plugin view that declares no role is admin-only, so a forgotten declaration fails closed."""
    from flask import Blueprint

    from bridge import WebBlueprint, hookimpl

    from .conftest import build_site as build

    site = build(tmp_path)

    class Plugin:
        @hookimpl
        def bridge_web_blueprints(self):
            def factory():
                bp = Blueprint("acme", __name__)
                bp.add_url_rule("/ping", "ping", lambda: "pong")

                def open_view():
                    return "hello"
                open_view.bridge_role = "viewer"
                bp.add_url_rule("/hello", "hello", open_view)
                return bp
            return [WebBlueprint(name="acme", factory=factory, url_prefix="/acme")]

    from bridge.testing import plugin_manager
    from bridge.web import create_app

    app = create_app(site.engine.config, plugin_manager(("acme", Plugin())), site.store)
    viewer = app.test_client()
    viewer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site.tokens['viewer']}"
    assert viewer.get("/acme/ping").status_code == 403
    assert viewer.get("/acme/hello").data == b"hello"
    admin = app.test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {site.tokens['admin']}"
    assert admin.get("/acme/ping").data == b"pong"


def test_after_login_only_same_site_paths_are_followed():
    from bridge.web.dashboard import safe_next

    assert safe_next("/messages?patient_id=1") == "/messages?patient_id=1"
    for hostile in ("/\t/evil.example", "//evil.example", "/\\evil.example", "https://evil.example", "x"):
        assert safe_next(hostile) is None, hostile


def test_logout_ends_the_session_even_where_the_cookie_was_copied(site):
    client = site.login("admin")
    cookie = client.get_cookie("bridge_session")
    assert client.get("/api/v1/users").status_code == 200
    copy = site.app.test_client()
    copy.set_cookie(cookie.key, cookie.value)
    assert copy.get("/api/v1/users").status_code == 200
    csrf = csrf_from(client.get("/").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": csrf})
    assert copy.get("/api/v1/users").status_code == 401  # the copied cookie is dead too


def test_an_analyst_listing_identifiers_is_audited(site):
    assert site.api("analyst").get("/api/v1/messages").status_code == 200
    assert site.api("viewer").get("/api/v1/messages").status_code == 200
    listed = [e for e in site.store.audit_entries(50) if e.action == "message.list"]
    assert len(listed) == 1 and listed[0].actor.endswith("analyst-token") and listed[0].detail["message_ids"]

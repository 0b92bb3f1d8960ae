"""The web app factory over a real HTTP socket: health, readiness and plugin blueprints."""

from __future__ import annotations

import json
import threading
import urllib.request

from flask import Blueprint
from werkzeug.serving import make_server

from bridge import WebBlueprint, hookimpl
from bridge.core.config import parse_config
from bridge.testing import plugin_manager
from bridge.web import create_app
from bridge.web.auth import new_token, token_digest


def test_health_readiness_and_plugin_blueprint_over_http(tmp_path):
    class Plugin:
        @hookimpl
        def bridge_web_blueprints(self):
            def factory():
                bp = Blueprint("acme", __name__)
                def ping():
                    return "pong"
                ping.bridge_role = "viewer"  # plugin views declare their least role (else admin only)
                bp.add_url_rule("/ping", "ping", ping)
                return bp
            return [WebBlueprint(name="acme", factory=factory, url_prefix="/acme")]

    plugins = plugin_manager(("acme", Plugin()))
    config = parse_config({"store": "sqlite:///bridge.db"}, config_dir=str(tmp_path), plugins=plugins)
    app = create_app(config, plugins)
    token = new_token()
    app.extensions["bridge.store"].create_token("t", token_digest(token), "viewer", actor="test")
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert json.load(urllib.request.urlopen(f"{base}/healthz"))["status"] == "ok"
        assert json.load(urllib.request.urlopen(f"{base}/readyz"))["schema_version"] >= 1
        authorised = urllib.request.Request(f"{base}/acme/ping", headers={"Authorization": f"Bearer {token}"})
        assert urllib.request.urlopen(authorised).read() == b"pong"
    finally:
        server.shutdown()
    # a second app from the same factory shares nothing with the first
    assert create_app(config, plugins) is not app

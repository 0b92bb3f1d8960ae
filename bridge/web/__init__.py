"""The admin web app (Flask application factory; no global state at import time).

This first version serves health endpoints and mounts plugins' blueprints; the admin API and
dashboard build on it. ``create_app(config, plugins, store)`` returns a new app each call.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from bridge import __version__
from bridge.core.config import BridgeConfig
from bridge.core.plugin_manager import PluginManager
from bridge.core.store import Store, open_store
from bridge.errors import StoreError


def create_app(config: BridgeConfig, plugins: PluginManager, store: Store | None = None) -> Flask:
    app = Flask("bridge.web")
    app.config["BRIDGE_CONFIG"] = config
    app.extensions["bridge.plugins"] = plugins
    app.extensions["bridge.store"] = store or open_store(config.store_url)

    @app.get("/healthz")
    def healthz() -> Any:
        """Liveness: the process answers."""
        return jsonify(status="ok", version=__version__)

    @app.get("/readyz")
    def readyz() -> Any:
        """Readiness: the store answers a query."""
        try:
            version = app.extensions["bridge.store"].schema_version()
        except StoreError as exc:
            return jsonify(status="unavailable", error=str(exc)), 503
        return jsonify(status="ready", schema_version=version)

    for spec in plugins.web_blueprints().values():
        app.register_blueprint(spec.factory(), url_prefix=spec.url_prefix)
    return app

"""Alert state for operators: ``GET /api/v1/alerts`` and the dashboard's Alerts page.

A blueprint of its own (registered by the app factory) over :func:`bridge.core.alerts.alerts_view`,
which reads the store's alert rows: rule ids, subjects (configured names), counts and times — no
PHI, so the viewer role may see it. The page refreshes itself every minute.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, render_template

from bridge.core.alerts import alerts_view

from .auth import requires

REFRESH_SECONDS = 60


def current_alerts() -> dict[str, Any]:
    return alerts_view(current_app.extensions["bridge.store"], current_app.config["BRIDGE_CONFIG"])


def make_alerts() -> Blueprint:
    alerts = Blueprint("alerts", __name__)

    @alerts.get("/api/v1/alerts")
    @requires("viewer")
    def api_alerts() -> Any:
        """The configured rules and every alert's state (firing first)."""
        return jsonify(current_alerts())

    @alerts.get("/alerts")
    @requires("viewer")
    def page() -> Any:
        return render_template("alerts.html", view=current_alerts(), refresh=REFRESH_SECONDS)

    return alerts

"""The admin web app (Flask application factory; no global state at import time).

``create_app(config, plugins, store)`` returns a new app each call: health endpoints, the JSON admin
API under ``/api/v1``, the dashboard, ``/metrics`` (when the metrics module is installed) and the
plugins' blueprints. Access is denied by default: a before-request check authenticates every request
(an API token as ``Authorization: Bearer …``, or a dashboard session) and enforces the role each view
declares; only ``/healthz``, ``/readyz``, ``/login`` and static files are public.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from flask import Flask, Response, g, jsonify, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from bridge import __version__
from bridge.core.config import BridgeConfig
from bridge.core.plugin_manager import PluginManager
from bridge.core.store import Store, open_store
from bridge.errors import StoreError

from .alerts import make_alerts
from .charts import sparkline
from .api import ApiError, StoreIdConverter, json_error, make_api
from .auth import (PUBLIC_ENDPOINTS, LoginLimiter, Principal, csrf_ok, csrf_token, load_secret_key, requires,
                   required_role, token_digest)
from .dashboard import fingerprint, make_dashboard
from .readable import DEFAULT_ZONE, detail_fields, fields_html, pretty_json, time_html

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_HOURS = 8


def create_app(config: BridgeConfig, plugins: PluginManager, store: Store | None = None, *,
               engine: Any = None, limiter: LoginLimiter | None = None,
               secure_cookies: bool | None = None) -> Flask:
    """Build the admin app. ``secure_cookies`` defaults to whether ``web.tls`` is configured."""
    web = dict(getattr(config, "web", None) or {})
    app = Flask("bridge.web", static_folder=str(HERE / "static"), template_folder=str(HERE / "templates"))
    app.url_map.converters["int"] = StoreIdConverter  # before any route: ids past 64 bits are no route
    app.config["BRIDGE_CONFIG"] = config
    app.extensions["bridge.plugins"] = plugins
    app.extensions["bridge.store"] = store or open_store(config.store_url)
    app.extensions["bridge.engine"] = engine
    if engine is not None and hasattr(engine, "on_reload"):  # SIGHUP: the pages show what the engine runs
        engine.on_reload.append(lambda new: app.config.__setitem__("BRIDGE_CONFIG", new))
    app.extensions["bridge.login_limiter"] = limiter or LoginLimiter()
    app.extensions["bridge.openapi"] = load_openapi()
    if engine is not None:
        app.extensions["bridge.wake"] = engine.work_ready.set
    app.secret_key, app.extensions["bridge.secret_source"] = load_secret_key(web, config.config_dir)
    app.config.update(
        SESSION_COOKIE_NAME="bridge_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=bool(web.get("tls")) if secure_cookies is None else secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=float(web.get("session_hours", SESSION_HOURS))),
        MAX_CONTENT_LENGTH=1024 * 1024, JSON_SORT_KEYS=False,
    )
    _health(app)
    app.before_request(_authorize)
    app.after_request(_harden)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreError, _store_error)
    app.register_error_handler(Exception, _unexpected_error)
    zone = app.config["BRIDGE_SITE_ZONE"] = web.get("timezone", DEFAULT_ZONE)
    app.jinja_env.globals.update(
        csrf_token=lambda: csrf_token(session), version=__version__, site_zone=zone, sparkline=sparkline,
        iso=lambda ts: time_html(ts, zone),
        fields=lambda detail: fields_html(detail_fields(detail), zone,
                                          lambda i: url_for("dashboard.message", message_id=i)))
    app.jinja_env.filters["pretty_json"] = pretty_json
    app.context_processor(lambda: {"principal": g.get("principal")})
    app.register_blueprint(make_api())
    app.register_blueprint(make_dashboard())
    app.register_blueprint(make_alerts())
    _mount_metrics(app)
    for spec in plugins.web_blueprints().values():
        app.register_blueprint(spec.factory(), url_prefix=spec.url_prefix)
    return app


def load_openapi() -> dict[str, Any]:
    with open(HERE / "openapi.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _health(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> Any:
        """Liveness: the process answers."""
        return jsonify(status="ok", version=__version__)

    @app.get("/readyz")
    def readyz() -> Any:
        """Readiness: the store answers a query and every listener this process started is up
        (bridge.core.health); a 503 names what is wrong, without message data."""
        from bridge.core.health import readiness

        ready, problems = readiness(app.extensions["bridge.store"], app.config["BRIDGE_CONFIG"],
                                    app.extensions["bridge.engine"])
        if not ready:
            return jsonify(status="unavailable", error="; ".join(problems), problems=problems), 503
        return jsonify(status="ready", schema_version=app.extensions["bridge.store"].schema_version())


def _mount_metrics(app: Flask) -> None:
    """``/metrics`` in Prometheus text format (viewer role: counts only, no PHI)."""
    from bridge.core.metrics import CONTENT_TYPE, render

    @requires("viewer")
    def metrics() -> Any:
        text = render(app.extensions["bridge.store"], app.extensions["bridge.engine"], app.config["BRIDGE_CONFIG"])
        return Response(text, content_type=CONTENT_TYPE)

    app.add_url_rule("/metrics", "metrics", metrics)


# --- authentication and authorisation -------------------------------------------------------------


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics" or "Authorization" in request.headers


def _authenticate() -> tuple[Principal | None, str | None]:
    """The caller and how it authenticated, or ``(None, why)``."""
    from flask import current_app

    store = current_app.extensions["bridge.store"]
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "use Authorization: Bearer <token>"
        found = store.token_by_hash(token_digest(token.strip()))
        if found is None:
            return None, "invalid or revoked token"
        g.auth_kind = "token"
        return Principal(found.name, found.role, "token"), None
    name = session.get("user")
    if not name:
        return None, "authentication required"
    user = store.get_user(name)
    if (user is None or user.disabled or session.get("pw") != fingerprint(user.password_hash)
            or session.get("ep") != user.session_epoch):
        session.clear()
        return None, "your session has ended; log in again"
    g.auth_kind = "session"
    return Principal(user.name, user.role, "user"), None


def _authorize() -> Any:
    """Runs before every view: deny unless public, authenticated, allowed for the role, and CSRF-safe."""
    from flask import current_app

    endpoint = request.endpoint
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    principal, why = _authenticate()
    if principal is None:
        if _wants_json():
            response = json_error(401, why or "authentication required", "unauthorized")
            response.headers["WWW-Authenticate"] = 'Bearer realm="bridge"'
            return response
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    g.principal = principal
    view = current_app.view_functions.get(endpoint) if endpoint else None
    if view is None:
        return None  # an authenticated caller gets Flask's own 404 or 405
    needed = required_role(view)
    if not principal.can(needed):
        return _deny(403, f"this needs the {needed} role (you are {principal.role})")
    if request.method not in SAFE_METHODS and g.get("auth_kind") == "session":
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
        if not csrf_ok(session, sent):
            return _deny(400, "missing or wrong CSRF token; reload the page and try again")
    return None


def _deny(status: int, message: str) -> Any:
    if _wants_json():
        return json_error(status, message, "forbidden" if status == 403 else "bad_request")
    return render_template("error.html", status=status, message=message), status


def _error_page(status: int, message: str) -> Any:
    """The dashboard's HTML error page (the API answers JSON: see ``_wants_json``)."""
    return render_template("error.html", status=status, message=message), status


def _api_error(exc: ApiError) -> Any:
    """An ApiError raised under a dashboard page (a message that does not exist) is a page, not JSON."""
    return json_error(exc.status, exc.message, exc.code) if _wants_json() else _error_page(exc.status, exc.message)


def _http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    if _wants_json():
        return json_error(status, exc.description or exc.name, exc.name.lower().replace(" ", "_"))
    return _error_page(status, exc.description or exc.name)


def _unexpected_error(exc: Exception) -> Any:
    """A bug: logged by type only (its text may quote a payload), answered without a traceback."""
    log.error("unexpected %s in %s %s", type(exc).__name__, request.method, request.endpoint)
    message = "something went wrong on the server; the error is logged (without message contents)"
    return json_error(500, message, "internal_error") if _wants_json() else _error_page(500, message)


def _store_error(exc: StoreError) -> Any:
    log.error("store error in %s %s: %s", request.method, request.endpoint, type(exc).__name__)
    return _deny(503, "the store is unavailable; try again shortly") if not _wants_json() else \
        json_error(503, "the store is unavailable; try again shortly", "unavailable")


def _harden(response: Response) -> Response:
    """Security headers on every answer; pages with PHI are never cached."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'self'")
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


__all__ = ["create_app", "load_openapi"]

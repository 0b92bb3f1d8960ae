"""The dashboard: server-rendered pages over the same functions as the API (no JavaScript needed).

Forms post with a CSRF token (checked by the app before any view runs); actions redirect back with
a flash message, so a reload never repeats an action.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo
from urllib.parse import urlparse, urlsplit

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request, session,
                   url_for)

from bridge.core.config import PRUNABLE_STATUSES
from bridge.core.model.keys import KEY_NAMES

from . import api, bulk_replay, present
from .auth import csrf_ok, dummy_verify, verify_password

SEARCH_FIELDS = ("status", "channel", "message_type", "destination", "since", "until", "q", *KEY_NAMES)
FINAL_STATUSES = PRUNABLE_STATUSES  # a message in one of these changes no more: its page need not refresh
MESSAGE_STATUSES = ("received", "processing", "held", "routed", *FINAL_STATUSES)


def _actions_back(default: str) -> Any:
    target = request.form.get("next") or default
    if urlparse(target).netloc or not target.startswith("/"):
        target = default
    return redirect(target)


def _action(run, success: str, default: str) -> Any:
    try:
        run()
    except api.ApiError as exc:
        flash(exc.message, "error")
    else:
        flash(success, "ok")
    return _actions_back(default)


def make_dashboard() -> Blueprint:
    dash = Blueprint("dashboard", __name__)

    @dash.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        """Public: the only page an anonymous visitor may see (plus health and static files)."""
        if request.method == "GET":
            return render_template("login.html", next=request.args.get("next", ""))
        return _login_post()

    @dash.post("/logout")
    @api.requires("viewer")
    def logout() -> Any:
        api.audit("logout", g.principal.actor, {})
        if g.principal.kind == "user":
            current_app.extensions["bridge.store"].end_sessions(g.principal.name, actor=g.principal.actor)
        session.clear()
        return redirect(url_for("dashboard.login"))

    @dash.get("/")
    @api.requires("viewer")
    def overview() -> Any:
        return render_template("overview.html", channels=api.channels_view(),
                               destinations=api.destinations_view(g.principal),
                               open_holds=len(api.store().holds("open")),
                               dead=len(api.store().outbox_rows(status="dead", limit=1000)))

    @dash.get("/messages")
    @api.requires("viewer")
    def messages() -> Any:
        args = {k: v.strip() for k, v in request.args.items() if k in (*SEARCH_FIELDS, "before_id") and v.strip()}
        rows, cursor, error = [], None, None
        try:
            rows, cursor = api.search_messages(in_site_zone(args, site_zone()), g.principal)
        except api.ApiError as exc:
            error = exc.message
        items = [present.message_summary(m, g.principal) for m in rows]
        next_args = {**args, "before_id": cursor} if cursor else None
        config = current_app.config["BRIDGE_CONFIG"]
        return render_template("messages.html", items=items, args=args, error=error, next_args=next_args,
                               key_names=KEY_NAMES, channels=sorted(config.channels), statuses=MESSAGE_STATUSES,
                               destinations=sorted(config.destinations), message_types=api.store().message_types())

    @dash.get("/messages/replay")
    @api.requires("operator")
    def bulk_replay_review() -> Any:
        """Step one of a bulk replay: the search's messages, their destinations, the count to confirm."""
        args = {k: v.strip() for k, v in request.args.items() if k in SEARCH_FIELDS and v.strip()}
        if not args:
            flash("search first: a bulk replay replays the messages a search finds", "error")
            return redirect(url_for("dashboard.messages"))
        found = bulk_replay.review(in_site_zone(args, site_zone()), g.principal)
        return render_template("replay_confirm.html", r=found, args=args)

    @dash.post("/messages/replay")
    @api.requires("operator")
    def bulk_replay_run() -> Any:
        """Step two: replay the reviewed ids (see bridge.web.bulk_replay)."""
        try:
            done = bulk_replay.run(request.form, request.form.getlist("destination"))
        except api.ApiError as exc:  # back to the review page (its ``next``), nothing replayed
            flash(exc.message, "error")
            return _actions_back(url_for("dashboard.messages"))
        refused = "; ".join(f"{r['message_id']}: {r['error']}" for r in done["refused"][:5])
        flash(f"{len(done['replayed'])} message(s) replayed, {len(done['refused'])} refused, "
              f"{len(done['skipped'])} skipped (not routed to a chosen destination)"
              + (f". Refused: {refused}" if refused else ""), "ok" if done["replayed"] else "error")
        return redirect(url_for("dashboard.messages"))

    @dash.get("/messages/<int:message_id>")
    @api.requires("viewer")
    def message(message_id: int) -> Any:
        detail = api.view_message(message_id, g.principal)
        live = detail["message"]["status"] not in FINAL_STATUSES or any(
            o["status"] == "pending" for o in detail["deliveries"])
        return render_template("message.html", d=detail, m=detail["message"], live=live)

    @dash.post("/messages/<int:message_id>/replay")
    @api.requires("operator")
    def replay(message_id: int) -> Any:
        def run() -> None:
            form = {**request.form.to_dict(), "destinations": request.form.getlist("destination")}
            (result,) = api.replay_ids([message_id], api.reason_from(form), g.principal, *api.replay_scope(form))
            if "error" in result:
                raise api.ApiError(400, result["error"])
            flash(f"message {message_id} replayed as message {result['replayed_as']}", "ok")
        return _action(run, "replay queued", url_for("dashboard.message", message_id=message_id))

    @dash.get("/traces/<trace_id>")
    @api.requires("viewer")
    def trace(trace_id: str) -> Any:
        return render_template("trace.html", t=api.view_trace(trace_id, g.principal))

    @dash.get("/holds")
    @api.requires("viewer")
    def holds() -> Any:
        items = []
        for hold in api.store().holds("open"):
            message = api.store().get_message(hold.message_id)
            items.append({"hold": present.hold_view(hold, g.principal),
                          "message": present.message_summary(message, g.principal) if message else None})
        recent = [present.hold_view(h, g.principal) for h in api.store().holds(None)
                  if h.status in ("released", "rejected")][-20:]  # a waiting hold is not decided yet
        if items and g.principal.can("analyst"):
            api.audit_listing(g.principal, "holds.view", [i["hold"]["message_id"] for i in items])
        waiting = [present.hold_view(h, g.principal) for h in api.store().holds("waiting")]
        return render_template("holds.html", items=items, recent=list(reversed(recent)), waiting=waiting)

    @dash.post("/holds/<int:message_id>/<action>")
    @api.requires("operator")
    def resolve(message_id: int, action: str) -> Any:
        if action not in ("release", "reject"):
            flash(f"unknown hold action {action!r}", "error")
            return redirect(url_for("dashboard.holds"))
        return _action(lambda: api.resolve_hold(message_id, action, api.reason_from(request.form), g.principal),
                       f"message {message_id}: hold {'released' if action == 'release' else 'rejected'}",
                       url_for("dashboard.holds"))

    @dash.get("/dead-letters")
    @api.requires("viewer")
    def dead_letters() -> Any:
        rows = list(reversed(api.store().outbox_rows(status="dead", limit=200)))
        resolved = list(reversed(api.store().outbox_rows(status="resolved", limit=200)))[:20]
        if rows and g.principal.can("analyst"):
            api.audit_listing(g.principal, "dead_letters.view", sorted({r.message_id for r in rows}))
        return render_template("dead_letters.html", items=[present.delivery_view(r, g.principal) for r in rows],
                               resolved=[present.delivery_view(r, g.principal) for r in resolved])

    @dash.post("/channels/<name>/<action>")
    @api.requires("operator")
    def channel_action(name: str, action: str) -> Any:
        if action in ("stop-listener", "start-listener"):
            listening = action == "start-listener"
            return _action(lambda: api.set_listener(name, listening, api.reason_from(request.form), g.principal),
                           f"channel {name}: listener {'started' if listening else 'stopped (its port is closed)'}",
                           url_for("dashboard.overview"))
        if action not in ("pause", "resume"):
            flash(f"unknown channel action {action!r}", "error")
            return redirect(url_for("dashboard.overview"))
        paused = action == "pause"
        return _action(lambda: api.set_paused(name, paused, api.reason_from(request.form), g.principal),
                       f"channel {name} {'paused' if paused else 'resumed'}", url_for("dashboard.overview"))

    @dash.get("/jobs")
    @api.requires("viewer")
    def jobs() -> Any:
        runs = [api.run_view(r) for r in api.store().job_runs(limit=100)]
        return render_template("jobs.html", jobs=api.jobs_view(), runs=runs)

    @dash.post("/jobs/<name>/run")
    @api.requires("operator")
    def job_run(name: str) -> Any:
        return _action(lambda: api.run_job_now(name, g.principal), f"job {name} started", url_for("dashboard.jobs"))

    @dash.get("/audit")
    @api.requires("admin")
    def audit() -> Any:
        entries = api.store().search_audit(actor=request.args.get("actor") or None,
                                           action=request.args.get("action") or None, limit=200)
        return render_template("audit.html", entries=[api.audit_view(e) for e in entries],
                               broken=api.store().verify_audit(), args=request.args)

    return dash


def _login_post() -> Any:
    """Check CSRF, the throttle, then the password; every outcome is audited."""
    store = api.store()
    limiter = current_app.extensions["bridge.login_limiter"]
    name = (request.form.get("username") or "").strip()[:100]
    password = request.form.get("password") or ""
    address = request.remote_addr or "unknown"
    if not csrf_ok(session, request.form.get("csrf_token")):
        return render_template("login.html", error="Your form expired; please try again.", next=""), 400
    keys = [("user", name.lower()), ("address", address)]
    if limiter.blocked(keys):
        if limiter.note_block(keys):  # once per blocked key and window: a flood must not grow the audit log
            store.audit("anonymous", "login.blocked", f"user:{name}", {
                "address": address, "note": "further refused attempts in this window are not recorded"})
        return render_template("login.html", error="Too many failed logins; wait a few minutes.", next=""), 429
    user = store.get_user(name) if name else None
    if user is None:
        dummy_verify(password)  # the same work for every answer: timing tells nothing about accounts
    good = user is not None and verify_password(password, user.password_hash) and not user.disabled
    if not good:
        limiter.failed(keys)
        why = "unknown user" if user is None else ("disabled" if user.disabled else "bad password")
        store.audit("anonymous", "login.failure", f"user:{name}", {"address": address, "why": why})
        return render_template("login.html", error="Wrong user name or password.", next=""), 401
    limiter.succeeded(name.lower())
    session.clear()
    session.permanent = True
    session.update(user=user.name, pw=fingerprint(user.password_hash), ep=user.session_epoch, at=time.time())
    store.audit(f"user:{user.name}", "login.success", f"user:{user.name}", {"address": address})
    return redirect(safe_next(request.form.get("next") or "") or url_for("dashboard.overview"))


def site_zone() -> str:
    """The IANA zone the dashboard shows times in (``web.timezone``, set by create_app)."""
    return current_app.config["BRIDGE_SITE_ZONE"]


def in_site_zone(args: dict[str, str], zone: str) -> dict[str, str]:
    """The search form's ``since``/``until`` come from ``datetime-local`` inputs, without an offset: the
    dashboard shows times in the site's zone, so it reads them in that zone (the API reads a time
    without an offset as UTC). A time with an offset, or epoch seconds, is left as it is."""
    out = dict(args)
    for name in ("since", "until"):
        text = out.get(name)
        if not text:
            continue
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            continue  # epoch seconds, "…Z", or a mistake the search reports with the field's name
        if moment.tzinfo is None:
            out[name] = moment.replace(tzinfo=ZoneInfo(zone)).isoformat()
    return out


def safe_next(target: str) -> str | None:
    """A same-site path to go to after login, or None. Control characters and backslashes are refused
    outright: browsers and werkzeug drop or rewrite them, which turns ``/\t/evil`` into ``//evil``."""
    if any(ord(c) < 32 or c in "\\\x7f" for c in target):
        return None
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc:
        return None
    return target


def fingerprint(password_hash: str) -> str:
    """Bound into the session so a password change or reset ends every session of that user."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]

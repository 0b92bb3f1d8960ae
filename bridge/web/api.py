"""The admin JSON API under ``/api/v1`` (described by ``openapi.yaml``; a test keeps the two in step).

Every view declares its least role with :func:`requires`; the app's before-request check enforces it
before the view runs. Views that show record contents or raw payloads (PHI) write an audit entry.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.routing import IntegerConverter

from bridge.core import health
from bridge.core.model.keys import KEY_NAMES
from bridge.core.store import Store
from bridge.errors import BridgeError, ReplayRefused

from . import analyst, present
from .auth import ROLES, Principal, hash_password, new_token, requires, token_digest

MAX_PAGE = 500
MAX_QUERY_CHARS = 200
ERROR_WINDOW_SECONDS = 3600.0
SECRET_WORDS = ("password", "secret", "token", "key", "credential", "client_secret")


class ApiError(Exception):
    """An error answered as JSON: ``{"error": code, "message": text}`` with an HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or {400: "bad_request", 403: "forbidden", 404: "not_found", 409: "conflict",
                             503: "unavailable"}.get(status, "error")


def store() -> Store:
    return current_app.extensions["bridge.store"]


def principal() -> Principal:
    return g.principal


def body() -> Mapping[str, Any]:
    data = request.get_json(silent=True) if request.is_json else None
    if data is None:
        data = request.form.to_dict() if request.form else {}
    if not isinstance(data, Mapping):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def reason_from(data: Mapping[str, Any]) -> str:
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ApiError(400, "a reason is required (JSON field 'reason')")
    return reason.strip()


MAX_STORE_ID = 2**63 - 1
"""The largest id a store holds (SQLite and PostgreSQL integers are 64-bit): a larger number names no
message, and passed on it made the SQLite driver raise OverflowError (a 500; found by schemathesis)."""


class StoreIdConverter(IntegerConverter):
    """``<int:…>`` in routes: a whole number a store can hold, else the route does not match (404)."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_STORE_ID)
        super().__init__(url_map, *args, **kwargs)


def int_arg(name: str, default: int | None, maximum: int | None = None) -> int | None:
    text = request.args.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}: expected a whole number, got {text!r}") from None
    if value < 1:
        raise ApiError(400, f"{name}: must be at least 1")
    if maximum is None and value > MAX_STORE_ID:
        raise ApiError(400, f"{name}: must be at most {MAX_STORE_ID}")
    return min(value, maximum) if maximum else value


def time_arg(name: str) -> float | None:
    try:
        return present.parse_time(request.args.get(name), name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def audit(action: str, target: str, detail: Mapping[str, Any]) -> None:
    store().audit(principal().actor, action, target, detail)


def mask_url(url: str | None) -> str | None:
    """Hide credentials in ``scheme://user:pass@host`` URLs."""
    if not url or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def mask_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: "***" if any(w in str(k).lower() for w in SECRET_WORDS) else mask_secrets(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


# --- search shared with the dashboard ---------------------------------------------------------------


def search_messages(args: Mapping[str, str], who: Principal, limit: int | None = None) -> tuple[list[Any], int | None]:
    """Search by status, channel, message type, destination, time range, business keys and words in
    the payloads (``q``); returns a page and the next cursor.

    Searching by a patient, encounter or prescription number needs ``analyst`` (the search itself
    tells a viewer which messages concern a person) and is audited: who looked up whom, when. A
    content search needs ``analyst`` too, and every one is audited with its words and what it found.
    """
    keys = {name: args[name] for name in KEY_NAMES if args.get(name)}
    phi_keys = {k: v for k, v in keys.items() if k in present.PHI_KEYS}
    if phi_keys and not who.can("analyst"):
        raise ApiError(403, f"searching by {', '.join(sorted(phi_keys))} needs the analyst role")
    limit = limit or int_arg("limit", 50, MAX_PAGE) or 50
    before_id = int_arg("before_id", None)
    try:
        since = present.parse_time(args.get("since"), "since")
        until = present.parse_time(args.get("until"), "until")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    text = (args.get("q") or "").strip() or None
    if text and not who.can("analyst"):
        raise ApiError(403, "searching inside payloads needs the analyst role")
    if text and len(text) > MAX_QUERY_CHARS:
        raise ApiError(400, f"q: at most {MAX_QUERY_CHARS} characters")
    destination = args.get("destination") or None
    if destination and destination not in current_app.config["BRIDGE_CONFIG"].destinations:
        raise ApiError(400, f"destination: no destination named {destination!r}")
    if text:
        catch_up_content_index()
    try:
        rows = store().search(status=args.get("status") or None, channel=args.get("channel") or None, keys=keys,
                              since=since, until=until, limit=limit + 1, before_id=before_id,
                              message_type=args.get("message_type") or None, destination=destination, text=text)
    except BridgeError as exc:  # a content search with no word in it
        raise ApiError(400, str(exc)) from None
    page = rows[:limit]
    if text:  # a look inside payloads is a view of PHI, whatever it found: who searched for what
        store().audit(who.actor, "message.content_search", "messages",
                      {"text": text, "keys": phi_keys, "results": len(page), "message_ids": [m.id for m in page]})
    elif phi_keys:
        store().audit(who.actor, "message.search", "messages", {"keys": phi_keys, "results": len(page)})
    elif page and who.can("analyst"):  # the list shows patient, encounter and prescription numbers
        audit_listing(who, "message.list", [m.id for m in page])
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return page, next_cursor


def catch_up_content_index() -> None:
    """A content search sees every payload stored before it: the engine's indexer runs a moment
    behind the intake (and a process that only reads, such as the CLI, has none), so catch up first."""
    while store().index_content():
        pass


def audit_listing(who: Principal, action: str, ids: list[int]) -> None:
    """A list that shows identifiers or error texts (analyst and up) is a view of PHI: say which."""
    store().audit(who.actor, action, "messages", {"message_ids": ids})


def view_message(message_id: int, who: Principal) -> dict[str, Any]:
    message = store().get_message(message_id)
    if message is None:
        raise ApiError(404, f"no message with id {message_id}")
    detail = {**present.message_detail(store(), message, who), **analyst.message_extras(store(), message, who)}
    if who.can("analyst"):
        store().audit(who.actor, "message.view", f"message:{message_id}", {"parts": ["records", "raw", "payloads", "responses"]})
    return detail


def view_trace(trace_id: str, who: Principal) -> dict[str, Any]:
    trace = present.trace_view(store(), trace_id, who)
    if trace is None:
        raise ApiError(404, f"no message with trace id {trace_id!r}")
    if who.can("analyst"):
        store().audit(who.actor, "trace.view", f"trace:{trace_id}",
                      {"messages": [m["id"] for m in trace["messages"]], "parts": ["records"]})
    return trace


def replay_scope(data: Mapping[str, Any]) -> tuple[list[str] | None, bool]:
    """``destinations`` (configured names) and ``force`` of a replay request; 400 names what is wrong.
    A form (the dashboard) sends destinations as a comma- or space-separated text and force as "on"."""
    raw = data.get("destinations")
    if isinstance(raw, str):
        raw = [d for d in raw.replace(",", " ").split() if d]
    if raw in (None, []):
        destinations = None
    elif isinstance(raw, list) and all(isinstance(d, str) and d for d in raw):
        destinations = raw
    else:
        raise ApiError(400, "destinations: expected a list of destination names")
    known = current_app.config["BRIDGE_CONFIG"].destinations
    unknown = [d for d in destinations or () if d not in known]
    if unknown:
        raise ApiError(400, f"destinations: unknown destination {', '.join(map(repr, unknown))}"
                            f" (configured: {', '.join(sorted(known)) or 'none'})")
    force = data.get("force", False)
    if force in ("on", "true", "1"):
        force = True
    if not isinstance(force, bool):
        raise ApiError(400, f"force: expected true or false, got {force!r}")
    return destinations, force


def replay_ids(ids: list[int], reason: str, who: Principal, destinations: list[str] | None = None,
               force: bool = False) -> list[dict[str, Any]]:
    """Replay each id; a refusal (held, destination never used, prescription already delivered
    without ``force``) is reported per id with ``refused: true``."""
    results: list[dict[str, Any]] = []
    for message_id in ids:
        try:
            new_id = store().replay(message_id, reason=reason, actor=who.actor, destinations=destinations,
                                    force=force)
            results.append({"message_id": message_id, "replayed_as": new_id})
        except ReplayRefused as exc:
            results.append({"message_id": message_id, "error": str(exc), "refused": True})
        except BridgeError as exc:
            results.append({"message_id": message_id, "error": str(exc)})
    current_app.extensions.get("bridge.wake", lambda: None)()
    return results


def resolve_hold(message_id: int, action: str, reason: str, who: Principal) -> dict[str, Any]:
    try:
        hold = store().resolve_hold(message_id, action, reason=reason, actor=who.actor)
    except BridgeError as exc:
        raise ApiError(409 if "no open hold" in str(exc) else 400, str(exc)) from None
    current_app.extensions.get("bridge.wake", lambda: None)()
    return present.hold_view(hold, who)


def set_paused(channel: str, paused: bool, reason: str, who: Principal) -> None:
    if channel not in current_app.config["BRIDGE_CONFIG"].channels:
        raise ApiError(404, f"no channel named {channel!r}")
    store().set_channel_paused(channel, paused, reason=reason, actor=who.actor)
    if not paused:
        current_app.extensions.get("bridge.wake", lambda: None)()


THROUGHPUT_MINUTES = 60  # the overview's chart: messages received per minute over the last hour


def set_listener(channel: str, listening: bool, reason: str, who: Principal) -> None:
    """Close or open a channel's listener in this process (the engine's, beside the admin app)."""
    if channel not in current_app.config["BRIDGE_CONFIG"].channels:
        raise ApiError(404, f"no channel named {channel!r}")
    engine = current_app.extensions.get("bridge.engine")
    if engine is None:
        raise ApiError(409, "this admin app runs without the engine (bridge web): listeners are in bridge run")
    try:
        (engine.start_listener if listening else engine.stop_listener)(channel)
    except BridgeError as exc:
        raise ApiError(409, str(exc)) from None
    store().audit(who.actor, "channel.listener_start" if listening else "channel.listener_stop",
                  f"channel:{channel}", {"reason": reason})


def _journal_status(engine: Any, channel: str) -> dict[str, Any] | None:
    """The channel's intake journal on this node (unmoved entries and bytes), or None without one."""
    journal = (getattr(engine, "journals", None) or {}).get(channel)
    return journal.status() if journal is not None else None


def channels_view() -> list[dict[str, Any]]:
    config = current_app.config["BRIDGE_CONFIG"]
    stats = store().channel_stats(time.time() - ERROR_WINDOW_SECONDS)
    paused = [name for name, st in stats.items() if st.paused]
    engine = current_app.extensions["bridge.engine"]
    listening = {h.channel: h.listener for h in health.listeners(config, paused, engine)}
    now = time.time()
    throughput = store().received_per_minute(now - THROUGHPUT_MINUTES * 60, THROUGHPUT_MINUTES)
    out = []
    for name in sorted(set(config.channels) | set(stats)):
        ch, st = config.channels.get(name), stats.get(name)
        out.append({
            "listener": listening.get(name, "not_here"),
            "throughput": throughput.get(name, [0] * THROUGHPUT_MINUTES),
            "name": name, "configured": ch is not None, "enabled": bool(ch and ch.enabled),
            "format": ch.format if ch else None, "source": mask_url(ch.source) if ch else None,
            "state": "paused" if st and st.paused else ("running" if ch and ch.enabled else "disabled"),
            "paused_by": st.paused_by if st else None, "paused_reason": st.paused_reason if st else None,
            "queue_depth": st.queue_depth if st else 0,
            "intake_journal": _journal_status(engine, name),
            "oldest_waiting_at": present.iso(st.oldest_waiting_at) if st else None,
            "received_last_hour": st.received_recent if st else 0,
            "errors_last_hour": st.errors_recent if st else 0,
            "error_rate": round(st.error_rate, 4) if st else 0.0,
            "last_activity_at": present.iso(st.last_activity_at) if st else None,
            "counts": dict(st.counts) if st else {},
        })
    return out


def destinations_view(who: Principal) -> list[dict[str, Any]]:
    """Each configured destination: its settings (credentials masked), outbox counts, and its state
    (bridge.core.health); the last error's text, which may quote a message, for analysts and above."""
    config = current_app.config["BRIDGE_CONFIG"]
    counts = store().destination_counts()
    states = {d.name: d for d in health.destinations(store(), config)}
    out = []
    for name, d in sorted(config.destinations.items()):
        state = states[name]
        out.append({
            "name": name, "url": mask_url(d.url), "format": d.format, "profile": d.profile,
            "retry": {"max_attempts": d.retry.max_attempts, "backoff": d.retry.backoff},
            "outbox": counts.get(name, {}),
            "state": state.state, "backlog": state.backlog, "failing_rows": state.failing_rows,
            "oldest_waiting_at": present.iso(state.oldest_waiting_at),
            "last_success_at": present.iso(state.last_success_at),
            "last_failure_at": present.iso(state.last_failure_at),
            "failing_since": present.iso(state.failing_since),
            "attempts_last_hour": state.attempts_last_hour, "failures_last_hour": state.failures_last_hour,
            "dead_letters": state.dead_letters, "feeding_channels": list(state.feeding_channels),
            **({"last_error": state.last_error} if who.can("analyst") else {}),
        })
    return out


def jobs_view() -> list[dict[str, Any]]:
    config = current_app.config["BRIDGE_CONFIG"]
    names = sorted(set(config.jobs) | {r["job"] for r in store().job_runs(limit=200)})
    out = []
    for name in names:
        job = config.jobs.get(name)
        last = store().job_runs(name, limit=1)
        trigger = {k: getattr(job, k, None) for k in ("cron", "interval_seconds", "timezone")} if job else {}
        out.append({"name": name, "configured": job is not None, "type": getattr(job, "type", None),
                    "enabled": bool(getattr(job, "enabled", False)),
                    "trigger": {k: v for k, v in trigger.items() if v is not None},
                    "last_run": run_view(last[0]) if last else None})
    return out


def run_view(run: Mapping[str, Any]) -> dict[str, Any]:
    return {**run, "started_at": present.iso(run["started_at"]), "finished_at": present.iso(run["finished_at"])}


def run_job_now(name: str, who: Principal) -> Any:
    """Run one attempt of the job now, in this process (slot ``manual-<time>``), audited."""
    from bridge.core.scheduler import run_now

    config = current_app.config["BRIDGE_CONFIG"]
    if name not in config.jobs:
        raise ApiError(404, f"no job named {name!r}")
    store().audit(who.actor, "job.run_now", f"job:{name}", {})
    try:
        return run_now(store(), config, current_app.extensions["bridge.plugins"], name)
    except BridgeError as exc:
        raise ApiError(409, f"job {name}: {exc}") from None


def audit_view(entry: Any) -> dict[str, Any]:
    return {"id": entry.id, "at": present.iso(entry.at), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "detail": dict(entry.detail), "hash": entry.hash, "prev_hash": entry.prev_hash}


# --- the blueprint ---------------------------------------------------------------------------------


def make_api() -> Blueprint:
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @api.get("/me")
    @requires("viewer")
    def me() -> Any:
        """Who the caller is, and its role."""
        who = principal()
        return jsonify(name=who.name, role=who.role, kind=who.kind)

    @api.get("/openapi.json")
    @requires("viewer")
    def openapi() -> Any:
        return jsonify(current_app.extensions["bridge.openapi"])

    @api.get("/messages")
    @requires("viewer")
    def messages() -> Any:
        rows, cursor = search_messages(request.args, principal())
        return jsonify(items=[present.message_summary(m, principal()) for m in rows], next_before_id=cursor)

    @api.get("/messages/<int:message_id>")
    @requires("viewer")
    def message(message_id: int) -> Any:
        return jsonify(view_message(message_id, principal()))

    @api.post("/messages/<int:message_id>/replay")
    @requires("operator")
    def replay_one(message_id: int) -> Any:
        data = body()
        (result,) = replay_ids([message_id], reason_from(data), principal(), *replay_scope(data))
        if result.get("refused"):
            raise ApiError(409, result["error"], "replay_refused")
        if "error" in result:
            raise ApiError(404 if "no message" in result["error"] else 400, result["error"])
        return jsonify(result), 201

    @api.post("/replay")
    @requires("operator")
    def replay_many() -> Any:
        data = body()
        ids = data.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool)
                                                           and 0 < i <= MAX_STORE_ID for i in ids):
            raise ApiError(400, "ids: expected a non-empty list of message ids")
        if len(ids) > MAX_PAGE:
            raise ApiError(400, f"ids: at most {MAX_PAGE} messages per request")
        return jsonify(results=replay_ids(ids, reason_from(data), principal(), *replay_scope(data)))

    @api.get("/dead-letters")
    @requires("viewer")
    def dead_letters() -> Any:
        rows = store().outbox_rows(status="dead", limit=int_arg("limit", 100, MAX_PAGE) or 100)
        if rows and principal().can("analyst"):
            audit_listing(principal(), "dead_letters.view", sorted({r.message_id for r in rows}))
        return jsonify(items=[present.delivery_view(r, principal()) for r in reversed(rows)])

    @api.get("/holds")
    @requires("viewer")
    def holds() -> Any:
        status = request.args.get("status", "open")
        if status not in ("open", "waiting", "released", "rejected", "all"):
            raise ApiError(400, f"status: expected open, waiting, released, rejected or all, got {status!r}")
        items = store().holds(None if status == "all" else status)
        if items and principal().can("analyst"):
            audit_listing(principal(), "holds.view", [h.message_id for h in items])
        return jsonify(items=[present.hold_view(h, principal()) for h in items])

    @api.post("/holds/<int:message_id>/release")
    @requires("operator")
    def release(message_id: int) -> Any:
        return jsonify(resolve_hold(message_id, "release", reason_from(body()), principal()))

    @api.post("/holds/<int:message_id>/reject")
    @requires("operator")
    def reject(message_id: int) -> Any:
        return jsonify(resolve_hold(message_id, "reject", reason_from(body()), principal()))

    @api.get("/channels")
    @requires("viewer")
    def channels() -> Any:
        return jsonify(items=channels_view())

    @api.post("/channels/<name>/pause")
    @requires("operator")
    def pause(name: str) -> Any:
        set_paused(name, True, reason_from(body()), principal())
        return jsonify(channel=name, state="paused")

    @api.post("/channels/<name>/resume")
    @requires("operator")
    def resume(name: str) -> Any:
        set_paused(name, False, reason_from(body()), principal())
        return jsonify(channel=name, state="running")

    @api.post("/channels/<name>/listener/stop")
    @requires("operator")
    def listener_stop(name: str) -> Any:
        set_listener(name, False, reason_from(body()), principal())
        return jsonify(channel=name, listener="down")

    @api.post("/channels/<name>/listener/start")
    @requires("operator")
    def listener_start(name: str) -> Any:
        set_listener(name, True, reason_from(body()), principal())
        return jsonify(channel=name, listener="up")

    @api.get("/destinations")
    @requires("viewer")
    def destinations() -> Any:
        return jsonify(items=destinations_view(principal()))

    @api.get("/plugins")
    @requires("viewer")
    def plugins() -> Any:
        return jsonify(items=[p.as_dict() for p in current_app.extensions["bridge.plugins"].plugins()])

    @api.get("/jobs")
    @requires("viewer")
    def jobs() -> Any:
        return jsonify(items=jobs_view())

    @api.get("/jobs/<name>/runs")
    @requires("viewer")
    def job_runs(name: str) -> Any:
        runs = store().job_runs(name, limit=int_arg("limit", 50, MAX_PAGE) or 50)
        return jsonify(items=[run_view(r) for r in runs])

    @api.post("/jobs/<name>/run")
    @requires("operator")
    def job_run(name: str) -> Any:
        result = run_job_now(name, principal())
        return jsonify(job=name, result=result if isinstance(result, (dict, list, str, int, float, type(None)))
                       else str(result)), 202

    @api.get("/traces/<trace_id>")
    @requires("viewer")
    def trace(trace_id: str) -> Any:
        return jsonify(view_trace(trace_id, principal()))

    @api.get("/audit")
    @requires("admin")
    def audit_search() -> Any:
        entries = store().search_audit(
            actor=request.args.get("actor") or None, action=request.args.get("action") or None,
            target=request.args.get("target") or None, since=time_arg("since"), until=time_arg("until"),
            limit=int_arg("limit", 100, MAX_PAGE) or 100, before_id=int_arg("before_id", None))
        return jsonify(items=[audit_view(e) for e in entries])

    @api.get("/audit/verify")
    @requires("admin")
    def audit_verify() -> Any:
        broken = store().verify_audit()
        return jsonify(intact=broken is None, first_broken_id=broken)

    @api.get("/tokens")
    @requires("admin")
    def tokens() -> Any:
        return jsonify(items=[{"name": t.name, "role": t.role, "created_at": present.iso(t.created_at),
                               "last_used_at": present.iso(t.last_used_at), "revoked_at": present.iso(t.revoked_at)}
                              for t in store().tokens()])

    @api.post("/tokens")
    @requires("admin")
    def token_create() -> Any:
        data = body()
        name, role = data.get("name"), data.get("role")
        if not isinstance(name, str) or role not in ROLES:
            raise ApiError(400, f"name and role are required (roles: {', '.join(ROLES)})")
        token = new_token()
        try:
            store().create_token(name, token_digest(token), role, actor=principal().actor)
        except BridgeError as exc:
            raise ApiError(409, str(exc)) from None
        return jsonify(name=name, role=role, token=token), 201

    @api.delete("/tokens/<name>")
    @requires("admin")
    def token_revoke(name: str) -> Any:
        try:
            store().revoke_token(name, actor=principal().actor)
        except BridgeError as exc:
            raise ApiError(404, str(exc)) from None
        return jsonify(name=name, revoked=True)

    @api.get("/users")
    @requires("admin")
    def users() -> Any:
        return jsonify(items=[{"name": u.name, "role": u.role, "created_at": present.iso(u.created_at),
                               "disabled": u.disabled} for u in store().users()])

    @api.post("/users")
    @requires("admin")
    def user_create() -> Any:
        data = body()
        name, role, password = data.get("name"), data.get("role"), data.get("password")
        if not isinstance(name, str) or role not in ROLES or not isinstance(password, str):
            raise ApiError(400, f"name, role and password are required (roles: {', '.join(ROLES)})")
        try:
            store().create_user(name, hash_password(password), role, actor=principal().actor)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except BridgeError as exc:
            raise ApiError(409, str(exc)) from None
        return jsonify(name=name, role=role), 201

    @api.patch("/users/<name>")
    @requires("admin")
    def user_update(name: str) -> Any:
        data = body()
        role, disabled, password = data.get("role"), data.get("disabled"), data.get("password")
        if role is not None and role not in ROLES:
            raise ApiError(400, f"role: expected one of {', '.join(ROLES)}")
        if disabled is not None and not isinstance(disabled, bool):
            raise ApiError(400, "disabled: expected true or false")
        try:
            user = store().update_user(name, actor=principal().actor, role=role, disabled=disabled,
                                       password_hash=hash_password(password) if isinstance(password, str) else None)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except BridgeError as exc:
            raise ApiError(404, str(exc)) from None
        return jsonify(name=user.name, role=user.role, disabled=user.disabled)

    @api.get("/config")
    @requires("admin")
    def config_view() -> Any:
        config = current_app.config["BRIDGE_CONFIG"]
        return jsonify(path=config.path, store=config.store_url, engine=vars(config.engine),
                       channels={n: {"source": mask_url(c.source), "format": c.format, "enabled": c.enabled,
                                     "routes": [{"records": list(r.records), "to": list(r.to)} for r in c.routes],
                                     "options": mask_secrets(dict(c.options))}
                                 for n, c in config.channels.items()},
                       destinations={n: {"url": mask_url(d.url), "format": d.format, "profile": d.profile,
                                         "options": mask_secrets(dict(d.options))}
                                     for n, d in config.destinations.items()},
                       jobs={n: mask_secrets(_plain(j)) for n, j in config.jobs.items()})

    return api


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def json_error(status: int, message: str, code: str | None = None) -> Response:
    error = ApiError(status, message, code)
    response = jsonify(error=error.code, message=message)
    response.status_code = status
    return response

"""The ``bridge`` command.

Exit codes: 0 success, 1 failure, 2 bad usage or bad input. Every error is one clear line on
stderr, never a traceback: the people running this are interface analysts, not Python developers.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from bridge import __version__
from bridge.errors import BridgeError, ConfigError, DecodeError, EncodeError, PluginError, StoreError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = os.environ.get("BRIDGE_CONFIG", "config/bridge.yaml")


class UsageError(BridgeError):
    """Bad arguments or bad input: exit 2."""


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plugins():
    from bridge.core.plugin_manager import load_plugins

    return load_plugins()


def _config(args, plugins=None):
    from bridge.core.config import load_config
    from bridge.core.logsetup import use_format

    config = load_config(args.config, plugins or _plugins())
    use_format(config.log_format)  # from here on, the lines the config asks for
    return config


def _store(args, *, create: bool = False):
    """The config's store. Only commands that set one up (``token create``, ``user create``) may
    create it: a read-only command run against a wrong path must say so, not show an empty store."""
    from bridge.core.store import open_store

    url = _config(args).store_url
    if not create:
        _require_store(url)
    return open_store(url)


def _require_store(url: str) -> None:
    from bridge.core.store.sqlite import sqlite_path

    path = sqlite_path(url) if url.startswith("sqlite:///") else None
    if path and path != ":memory:" and not os.path.exists(path):
        raise UsageError(f"no store at {path} (run `bridge run` first or check `store:`)")


def _actor(args) -> str:
    if getattr(args, "actor", None):
        return args.actor
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


# --- commands ------------------------------------------------------------------------------------


def cmd_check(args) -> int:
    plugins = _plugins()
    try:
        config = _config(args, plugins)
    except ConfigError as exc:
        for path, message in exc.problems:
            print(f"{args.config}: {path}: {message}" if path else f"{args.config}: {message}", file=sys.stderr)
        return EXIT_USAGE
    _print_warnings(args.config, config, plugins)
    return EXIT_OK


def _print_warnings(where: str, config, plugins) -> None:
    """Settings that work but will probably surprise (a channel without a zone feeding FHIR), and
    plugins that declare no options and so cannot be checked: said, not refused (exit stays 0)."""
    from bridge.core.options import undeclared

    for path, message in config.warnings:
        print(f"{where}: warning: {path}: {message}", file=sys.stderr)
    for warning in undeclared(config, plugins):
        print(f"{where}: warning: {warning}", file=sys.stderr)


def cmd_run(args) -> int:
    from bridge.core.engine import Engine
    from bridge.core.reload import ConfigReloader
    from bridge.core.logsetup import announce

    plugins = _plugins()
    config = _config(args, plugins)
    if getattr(args, "role", None) == "journal-mover":  # a child of `bridge run`: moves intake journals
        from bridge.core.journal import mover_main

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        mover_main(config, plugins, stop)
        return EXIT_OK
    if getattr(args, "role", None) not in ("worker", "deliverer"):  # children: the parent has said it once
        _print_warnings(args.config, config, plugins)
    engine = Engine(config, plugins)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    reloader = ConfigReloader(args.config, plugins, engine)
    reloader.install()  # SIGHUP: routes, destinations and maps, listeners untouched (docs/operations.md)
    if getattr(args, "role", None) in ("worker", "deliverer"):  # a child of `bridge run`: engine.processes,
        engine.run_worker(stop, role=args.role)                   # engine.delivery_processes
        return EXIT_OK
    announce(config.log_format, f"bridge {__version__}: running {len(config.channels)} channel(s) from "
                                f"{args.config}; store {config.store_url}; Ctrl-C to stop")
    web_server = _start_admin_web(config, plugins, engine, reloader) if config.web.get("listen") else None
    try:
        engine.run_forever(stop)
    finally:
        if web_server is not None:
            web_server.shutdown()
    return EXIT_OK


def cmd_journal(args) -> int:
    """``bridge journal status`` / ``bridge journal drain [--channel NAME] [--dir DIR]``."""
    from bridge.core import journal
    from bridge.core.intake import Intake

    plugins = _plugins()
    config = _config(args, plugins)
    store = _store(args)
    intake = Intake(store, plugins.formats())
    if args.action == "status":
        rows = journal.status(config, store)
        if not rows:
            print("no channel has an intake journal")
        for row in rows:
            problem = f"  PROBLEM: {row['problem']}" if row["problem"] else ""
            print(f"{row['channel']:<20} {row['unmoved_entries']:>8} entries {row['unmoved_bytes']:>12} bytes"
                  f" not yet moved; {row['moved']} moved  ({row['directory']}){problem}")
        return EXIT_OK
    names = [args.channel] if args.channel else [ch.name for ch, _ in journal.iter_journals(config)]
    if args.dir and len(names) != 1:
        raise UsageError("--dir needs --channel (the channel its entries belong to)")
    for name in names:
        ch = config.channels.get(name)
        if ch is None:
            raise UsageError(f"no channel {name!r} in {args.config}")
        directory = args.dir or (ch.intake_journal.directory if ch.intake_journal else None)
        if directory is None:
            raise UsageError(f"channel {name!r} has no intake_journal; name its directory with --dir")
        try:
            moved = journal.move_all(store, name, lambda entries, _ch=ch: intake.journal_rows(_ch, entries),
                                     directory)
        except journal.JournalCorrupt as exc:
            print(f"bridge journal drain: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: moved {moved} entries from {directory}")
    return EXIT_OK


def cmd_plugins(args) -> int:
    infos = _plugins().plugins()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return EXIT_OK
    print(f"{'NAME':<20} {'DISTRIBUTION':<30} {'VERSION':<10} PROVIDES")
    for info in infos:  # a broken plugin is listed with its error; the others still work
        status = f"ERROR: {info.error}" if info.error else ", ".join(info.provides) or "(nothing registered)"
        origin = f"{info.distribution} (built-in)" if info.builtin else info.distribution
        print(f"{info.name:<20} {origin:<30} {info.version:<10} {status}")
    return EXIT_OK


def cmd_translate(args) -> int:
    from bridge.core.model.times import localize_records

    plugins = _plugins()
    try:
        source, target = plugins.format(args.from_format), plugins.format(args.to_format)
    except PluginError as exc:
        raise UsageError(str(exc)) from None
    zone = _translate_zone(args.timezone)
    raw = sys.stdin.buffer.read() if args.file in (None, "-") else _read_file(args.file)
    options = dict(_pair(o, "--option") for o in args.option or [])
    _check_translate_options(options, source, target)
    try:
        records = source.decode(raw, options)
        if zone:
            localize_records(records, zone)
        out = target.encode(records, {**options, **_envelope_option(source, raw, zone)})
    except (DecodeError, EncodeError) as exc:
        raise UsageError(f"cannot translate: {exc}") from None
    sys.stdout.buffer.write(out)
    return EXIT_OK


def _envelope_option(source, raw: bytes, zone: str | None) -> dict[str, object]:
    """The message's envelope for the target encoder, as the engine passes it (``source_envelope``)."""
    from bridge.core.model.envelope import localize_envelope
    from bridge.core.model.times import load_zone

    envelope = source.envelope(raw) if source.envelope is not None else None
    if envelope is None:
        return {}
    return {"source_envelope": localize_envelope(envelope, load_zone(zone)) if zone else envelope}


def _translate_zone(zone: str | None) -> str | None:
    """``--timezone`` checked before anything is read, like a channel's ``timezone:`` at start."""
    from bridge.core.model.times import zone_problem

    problem = zone_problem(zone) if zone is not None else None
    if problem:
        raise UsageError(f"--timezone: {problem}")
    return zone


def _check_translate_options(options: dict[str, str], source, target) -> None:
    """``--option`` keys must be read by the source's decoder or the target's encoder (when both
    formats declare their options): a typo must not be ignored silently."""
    from bridge.core.options import INJECTED, unknown_key_message

    if source.decode_options is None or target.encode_options is None:
        return
    allowed = sorted({o.name for o in (*source.decode_options, *target.encode_options)} | set(INJECTED))
    for name in options:
        if name not in allowed:
            raise UsageError(f"--option {name}: {unknown_key_message(name, allowed)} "
                             f"for {source.name} → {target.name}")


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _pair(text: str, flag: str) -> tuple[str, str]:
    if "=" not in text:
        raise UsageError(f"{flag} expects NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    return name.strip(), value


def _message_row(m) -> dict[str, Any]:
    return {
        "id": m.id, "channel": m.channel, "status": m.status, "format": m.format,
        "received_at": _iso(m.received_at), "message_type": m.message_type, "control_id": m.control_id,
        "patient_id": m.patient_id, "encounter_id": m.encounter_id, "prescription_number": m.prescription_number,
        "ncpdp_message_id": m.ncpdp_message_id, "trace_id": m.trace_id, "error": m.error, "replay_of": m.replay_of,
    }


def cmd_messages(args) -> int:
    from bridge.core.model.keys import KEY_NAMES

    keys = dict(_pair(k, "--key") for k in args.key or [])
    for name in keys:
        if name not in KEY_NAMES:
            raise UsageError(f"unknown key {name!r} (known: {', '.join(KEY_NAMES)})")
    _check_status(args.status)
    config = _config(args)
    _require_store(config.store_url)
    from bridge.core.store import open_store

    store = open_store(config.store_url)
    _check_channel(args.channel, config, store)
    rows = store.search(status=args.status, channel=args.channel, keys=keys, limit=args.limit)
    _audit_listing(store, args, keys, rows)
    if args.json:
        print(json.dumps([_message_row(m) for m in rows], indent=2))
        return EXIT_OK
    if not rows:
        print("no messages match", file=sys.stderr)
        return EXIT_OK
    print(f"{'ID':>6}  {'RECEIVED':<24}  {'CHANNEL':<16}  {'STATUS':<10}  {'TYPE':<14}  KEYS")
    for m in rows:
        keys_text = " ".join(f"{k}={v}" for k, v in (("patient", m.patient_id), ("encounter", m.encounter_id),
                                                       ("rx", m.prescription_number), ("ctl", m.control_id)) if v)
        print(f"{m.id:>6}  {_iso(m.received_at):<24}  {m.channel:<16.16}  {m.status:<10}  "
              f"{(m.message_type or '-'):<14.14}  {keys_text}")
    return EXIT_OK


def _audit_listing(store, args, keys: dict[str, str], rows: list) -> None:
    """A CLI listing is a view of PHI as the API's is (patient, encounter and prescription numbers,
    error texts): recorded under the OS user, with the same actions the API uses."""
    from bridge.core.model.keys import PHI_KEYS

    phi_keys = {name: value for name, value in keys.items() if name in PHI_KEYS}
    if phi_keys:
        store.audit(_actor(args), "message.search", "messages",
                    {"keys": phi_keys, "results": len(rows), "message_ids": [m.id for m in rows], "via": "cli"})
    elif rows:
        store.audit(_actor(args), "message.list", "messages", {"message_ids": [m.id for m in rows], "via": "cli"})


def _store_or_empty(url: str) -> str:
    """The store URL, or an empty in-memory store's when the file does not exist yet: the jobs are
    listed from the config ("never run") without creating a store file as a side effect."""
    try:
        _require_store(url)
    except UsageError as exc:
        print(f"bridge: {exc}; no runs recorded yet", file=sys.stderr)
        return "sqlite:///:memory:"
    return url


def _check_status(status: str | None) -> None:
    """An unknown ``--status`` is a typo, not an empty result: say so and list the statuses."""
    from bridge.core.store.base import MESSAGE_STATUSES

    if status is None or status in MESSAGE_STATUSES:
        return
    hint = difflib.get_close_matches(status, MESSAGE_STATUSES, n=1)
    raise UsageError(f"unknown status {status!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; statuses: {', '.join(MESSAGE_STATUSES)}")


def _check_channel(channel: str | None, config, store) -> None:
    """A channel the config does not name (nor a destination's ``.replies``) is bad input, unless the
    store still holds messages of it (a channel since removed from the config)."""
    if channel is None:
        return
    known = sorted({*config.channels, *(f"{d}.replies" for d in config.destinations)})
    if channel in known or store.search(channel=channel, limit=1):
        return
    hint = difflib.get_close_matches(channel, known, n=1)
    raise UsageError(f"unknown channel {channel!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; channels in {config.path}: {', '.join(known) or 'none'}")


def _record_line(record: dict[str, Any]) -> str:
    kind = record.get("kind", "?")
    bits = []
    for key in ("id", "status", "modality", "prescriber_order_number", "event_type", "title"):
        if record.get(key):
            bits.append(f"{key}={record[key]}")
    med = record.get("medication") or {}
    if med.get("description"):
        bits.append(f"medication={med['description']}")
    return f"{kind} " + " ".join(bits)


def cmd_show(args) -> int:
    from bridge.core.outcomes import destination_outcomes, failed_at, outcome_line

    store = _store(args)
    message = store.get_message(args.id)
    if message is None:
        raise UsageError(f"no message with id {args.id}")
    store.audit(_actor(args), "message.view", f"message:{args.id}", {"parts": ["records"], "via": "cli"})
    events = store.events(args.id)
    prescription = store.prescription(message.prescription_number) if message.prescription_number else None
    outbox = store.outbox_rows(message_id=args.id)
    if args.json:
        print(json.dumps({
            "message": {**_message_row(message), "records": message.records, "origin": dict(message.origin)},
            "prescription": None if prescription is None else {
                "number": prescription.number, "state": prescription.state, "open_task": prescription.open_task,
                "first_message_id": prescription.message_id, "updated_at": _iso(prescription.updated_at)},
            "timeline": [{"at": _iso(e.at), "event": e.kind, **dict(e.detail)} for e in events],
            "deliveries": [{**o.as_dict(), "created_at": _iso(o.created_at), "delivered_at": _iso(o.delivered_at),
                            "next_attempt_at": _iso(o.next_attempt_at), "failed_at": failed_at(o)} for o in outbox],
            "destinations": destination_outcomes(outbox),
        }, indent=2, default=str))
        return EXIT_OK
    print(f"message {message.id}  channel {message.channel}  format {message.format}  status {message.status}")
    print(f"received {_iso(message.received_at)}  trace {message.trace_id or '-'}  "
          f"type {message.message_type or '-'}  control id {message.control_id or '-'}")
    if message.replay_of:
        first = f" (original message {message.replay_root})" if message.replay_root != message.replay_of else ""
        only = f", only to {', '.join(message.replay_destinations)}" if message.replay_destinations else ""
        print(f"replay of message {message.replay_of}{first}{only}")
    if prescription:
        task = f", open task: {prescription.open_task}" if prescription.open_task else ""
        print(f"prescription {prescription.number}: {prescription.state}{task} "
              f"(since {_iso(prescription.updated_at)}; first message {prescription.message_id})")
    if message.error:
        print(f"error: {message.error}")
    if outbox:
        print(f"destinations: {outcome_line(outbox)}")
    if message.records:
        print("records:")
        for record in message.records:
            print(f"  {_record_line(record)}")
    print("timeline:")
    for e in events:
        detail = ", ".join(f"{k}={v}" for k, v in e.detail.items() if v not in (None, "", [], {}) and k != "origin")
        print(f"  {_iso(e.at)}  {e.kind:<16} {detail}")
    if outbox:
        print("deliveries:")
        for o in outbox:
            print(f"  #{o.id} -> {o.destination:<16} {o.status:<10} attempts={o.attempts}"
                  + (f"  failed at: {failed_at(o)}" if failed_at(o) else "")
                  + (f"  last error: {o.last_error}" if o.last_error else "")
                  + (f"  resolved by message {o.resolved_by_message}" if o.resolved_by_message else ""))
    return EXIT_OK


def cmd_replay(args) -> int:
    """Exit 2 when a replay is refused (held, unknown destination, prescription already delivered
    without --force) or a message does not exist, 1 when the store failed, else 0."""
    from bridge.errors import ReplayRefused

    config = _config(args)
    unknown = [d for d in args.destinations or () if d not in config.destinations]
    if unknown:
        raise UsageError(f"--destination: unknown destination {', '.join(map(repr, unknown))}"
                         f" (configured: {', '.join(sorted(config.destinations)) or 'none'})")
    store = _store(args)
    failures, refused = 0, 0
    for message_id in args.ids:
        if store.get_message(message_id) is None:  # a wrong id is bad input, like a refusal
            print(f"message {message_id}: no message with id {message_id}", file=sys.stderr)
            refused += 1
            continue
        try:
            new_id = store.replay(message_id, reason=args.reason, actor=_actor(args),
                                  destinations=args.destinations, force=args.force)
        except ReplayRefused as exc:
            print(f"message {message_id}: {exc}", file=sys.stderr)
            refused += 1
            continue
        except BridgeError as exc:
            print(f"message {message_id}: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"message {message_id} replayed as message {new_id}")
    return EXIT_USAGE if refused else EXIT_FAIL if failures else EXIT_OK


def cmd_holds(args) -> int:
    store = _store(args)
    holds = store.holds(None) if args.all else store.holds("open") + store.holds("waiting")
    if args.json:
        print(json.dumps([{"message_id": h.message_id, "status": h.status, "created_at": _iso(h.created_at),
                           "reasons": list(h.reasons), "resolved_at": _iso(h.resolved_at) if h.resolved_at else None,
                           "resolved_by": h.resolved_by, "resolution": h.resolution} for h in holds], indent=2))
        return EXIT_OK
    if not holds:
        print("no holds", file=sys.stderr)
        return EXIT_OK
    for h in holds:
        message = store.get_message(h.message_id)
        keys = f"patient={message.patient_id or '-'} rx={message.prescription_number or '-'}" if message else ""
        print(f"message {h.message_id}  {h.status:<9} held {_iso(h.created_at)}  {keys}")
        for reason in h.reasons:
            basis = f" [{reason.get('basis')}]" if reason.get("basis") else ""
            print(f"    {reason.get('id')}: {reason.get('outcome')} — {reason.get('reason')}{basis}")
        if h.resolution:
            print(f"    {h.status} by {h.resolved_by} at {_iso(h.resolved_at)}: {h.resolution}")
    return EXIT_OK


def _resolve(args, action: str) -> int:
    store = _store(args)
    if store.get_message(args.id) is None:
        raise UsageError(f"no message with id {args.id}")
    try:
        hold = store.resolve_hold(args.id, action, reason=args.reason, actor=_actor(args))
    except StoreError:
        raise
    except BridgeError as exc:  # no open hold (decided already, or waiting behind another): bad input
        raise UsageError(str(exc)) from None
    print(f"message {hold.message_id} {hold.status}: {hold.resolution}")
    return EXIT_OK


def cmd_release(args) -> int:
    return _resolve(args, "release")


def cmd_reject(args) -> int:
    return _resolve(args, "reject")


def _start_admin_web(config, plugins, engine, reloader=None):
    """The admin API and dashboard on their own listener (``web.listen``), next to the engine; a
    configuration reload reaches its view of channels and destinations."""
    from bridge.web import create_app
    from bridge.core.logsetup import announce
    from bridge.web.server import ServerLimits, start_admin_server

    host, port = config.web["listen"]
    app = create_app(config, plugins, engine.store, engine=engine)
    if reloader is not None:
        reloader.on_reload.append(lambda new: app.config.update(BRIDGE_CONFIG=new))
    server, _ = start_admin_server(app, host, port, config.web.get("tls"), ServerLimits(**config.web["limits"]))
    scheme = "https" if config.web.get("tls") else "http"
    announce(config.log_format, f"bridge: admin web on {scheme}://{host}:{server.server_port}/ "
                                f"(session key: {app.extensions['bridge.secret_source']})")
    return server


def cmd_token_create(args) -> int:
    from bridge.web.auth import new_token, token_digest

    token = new_token()
    _store(args, create=True).create_token(args.name, token_digest(token), args.role, actor=_actor(args))
    print(token)
    print(f"token {args.name!r} ({args.role}) created; it is shown only this once: store it now",
          file=sys.stderr)
    return EXIT_OK


def cmd_token_list(args) -> int:
    tokens = _store(args).tokens()
    if not tokens:
        print("no tokens", file=sys.stderr)
    for t in tokens:
        state = f"revoked {_iso(t.revoked_at)}" if t.revoked_at else "live"
        print(f"{t.name:<24} {t.role:<9} created {_iso(t.created_at)}  last used {_iso(t.last_used_at)}  {state}")
    return EXIT_OK


def cmd_token_revoke(args) -> int:
    _store(args).revoke_token(args.name, actor=_actor(args))
    print(f"token {args.name!r} revoked", file=sys.stderr)
    return EXIT_OK


def _read_password(args) -> str:
    """From standard input with ``--password-stdin`` (scripts), else asked twice on the terminal."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password: pipe it in with --password-stdin "
                         "(e.g. printf '%s\\n' \"$PW\" | bridge user create NAME --role ROLE --password-stdin)")
    try:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the passwords differ")
    except EOFError:
        raise UsageError("no password given (end of input); use --password-stdin to pipe it in") from None
    return password


def cmd_user_create(args) -> int:
    from bridge.web.auth import hash_password

    try:
        password_hash = hash_password(_read_password(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _store(args, create=True).create_user(args.name, password_hash, args.role, actor=_actor(args))
    print(f"user {args.name!r} ({args.role}) created", file=sys.stderr)
    return EXIT_OK


def cmd_user_list(args) -> int:
    users = _store(args).users()
    if not users:
        print("no users", file=sys.stderr)
    for u in users:
        print(f"{u.name:<24} {u.role:<9} created {_iso(u.created_at)}" + ("  disabled" if u.disabled else ""))
    return EXIT_OK


def cmd_web(args) -> int:
    """Serve only the admin app (no engine threads): for a separate admin process or host."""
    from bridge.web import create_app
    from bridge.core.logsetup import announce
    from bridge.web.server import ServerLimits, make_admin_server

    plugins = _plugins()
    config = _config(args, plugins)
    tls = {"cert_file": args.cert, "key_file": args.key} if args.cert else config.web.get("tls")
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    _require_store(config.store_url)  # an admin view of a wrong path must not show a new, empty store
    app = create_app(config, plugins, secure_cookies=bool(tls))
    server = make_admin_server(app, args.host, args.port, tls, ServerLimits(**config.web["limits"]))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    announce(config.log_format, f"bridge {__version__}: admin web on {'https' if tls else 'http'}://{args.host}:"
                                f"{server.server_port}/ (session key: {app.extensions['bridge.secret_source']}); "
                                "Ctrl-C to stop")
    server.serve_forever()
    return EXIT_OK


def _job_line(job: dict[str, Any]) -> str:
    trigger = job["trigger"]
    when = f"cron {trigger['cron']}" if trigger.get("cron") else f"every {trigger['interval_seconds']:g}s"
    run = job["runs"][0] if job["runs"] else None
    last = "never run" if run is None else (
        f"last {run['slot']} {run['status']} (attempts {run['attempts']})"
        + (f": {run['detail'].get('error')}" if run["status"] == "failed" and run["detail"].get("error") else ""))
    state = "" if job["enabled"] else " [disabled]"
    return f"{job['name']:<20} {job['type']:<12} {when:<22} {last}{state}"


def cmd_jobs(args) -> int:
    """``bridge jobs`` lists jobs and their last runs; ``bridge jobs run NAME`` runs one now."""
    from bridge.core.scheduler import job_overview, run_now
    from bridge.core.store import open_store

    plugins = _plugins()
    config = _config(args, plugins)
    store = open_store(config.store_url if args.action == "run" else _store_or_empty(config.store_url))
    if args.action == "run":
        if not args.name:
            raise UsageError("bridge jobs run needs a job name")
        run = run_now(store, config, plugins, args.name)
        if args.json:
            print(json.dumps(run, indent=2, default=str))
        else:
            error = run["detail"].get("error")
            print(f"job {args.name} slot {run['slot']}: {run['status']}" + (f": {error}" if error else ""))
        return EXIT_OK if run["status"] == "succeeded" else EXIT_FAIL
    if args.name:
        raise UsageError(f"unexpected argument {args.name!r} (did you mean: bridge jobs run {args.name}?)")
    jobs = job_overview(store, config, history=args.history)
    if args.json:
        print(json.dumps(jobs, indent=2, default=str))
        return EXIT_OK
    if not jobs:
        print("no jobs in the config", file=sys.stderr)
    for job in jobs:
        print(_job_line(job))
        for run in job["runs"][1:]:
            print(f"{'':<20} {'':<12} {'':<22} {run['slot']} {run['status']}")
    return EXIT_OK


def cmd_audit(args) -> int:
    """``bridge audit verify``: check the hash chain; exit 1 naming the first broken entry."""
    store = _store(args)
    broken = store.verify_audit()
    if broken is None:
        print("audit log intact", file=sys.stderr)
        return EXIT_OK
    print(f"audit log broken at entry {broken}: its hash does not follow from the entries before it",
          file=sys.stderr)
    return EXIT_FAIL


def cmd_prune(args) -> int:
    """Apply every channel's retention policy now (what a ``prune`` job does)."""
    from bridge.core.retention import prune
    from bridge.core.store import open_store

    config = _config(args)
    _require_store(config.store_url)
    counts = prune(open_store(config.store_url), config, actor=_actor(args), dry_run=args.dry_run,
                   limit=args.limit, channels=args.channel or None)
    if args.json:
        print(json.dumps(counts, indent=2))
        return EXIT_OK
    if not counts:
        print("no channel has a retention policy", file=sys.stderr)
    verb = "would prune" if args.dry_run else "pruned"
    for channel, c in counts.items():
        print(f"{channel}: {verb} {c['messages']} message(s), {c['events']} event(s), "
              f"{c['outbox']} outbox row(s), {c['holds']} hold(s)")
    return EXIT_OK


def _add_ops_commands(add) -> None:
    """``jobs``, ``audit`` and ``prune``: scheduled jobs, the audit chain and retention."""
    p = add("jobs", cmd_jobs, "list scheduled jobs and their last runs; 'jobs run NAME' runs one now")
    p.add_argument("action", nargs="?", choices=("list", "run"), default="list")
    p.add_argument("name", nargs="?", help="the job to run (with 'run')")
    p.add_argument("--history", type=int, default=1, metavar="N", help="runs to show per job (default 1)")
    p.add_argument("--json", action="store_true")
    p = add("audit", cmd_audit, "check the audit log's hash chain (exit 1 names the first broken entry)")
    p.add_argument("action", choices=("verify",))
    p = add("prune", cmd_prune, "prune old messages by each channel's retention policy (audited)")
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    p.add_argument("--channel", action="append", help="only this channel (repeatable)")
    p.add_argument("--limit", type=int, default=10000, help="at most this many messages per channel")
    p.add_argument("--json", action="store_true")
    p.add_argument("--actor", help=argparse.SUPPRESS)


def cmd_store_copy(args) -> int:
    """``bridge store copy --from sqlite:///… --to postgresql://…``: every table, ids and audit chain intact."""
    from bridge.core.store.copy import copy_store

    if args.source.startswith("sqlite:///"):
        _require_store(args.source)
    counts = copy_store(args.source, args.target,
                        progress=lambda table, n: n % 10000 == 0 and print(f"{table}: {n} rows...", file=sys.stderr))
    for table, n in counts.items():
        print(f"{table}: {n} row(s)")
    print("copied; check it with `bridge audit verify` on a config whose store is the target", file=sys.stderr)
    return EXIT_OK


def cmd_map_test(args) -> int:
    """``bridge map test``: every map's samples against their expected records (docs/maps.md)."""
    from bridge.core.maps.cli import map_test

    plugins = _plugins()
    return map_test(_config(args, plugins), plugins, args.map or (), sys.stdout)


def cmd_map_try(args) -> int:
    """``bridge map try``: one message through a channel's maps, step by step (docs/maps.md)."""
    from bridge.core.maps.pipeline import inbound_messages
    from bridge.core.maps.trying import print_trace, trace_destination, trace_maps
    from bridge.core.model.times import localize_records

    plugins = _plugins()
    config = _config(args, plugins)
    channel = config.channels.get(args.channel)
    if channel is None:
        raise UsageError(f"no channel {args.channel!r} (channels: {', '.join(sorted(config.channels)) or 'none'})")
    destination = config.destinations.get(args.destination) if args.destination else None
    if args.destination and destination is None:
        raise UsageError(f"no destination {args.destination!r} (destinations: {', '.join(sorted(config.destinations))})")
    if destination is not None and not (destination.maps or destination.passthrough):
        raise UsageError(f"destination {args.destination!r} has no maps and does not pass HL7v2 through")
    if not channel.maps and destination is None:
        raise UsageError(f"channel {args.channel!r} has no maps (add maps: [NAME] to it; docs/maps.md)")
    raw = _read_file(args.file)
    try:
        records = plugins.format(channel.format).decode(raw, dict(channel.options))
    except DecodeError as exc:
        raise UsageError(f"{args.file} does not decode as {channel.format} (channel {args.channel}): {exc}") from None
    if channel.timezone:
        localize_records(records, channel.timezone)
    print(f"channel {args.channel}: {args.file} decoded as {channel.format}, {len(records)} record(s); "
          f"maps: {', '.join(channel.maps) or 'none'}")
    maps = [config.maps[name] for name in channel.maps]
    every = [*maps, *(config.maps[name] for name in (destination.maps if destination else ()))]
    inbound = inbound_messages(every, raw if channel.format == "hl7v2" else None)
    traces, outcome = trace_maps(maps, records, inbound)
    if destination is None:
        print_trace(traces, outcome, sys.stdout)
        return EXIT_FAIL if outcome.failure else EXIT_OK
    from bridge.core.maps.trying import print_steps

    print_steps(traces, sys.stdout)
    if outcome.failure or outcome.holds or not outcome.records:
        print_trace([], outcome, sys.stdout)
        return EXIT_FAIL if outcome.failure else EXIT_OK
    try:
        outcome = trace_destination(config, plugins, args.destination, outcome.records, raw, inbound, sys.stdout)
    except (ValueError, EncodeError) as exc:
        raise UsageError(f"destination {args.destination}: {exc}") from None
    return EXIT_FAIL if outcome.failure else EXIT_OK


def _add_map_commands(sub) -> None:
    """``map test`` and ``map try``: maps are tested like code, and tried on one message."""
    maps = sub.add_parser("map", help="test channel and destination maps",
                          description="Maps: filters, transforms and lookup tables as data (docs/maps.md).")
    maps_sub = maps.add_subparsers(dest="map_command", metavar="ACTION", required=True)
    text = "run each map's tests/NAME.in.* samples; show a diff for every difference from NAME.expected.json (exit 1)"
    p = maps_sub.add_parser("test", help=text, description=text)
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default %(default)s)")
    p.add_argument("map", nargs="*", help="only these maps (default: every map beside the config)")
    p.set_defaults(func=cmd_map_test)
    text = "run FILE through CHANNEL's maps and show, step by step, whether each condition held and what changed"
    p = maps_sub.add_parser("try", help=text, description=text + "; then the records after the maps (bridge JSON)")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default %(default)s)")
    p.add_argument("channel", help="the channel whose maps run, in its order, with its decoding options and timezone")
    p.add_argument("file", help="a message as the channel receives it (HL7v2 for an hl7v2 channel)")
    p.add_argument("--destination", metavar="DEST", help="then DEST's maps on its copy, and for an hl7v2 destination "
                   "its outbound message and the field-position steps on it (printed)")
    p.set_defaults(func=cmd_map_try)


def cmd_backup(args) -> int:
    """``bridge backup -c FILE DEST``: the store to one file while the engine runs (audited)."""
    from bridge.core.store import open_store
    from bridge.core.store.backup import BackupRefused, backup_size_text, backup_store

    config = _config(args)
    _require_store(config.store_url)
    try:
        result = backup_store(config.store_url, args.dest)
    except BackupRefused as exc:
        raise UsageError(str(exc)) from None
    store = open_store(config.store_url)
    try:
        store.audit(_actor(args), "store.backup", f"file:{os.path.abspath(args.dest)}",
                    {"bytes": result.bytes, "messages": result.messages})
    finally:
        store.close()
    counted = f", {result.messages} message(s)" if result.messages >= 0 else ""
    print(f"backed up to {args.dest}: {backup_size_text(result.bytes)}{counted} in {result.seconds:.1f} s",
          file=sys.stderr)
    return EXIT_OK


def cmd_restore(args) -> int:
    """``bridge restore -c FILE BACKUP``: install a backup as the config's store (audited in it)."""
    from bridge.core.store import open_store
    from bridge.core.store.backup import BackupRefused, restore_store

    config = _config(args)
    try:
        result = restore_store(config.store_url, args.backup, replace=args.replace)
    except BackupRefused as exc:
        raise UsageError(str(exc)) from None
    store = open_store(config.store_url)
    try:
        store.audit(_actor(args), "store.restore", f"file:{os.path.abspath(args.backup)}",
                    {"set_aside": result.set_aside})
    finally:
        store.close()
    aside = f"; the store it replaced is now {result.set_aside}" if result.set_aside else ""
    counted = f" ({result.messages} message(s))" if result.messages >= 0 else ""
    print(f"restored {args.backup}{counted}{aside}; the audit log verifies. Start the engine: it resumes"
          " the work the backup holds", file=sys.stderr)
    return EXIT_OK


def _add_backup_commands(add) -> None:
    """``backup`` and ``restore``: a store to one file and back (docs/operations.md)."""
    p = add("backup", cmd_backup, "back up the store to a new file while the engine runs (SQLite: online"
                                  " backup; PostgreSQL: pg_dump)")
    p.add_argument("dest", metavar="DEST", help="the backup file to create (never overwritten)")
    p.add_argument("--actor", help=argparse.SUPPRESS)
    p = add("restore", cmd_restore, "install a backup as the config's store (stop the engine first)")
    p.add_argument("backup", metavar="BACKUP", help="a file written by bridge backup")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing store (it is kept beside, renamed ….before-restore-TIME)")
    p.add_argument("--actor", help=argparse.SUPPRESS)


def _add_store_commands(sub) -> None:
    """``store copy``: move a store to another backend."""
    store = sub.add_parser("store", help="move a store to another backend",
                           description="Store maintenance: copy a SQLite store into an empty PostgreSQL database.")
    store_sub = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    text = "copy every table of a SQLite store into an empty PostgreSQL database (ids and audit chain intact)"
    p = store_sub.add_parser("copy", help=text, description=text)
    p.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:///path/to/bridge.db")
    p.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://user@host:port/database")
    p.set_defaults(func=cmd_store_copy)


# --- parser --------------------------------------------------------------------------------------


def build_parser(plugins=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Telemed Bridge: an interface engine for telemedicine.")
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func, help_text: str, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if config:
            p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default %(default)s)")
        p.set_defaults(func=func)
        return p

    p = add("run", cmd_run, "run the engine on a config")
    p.add_argument("--role", choices=("engine", "worker", "deliverer", "journal-mover"), default="engine", help=argparse.SUPPRESS)
    p = add("journal", cmd_journal, "intake journals on this node: status, or drain one into the store")
    p.add_argument("action", choices=("status", "drain"))
    p.add_argument("--channel", help="drain: the channel whose journal to move")
    p.add_argument("--dir", help="drain: a journal directory (another node's DIR/CHANNEL); default: this"
                                 " node's, from the config")
    add("check", cmd_check, "validate a config; print every problem (exit 2) or nothing (exit 0)")
    p = add("plugins", cmd_plugins, "list plugins and what they provide", config=False)
    p.add_argument("--json", action="store_true")
    p = add("translate", cmd_translate, "decode a message from one format and encode it to another", config=False)
    p.add_argument("--from", dest="from_format", required=True, metavar="FMT")
    p.add_argument("--to", dest="to_format", required=True, metavar="FMT")
    p.add_argument("--option", action="append", metavar="NAME=VALUE", help="format option (repeatable)")
    p.add_argument("--timezone", metavar="ZONE",
                   help="IANA zone of the sender's clocks, as a channel's timezone: (e.g. America/Chicago)")
    p.add_argument("file", nargs="?", default="-", help="input file, or - for standard input")
    p = add("messages", cmd_messages, "search stored messages, newest first")
    p.add_argument("--status")
    p.add_argument("--channel")
    p.add_argument("--key", action="append", metavar="NAME=VALUE",
                   help="business key: control_id, patient_id, encounter_id, prescription_number, "
                        "ncpdp_message_id, trace_id (repeatable)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p = add("show", cmd_show, "show one message: records, timeline, deliveries")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p = add("replay", cmd_replay, "queue stored messages to be processed again")
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.add_argument("--reason", required=True)
    p.add_argument("--destination", dest="destinations", nargs="+", action="extend", metavar="NAME",
                   help="send only to these destinations (ones the message went to before)")
    p.add_argument("--force", action="store_true",
                   help="replay a prescription to a destination that already has it delivered (audited)")
    p.add_argument("--actor", help=argparse.SUPPRESS)
    p = add("holds", cmd_holds, "list messages held for review, with the reasons")
    p.add_argument("--all", action="store_true", help="include released and rejected holds")
    p.add_argument("--json", action="store_true")
    for name, func, text in (("release", cmd_release, "release a held message: it is routed as if allowed"),
                             ("reject", cmd_reject, "reject a held message: it is not routed")):
        p = add(name, func, text)
        p.add_argument("id", type=int, metavar="ID")
        p.add_argument("--reason", required=True)
        p.add_argument("--actor", help=argparse.SUPPRESS)
    _add_admin_commands(sub, add)
    _add_ops_commands(add)
    _add_backup_commands(add)
    _add_store_commands(sub)
    _add_map_commands(sub)
    for name, spec in sorted((plugins.commands() if plugins else {}).items()):
        if name in sub.choices:
            raise PluginError(f"plugin command {name!r} clashes with a built-in command")
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        spec.configure(p)
        p.set_defaults(func=spec.run, formats=plugins.formats())  # commands may decode with any registered format
    return parser


def _add_admin_commands(sub, add) -> None:
    """``token``, ``user`` and ``web``: access to the admin API and dashboard."""
    roles = ("viewer", "analyst", "operator", "admin")
    token = sub.add_parser("token", help="create, list and revoke API tokens",
                           description="API tokens for the admin API (Authorization: Bearer ...).")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    for name, func, text in (("create", cmd_token_create, "create a token and print it (shown once)"),
                             ("list", cmd_token_list, "list tokens (never the tokens themselves)"),
                             ("revoke", cmd_token_revoke, "revoke a token")):
        p = token_sub.add_parser(name, help=text, description=text)
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default %(default)s)")
        p.add_argument("--actor", help=argparse.SUPPRESS)
        p.set_defaults(func=func)
        if name == "create":
            p.add_argument("--name", required=True)
            p.add_argument("--role", required=True, choices=roles)
        elif name == "revoke":
            p.add_argument("name")
    user = sub.add_parser("user", help="create and list dashboard users",
                          description="Dashboard users (passwords are stored as scrypt hashes).")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = user_sub.add_parser("create", help="create a user", description="create a dashboard user")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=roles)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_user_create)
    p2 = user_sub.add_parser("list", help="list users", description="list dashboard users")
    p2.set_defaults(func=cmd_user_list)
    for q in (p, p2):
        q.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default %(default)s)")
        q.add_argument("--actor", help=argparse.SUPPRESS)
    p = add("web", cmd_web, "serve the admin API and dashboard (without running the engine)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--cert", help="TLS certificate (PEM); with --key")
    p.add_argument("--key", help="TLS private key (PEM); with --cert")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser(_plugins())
    except BridgeError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return EXIT_FAIL
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from bridge.core.logsetup import TEXT_FORMAT, level_from_environment

    try:
        level = level_from_environment()
    except ValueError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    from bridge.core import redaction

    redaction.install()  # no PHI in logs, whatever a library or a peer's error puts there
    try:
        return args.func(args)
    except ConfigError as exc:
        for path, message in exc.problems:
            print(f"bridge: config: {path}: {message}" if path else f"bridge: config: {message}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``bridge`` command.

Exit codes: 0 success, 1 failure, 2 bad usage or bad input. Every error is one clear line on
stderr, never a traceback: the people running this are interface analysts, not Python developers.
"""

from __future__ import annotations

import argparse
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
from bridge.errors import BridgeError, ConfigError, DecodeError, EncodeError, PluginError

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

    return load_config(args.config, plugins or _plugins())


def _store(args):
    from bridge.core.store import open_store

    return open_store(_config(args).store_url)


def _actor(args) -> str:
    if getattr(args, "actor", None):
        return args.actor
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


# --- commands ------------------------------------------------------------------------------------


def cmd_check(args) -> int:
    try:
        _config(args)
    except ConfigError as exc:
        for path, message in exc.problems:
            print(f"{args.config}: {path}: {message}" if path else f"{args.config}: {message}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_run(args) -> int:
    from bridge.core.engine import Engine

    plugins = _plugins()
    config = _config(args, plugins)
    engine = Engine(config, plugins)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"bridge {__version__}: running {len(config.channels)} channel(s) from {args.config}; "
          f"store {config.store_url}; Ctrl-C to stop", file=sys.stderr, flush=True)
    engine.run_forever(stop)
    return EXIT_OK


def cmd_plugins(args) -> int:
    infos = _plugins().plugins()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return EXIT_OK
    for info in infos:
        status = f"ERROR: {info.error}" if info.error else ", ".join(info.provides) or "(nothing registered)"
        origin = "built-in" if info.builtin else f"{info.distribution} {info.version}"
        print(f"{info.name:<20} {origin:<24} {status}")
    return EXIT_OK


def cmd_translate(args) -> int:
    plugins = _plugins()
    try:
        source, target = plugins.format(args.from_format), plugins.format(args.to_format)
    except PluginError as exc:
        raise UsageError(str(exc)) from None
    raw = sys.stdin.buffer.read() if args.file in (None, "-") else _read_file(args.file)
    options = dict(_pair(o, "--option") for o in args.option or [])
    try:
        records = source.decode(raw, options)
        out = target.encode(records, options)
    except (DecodeError, EncodeError) as exc:
        raise UsageError(f"cannot translate: {exc}") from None
    sys.stdout.buffer.write(out)
    return EXIT_OK


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
    store = _store(args)
    rows = store.search(status=args.status, channel=args.channel, keys=keys, limit=args.limit)
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
    store = _store(args)
    message = store.get_message(args.id)
    if message is None:
        print(f"no message with id {args.id}", file=sys.stderr)
        return EXIT_FAIL
    events = store.events(args.id)
    outbox = store.outbox_rows(message_id=args.id)
    if args.json:
        print(json.dumps({
            "message": {**_message_row(message), "records": message.records, "origin": dict(message.origin)},
            "timeline": [{"at": _iso(e.at), "event": e.kind, **dict(e.detail)} for e in events],
            "deliveries": [{**o.as_dict(), "created_at": _iso(o.created_at), "delivered_at": _iso(o.delivered_at),
                            "next_attempt_at": _iso(o.next_attempt_at)} for o in outbox],
        }, indent=2, default=str))
        return EXIT_OK
    print(f"message {message.id}  channel {message.channel}  format {message.format}  status {message.status}")
    print(f"received {_iso(message.received_at)}  trace {message.trace_id or '-'}  "
          f"type {message.message_type or '-'}  control id {message.control_id or '-'}")
    if message.replay_of:
        print(f"replay of message {message.replay_of}")
    if message.error:
        print(f"error: {message.error}")
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
                  + (f"  last error: {o.last_error}" if o.last_error else ""))
    return EXIT_OK


def cmd_replay(args) -> int:
    store = _store(args)
    failures = 0
    for message_id in args.ids:
        try:
            new_id = store.replay(message_id, reason=args.reason, actor=_actor(args))
        except BridgeError as exc:
            print(f"message {message_id}: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"message {message_id} replayed as message {new_id}")
    return EXIT_FAIL if failures else EXIT_OK


def cmd_holds(args) -> int:
    store = _store(args)
    holds = store.holds(None if args.all else "open")
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
    hold = store.resolve_hold(args.id, action, reason=args.reason, actor=_actor(args))
    print(f"message {hold.message_id} {hold.status}: {hold.resolution}")
    return EXIT_OK


def cmd_release(args) -> int:
    return _resolve(args, "release")


def cmd_reject(args) -> int:
    return _resolve(args, "reject")


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

    add("run", cmd_run, "run the engine on a config")
    add("check", cmd_check, "validate a config; print every problem (exit 2) or nothing (exit 0)")
    p = add("plugins", cmd_plugins, "list plugins and what they provide", config=False)
    p.add_argument("--json", action="store_true")
    p = add("translate", cmd_translate, "decode a message from one format and encode it to another", config=False)
    p.add_argument("--from", dest="from_format", required=True, metavar="FMT")
    p.add_argument("--to", dest="to_format", required=True, metavar="FMT")
    p.add_argument("--option", action="append", metavar="NAME=VALUE", help="format option (repeatable)")
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
    for name, spec in sorted((plugins.commands() if plugins else {}).items()):
        if name in sub.choices:
            raise PluginError(f"plugin command {name!r} clashes with a built-in command")
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        spec.configure(p)
        p.set_defaults(func=spec.run)
    return parser


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
    logging.basicConfig(level=os.environ.get("BRIDGE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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

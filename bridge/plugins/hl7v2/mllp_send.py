"""``bridge send --to mllp://HOST:PORT FILE…``: send HL7v2 messages and print each ACK.

A handy client for interface analysts and for tests. A file may hold several messages: a new one
starts at each MSH segment, and blank lines between messages are ignored. LF and CRLF segment
separators (what text editors write) are turned into the CR that HL7v2 requires. A file that starts
with FHS or BHS is a batch and is sent whole, as one message.

Every file is read and split before anything is sent, so bad input (an unreadable file, text before
the first MSH, no message at all) exits with 2 and sends nothing. Exit 0 when every message got AA or
CA, 1 when any got another code or no answer.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from bridge import BridgeError, ConfigError, DecodeError, DeliveryError

from . import mllp_tls
from .ack import ack_code_of
from .header import BOM, parse_msh
from .mllp import MLLPClient, parse_address

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
_LINE_BREAK = re.compile(rb"\r\n|\n|\r")


class InputError(BridgeError):
    """A file to send is unreadable or holds no HL7v2 message."""


def configure(parser: Any) -> None:
    parser.add_argument("--to", required=True, metavar="URL", help="mllp://HOST:PORT or mllps://HOST:PORT")
    parser.add_argument("--ca", metavar="FILE", help="CA certificate(s) to verify the server (mllps)")
    parser.add_argument("--cert", metavar="FILE", help="client certificate for mutual TLS (mllps)")
    parser.add_argument("--key", metavar="FILE", help="private key of --cert, if not in the same file")
    parser.add_argument("--server-hostname", metavar="NAME", help="name to check the server certificate against")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server certificate (tests only)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="seconds to wait for each ACK (default %(default)s)")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="seconds to wait for the connection (default %(default)s)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="HL7v2 message files, or - for standard input")


def run(args: Any) -> int:
    try:
        messages = [item for name in args.files for item in labelled_messages(name)]
        client = _client(args)
    except (InputError, ConfigError) as exc:
        print(f"bridge send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    failures = 0
    try:
        for label, payload in messages:
            if not _send_one(client, label, payload):
                failures += 1
    finally:
        client.close()
    if failures:
        print(f"bridge send: {failures} of {len(messages)} message(s) not accepted", file=sys.stderr)
    return EXIT_FAIL if failures else EXIT_OK


def _send_one(client: MLLPClient, label: str, payload: bytes) -> bool:
    """Send one message and print its outcome; True when it was accepted (AA/CA)."""
    try:
        code, control_id, text = ack_code_of(client.exchange(payload))
    except DeliveryError as exc:
        print(f"{label}: ERROR {exc}", flush=True)
        return False
    except DecodeError as exc:
        print(f"{label}: ERROR unreadable ACK: {exc}", flush=True)
        return False
    print(f"{label}: {code} {control_id or '-'}" + (f" {text}" if text else ""), flush=True)
    return code in ("AA", "CA")


def _client(args: Any) -> MLLPClient:
    host, port = parse_address(args.to, "--to", listening=False)
    tls = None
    if args.to.split(":", 1)[0].lower() == "mllps":
        options = {"ca_file": args.ca, "cert_file": args.cert, "key_file": args.key, "verify": not args.insecure}
        tls = mllp_tls.client_context(options, ".", "--to")
    elif args.ca or args.cert or args.key:
        raise ConfigError([("--to", "--ca, --cert and --key need an mllps:// URL")])
    return MLLPClient(host, port, tls=tls, server_hostname=args.server_hostname,
                      connect_timeout=args.connect_timeout, ack_timeout=args.timeout)


def labelled_messages(name: str) -> list[tuple[str, bytes]]:
    """``(label, message)`` pairs for one file; the label names the file, position and MSH-10."""
    messages = split_messages(_read(name), name)
    out = []
    for number, message in enumerate(messages, 1):
        control = _control_id(message)
        out.append((f"{name} #{number}" + (f" ({control})" if control else ""), message))
    return out


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None


def split_messages(data: bytes, name: str = "<input>") -> list[bytes]:
    """Split a file's bytes into CR-separated HL7v2 messages; InputError says what is wrong and where."""
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    if data.startswith(BOM):
        data = data[len(BOM):]
    lines = _LINE_BREAK.split(data)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise InputError(f"{name}: no HL7v2 message (the file is empty)")
    if first.lstrip().startswith((b"FHS", b"BHS")):
        return [b"\r".join(line for line in lines if line.strip()) + b"\r"]
    messages: list[list[bytes]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.startswith(b"MSH"):
            messages.append([line])
        elif not messages:
            segment = line[:3].decode("ascii", "replace")
            raise InputError(f"{name} line {number}: expected an MSH segment first, found {segment!r}")
        else:
            messages[-1].append(line)
    return [b"\r".join(segments) + b"\r" for segments in messages]


def _control_id(message: bytes) -> str | None:
    try:
        return parse_msh(message).control_id or None
    except DecodeError:
        return None

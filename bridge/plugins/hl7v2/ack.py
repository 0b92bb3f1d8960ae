"""HL7v2 acknowledgements: AA/AE/AR (original mode) and CA/CE/CR (enhanced mode, commit ACKs).

The ACK swaps sender and receiver, echoes the inbound MSH-10 in MSA-2, and on errors carries an ERR
segment with the reason (HL7 table 0357 code, severity E, text in ERR-8) so the sending system's
analyst can see why without calling us. Separators follow the inbound message.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone

from bridge import DecodeError

from .header import MSH, Separators, parse_msh

ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")
ERROR_CODES = {
    "AE": ("207", "Application internal error"),
    "CE": ("207", "Application internal error"),
    "AR": ("200", "Unsupported message type"),
    "CR": ("200", "Unsupported message type"),
}
_counter = itertools.count(1)


def escape(text: str, seps: Separators) -> str:
    """Escape text for an HL7v2 field (the escape character first, so it is not doubled)."""
    e = seps.escape
    out = text.replace(e, f"{e}E{e}")
    for char, code in ((seps.field, "F"), (seps.component, "S"), (seps.subcomponent, "T"), (seps.repetition, "R")):
        out = out.replace(char, f"{e}{code}{e}")
    return out.replace("\r", " ").replace("\n", " ")


_stamp: tuple[int, str] = (0, "")


def _timestamp() -> str:
    """MSH-7 of an ACK: now, in UTC, to the second (formatted once per second: a busy listener
    builds thousands of ACKs a second)."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y%m%d%H%M%S+0000"))
    return _stamp[1]


def _control_id() -> str:
    return f"A{int(time.time() * 1000):x}{next(_counter) % 4096:03x}"


def make_ack(raw: bytes | str, code: str, text: str | None = None, error_code: str | None = None,
             msh: MSH | None = None) -> str:
    """Build an ACK for ``raw``. Works even when the inbound MSH is unreadable (MSA-2 is then empty).
    A caller that already parsed the MSH passes it, so the message is not read twice."""
    if code not in ACK_CODES:
        raise ValueError(f"unknown acknowledgement code {code!r}")
    if msh is None:
        try:
            msh = parse_msh(raw)
        except DecodeError:
            msh = None
    seps = msh.separators if msh else Separators()
    get = msh.get if msh else (lambda n: "")
    trigger = msh.component(9, 2) if msh else ""
    fs = seps.field
    msh_fields = [
        "MSH", seps.encoding_characters, get(5), get(6), get(3), get(4), _timestamp(), "",
        f"ACK{seps.component}{trigger}{seps.component}ACK" if trigger else "ACK",
        _control_id(), get(11) or "P", get(12) or "2.5",
    ]
    segments = [fs.join(msh_fields), fs.join(["MSA", code, get(10), escape(text, seps) if text else ""])]
    if code[1] in "ER":
        number, name = (error_code, "") if error_code else ERROR_CODES[code]
        c = seps.component
        err = ["ERR", "", "", f"{number}{c}{name}{c}HL70357", "E", "", "", "", escape(text or name, seps)]
        segments.append(fs.join(err))
    return "\r".join(segments) + "\r"


def ack_code_of(raw: bytes | str) -> tuple[str, str, str]:
    """Read an ACK: ``(MSA-1, MSA-2, text)`` where text is MSA-3 or ERR-8. Raises DecodeError."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    msh = parse_msh(text)
    fs = msh.separators.field
    code = control = message = ""
    for seg in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        parts = seg.split(fs)
        if parts[0] == "MSA":
            code = parts[1] if len(parts) > 1 else ""
            control = parts[2] if len(parts) > 2 else ""
            message = parts[3] if len(parts) > 3 else ""
        elif parts[0] == "ERR" and not message:
            message = parts[8] if len(parts) > 8 else (parts[1] if len(parts) > 1 else "")
    if code not in ACK_CODES:
        raise DecodeError(f"not an acknowledgement: MSA-1 is {code!r}", "MSA-1")
    return code, control, message

"""A fake HL7v2 receiver over MLLP on loopback: answers as scripted, records what it received.

It frames and reads MSH by hand, independently of the product's MLLP code, so a transport or
profile that speaks MLLP is checked against a second implementation. Scripted answers, consumed
one per received message (then ``default``):

- ``"AA"``, ``"AE"``, ``"AR"`` (and ``"CA"``, ``"CE"``, ``"CR"``): an ACK with that MSA-1, echoing the
  message's MSH-10 in MSA-2;
- ``"silent"``: read the message, never answer (the sender must time out);
- ``"close"``: read the message, close the connection without answering;
- ``"garbage"``: answer a frame that is not an ACK;
- ``"late"``: wait ``late_seconds``, then answer AA (after the sender's ACK timeout, when that is shorter).

``answer_for(message, seen_before)`` (optional) decides instead of the queue: ``seen_before`` counts the
earlier copies of the same MSH-10, so "AE to the first copy of each message" is
``lambda message, seen: "AE" if seen == 0 else "AA"``. ``host`` is the address it listens on (a
network-fault test binds the far end of a veth pair). :attr:`FakeMllpPeer.received_at` holds the
monotonic arrival time of each received message, for timing assertions (backoff, bounds).

A receiver that de-duplicates by control id is what makes MLLP re-delivery safe, so
:meth:`FakeMllpPeer.effects` counts distinct control ids the peer accepted (answered AA/CA).
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable, Iterable

from .tcp import LoopbackTcpServer

START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"
ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")
BEHAVIOURS = (*ACK_CODES, "silent", "close", "garbage", "late")


def msh_fields(message: bytes) -> list[str]:
    """MSH fields by HL7 number (index 1 is MSH-1, the field separator); empty when there is no MSH."""
    text = message.decode("utf-8", "replace").lstrip()
    if not text.startswith("MSH") or len(text) < 8:
        return []
    separator = text[3]
    first = text.replace("\n", "\r").split("\r", 1)[0]
    return ["MSH", separator, *first.split(separator)[1:]]


def build_ack(message: bytes, code: str, text: str = "") -> bytes:
    """An ACK for ``message`` with MSA-1 ``code``, addressed back to its sender."""
    fields = msh_fields(message)
    get = (lambda n: fields[n] if n < len(fields) else "") if fields else (lambda n: "")
    sep = get(1) or "|"
    encoding = get(2) or "^~\\&"
    component = encoding[0]
    trigger = get(9).split(component)[1] if component in get(9) else ""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    msh = sep.join(["MSH", encoding, get(5), get(6), get(3), get(4), stamp, "",
                    f"ACK{component}{trigger}{component}ACK" if trigger else "ACK",
                    f"FAKE{time.monotonic_ns() % 10**12}", get(11) or "P", get(12) or "2.5"])
    msa = sep.join(["MSA", code, get(10), text])
    return (msh + "\r" + msa + "\r").encode("utf-8")


class FakeMllpPeer(LoopbackTcpServer):
    """``with FakeMllpPeer(answers=["AE", "AA"]) as peer:`` — ``peer.url`` is ``mllp://127.0.0.1:PORT``."""

    def __init__(self, answers: Iterable[str] = (), *, default: str = "AA", text: str = "",
                 max_bytes: int = 16 * 1024 * 1024, late_seconds: float = 0.0,
                 answer_for: Callable[[bytes, int], str] | None = None, host: str = "127.0.0.1"):
        super().__init__(host)
        self.default = self._checked(default)
        self.late_seconds = late_seconds
        self.answer_for = answer_for
        self.received_at: list[float] = []
        self.text = text
        self.max_bytes = max_bytes
        self.answers: deque[str] = deque(self._checked(a) for a in answers)
        self.received: list[bytes] = []
        self.answered: list[tuple[bytes, str]] = []
        self.connections = 0

    @staticmethod
    def _checked(behaviour: str) -> str:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown MLLP peer behaviour {behaviour!r} (known: {', '.join(BEHAVIOURS)})")
        return behaviour

    # -- scripting and inspection --

    def script(self, *answers: str) -> None:
        """Queue answers for the next messages, in order (see the module docstring)."""
        with self.lock:
            self.answers.extend(self._checked(a) for a in answers)

    def accepted(self) -> list[bytes]:
        """Messages the peer answered AA or CA (a ``late`` answer is an AA: the receiver took the message)."""
        with self.lock:
            return [message for message, code in self.answered if code in ("AA", "CA", "late")]

    def control_id(self, message: bytes) -> str | bytes:
        """MSH-10 of a message (the whole bytes when it has none): the identity a receiver de-duplicates by."""
        fields = msh_fields(message)
        return fields[10] if len(fields) > 10 else message

    def effects(self) -> int:
        """Distinct messages (by MSH-10, or whole bytes when there is none) the peer accepted."""
        return len({self.control_id(m) for m in self.accepted()})

    # -- serving --

    scheme = "mllp"

    def _accepted(self, conn: socket.socket) -> None:
        self.connections += 1

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                if len(buffer) > self.max_bytes:
                    return
                while (start := buffer.find(START_BLOCK)) >= 0 and (end := buffer.find(END_BLOCK, start)) >= 0:
                    message, buffer = buffer[start + 1:end], buffer[end + 2:]
                    if not self._answer(conn, message):
                        return

    def _answer(self, conn: socket.socket, message: bytes) -> bool:
        """Answer one message as scripted; False when the connection must end."""
        with self.lock:
            seen_before = sum(1 for earlier in self.received if self.control_id(earlier) == self.control_id(message))
            self.received.append(message)
            self.received_at.append(time.monotonic())
            if self.answer_for is not None:
                behaviour = self._checked(self.answer_for(message, seen_before))
            else:
                behaviour = self.answers.popleft() if self.answers else self.default
            self.answered.append((message, behaviour))
        if behaviour == "late":
            if self._stopping.wait(self.late_seconds):
                return False
            behaviour = "AA"
        if behaviour == "close":
            return False
        if behaviour == "silent":
            return True
        reply = b"this is not an ACK\r" if behaviour == "garbage" else build_ack(message, behaviour, self.text)
        try:
            conn.sendall(START_BLOCK + reply + END_BLOCK)
        except OSError:
            return False
        return True

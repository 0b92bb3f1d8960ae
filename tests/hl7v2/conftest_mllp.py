"""Shared helpers for the MLLP tests: messages, a test-only format, a raw client, a scripted peer, PKI.

Kept out of ``conftest.py`` (which belongs to the HL7v2 format's tests) and imported explicitly.
The raw client and the scripted peer frame bytes by hand, independently of ``mllp.FrameReader``,
so the product's framing is checked against a second implementation rather than against itself.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bridge.plugins.hl7v2 as hl7v2_plugin
from bridge import DecodeError, EncodeError, FormatSpec, Patient, Record, hookimpl
from bridge.core.engine import Engine
from bridge.plugins.hl7v2.ack import ack_code_of, make_ack
from bridge.plugins.hl7v2.header import parse_msh, peek
from bridge.testing import plugin_manager

SB, EB = b"\x0b", b"\x1c\x0d"
TEST_FORMAT = "hl7v2-test"


# --- messages --------------------------------------------------------------------------------------


def adt(control_id: str, *, app: str = "SENDAPP", facility: str = "SENDFAC", msh15: str = "",
        patient: str = "P1", filler: int = 0) -> bytes:
    """A small synthetic ADT^A04 (no real person). ``filler`` pads an NTE segment to reach a size."""
    msh = f"MSH|^~\\&|{app}|{facility}|BRIDGE|TB|20240102030405||ADT^A04^ADT_A01|{control_id}|P|2.5|||{msh15}"
    segments = [msh, "EVN|A04|20240102030405", f"PID|1||{patient}^^^TB^MR||Testpatient^Alex"]
    if filler:
        segments.append("NTE|1||" + "x" * filler)
    return ("\r".join(segments) + "\r").encode("ascii")


def mllp(payload: bytes) -> bytes:
    return SB + payload + EB


# --- a test-only format (so these tests do not depend on the real HL7v2 codec) --------------------


def _decode(raw: bytes, options: Mapping[str, Any]) -> list[Record]:
    msh = parse_msh(raw)  # raises DecodeError naming the problem
    if not msh.control_id:
        raise DecodeError("MSH-10 (message control id) is empty", "MSH-10")
    return [Patient(id=msh.control_id)]


def _encode(records: Sequence[Record], options: Mapping[str, Any]) -> bytes:
    patients = [r for r in records if isinstance(r, Patient)]
    if not patients:
        raise EncodeError("the test format encodes Patient records only")
    control = options.get("message_control_id", "TB0")
    text = (f"MSH|^~\\&|BRIDGE|TB|RECVAPP|RECVFAC|20240102030405||ADT^A08^ADT_A01|{control}|P|2.5\r"
            f"PID|1||{patients[0].id}^^^TB^MR\r")
    return text.encode("ascii")


class TestFormatPlugin:
    """Registers ``hl7v2-test``: peek is the real MSH reader, decode/encode are minimal."""

    __test__ = False  # not a pytest test class

    @hookimpl
    def bridge_formats(self) -> list[FormatSpec]:
        return [FormatSpec(name=TEST_FORMAT, media_type="x-application/hl7-v2+er7", decode=_decode,
                           encode=_encode, peek=peek, file_extension="hl7")]


class _TransportsOnly:
    """The HL7v2 plugin's own transport and command hooks, without its format hook.

    Used only while ``codec.py`` (written separately) is not importable: the plugin manager drops
    every hook of a plugin whose format hook fails, which would hide the transports under test.
    """

    bridge_transports = staticmethod(hl7v2_plugin.bridge_transports)
    bridge_commands = staticmethod(hl7v2_plugin.bridge_commands)


def hl7v2_under_test() -> object:
    try:
        import bridge.plugins.hl7v2.codec  # noqa: F401
    except ImportError:
        return _TransportsOnly()
    return hl7v2_plugin


def mllp_plugins():
    return plugin_manager(("hl7v2", hl7v2_under_test()), ("test-format", TestFormatPlugin()))


def channel(source: str = "mllp://127.0.0.1:0", *, options: Mapping[str, Any] | None = None,
            max_bytes: int | None = None, to: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"source": source, "format": TEST_FORMAT, "options": dict(options or {})}
    if max_bytes is not None:
        body["max_message_bytes"] = max_bytes
    if to is not None:
        body["routes"] = [{"to": [to]}]
    return body


@contextlib.contextmanager
def listening(make_engine: Callable[..., Engine], config: Mapping[str, Any]) -> Iterator[tuple[Engine, Any]]:
    """Build an engine, start only its sources (tests drive workers with ``engine.drain()``)."""
    engine = make_engine(dict(config), mllp_plugins())
    engine.open_destinations()
    engine.open_sources()
    for source in engine.sources:
        source.start()
    try:
        yield engine, engine.sources[0]
    finally:
        for source in engine.sources:
            source.stop()
        for destination in engine.destinations.values():
            destination.close()


# --- a raw client --------------------------------------------------------------------------------


class RawClient:
    """A blocking MLLP client written independently of the product, for checking the listener."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, sock: socket.socket | None = None):
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.pending = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes:
        while EB not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before a complete frame")
            self.pending += chunk
        frame, self.pending = self.pending.split(EB, 1)
        assert frame.startswith(SB), f"frame does not start with 0x0B: {frame[:10]!r}"
        return frame[1:]

    def ack(self) -> tuple[str, str, str]:
        return ack_code_of(self.read_frame())

    def send(self, payload: bytes) -> tuple[str, str, str]:
        self.send_raw(mllp(payload))
        return self.ack()

    def closed_by_peer(self, wait: float = 5.0) -> bool:
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


# --- a scripted peer (the far end of a sender) ------------------------------------------------------


class ScriptedPeer:
    """A TCP server on 127.0.0.1 answering each received frame by a script of ACK codes.

    Each script entry is an ACK code (``"AA"``, ``"AE"``, ``"AR"``…), ``"silent"`` (never answer,
    keep the connection), ``"late:2.5"`` (an AA after 2.5 s), ``"close"`` (close the connection without answering), ``"stale"`` (an AA
    for another control id) or ``"garbage"`` (a frame that is no ACK). After the script
    runs out every message gets ``AA``. ``received`` keeps every frame, ``connections`` counts accepts.
    """

    def __init__(self, script: Sequence[str] = ()):
        self.script = list(script)
        self.received: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _next_action(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else "AA"

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            while EB in pending:
                frame, pending = pending.split(EB, 1)
                payload = frame[frame.index(SB) + 1:]
                self.received.append(payload)
                action = self._next_action()
                if action == "close":
                    conn.close()
                    return
                if action == "stale":
                    other = payload.replace(b"|P|2.5", b"X|P|2.5", 1)
                    conn.sendall(mllp(make_ack(other, "AA").encode()))
                elif action == "garbage":
                    conn.sendall(mllp(b"this is not an acknowledgement"))
                elif action.startswith("late:"):  # an AA after that many seconds (a slow receiver)
                    time.sleep(float(action.split(":", 1)[1]))
                    conn.sendall(mllp(make_ack(payload, "AA", "late AA").encode()))
                elif action != "silent":
                    conn.sendall(mllp(make_ack(payload, action, f"scripted {action}").encode()))

    def drop_connections(self) -> None:
        """Close every open connection, as a peer restarting or timing out idle clients would."""
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
            self._open.clear()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.close()


# --- certificates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from another CA
    rogue_key: Path


def make_pki(folder: Path) -> PKI:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost, and client certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    def authority(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cert, key

    def leaf(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], usage, sans=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer[0].subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer[1], hashes.SHA256()), key

    ca = authority("Bridge Test CA")
    rogue_ca = authority("Rogue Test CA")
    ca_path, _ = write("ca", *ca)
    server = leaf("localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH,
                  [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server_cert, server_key = write("server", *server)
    client_cert, client_key = write("client", *leaf("clinic-sender", ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    rogue_cert, rogue_key = write("rogue", *leaf("rogue-sender", rogue_ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    return PKI(ca_path, server_cert, server_key, client_cert, client_key, rogue_cert, rogue_key)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()

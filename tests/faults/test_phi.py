"""PHI canary on every path of issue 16: no log line and no stderr byte may carry the fake patient.

tests/ops/test_no_phi_in_logs.py sends fake PHI through every intake, delivery failure, hold and
CLI path in one process. This adds the paths issue 16 found or its fault suite opens:

- a real ``bridge run`` process (its whole stderr, at DEBUG): MLLP frames that decode and that do not,
  a sender resetting mid-frame, an MLLP sender pointed at the admin web (cheroot's own server log),
  raw garbage and early resets at the admin web, the NCPDP callback and FHIR inbound, and an NCPDP
  document whose invalid value is the patient's surname;
- crashing handlers in process: a decoder that raises an unexpected exception quoting the patient,
  behind a real MLLP listener, and an admin API view that does the same behind the real server;
- fuzzer-style errors: every truncation and byte flip of canary HL7v2, FHIR and SCRIPT messages, whose
  DecodeErrors (and their printed chains) and log lines must not quote the patient.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from bridge import DecodeError, FormatSpec, hookimpl
from bridge.plugins.fhir import codec as fhir
from bridge.plugins.hl7v2 import codec as hl7v2
from bridge.plugins.ncpdp.decode import decode as ncpdp_decode
from bridge.testing import engine_from_dict, plugin_manager
from bridge.testing.phi import FAKE_PHI, phi_in_exception, phi_in_text
from bridge.web import create_app
from bridge.web.auth import new_token, token_digest
from bridge.web.server import start_admin_server

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
P = FAKE_PHI
BIRTH = P.birth_date.replace("-", "")
PHONE = "".join(c for c in P.phone if c.isdigit())


def adt(control: str, event: str = "ADT^A04^ADT_A01") -> str:
    return (f"MSH|^~\\&|TELEAPP|CLINIC|BRIDGE|HOSP|20260301100000||{event}|{control}|P|2.5.1\r"
            "EVN|A04|20260301100000\r"
            f"PID|1||{P.mrn}^^^HOSP^MR||{P.family}^{P.given}||{BIRTH}|F|||{P.street}^^Portland^OR^97201"
            f"||{P.phone}\r"
            f"PV1|1|O|TELE^^^CLINIC||||1234567893^Okafor^Lena|||||||||||V-{control}\r")


def script() -> bytes:
    text = (FIXTURES / "ncpdp" / "rxfill.xml").read_text(encoding="utf-8")
    for old, new in (("Quill<", f"{P.family}<"), ("Rowan", P.given), ("1988-11-23", P.birth_date),
                     ("12 Lantern Way", P.street), ("2175550143", PHONE)):
        assert old in text
        text = text.replace(old, new)
    return text.encode()


def fhir_patient() -> bytes:
    return json.dumps({"resourceType": "Patient", "id": "p1", "name": [{"family": P.family, "given": [P.given]}],
                       "birthDate": P.birth_date, "telecom": [{"system": "phone", "value": P.phone}],
                       "address": [{"line": [P.street]}], "identifier": [{"value": P.mrn}]}).encode()


def leaks(text: str) -> list[str]:
    return [line for line in text.splitlines() if phi_in_text(line)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send_raw(port: int, data: bytes, *, reset: bool = False, read: bool = True) -> bytes:
    """Send bytes; read the answer until the peer closes or 2 s pass, or reset (RST) at once."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sendall(data)
        if reset or not read:
            return b""
        conn.settimeout(2)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
                if answer.endswith(b"\x1c\r"):
                    break
        except (TimeoutError, ConnectionError):
            pass
        return answer


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except OSError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, f"{url} did not come up"
            time.sleep(0.1)


@pytest.mark.slow
def test_a_bridge_run_process_never_writes_the_patient_to_stderr(tmp_path):
    ports = {name: free_port() for name in ("mllp", "ncpdp", "fhir", "web")}
    (tmp_path / "bridge.yaml").write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          mllp-in: {{source: "mllp://127.0.0.1:{ports['mllp']}", format: hl7v2, routes: [{{to: [files]}}]}}
          pharmacy: {{source: "ncpdp+http://127.0.0.1:{ports['ncpdp']}/script", format: ncpdp,
                     options: {{username: switch, password_env: TB_TEST_SWITCH_PASSWORD}}}}
          fhir-in: {{source: "fhir+http://127.0.0.1:{ports['fhir']}/fhir/r4", format: fhir,
                    options: {{allow_unauthenticated: true}}}}
        destinations:
          files: {{url: "file://outbox", format: fhir}}
        web: {{listen: "127.0.0.1:{ports['web']}"}}
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BRIDGE_LOG_LEVEL": "debug", "TB_TEST_SWITCH_PASSWORD": "pw-123456"}
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", "bridge.yaml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(f"http://127.0.0.1:{ports['web']}/healthz?probe=1", engine)
        for name in ("mllp", "ncpdp", "fhir"):
            wait_listening(ports[name], engine)
        frame = lambda text: b"\x0b" + text.encode() + b"\x1c\r"  # noqa: E731
        # MLLP: one that decodes, one of a type no decoder reads, one cut off by a reset mid-frame
        assert b"MSA|AA" in send_raw(ports["mllp"], frame(adt("PHI-1")))
        send_raw(ports["mllp"], frame(adt("PHI-2", "ZZZ^Q99")))
        send_raw(ports["mllp"], frame(adt("PHI-3"))[:-20], reset=True)
        # an MLLP sender pointed at the admin web, garbage and early resets there (cheroot's own log)
        send_raw(ports["web"], frame(adt("PHI-4")))
        send_raw(ports["web"], f"GET /{P.family} HTTP/1.1\r\nHost: {P.street}\r\nX: {P.given}\r\n\r\n".encode())
        send_raw(ports["web"], f"{P.family} {P.street}\r\n\r\n".encode())
        send_raw(ports["web"], f"POST /login HTTP/1.1\r\nContent-Length: 99\r\n\r\nu={P.family}".encode(), reset=True)
        # NCPDP: an invalid Gender that is the surname (refused naming the field), and an early reset
        auth = "Basic " + base64.b64encode(b"switch:pw-123456").decode()
        bad = script().replace(b"<Gender>F</Gender>", f"<Gender>{P.family}</Gender>".encode())
        answer = requests.post(f"http://127.0.0.1:{ports['ncpdp']}/script", data=bad, timeout=10,
                               headers={"Authorization": auth, "Content-Type": "application/xml"})
        assert answer.status_code == 400 and P.family.encode() not in answer.content
        head = f"POST /script HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {len(bad)}\r\n\r\n"
        send_raw(ports["ncpdp"], head.encode() + bad, reset=True)
        # FHIR inbound: a broken document quoting the patient, and an early reset
        broken = fhir_patient()[:-30]
        requests.post(f"http://127.0.0.1:{ports['fhir']}/fhir/r4", data=broken, timeout=10,
                      headers={"Content-Type": "application/fhir+json"})
        head = f"POST /fhir/r4 HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 900\r\n\r\n"
        send_raw(ports["fhir"], head.encode() + fhir_patient(), reset=True)
        time.sleep(1.5)  # the engine decodes, delivers and logs what it received
    finally:
        engine.send_signal(signal.SIGTERM)
        out, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err[-3000:]
    assert "mllp-in" in err and "admin web" in err and len(err.splitlines()) > 10  # the paths did log
    assert leaks(out + err) == [], "\n".join(leaks(out + err))
    assert "Traceback" not in err, err[-4000:]


class Crashing:
    """A format whose decoder fails with an unexpected exception quoting the patient: a plugin's bug."""

    @hookimpl
    def bridge_formats(self):
        def decode(raw, options):
            raise RuntimeError(f"cannot handle {P.family}^{P.given} born {BIRTH}")

        return [FormatSpec(name="crashy", media_type="text/plain", decode=decode,
                           encode=lambda records, options: b"", detect=lambda raw: False)]


def test_crashing_handlers_never_log_the_patient(tmp_path, caplog, capfd, monkeypatch):
    caplog.set_level(logging.DEBUG)
    config = {"store": "sqlite:///var/bridge.db", "engine": {"poll_seconds": 0.02},
              "channels": {"crash-in": {"source": "mllp://127.0.0.1:0", "format": "crashy",
                                        "routes": [{"to": ["files"]}]}},
              "destinations": {"files": {"url": "file://outbox", "format": "bridge"}}}
    plugins = plugin_manager(("crashing", Crashing()))
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.start()
    token = new_token()
    engine.store.create_token("phi-admin", token_digest(token), "admin", actor="test")
    server, thread = start_admin_server(create_app(engine.config, plugins, engine.store, engine=engine),
                                        "127.0.0.1", 0)
    try:
        port = engine.sources[0].port
        send_raw(port, b"\x0b" + adt("CRASH-1").encode() + b"\x1c\r")
        deadline = time.monotonic() + 15
        while not engine.store.search(status="failed") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.store.search(status="failed"), "the crashing decoder's message was not recorded as failed"
        # an admin API view that crashes quoting the patient, behind the real cheroot server
        import bridge.web.present as present

        def crash(*args, **kwargs):
            raise ValueError(f"cannot present {P.family}, {P.street}, {P.phone}")

        monkeypatch.setattr(present, "message_summary", crash)
        answer = requests.get(f"http://127.0.0.1:{server.server_port}/api/v1/messages", timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 500 and not phi_in_text(answer.text)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        engine.stop()
    printed = capfd.readouterr()
    lines = [logging.Formatter("%(name)s %(levelname)s %(message)s").format(r) for r in caplog.records]
    assert any("ValueError" in line for line in lines) and any("RuntimeError" in line for line in lines)
    assert leaks("\n".join(lines)) == [], "\n".join(leaks("\n".join(lines)))
    assert leaks(printed.out + printed.err) == [] and "Traceback" not in printed.err, printed.err[-3000:]


def mutations(data: bytes, step: int) -> list[bytes]:
    """Fuzzer-style variants: every ``step``-th truncation, and a byte flipped or deleted at those places."""
    found = []
    for at in range(1, len(data), step):
        found += [data[:at], data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:], data[:at] + data[at + 1:]]
    return found


@pytest.mark.parametrize(("name", "decode", "data", "step"), [
    ("hl7v2", lambda raw: hl7v2.decode(raw), adt("FUZZ-1").encode(), 3),
    ("fhir", lambda raw: fhir.decode(raw), fhir_patient(), 3),
    ("ncpdp", lambda raw: ncpdp_decode(raw), script(), 29),
], ids=lambda v: v if isinstance(v, str) else "")
def test_decode_errors_of_mutated_canary_messages_never_quote_the_patient(name, decode, data, step, caplog):
    caplog.set_level(logging.DEBUG)
    refused, quoting = 0, []
    for variant in mutations(data, step):
        try:
            decode(variant)
        except DecodeError as exc:
            refused += 1
            if phi_in_exception(exc):
                quoting.append(f"{phi_in_exception(exc)}: {str(exc)[:200]}")
    assert refused > 10, f"{name}: only {refused} variants were refused: the mutations did not reach the errors"
    assert quoting == [], "\n".join(quoting[:10])
    lines = [record.getMessage() for record in caplog.records]
    assert leaks("\n".join(lines)) == [], "\n".join(leaks("\n".join(lines))[:10])


def test_the_access_log_names_no_path_outside_the_apps_routes(tmp_path, caplog):
    """PHI canary finding: a misdirected client's ``GET /<surname>`` reached the access log verbatim
    (scrubbing recognises payload shapes, not a bare name). Unknown paths are now ``(no such page)``; a
    route that answered 404 is logged as its rule; known routes as requested."""
    caplog.set_level(logging.INFO, logger="bridge.web.access")
    engine = engine_from_dict({"store": "sqlite:///var/bridge.db"}, tmp_path, plugin_manager())
    server, thread = start_admin_server(create_app(engine.config, plugin_manager(), engine.store), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for path in (f"/{P.family}", f"/static/{P.given}.css", f"/api/v1/messages/{P.family}", "/healthz",
                     "/api/v1/messages/424242"):
            requests.get(base + path, timeout=10, allow_redirects=False)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        engine.store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.web.access"]
    assert not leaks("\n".join(lines)), lines
    assert any(line.startswith('"GET (no such page)"') for line in lines), lines
    assert any(line.startswith('"GET /healthz" 200') for line in lines), lines
    assert any('"GET /api/v1/messages/' in line for line in lines), lines

"""No PHI in application logs: fake PHI goes through every path, and no log line may carry any of it.

One distinctive fake patient (name, birth date, MRN, phone, street) is sent through file intake, MLLP
intake (hl7v2), FHIR inbound, the NCPDP callback and a FHIR sync job; through decode and encode
failures; through transient, unexpected and permanent delivery failures whose peers echo the payload
in their errors; through a policy hold, its release, a replay and the CLI. Every log record of the
process (root logger at DEBUG, tracebacks included) is checked for every seeded value.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import textwrap
import time
from pathlib import Path

import pytest
import requests

from bridge import (
    EncodeError,
    FormatSpec,
    PermanentDeliveryError,
    TransientDeliveryError,
    TransportSpec,
    hookimpl,
)
from bridge.cli import main
from bridge.core import redaction
from bridge.testing import engine_from_dict, plugin_manager
from bridge.testing.fakes import FakeFhirServer, FakeMllpPeer

FAMILY, GIVEN, MRN = "Quillfeather", "Zebulon", "Q7782154"
SEEDED = (FAMILY, GIVEN, MRN, "19610412", "1961-04-12", "867-5309", "8675309", "Evergreen")
ADT = ("MSH|^~\\&|TELEAPP|CLINIC|BRIDGE|HOSP|20260301100000||ADT^A04^ADT_A01|CTL-PHI-{n}|P|2.5.1\r"
       "EVN|A04|20260301100000\r"
       f"PID|1||{MRN}^^^HOSP^MR||{FAMILY}^{GIVEN}||19610412|M|||742 Evergreen Terrace^^Springfield^IL^62704"
       "||(555)867-5309\r"
       "PV1|1|O|TELE^^^CLINIC||||1234567893^Okafor^Lena|||||||||||V-PHI-{n}\r")
AUTH = ("switch-user", "s3cret-for-tests")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ncpdp"


def patient(**extra) -> dict:
    mrn = {"value": MRN, "type": "MR", "system": "urn:oid:2.16.840.1.113883.3.9999.1"}
    return {"kind": "Patient", "identifiers": [mrn],
            "name": {"family": FAMILY, "given": [GIVEN]}, "birth_date": "1961-04-12", "gender": "male",
            "addresses": [{"lines": ["742 Evergreen Terrace"], "city": "Springfield", "state": "IL"}],
            "telecom": [{"system": "phone", "value": "(555) 867-5309"}], **extra}


def bridge_doc(*records: dict) -> bytes:
    return json.dumps({"schema": "telemed-bridge/1", "records": list(records)}).encode()


def visit(n: int) -> bytes:
    return bridge_doc({"kind": "Encounter", "id": f"ENC-PHI-{n}", "status": "finished", "modality": "video",
                       "identifiers": [{"value": f"V-PHI-{n}", "system": "urn:oid:2.16.840.1.113883.3.9999.2"}],
                       "patient": patient()})


def prescription() -> bytes:  # no patient location, no prescriber DEA: the telehealth gate holds it
    return bridge_doc({"kind": "Prescription", "prescriber_order_number": "RX-PHI-1", "patient": patient(),
                       "medication": {"description": "Oxycodone 5 mg tablet", "dea_schedule": "CII"},
                       "quantity": {"value": 20, "unit": "tablet"}})


class Leaky:
    """A format whose encoder quotes the patient in its error, and a transport whose peer echoes the
    payload in every error: the worst a plugin or a peer can do."""

    attempts: dict[int, int] = {}

    @hookimpl
    def bridge_formats(self):
        def encode(records, options):
            person = getattr(records[0], "patient", None) or records[0]
            raise EncodeError(f"cannot encode {person.name.family}, born {person.birth_date}")

        return [FormatSpec(name="leaky", media_type="text/plain", decode=lambda raw, opts: [], encode=encode)]

    @hookimpl
    def bridge_transports(self):
        owner = self

        class Echo:
            def __init__(self, ctx):
                pass

            def send(self, delivery):
                n = owner.attempts[delivery.outbox_id] = owner.attempts.get(delivery.outbox_id, 0) + 1
                text = delivery.payload.decode("utf-8", "replace")
                if n == 1:
                    raise TransientDeliveryError(f"peer busy, your message was {text}")
                if n == 2:
                    raise RuntimeError(f"peer crashed on {text}")
                raise PermanentDeliveryError(f"peer refused {text}", detail=text)

            def close(self):
                pass

        return [TransportSpec(scheme="echo", destination=Echo)]


def log_lines(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(r) for r in records]


def leaks(lines: list[str]) -> list[str]:
    return [line for line in lines if any(value.lower() in line.lower() for value in SEEDED)]


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the engine"
        time.sleep(0.05)


def mllp_send(port: int, message: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"\x0b" + message.encode() + b"\x1c\r")
        answer = b""
        while not answer.endswith(b"\x1c\r"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def script_with_phi() -> bytes:
    text = (FIXTURES / "rxfill.xml").read_text(encoding="utf-8")
    for old, new in (("MRN-000417", MRN), ("Quill<", f"{FAMILY}<"), ("Rowan", GIVEN), ("1988-11-23", "1961-04-12"),
                     ("12 Lantern Way", "742 Evergreen Terrace"), ("2175550143", "5558675309")):
        assert old in text
        text = text.replace(old, new)
    return text.encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def peers():
    echo = f"AE: could not file PID|1||{MRN}||{FAMILY}^{GIVEN}||19610412"
    with FakeFhirServer(validate=False) as fhir, FakeMllpPeer(answers=["AE", "AR"], text=echo) as mllp:
        yield fhir, mllp


def test_the_checker_finds_a_seeded_value():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "patient %s", (FAMILY.upper(),), None)
    assert leaks(log_lines([record])) and not leaks(log_lines([logging.LogRecord(
        "x", logging.INFO, __file__, 1, "message %s held", (7,), None)]))


def test_fake_phi_through_every_path_never_reaches_a_log_line(tmp_path, peers, caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    fhir, mllp = peers
    monkeypatch.setenv("TB_TEST_SWITCH_PASSWORD", AUTH[1])
    echo_body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                 "diagnostics": f"bad Patient {FAMILY} {GIVEN} {MRN} born 1961-04-12 phone 555-867-5309"}]}
    writes = lambda request: request.method != "GET"  # noqa: E731
    fhir.inject(status=500, body=echo_body, when=writes)  # transient, echoing
    fhir.inject(status=422, body=echo_body, when=writes)  # permanent, echoing
    plugins = plugin_manager(("leaky", Leaky()))
    fhir_base = "fhir+" + fhir.base
    config = {
        "store": "sqlite:///var/bridge.db",
        "engine": {"workers": 2, "deliverers": 2, "poll_seconds": 0.02},
        "channels": {
            "files": {"source": "file://inbox", "format": "bridge", "options": {"poll_seconds": 0.05},
                      "order": {"by": "none"},
                      "routes": [{"when": {"record": "Encounter"}, "to": ["ehr-fhir", "ehr-mllp", "echo"]},
                                 {"when": {"record": "Prescription"}, "to": ["echo"]}]},
            "mllp-in": {"source": "mllp://127.0.0.1:0", "format": "hl7v2", "routes": [{"to": ["echo"]}]},
            "fhir-in": {"source": "fhir+http://127.0.0.1:0/fhir/r4", "format": "fhir", "routes": [{"to": ["badenc"]}],
                        "options": {"allow_unauthenticated": True}},
            "pharmacy": {"source": f"ncpdp+http://127.0.0.1:{free_port()}/script", "format": "ncpdp",
                         "options": {"username": AUTH[0], "password_env": "TB_TEST_SWITCH_PASSWORD"}},
            "synced": {"source": "file://inbox-synced", "format": "fhir"},
        },
        "destinations": {
            "ehr-fhir": {"url": fhir_base, "format": "fhir", "retry": {"max_attempts": 3, "initial_seconds": 0.01}},
            "ehr-mllp": {"url": mllp.url, "format": "hl7v2", "retry": {"max_attempts": 3, "initial_seconds": 0.01}},
            "echo": {"url": "echo://peer", "format": "bridge", "retry": {"max_attempts": 3, "initial_seconds": 0.01}},
            "badenc": {"url": "file://outbox-bad", "format": "leaky"},
        },
        "jobs": {"sync": {"type": "fhir-poll", "trigger": {"cron": "0 0 1 1 *"}, "channel": "synced",
                          "retry": {"max_attempts": 2, "backoff_seconds": 0.01},
                          "settings": {"base": fhir_base, "resource_type": "Patient", "timeout": 5}}},
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    (tmp_path / "inbox").mkdir()
    engine.start()
    try:
        sources = {s.ctx.channel: s for s in engine.sources}
        # file intake: a visit (fans out to every destination), a held prescription, a file that cannot be read
        (tmp_path / "inbox" / "visit.json").write_bytes(visit(1))
        (tmp_path / "inbox" / "rx.json").write_bytes(prescription())
        (tmp_path / "inbox" / "broken.json").write_bytes(visit(2)[:-40] + f" {FAMILY} 1961-04-12".encode())
        # MLLP intake: a good ADT and one the decoder refuses
        assert b"MSA|AA" in mllp_send(sources["mllp-in"].port, ADT.format(n=1))
        unknown_type = f"MSH|^~\\&|A|B|C|D|2026||ZZZ^Q99|X9|P|2.5.1\rPID|1||{MRN}||{FAMILY}^{GIVEN}\r"
        mllp_send(sources["mllp-in"].port, unknown_type)
        # FHIR inbound: a good Patient and a malformed one quoting the patient
        url = f"http://127.0.0.1:{sources['fhir-in'].port}/fhir/r4"
        good = {"resourceType": "Patient", "id": "p1", "name": [{"family": FAMILY, "given": [GIVEN]}],
                "birthDate": "1961-04-12", "identifier": [{"value": MRN}], "telecom": [{"value": "555-867-5309"}]}
        assert requests.post(url, json=good, timeout=5).status_code == 202
        bad = dict(good, resourceType="Patiant", birthDate=f"{FAMILY}-1961-04-12")
        assert requests.post(url, json=bad, timeout=5).status_code >= 400
        requests.post(url, data=f'{{"resourceType": "Patient", "name": "{FAMILY}"'.encode(), timeout=5,
                      headers={"Content-Type": "application/fhir+json"})
        # NCPDP callback: an RxFill for the fake patient, and an invalid one
        callback = f"http://127.0.0.1:{sources['pharmacy'].port}/script"
        assert requests.post(callback, data=script_with_phi(), auth=AUTH, timeout=5).status_code == 200
        requests.post(callback, data=script_with_phi().replace(b"<Message", b"<Mess age", 1), auth=AUTH, timeout=5)
        # a sync job pulling the fake patient (first attempt fails with a peer echoing PHI)
        fhir.seed({"resourceType": "Patient", "id": "synced-1", "name": [{"family": FAMILY, "given": [GIVEN]}],
                   "birthDate": "1961-04-12"}, "2026-03-01T10:00:00+00:00")
        fhir.inject(status=503, body=echo_body, when=lambda r: r.method == "GET")
        from bridge.core.scheduler import run_now

        run = run_now(engine.store, engine.config, plugins, "sync")
        assert run["status"] == "failed" and FAMILY not in json.dumps(run)
        second = run_now(engine.store, engine.config, plugins, "sync")
        assert second["status"] == "succeeded", second["detail"]

        store = engine.store
        wait_until(lambda: len(store.search(limit=100)) >= 10 and not store.search(status="received")
                   and not store.search(status="processing") and not store.outbox_rows(status="pending"))
        statuses = {m.status for m in store.search(limit=100)}
        assert {"failed", "held", "dead", "filtered"} <= statuses, statuses
        dead = store.outbox_rows(status="dead", limit=100)
        assert {r.attempts for r in dead if r.destination == "echo"} == {3}  # transient, crash, permanent
        assert [r.attempts for r in dead if r.destination in ("ehr-fhir", "ehr-mllp")] == [2, 2]  # 500/AE, 422/AR
        # the encoder's refusal (quoting the patient) is the destination's dead letter, kept in the store only
        assert any("cannot encode" in (r.last_error or "") and r.attempts == 0 for r in dead
                   if r.destination == "badenc"), [(r.destination, r.last_error) for r in dead]
        assert store.search(channel="fhir-in", status="dead")
        held = store.holds()[0].message_id
    finally:
        engine.stop()

    # the CLI on the same store: search, show, holds, release, replay, jobs, prune, audit
    cli_config = tmp_path / "cli.yaml"
    cli_config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          files: {{source: "file://inbox", format: bridge, routes: [{{to: [out]}}],
                  retention: {{days: 0, statuses: [delivered, failed, dead]}}}}
        destinations:
          out: {{url: "file://outbox", format: bridge}}
        jobs:
          sync: {{type: fhir-poll, trigger: {{interval_seconds: 60}}, channel: files,
                  settings: {{base: "{fhir_base}", resource_type: Patient, timeout: 5}}}}
    """))
    c = ["-c", str(cli_config)]
    first = min(m.id for m in engine_from_dict(config, tmp_path, plugins).store.search(channel="files"))
    for argv in (["messages", "--key", f"patient_id={MRN}"], ["show", str(first)], ["show", str(held), "--json"],
                 ["holds"], ["release", str(held), "--reason", f"checked with {FAMILY}"],
                 ["replay", str(first), "--reason", "resend"], ["jobs"], ["jobs", "run", "sync"],
                 ["prune", "--dry-run"], ["audit", "verify"]):
        main([*argv, *c])
    capsys.readouterr()

    # a library that logs a payload or raises with one: the redaction catches what looks like payload
    logging.getLogger("thirdparty.client").debug("sent %s", ADT.format(n=3))
    logging.getLogger("thirdparty.client").debug("answer %s", json.dumps({"name": [{"family": FAMILY}]}))
    try:
        raise ValueError(f"cannot parse {FAMILY}^{GIVEN}")
    except ValueError:
        logging.getLogger("thirdparty.client").exception("parse failed")

    lines = log_lines(caplog.records)
    assert len(lines) > 20 and any("job sync" in line for line in lines)  # the paths did log
    assert redaction.installed()
    assert leaks(lines) == [], "\n".join(leaks(lines))


def _reset_early(port: int, request: bytes) -> None:
    """A client that sends a request and resets the connection (RST, not FIN) before reading the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sendall(request)


def test_fake_phi_in_refused_input_and_early_resets_never_reaches_a_log_line_or_stderr(
        tmp_path, caplog, capfd, monkeypatch):
    """Issue 16 defect 5: the SCRIPT validator quoted a Gender value (a surname) in its reason, which reached
    a log line, and a client resetting early made socketserver print a chained traceback quoting it."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TB_TEST_SWITCH_PASSWORD", AUTH[1])
    config = {"store": "sqlite:///var/bridge.db", "engine": {"poll_seconds": 0.02},
              "channels": {
                  "pharmacy": {"source": "ncpdp+http://127.0.0.1:0/script", "format": "ncpdp",
                               "options": {"username": AUTH[0], "password_env": "TB_TEST_SWITCH_PASSWORD"}},
                  "fhir-in": {"source": "fhir+http://127.0.0.1:0/fhir/r4", "format": "fhir",
                              "options": {"allow_unauthenticated": True}}}}
    engine = engine_from_dict(config, tmp_path, plugin_manager())
    engine.start()
    try:
        sources = {s.ctx.channel: s for s in engine.sources}
        callback_port, fhir_port = sources["pharmacy"].port, sources["fhir-in"].port
        bad_gender = script_with_phi().replace(b"<Gender>F</Gender>", f"<Gender>{FAMILY}</Gender>".encode())
        answer = requests.post(f"http://127.0.0.1:{callback_port}/script", data=bad_gender, auth=AUTH, timeout=5)
        assert answer.status_code == 400 and b"Gender" in answer.content  # refused, saying which field
        assert FAMILY.encode() not in answer.content  # without quoting the value
        credentials = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
        for _ in range(3):
            _reset_early(callback_port, (f"POST /script HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\n"
                                         f"Content-Length: {len(bad_gender)}\r\n\r\n").encode() + bad_gender)
            patient = json.dumps({"resourceType": "Patient", "name": [{"family": FAMILY}], "gender": FAMILY}).encode()
            _reset_early(fhir_port, (f"POST /fhir/r4 HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                                     f"Content-Length: {len(patient)}\r\n\r\n").encode() + patient)
        wait_until(lambda: len(engine.store.search(limit=100)) >= 7)
        time.sleep(0.3)  # the servers' threads finish writing to the reset sockets
    finally:
        engine.stop()
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err and leaks([printed.out, printed.err]) == [], printed.err[-3000:]
    lines = log_lines(caplog.records)
    assert any("refused invalid SCRIPT input" in line for line in lines)  # the path did log
    assert leaks(lines) == [], "\n".join(leaks(lines))

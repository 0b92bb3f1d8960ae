"""Issue 12, done when: destinations are independent. The issue's example with real processes on loopback:
an HL7v2 ADT^A04 whose times carry no offset arrives over MLLP (`bridge send`) at a channel that has no
time zone; `bridge run` routes it to a FHIR file destination, which refuses a time without a zone, and to
a canonical-JSON archive, which takes it. The archive gets the file; the FHIR row is a dead letter with the
reason; `bridge show` and the admin API say which destination failed. Once the channel's time zone is
configured and the engine restarted, `bridge replay ID --destination ehr-fhir` delivers the Bundle, with
the sender's offset, and resolves the dead letter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from tests.e2e.support import api_call, bridge_cli, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ADT = ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7"


def write_config(path: Path, mllp: int, web: int, timezone: str | None) -> None:
    zone = f"timezone: {timezone}" if timezone else "# no timezone: the sender's times carry no offset"
    path.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          adt-in:
            source: mllp://127.0.0.1:{mllp}
            format: hl7v2
            {zone}
            routes: [{{when: {{record: Encounter}}, to: [ehr-fhir, archive]}}]
        destinations:
          ehr-fhir: {{url: "file://to-fhir", format: fhir}}
          archive: {{url: "file://to-archive", format: bridge}}
        engine: {{poll_seconds: 0.05}}
        web: {{listen: "127.0.0.1:{web}"}}
    """))


def start_engine(config: Path, cwd: Path, env: dict[str, str], web: int) -> subprocess.Popen:
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{web}/readyz", timeout=1).status == 200)
    return engine


def stop_engine(engine: subprocess.Popen) -> None:
    engine.terminate()
    _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    assert "Traceback" not in err


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if not p.name.startswith(".")) if folder.exists() else []


def test_a_fhir_destination_refusing_a_time_fails_alone_and_its_replay_resolves_it(tmp_path):
    mllp, web = free_port(), free_port()
    config = tmp_path / "bridge.yaml"
    write_config(config, mllp, web, timezone=None)
    (tmp_path / "adt.hl7").write_bytes(ADT.read_bytes().replace(b"-0600", b""))  # local times, no offsets
    env = {**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"}
    c = ["-c", str(config)]
    token = "tbk_" + bridge_cli("token", "create", *c, "--role", "analyst", "--name", "analyst-1", cwd=tmp_path,
                                env=env).stdout.split("tbk_", 1)[1].split()[0]
    base = f"http://127.0.0.1:{web}"

    engine = start_engine(config, tmp_path, env, web)
    try:
        sent = bridge_cli("send", "--to", f"mllp://127.0.0.1:{mllp}", str(tmp_path / "adt.hl7"), cwd=tmp_path, env=env)
        assert "AA" in sent.stdout
        (archived,) = wait_for(lambda: files(tmp_path / "to-archive"))
        message = wait_for(lambda: [m for m in api_call(base, token, "/messages?status=dead")["items"]])[0]
        detail = api_call(base, token, f"/messages/{message['id']}")
        dead_letters = api_call(base, token, "/dead-letters")["items"]
    finally:
        stop_engine(engine)
    message_id = message["id"]
    assert json.loads(archived.read_text())["records"][0]["kind"] == "Encounter"  # the archive got it
    assert files(tmp_path / "to-fhir") == []  # FHIR got nothing: its encoder refused the naive time
    outcomes = detail["destinations"]
    assert outcomes["archive"]["status"] == "delivered"
    assert outcomes["ehr-fhir"]["status"] == "dead" and outcomes["ehr-fhir"]["failed_at"] == "encode"
    assert "no time zone" in outcomes["ehr-fhir"]["error"] and "timezone" in outcomes["ehr-fhir"]["error"]
    assert [(d["destination"], d["failed_at"]) for d in dead_letters] == [("ehr-fhir", "encode")]

    shown = bridge_cli("show", str(message_id), *c, cwd=tmp_path, env=env).stdout
    assert "status dead" in shown.splitlines()[0]
    assert "destinations: ehr-fhir dead (encode), archive delivered" in shown
    fhir_line = next(line for line in shown.splitlines() if "-> ehr-fhir" in line)
    assert "failed at: encode" in fhir_line and "no time zone" in fhir_line

    # fix the cause (the sender's zone), restart, and replay the dead letter to its destination only
    write_config(config, mllp, web, timezone="America/Chicago")
    engine = start_engine(config, tmp_path, env, web)
    try:
        replayed = bridge_cli("replay", str(message_id), "--destination", "ehr-fhir", "--reason",
                              "channel time zone configured", *c, cwd=tmp_path, env=env)
        assert f"message {message_id} replayed as message" in replayed.stdout
        (bundle,) = wait_for(lambda: files(tmp_path / "to-fhir"))
        settled = wait_for(lambda: (lambda d: d if d["message"]["status"] == "resolved" else None)(
            api_call(base, token, f"/messages/{message_id}")))
        remaining = api_call(base, token, "/dead-letters")["items"]
    finally:
        stop_engine(engine)
    periods = [e["resource"]["period"] for e in json.loads(bundle.read_text())["entry"]
               if e["resource"]["resourceType"] == "Encounter"]
    assert periods == [{"start": "2026-11-27T09:00:00-06:00", "end": "2026-11-27T09:25:00-06:00"}]
    assert len(files(tmp_path / "to-archive")) == 1  # the replay went to ehr-fhir only
    assert settled["destinations"]["ehr-fhir"]["status"] == "resolved"
    assert settled["destinations"]["ehr-fhir"]["resolved_by_message"] > message_id
    assert remaining == []
    assert "destinations: ehr-fhir resolved (encode), archive delivered" in bridge_cli(
        "show", str(message_id), *c, cwd=tmp_path, env=env).stdout

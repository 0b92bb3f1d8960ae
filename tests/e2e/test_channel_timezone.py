"""Issue 11 §3, done when: a Chicago sender's January and July visits come out of FHIR with -06:00
and -05:00.

`bridge run` (a real process) listens on MLLP for a channel with ``timezone: America/Chicago``; two
ADT^A04 messages whose visit times carry no offset are sent with `bridge send` (another process);
the FHIR destination writes transaction Bundles as files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.e2e.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ADT = ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7"


def local_adt(start: str, end: str, control: str) -> bytes:
    raw = ADT.read_bytes().replace(b"TV20261127-0001", control.encode())
    return raw.replace(b"20261127090000-0600|20261127092500-0600", f"{start}|{end}".encode())


def encounter_periods(outbox: Path) -> list[dict[str, str]]:
    periods = []
    for path in outbox.glob("*.json"):
        bundle = json.loads(path.read_text())
        periods += [e["resource"]["period"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"]
    return periods


def test_chicago_january_and_july_visits_over_mllp_come_out_of_fhir_with_their_offsets(tmp_path):
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          adt-in:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            timezone: America/Chicago
            routes: [{{when: {{record: Encounter}}, to: [ehr-fhir]}}]
        destinations:
          ehr-fhir: {{url: "file://outbox", format: fhir}}
        engine: {{poll_seconds: 0.05}}
    """))
    (tmp_path / "january.hl7").write_bytes(local_adt("20260115090000", "20260115092500", "TZ-JAN-1"))
    (tmp_path / "july.hl7").write_bytes(local_adt("20260715090000", "20260715092500", "TZ-JUL-1"))
    env = {**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"}
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for name in ("january.hl7", "july.hl7"):
            sent = wait_for(lambda n=name: _send(port, tmp_path / n, env))
            assert "AA" in sent.stdout, sent.stderr
        periods = wait_for(lambda: (p := encounter_periods(tmp_path / "outbox")) and len(p) == 2 and p)
    finally:
        engine.terminate()
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    assert "Traceback" not in err
    assert sorted((p["start"], p["end"]) for p in periods) == [
        ("2026-01-15T09:00:00-06:00", "2026-01-15T09:25:00-06:00"),
        ("2026-07-15T09:00:00-05:00", "2026-07-15T09:25:00-05:00"),
    ]


def _send(port: int, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess | None:
    """`bridge send` once the listener is up (None until then, so wait_for retries)."""
    sent = subprocess.run([sys.executable, "-m", "bridge.cli", "send", "--to", f"mllp://127.0.0.1:{port}",
                           str(path)], capture_output=True, text=True, timeout=60, env=env)
    return sent if sent.returncode == 0 else None

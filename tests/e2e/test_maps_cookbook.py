"""Issue 14, done when: each cookbook recipe of docs/maps.md runs through `bridge run`.

The shipped example (examples/maps) is copied and run as a real process; HL7v2 and JSON files are
dropped in its inboxes; the FHIR and HL7v2 outboxes and `bridge holds` / `bridge show` (other
processes) show each recipe's effect. tests/maps/test_cookbook.py checks the same recipes in detail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.e2e.support import bridge_cli, wait_for
from tests.maps.test_cookbook import adt, prescription

ROOT = Path(__file__).resolve().parents[2]


def drop(folder: Path, name: str, raw: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.tmp").write_bytes(raw)
    (folder / f"{name}.tmp").rename(folder / name)  # write then rename, as the file source asks


def test_the_cookbook_recipes_through_bridge_run(tmp_path):
    site = tmp_path / "examples" / "maps"
    shutil.copytree(ROOT / "examples" / "maps", site)
    config = site / "bridge.yaml"
    var = tmp_path / "var" / "maps-example"
    env = {**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"}
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        outpatient = adt("E2E-OUT", "O", "HTN01", "High blood pressure")
        drop(var / "inbox-adt", "1-outpatient.hl7", outpatient)
        drop(var / "inbox-adt", "2-inpatient.hl7", adt("E2E-IN", "I"))
        drop(var / "inbox-adt", "3-unlisted-dx.hl7", adt("E2E-DX", "O", "ZZZ99", "Something local"))
        drop(var / "inbox-rx", "4-credentialed.json", prescription("RX-E2E-1", "1234567893"))
        drop(var / "inbox-rx", "5-stranger.json", prescription("RX-E2E-2", "1999999992"))
        fhir = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
            sorted((var / "outbox" / "ehr-fhir").glob("*.json"))))
        registry = wait_for(lambda: list((var / "outbox" / "registry-hl7").glob("*")))
        bedboard = wait_for(lambda: list((var / "outbox" / "bedboard-hl7").glob("*")))
        lab = wait_for(lambda: list((var / "outbox" / "lab-hl7").glob("*")))
        holds = wait_for(lambda: (lambda h: h if len(h) == 2 else None)(json.loads(
            bridge_cli("holds", "-c", str(config), "--json", cwd=tmp_path, env=env).stdout)))
    finally:
        engine.terminate()
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    assert "Traceback" not in err

    resources = [e["resource"] for path in fhir for e in json.loads(path.read_text())["entry"]]
    encounters = [r for r in resources if r["resourceType"] == "Encounter"]
    assert [e["class"]["code"] for e in encounters] == ["AMB"]  # the inpatient visit was dropped
    (condition,) = [r for r in resources if r["resourceType"] == "Condition"]
    assert condition["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "38341003",
                                              "display": "Hypertensive disorder"}
    assert [r for r in resources if r["resourceType"] == "MedicationRequest"]  # the credentialed prescriber's
    patients = json.dumps([r["identifier"] for r in resources if r["resourceType"] == "Patient"])
    assert "RIVERBEND" in patients and "STATEREG" not in patients  # the EHR keeps the hospital's authority
    (sent,) = registry
    assert "|MRN00012345^^^STATEREG^MR|" in sent.read_text()  # the registry's own assigning authority
    # passed through unchanged except PV1-3 (the bed board's unit codes) and MSH-10 (our stable identity)
    (passed,) = bedboard
    sent_segments = [s.split("|") for s in passed.read_bytes().decode().strip("\r").split("\r")]
    original = [s.split("|") for s in outpatient.decode().strip("\r").split("\r")]
    assert [s[0] for s in sent_segments] == [s[0] for s in original]
    for ours, theirs in zip(sent_segments, original):
        changed = {i for i in range(max(len(ours), len(theirs)))
                   if (ours[i] if i < len(ours) else "") != (theirs[i] if i < len(theirs) else "")}
        assert changed == {"MSH": {9}, "PV1": {3}}.get(ours[0], set()), ours[0]  # MSH-10 is index 9 (MSH-1 is |)
    assert sent_segments[3][3] == "OP-2^^^RB-MAIN"
    # the old lab: HL7 2.3, the visit's facility in MSH-4, the channel's SNOMED CT diagnosis in DG1
    (old_lab,) = lab
    text = old_lab.read_bytes().decode()
    msh = text.split("\r")[0].split("|")
    assert (msh[3], msh[8], msh[11]) == ("RIVERBEND^2.999.1.7^ISO", "ADT^A04", "2.3")
    assert "\rDG1|1||38341003^Hypertensive disorder^SCT|" in text
    reasons = sorted(r["reason"] for h in holds for r in h["reasons"])
    assert reasons == ["a diagnosis code is not in the local-to-SNOMED CT table",
                       "the prescriber is not in the credentialed prescribers list"]
    messages = json.loads(bridge_cli("messages", "-c", str(config), "--json", cwd=tmp_path, env=env).stdout)
    assert sorted(m["status"] for m in messages) == ["delivered", "delivered", "filtered", "held", "held"]

"""Issue 11 §2, done when: the default config, run as a real process, with the README journey plus an
inpatient RDE^O11 for morphine sent over MLLP, routes the inpatient order without a hold (it is not a
prescription: R28), while the journey's prescriptions are judged as before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.e2e.support import api_call, bridge_cli, default_site, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "messages"


def test_default_config_routes_an_inpatient_morphine_order_without_a_hold(tmp_path):
    config, mllp, web = default_site(tmp_path)
    env = {**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"}
    c = ["-c", str(config)]
    token = "tbk_" + bridge_cli("token", "create", *c, "--role", "analyst", "--name", "analyst-1", cwd=tmp_path,
                            env=env).stdout.split("tbk_", 1)[1].split()[0]

    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", *c], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{web}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{base}/readyz", timeout=1).status == 200)
        # the README journey: the telehealth visit over MLLP, its two prescriptions as JSON
        assert "AA" in bridge_cli("send", "--to", f"mllp://127.0.0.1:{mllp}", str(EXAMPLES / "adt-a04-telehealth.hl7"),
                              cwd=tmp_path, env=env).stdout
        for name in ("prescription.json", "prescription-needs-review.json"):
            shutil.copy(EXAMPLES / name, tmp_path / "var" / "inbox" / name)
        # plus the hospital's inpatient morphine order
        sent = bridge_cli("send", "--to", f"mllp://127.0.0.1:{mllp}", str(EXAMPLES / "rde-o11-inpatient-morphine.hl7"),
                      cwd=tmp_path, env=env)
        assert "AA" in sent.stdout

        settled = ("delivered", "held", "rejected", "failed", "dead", "filtered")
        found = wait_for(lambda: (lambda items: items if len(items) == 4 and all(
            m["status"] in settled for m in items) else None)(
            api_call(base, token, "/messages?patient_id=MRN00012345")["items"]))
        order = next(m for m in found if m["message_type"].startswith("RDE"))
        assert order["status"] == "delivered", order
        detail = api_call(base, token, f"/messages/{order['id']}")
        policy = next(e["detail"] for e in detail["timeline"] if e["kind"] == "policy")
        assert policy["outcome"] == "ALLOW" and [r["id"] for r in policy["rules"]] == ["R28"]
        assert {d["destination"] for d in detail["deliveries"]} == {"ehr-fhir"}  # not to a retail pharmacy

        statuses = sorted(m["status"] for m in found)
        assert statuses == ["delivered", "delivered", "delivered", "held"]  # the journey is judged as before
        newrx = list((tmp_path / "var" / "outbox" / "pharmacy-script").glob("*.xml"))
        assert len(newrx) == 1  # the telehealth tramadol prescription only
        bundles = [json.loads(p.read_text()) for p in (tmp_path / "var" / "outbox" / "ehr-fhir").glob("*.json")]
        requests = [e["resource"] for b in bundles for e in b.get("entry", [])
                    if e["resource"]["resourceType"] == "MedicationRequest"]
        assert any(r.get("category", [{}])[0].get("coding", [{}])[0].get("code") == "inpatient" for r in requests)
    finally:
        engine.terminate()
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err

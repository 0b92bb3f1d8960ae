"""Issue 8, done when (the README's walk-through, with real processes on loopback): the default config
runs; the example telehealth messages go in over MLLP and the JSON inbox; an analyst finds them by
patient id, follows one journey's trace from HL7v2 to NCPDP and FHIR; an operator releases the held
prescription; and the audit log holds every view and action, intact. The dashboard's own browser flow
(log in, search, trace, release) is tested in tests/web/test_browser.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.e2e.support import api_call, bridge_cli, default_site, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "messages"


def test_readme_operator_walkthrough(tmp_path):
    config, mllp, web = default_site(tmp_path)
    env = {**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"}
    c = ["-c", str(config)]
    tokens = {role: bridge_cli("token", "create", *c, "--role", role, "--name", f"{role}-1", cwd=tmp_path, env=env)
              .stdout.split("tbk_", 1)[1].split()[0] for role in ("analyst", "operator", "admin")}
    tokens = {role: f"tbk_{value}" for role, value in tokens.items()}

    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", *c], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{web}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{base}/readyz", timeout=1).status == 200)
        sent = bridge_cli("send", "--to", f"mllp://127.0.0.1:{mllp}", str(EXAMPLES / "adt-a04-telehealth.hl7"),
                      cwd=tmp_path, env=env)
        assert "AA" in sent.stdout
        for name in ("prescription.json", "prescription-needs-review.json"):
            shutil.copy(EXAMPLES / name, tmp_path / "var" / "inbox" / name)

        found = wait_for(lambda: (lambda items: items if len(items) == 3 else None)(
            api_call(base, tokens["analyst"], "/messages?patient_id=MRN00012345")["items"]))
        held = next(m for m in found if m["status"] == "held")
        hl7 = next(m for m in found if m["format"] == "hl7v2")
        assert {m["trace_id"] for m in found} == {hl7["trace_id"]}  # one journey, across formats

        assert api_call(base, tokens["operator"], f"/holds/{held['id']}/release", "POST",
                   {"reason": "patient confirmed by phone she was at home in Iowa"})
        trace = wait_for(lambda: (lambda t: t if all(m["status"] == "delivered" for m in t["messages"]) else None)(
            api_call(base, tokens["analyst"], f"/traces/{hl7['trace_id']}")))
        assert {m["format"] for m in trace["messages"]} == {"hl7v2", "bridge"}
        delivered = {(d["destination"], d["status"]) for d in trace["deliveries"]}
        assert delivered == {("ehr-fhir", "delivered"), ("pharmacy-script", "delivered")}  # FHIR and NCPDP
        newrx = list((tmp_path / "var" / "outbox" / "pharmacy-script").glob("*.xml"))
        assert len(newrx) == 2 and all(b"<NewRx>" in p.read_bytes() for p in newrx)

        audit = api_call(base, tokens["admin"], "/audit?limit=200")
        actions = {entry["action"] for entry in audit["items"]}
        assert {"hold.release", "message.search", "trace.view"} <= actions, actions
        assert api_call(base, tokens["admin"], "/audit/verify")["intact"] is True
    finally:
        engine.terminate()
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    assert bridge_cli("audit", "verify", *c, cwd=tmp_path, env=env).returncode == 0

"""`bridge jobs`, `bridge jobs run`, `bridge audit verify` and `bridge prune` on a real config and store."""

from __future__ import annotations

import json
import socket
import sqlite3
import textwrap

from bridge.cli import main
from bridge.core.store.sqlite import SQLiteStore
from tests.core.helpers import encounter_message


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_file(tmp_path):
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          visits:
            source: file://inbox
            format: bridge
            retention: {{days: 30, statuses: [failed]}}
        jobs:
          prune-nightly: {{type: prune, trigger: {{cron: "15 2 * * *"}}}}
          ehr-sync:
            type: fhir-poll
            trigger: {{interval_seconds: 300}}
            channel: visits
            settings: {{base: "fhir+http://127.0.0.1:{closed_port()}/fhir", resource_type: Encounter,
                        connect_timeout: 1, timeout: 2}}
    """))
    return str(path)


def test_jobs_list_run_and_history(tmp_path, capsys):
    config = config_file(tmp_path)
    assert main(["jobs", "-c", config]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["ehr-sync", "prune-nightly"]
    assert "every 300s" in out[0] and "never run" in out[0] and "cron 15 2 * * *" in out[1]

    assert main(["jobs", "run", "prune-nightly", "-c", config]) == 0
    assert capsys.readouterr().out.startswith("job prune-nightly slot manual-")
    assert main(["jobs", "run", "ehr-sync", "-c", config]) == 1
    failed = capsys.readouterr().out
    assert "ehr-sync" in failed and "failed: TransientDeliveryError: GET /fhir/Encounter: connection failed" in failed

    assert main(["jobs", "-c", config, "--json"]) == 0
    jobs = {j["name"]: j for j in json.loads(capsys.readouterr().out)}
    (sync_run,) = jobs["ehr-sync"]["runs"]
    assert (sync_run["status"], sync_run["attempts"]) == ("failed", 1)
    assert jobs["prune-nightly"]["runs"][0]["status"] == "succeeded"
    assert jobs["ehr-sync"]["trigger"] == {"interval_seconds": 300} and jobs["ehr-sync"]["catch_up"] == "skip"

    assert main(["jobs", "run", "ehr-synk", "-c", config]) == 1
    assert "no job named 'ehr-synk' (did you mean 'ehr-sync'?)" in capsys.readouterr().err
    assert main(["jobs", "run", "-c", config]) == 2


def test_audit_verify_names_the_first_broken_entry(tmp_path, capsys):
    config = config_file(tmp_path)
    store = SQLiteStore(str(tmp_path / "var" / "bridge.db"))
    for n in range(3):
        store.audit("tester", "test.action", f"thing:{n}", {"n": n})
    assert main(["audit", "verify", "-c", config]) == 0
    assert "intact" in capsys.readouterr().err
    with sqlite3.connect(store.path) as conn:  # an intruder with file access edits entry 2
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET detail='{\"n\":99}' WHERE id=2")
    assert main(["audit", "verify", "-c", config]) == 1
    assert "audit log broken at entry 2" in capsys.readouterr().err


def test_prune_dry_run_then_prune(tmp_path, capsys):
    config = config_file(tmp_path)
    store = SQLiteStore(str(tmp_path / "var" / "bridge.db"))
    old, _ = store.receive("visits", "bridge", b"{bad", dedupe_key=None, header={}, origin={}, error="unreadable")
    new, _ = store.receive("visits", "bridge", encounter_message(1), dedupe_key=None, header={}, origin={},
                           error="unreadable")
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE messages SET received_at = received_at - 31 * 86400 WHERE id=?", (old,))
    assert main(["prune", "--dry-run", "-c", config]) == 0
    assert capsys.readouterr().out.strip() == "visits: would prune 1 message(s), 1 event(s), 0 outbox row(s), 0 hold(s)"
    assert store.get_message(old) is not None
    assert main(["prune", "-c", config, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"visits": {"messages": 1, "events": 1, "outbox": 0, "holds": 0}}
    assert store.get_message(old) is None and store.get_message(new) is not None
    assert store.audit_entries()[0].action == "retention.prune"

"""Done-when: a sync job polling a FHIR server on loopback every second picks up new encounters
exactly once across two `bridge run` processes sharing one SQLite store.

Both processes schedule the same job; each slot (a whole second) is run by the one process that
inserts its run row. If a slot were polled twice, the FHIR server would see two searches for it and
the second search would re-submit what the first stored (a ``duplicate`` event on the message).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bridge.core.store.sqlite import SQLiteStore

try:
    from bridge.testing.fakes.fhir_server import FakeFhirServer as FhirServer
except ImportError:  # pragma: no cover - before the fakes moved into the test kit
    from tests.fhir_rest.fhir_server import FhirTestServer as FhirServer

pytestmark = pytest.mark.slow
ENCOUNTERS = 8


def encounter(n: int) -> dict:
    return {"resourceType": "Encounter", "id": f"tele-{n}", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}}


def instant(offset: float) -> str:
    moment = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return moment.isoformat(timespec="milliseconds")


def start(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "BRIDGE_LOG_LEVEL": "INFO"})


def stored(store: SQLiteStore) -> list[str]:
    return [json.loads(store.get_raw(m.id))["id"] for m in store.search(channel="ehr-in", limit=1000)]


def test_two_engines_poll_each_slot_once_and_store_each_encounter_once(tmp_path):
    with FhirServer() as server:
        config = tmp_path / "bridge.yaml"
        config.write_text(textwrap.dedent(f"""
            store: sqlite:///var/bridge.db
            engine: {{workers: 1, deliverers: 1, poll_seconds: 0.05}}
            channels:
              ehr-in: {{source: "file://inbox", format: fhir}}
            jobs:
              encounters:
                type: fhir-poll
                trigger: {{interval_seconds: 1}}
                channel: ehr-in
                catch_up: skip
                retry: {{max_attempts: 2, backoff_seconds: 0.2}}
                settings:
                  base: "fhir+{server.base}"
                  resource_type: Encounter
                  params: {{_count: 100}}
                  timeout: 5
        """))
        for n in range(3):
            server.seed(encounter(n), instant(n))
        engines = [start(config), start(config)]
        try:
            db = tmp_path / "var" / "bridge.db"
            deadline = time.monotonic() + 15
            while not (db.exists() and SQLiteStore(str(db)).job_run_history("encounters")):
                assert time.monotonic() < deadline, "no engine ran the job"
                time.sleep(0.05)
            store = SQLiteStore(str(db))
            for n in range(3, ENCOUNTERS):  # new encounters arrive while both engines run
                time.sleep(0.7)
                server.seed(encounter(n), instant(n))
            deadline = time.monotonic() + 15
            while len(stored(store)) < ENCOUNTERS and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2.2)  # a couple more slots with nothing new
        finally:
            for proc in engines:
                proc.send_signal(signal.SIGTERM)
            logs = [proc.communicate(timeout=20)[1] for proc in engines]

        assert all(proc.returncode == 0 for proc in engines), logs
        assert all("scheduler started: 1 job(s)" in log for log in logs), logs
        ids = stored(store)
        assert sorted(ids) == sorted(f"tele-{n}" for n in range(ENCOUNTERS)), ids  # each exactly once
        messages = store.search(channel="ehr-in", limit=1000)
        assert not [m.id for m in messages if any(e.kind == "duplicate" for e in store.events(m.id))]

        runs = store.job_run_history("encounters", limit=1000)
        slots = [r["slot"] for r in runs]
        assert len(slots) == len(set(slots)) >= 6, (slots, logs)
        assert {r["status"] for r in runs} == {"succeeded"} and {r["attempts"] for r in runs} == {1}
        searches = [path for method, path in server.log if method == "GET" and "/Encounter" in path]
        assert len(searches) == len(runs), (len(searches), len(runs))  # one search per slot, from one process
        process = {r["id"]: r["owner"].rsplit(":", 1)[0] for r in runs}  # owners are host:pid:random:claim
        owners = set(process.values())
        print(f"{len(runs)} slots run by {len(owners)} process(es): "
              + ", ".join(f"{o}={sum(p == o for p in process.values())}" for o in sorted(owners)))

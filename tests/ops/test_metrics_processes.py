"""Counters across worker processes: `bridge run` with `engine.processes: 1` delivers in a child, and
the parent's /metrics counts those deliveries; a worker killed with -9 takes none of its counts with
it (its last snapshot stays), so the sum never falls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bridge.cli import main
from tests.core.helpers import encounter_message
from tests.ops.test_destination_down import free_port
from tests.ops.test_metrics import parse, values


def write_config(folder: Path, port: int) -> str:
    path = folder / "bridge.yaml"
    path.write_text(
        "store: sqlite:///bridge.db\n"
        "engine: {processes: 1, poll_seconds: 0.05}\n"
        "channels:\n  in: {source: file://inbox, format: bridge, routes: [{to: [out]}]}\n"
        "destinations:\n  out: {url: file://outbox, format: bridge}\n"
        f"web: {{listen: '127.0.0.1:{port}'}}\n", encoding="utf-8")
    return str(path)


def scrape(base: str, token: str) -> dict | None:
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return parse(response.read().decode())
    except (urllib.error.URLError, ConnectionError):
        return None


def wait_for_count(base: str, token: str, family: str, want: float, timeout: float = 60.0, **labels) -> dict:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        families = scrape(base, token)
        if families is not None:
            seen = values(families[family], **labels)
            if seen == [want]:
                return families
        time.sleep(0.2)
    raise AssertionError(f"{family}{labels}: wanted {want}, last seen {seen}")


def drop(inbox: Path, first: int, count: int) -> None:
    inbox.mkdir(exist_ok=True)
    for n in range(first, first + count):
        (inbox / f".{n}.tmp").write_bytes(encounter_message(n))
        os.replace(inbox / f".{n}.tmp", inbox / f"visit-{n}.json")


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_the_parent_reports_what_its_worker_processes_counted(tmp_path, capsys):
    port = free_port()
    config = write_config(tmp_path, port)
    assert main(["token", "create", "-c", config, "--name", "prometheus", "--role", "viewer"]) == 0
    token = capsys.readouterr().out.strip()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    share_dirs = set(Path(tempfile.gettempdir()).glob("bridge-metrics-*"))
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", config], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        drop(tmp_path / "inbox", 0, 3)
        families = wait_for_count(base, token, "bridge_deliveries_total", 3, destination="out")
        assert values(families["bridge_messages_received_total"], channel="in") == [3]  # the parent's intake
        assert values(families["bridge_messages_decoded_total"], channel="in") == [3]  # the worker's
        (worker,) = worker_pids(engine.pid)
        time.sleep(2.5)  # at least one snapshot after the deliveries
        os.kill(worker, signal.SIGKILL)
        drop(tmp_path / "inbox", 3, 2)  # the parent restarts the worker, which counts from zero
        families = wait_for_count(base, token, "bridge_deliveries_total", 5, destination="out")
        assert values(families["bridge_delivery_attempts_total"], destination="out") == [5]
    finally:
        engine.send_signal(signal.SIGTERM)
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err
    assert set(Path(tempfile.gettempdir()).glob("bridge-metrics-*")) <= share_dirs  # the parent removed its own

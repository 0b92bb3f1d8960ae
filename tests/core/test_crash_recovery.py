"""kill -9 of `bridge run` while 1,000 messages flow through a file channel: nothing is lost.

The engine is killed without warning mid-flow, restarted on the same store, and every message must
end up delivered at least once (duplicates on the outbox side are allowed: delivery is at-least-once)
and stored exactly once (the inbox re-read after the crash is deduplicated).
"""

from __future__ import annotations

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
from tests.core.helpers import encounter_message

COUNT = 1000
pytestmark = pytest.mark.slow


def start(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"})


def delivered_ids(outbox: Path) -> list[str]:
    ids = []
    for path in outbox.glob("*.json"):
        ids.extend(r["id"] for r in json.loads(path.read_bytes())["records"])
    return ids


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_kill_minus_9_mid_flow_loses_nothing(tmp_path):
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent("""
        store: sqlite:///var/bridge.db
        engine: {workers: 2, deliverers: 2, lease_seconds: 2, poll_seconds: 0.05}
        channels:
          flow:
            source: file://inbox
            format: bridge
            options: {poll_seconds: 0.05}
            routes: [{to: [out]}]
        destinations:
          out: {url: "file://outbox", format: bridge}
    """))
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    for n in range(COUNT):
        (inbox / f"msg-{n:04d}.json").write_bytes(encounter_message(n, patient=f"P{n % 17}"))

    first = start(config)
    try:
        assert wait_for(lambda: outbox.exists() and len(list(outbox.glob("*.json"))) >= COUNT // 5, 120), \
            "the first run delivered too little before the kill"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    delivered_before = len(set(delivered_ids(outbox)))
    assert delivered_before < COUNT, "the kill came too late to test anything"

    second = start(config)
    try:
        assert wait_for(lambda: len(set(delivered_ids(outbox))) == COUNT, 240), \
            f"only {len(set(delivered_ids(outbox)))} of {COUNT} delivered after restart"
        store = SQLiteStore(str(tmp_path / "var" / "bridge.db"))
        assert wait_for(lambda: store.counts()["flow"].get("delivered", 0) == COUNT, 60), store.counts()
        assert sum(store.counts()["flow"].values()) == COUNT  # stored once each: no duplicate intake
        store.close()
    finally:
        second.terminate()
        _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err.decode()
    assert set(delivered_ids(outbox)) == {f"ENC-{n}" for n in range(COUNT)}
    assert not list(inbox.glob("msg-*")), "every inbox file was taken in"

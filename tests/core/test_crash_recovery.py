"""kill -9 of `bridge run` while 1,000 messages flow through a file channel: nothing is lost.

The engine is killed without warning mid-flow, restarted on the same store, and every message must
end up delivered at least once (duplicates on the outbox side are allowed: delivery is at-least-once)
and stored exactly once (the inbox re-read after the crash is deduplicated).
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from bridge.core.store.sqlite import SQLiteStore
from tests.core.helpers import encounter_message
from tests.processes import alive, children_of, nice_of, wait_for
from tests.processes import start_engine as start

COUNT = 1000
pytestmark = pytest.mark.slow


def delivered_ids(outbox: Path) -> list[str]:
    ids = []
    for path in outbox.glob("*.json"):
        ids.extend(r["id"] for r in json.loads(path.read_bytes())["records"])
    return ids


def file_flow(tmp_path: Path, engine: str, count: int, patients: int) -> tuple[Path, Path]:
    """A config whose file inbox already holds ``count`` encounters of ``patients`` patients, routed to a
    file outbox; (config, outbox)."""
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        engine: {engine}
        channels:
          flow:
            source: file://inbox
            format: bridge
            options: {{poll_seconds: 0.05}}
            routes: [{{to: [out]}}]
        destinations:
          out: {{url: "file://outbox", format: bridge}}
    """))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n in range(count):
        (inbox / f"msg-{n:04d}.json").write_bytes(encounter_message(n, patient=f"P{n % patients}"))
    return config, tmp_path / "outbox"


def test_kill_minus_9_mid_flow_loses_nothing(tmp_path):
    config, outbox = file_flow(tmp_path, "{workers: 2, deliverers: 2, lease_seconds: 2, poll_seconds: 0.05}",
                               COUNT, patients=17)

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
    assert not list((tmp_path / "inbox").glob("msg-*")), "every inbox file was taken in"


def test_kill_minus_9_with_worker_processes_loses_nothing_and_keeps_per_patient_order(tmp_path):
    """engine.processes: 2 — the parent takes in, two children process and deliver. kill -9 of the
    parent: the children notice and stop, a restart finishes the work, every patient's messages were
    processed and delivered in arrival order (lanes hold across processes and the crash)."""
    count = 2000  # enough that the kill, soon after the first deliveries, always lands mid-flow
    config, outbox = file_flow(
        tmp_path, "{processes: 2, workers: 2, deliverers: 1, batch_size: 8, lease_seconds: 2, poll_seconds: 0.05}",
        count, patients=7)

    first = start(config)
    try:
        assert wait_for(lambda: len(children_of(first.pid)) == 2, 60), "two worker processes should start"
        workers = children_of(first.pid)
        assert wait_for(lambda: {nice_of(pid) for pid in workers} == {nice_of(first.pid) + 5}, 60), \
            "worker processes should run at a lower priority than the listeners"
        assert wait_for(lambda: outbox.exists() and len(list(outbox.glob("*.json"))) >= 20, 120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 30), "worker processes outlived their parent"
    assert len(set(delivered_ids(outbox))) < count, "the kill came too late to test anything"

    second = start(config)
    try:
        assert wait_for(lambda: len(set(delivered_ids(outbox))) == count, 240), \
            f"only {len(set(delivered_ids(outbox)))} of {count} delivered after restart"
        store = SQLiteStore(str(tmp_path / "var" / "bridge.db"))
        assert wait_for(lambda: store.counts()["flow"].get("delivered", 0) == count, 60), store.counts()
        assert sum(store.counts()["flow"].values()) == count
        rows = store.outbox_rows(limit=10 * count)
        store.close()
    finally:
        second.terminate()
        _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err.decode()
    lanes: dict[str, list] = {}
    for row in rows:
        lanes.setdefault(row.order_key, []).append(row)
    assert sorted(lanes) == sorted(f"patient:P{n}" for n in range(7))
    for lane in lanes.values():
        by_message = sorted(lane, key=lambda r: r.message_id)
        assert [r.id for r in by_message] == sorted(r.id for r in lane)  # processed in arrival order
        assert [r.message_id for r in sorted(lane, key=lambda r: r.delivered_at)] == \
            [r.message_id for r in by_message]  # delivered in arrival order

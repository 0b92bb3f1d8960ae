"""SQLite's queue SQL: claims read the lane-head indexes, never a lane's backlog; migration 7 keeps
what was waiting in today's order (one lane per channel)."""

from __future__ import annotations

import sqlite3

from bridge.core.store import sqlite_queue as queue
from bridge.core.store.sqlite import SQLiteStore
from bridge.core.store.sqlite_schema import MIGRATIONS


def plan(conn: sqlite3.Connection, sql: str, params: tuple) -> str:
    return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_claims_and_lane_moves_use_the_lane_indexes(tmp_path, monkeypatch):
    store = SQLiteStore(str(tmp_path / "q.db"))
    conn = store._conn()
    seen: list[tuple[str, tuple]] = []
    real_execute = sqlite3.Connection.execute

    class Recording(sqlite3.Connection):
        def execute(self, sql, params=()):  # noqa: D401 - records every statement the queue runs
            seen.append((sql, params))
            return real_execute(self, sql, params)

    recording = sqlite3.connect(store.path, factory=Recording, isolation_level=None)
    queue.claimable_heads(recording, 10, 0.0)
    queue.new_lane_head(recording, "ch", "patient:P1")  # the lane check every intake INSERT embeds
    queue.leave_message_lane(recording, "ch", "patient:P1")
    queue.due_outbox_heads(recording, 10, 0.0)
    queue.outbox_lane_is_free(recording, "d", "patient:P1")
    queue.next_outbox_head(recording, "d", "patient:P1")
    plans = [plan(conn, sql, params) for sql, params in seen if not sql.startswith("SELECT channel FROM channel_state")]
    assert "messages_lane_heads" in plans[0] and "SCAN messages USING INDEX" in plans[0]
    assert "SEARCH messages USING INDEX messages_lanes (channel=? AND order_key=?)" in plans[1]
    assert "SEARCH messages USING INDEX messages_lanes (channel=? AND order_key=?)" in plans[2]
    assert "SEARCH outbox USING INDEX outbox_lane_heads (next_attempt_at<?)" in plans[3]
    assert "outbox_lane (destination=? AND order_key=? AND status=?)" in plans[4]
    assert "outbox_lane (destination=? AND order_key=? AND status=?)" in plans[5]
    for text in plans:  # no statement of the queue reads a whole table
        assert "SCAN messages" not in text.replace("SCAN messages USING INDEX messages_lane_heads", "")
        assert "SCAN outbox" not in text
    recording.close()
    store.close()


def test_the_heads_index_holds_only_heads(tmp_path):
    store = SQLiteStore(str(tmp_path / "q.db"))
    for n in range(50):
        store.receive("ch", "bridge", b"x", dedupe_key=None, header={"order_key": f"patient:P{n % 2}"}, origin={})
    conn = store._conn()
    heads = conn.execute("SELECT COUNT(*) FROM messages INDEXED BY messages_lane_heads WHERE lane_head = 1").fetchone()
    assert heads[0] == 2  # one per lane, whatever waits behind
    store.close()


def test_migration_7_puts_waiting_messages_in_one_lane_per_channel(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                 " applied_at REAL NOT NULL)")
    for version, description, sql in MIGRATIONS[:6]:
        conn.executescript(sql)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, description))
    for n, channel in enumerate(["a", "a", "b", "a"]):
        conn.execute("INSERT INTO messages (channel, format, status, received_at, updated_at, raw, sha256, size)"
                     " VALUES (?, 'bridge', ?, 0, 0, x'00', '', 1)", (channel, "delivered" if n == 0 else "received"))
    conn.close()
    store = SQLiteStore(path)
    claims = store.claim_messages("w", 30, 10)
    assert [(c.id, c.order_key) for c in claims] == [(2, "channel:a"), (3, "channel:b")]  # 4 waits behind 2
    store.close()


def test_queue_work_gives_way_to_a_waiting_intake_commit(tmp_path):
    import threading
    import time

    store = SQLiteStore(str(tmp_path / "q.db"))
    for raw in (b"a", b"b"):  # two lanes of their own: two claims with work to take
        store.receive("ch", "bridge", raw, dedupe_key=None, header={}, origin={})
    held, release = threading.Event(), threading.Event()

    def intake_waiting():
        with store._priority.waiting():
            held.set()
            release.wait(5)

    thread = threading.Thread(target=intake_waiting)
    thread.start()
    held.wait(5)
    threading.Timer(0.02, release.set).start()
    began = time.monotonic()
    assert len(store.claim_messages("w", 30, 1)) == 1  # waits until the intake is through (or the 50 ms cap)
    waited = time.monotonic() - began
    thread.join()
    assert waited >= 0.015
    held.clear()
    release.clear()
    thread = threading.Thread(target=intake_waiting)
    thread.start()
    held.wait(5)
    began = time.monotonic()
    assert len(store.claim_messages("w", 30, 1)) == 1  # a steady intake cannot starve the queue: the cap
    assert time.monotonic() - began < 2
    release.set()
    thread.join()
    store.close()


def test_a_writer_starts_within_milliseconds_of_the_lock_being_released(tmp_path):
    """SQLite's own busy handler sleeps up to 100 ms between tries; the store's retry loop does not."""
    import threading
    import time

    store = SQLiteStore(str(tmp_path / "q.db"))
    store.receive("ch", "bridge", b"x", dedupe_key=None, header={}, origin={})
    lateness = []
    for _ in range(3):
        blocker = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        released = []

        def release(conn=blocker, out=released):
            out.append(time.monotonic())
            conn.execute("COMMIT")

        timer = threading.Timer(0.35, release)
        timer.start()
        store.add_event(1, "note", {})
        lateness.append(time.monotonic() - released[0])
        timer.join()
        blocker.close()
    assert min(lateness) < 0.05, lateness
    store.close()


def test_worker_processes_need_a_config_file(tmp_path):
    import pytest

    from bridge.errors import ConfigError
    from bridge.testing import engine_from_dict

    engine = engine_from_dict({"engine": {"processes": 2}, "channels": {}, "destinations": {}}, tmp_path)
    with pytest.raises(ConfigError, match="engine.processes"):
        engine.start()
    engine.stop()


def test_the_intake_side_file_descriptor_closes_with_the_store(tmp_path):
    import gc
    import os

    def fds():
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    for n in range(20):
        store = SQLiteStore(str(tmp_path / f"s{n}.db"))
        store.receive("ch", "bridge", b"x", dedupe_key=None, header={}, origin={})
        store.close()
    gc.collect()
    assert fds() <= before + 2


def test_an_idle_claim_takes_no_write_lock(tmp_path):
    store = SQLiteStore(str(tmp_path / "q.db"))
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    store.busy_timeout = 0.05
    assert store.claim_messages("w", 30, 10) == [] and store.claim_deliveries("w", 30, 10) == []
    blocker.execute("COMMIT")
    blocker.close()
    store.close()


def test_only_replayable_queue_commits_skip_waiting_for_the_disk(tmp_path):
    """Claims and delivery outcomes are redone harmlessly after a power cut (synchronous=NORMAL);
    the intake's commit stays FULL. Processing results (which fix outbound identities) commit NORMAL,
    and a delivery claim flushes the WAL, outside the write lock, before its rows are sent: a result
    (of any process) is on the disk before anything it made leaves the engine."""
    from bridge.core.store.base import DeliveryOutcome, NewOutbox, ProcessingResult

    store = SQLiteStore(str(tmp_path / "q.db"))
    conn = store._conn()

    def mode() -> int:
        return conn.execute("PRAGMA synchronous").fetchone()[0]  # 1 NORMAL, 2 FULL

    store.receive("ch", "bridge", b"x", dedupe_key=None, header={}, origin={})
    assert mode() == 2
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10000  # senders' commits do not checkpoint
    (claim,) = store.claim_messages("w", 30, 1)
    assert mode() == 1
    flushed: list[int] = []
    flush = store._wal_sync._flush
    store._wal_sync._flush = lambda fd: (flush(fd), flushed.append(fd))
    store.finish_processing(claim, ProcessingResult(status="routed", outbox=[
        NewOutbox("d", b"p", "text/plain", "txt", None, "strict")]))
    assert mode() == 1
    assert flushed == [], "the worker waited for the disk"
    (delivery,) = store.claim_deliveries("w", 30, 1)
    assert mode() == 1
    assert flushed, "a claimed row was handed out for sending before a WAL flush"
    store.finish_deliveries([DeliveryOutcome(delivery, "delivered", "ok")])
    assert mode() == 1
    store.add_event(claim.id, "note", {})
    assert mode() == 2
    store.close()

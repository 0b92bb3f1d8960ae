"""WalSync: a commit is answered only after a WAL flush that began after it; flushes are shared;
a failed flush is never retried. Real files in a temporary folder; the flush function is wrapped
to observe (and hold) it, and still calls the real ``fdatasync``."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from bridge.core.store.sqlite import SQLiteStore
from bridge.core.store.wal_sync import WalSync
from bridge.errors import StoreError


class Flushes:
    """Records which files were flushed; ``hold`` makes the next flush wait until released."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_with: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        if self.hold.is_set():
            self.hold.clear()
            self.release.clear()
            self.release.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        os.fdatasync(fd)


def wal_database(tmp_path) -> str:
    path = str(tmp_path / "store.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    return path, conn


def test_a_commit_waits_for_a_flush_that_began_after_it(tmp_path):
    path, conn = wal_database(tmp_path)
    flushes = Flushes()
    sync = WalSync(path, flush=flushes)
    first = sync.committed()
    flushes.hold.set()  # the first flush starts, then waits
    waiter_a = threading.Thread(target=sync.wait, args=(first,))
    waiter_a.start()
    while not flushes.paths:
        time.sleep(0.001)
    second = sync.committed()  # committed while that flush runs: it does not count for this one
    done_b = threading.Event()
    waiter_b = threading.Thread(target=lambda: (sync.wait(second), done_b.set()))
    waiter_b.start()
    time.sleep(0.05)
    assert not done_b.is_set()
    flushes.release.set()
    waiter_a.join(5)
    waiter_b.join(5)
    assert done_b.is_set()
    assert sync.flushes == 2
    conn.close()


def test_one_flush_serves_every_commit_made_before_it(tmp_path):
    path, conn = wal_database(tmp_path)
    flushes = Flushes()
    sync = WalSync(path, flush=flushes)
    numbers = [sync.committed() for _ in range(20)]
    threads = [threading.Thread(target=sync.wait, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sync.flushes == 1
    wal = [p for p in flushes.paths if p.endswith("-wal")]
    assert wal == [path + "-wal"]
    assert str(tmp_path) in flushes.paths  # a new WAL file: its directory entry is flushed once
    sync.wait(sync.committed())
    assert flushes.paths.count(str(tmp_path)) == 1
    conn.close()


def test_a_failed_flush_fails_this_and_every_later_commit_and_is_not_retried(tmp_path):
    path, conn = wal_database(tmp_path)
    flushes = Flushes()
    flushes.fail_with = OSError(5, "Input/output error")
    sync = WalSync(path, flush=flushes)
    with pytest.raises(StoreError, match="refused to write the store's log .*restart the engine"):
        sync.wait(sync.committed())
    calls = len(flushes.paths)
    flushes.fail_with = None  # the disk "recovers": the dirty pages may be gone, so no later success
    with pytest.raises(StoreError, match="restart the engine"):
        sync.committed()
    assert len(flushes.paths) == calls
    conn.close()


def test_without_a_wal_file_the_database_is_flushed(tmp_path):
    path = str(tmp_path / "store.db")
    sqlite3.connect(path).close()
    flushes = Flushes()
    sync = WalSync(path, flush=flushes)
    sync.wait(sync.committed())
    assert flushes.paths == [path]


def test_the_flusher_checkpoints_once_the_wal_has_grown(tmp_path):
    path, conn = wal_database(tmp_path)
    checkpoints: list[int] = []
    sync = WalSync(path, flush=Flushes(), checkpoint=lambda: checkpoints.append(1), checkpoint_bytes=64 * 1024)
    sync.wait(sync.committed())
    assert checkpoints == []  # a small WAL
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for _ in range(40):
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 4000,))
        conn.commit()
    sync.wait(sync.committed())
    assert checkpoints == [1]
    sync.wait(sync.committed())
    assert checkpoints == [1]  # not again until the WAL grows past its size at that checkpoint
    conn.close()


# --- the store's commit for an event loop -------------------------------------------------------


def row(control: str) -> tuple:
    return ("adt", "hl7v2", f"MSH|{control}".encode(), f"adt|{control}", {"control_id": control, "order_key": None},
            {"transport": "test"}, None)


def test_receive_now_commits_at_once_and_its_wait_flushes(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    flushes = Flushes()
    store._wal_sync._flush = flushes
    results, wait = store.receive_now([row("A"), row("B"), row("A")])
    assert [duplicate for _, duplicate in results] == [False, False, True]
    assert results[0][0] == results[2][0]
    assert flushes.paths == []  # committed, not yet flushed: the caller answers after wait()
    assert {m.control_id for m in store.search(channel="adt")} == {"A", "B"}
    wait()
    assert any(p.endswith("-wal") for p in flushes.paths)
    store.close()


def test_receive_now_says_not_now_while_another_writer_holds_the_store(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    other = sqlite3.connect(str(tmp_path / "s.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    assert store.receive_now([row("A")]) is None
    assert time.monotonic() - started < 0.5  # it never waits for the lock
    other.execute("ROLLBACK")
    other.close()
    assert store.search(channel="adt") == []
    results, wait = store.receive_now([row("A")])
    wait()
    assert len(store.search(channel="adt")) == 1
    store.close()


def test_receive_now_leaves_a_batch_with_a_bad_row_to_the_careful_path(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    bad = ("adt", "hl7v2", None, "adt|BAD", {"control_id": "BAD", "order_key": None}, {}, None)  # raw NOT NULL
    assert store.receive_now([row("A"), bad]) is None
    assert store.search(channel="adt") == []  # nothing half-stored
    outcomes = store.receive_many([row("A"), bad])
    assert isinstance(outcomes[1], BaseException) and not isinstance(outcomes[0], BaseException)
    store.close()


def test_an_in_memory_store_has_no_commit_for_the_loop():
    store = SQLiteStore(":memory:")
    assert store.receive_now([row("A")]) is None
    store.close()

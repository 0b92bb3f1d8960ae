"""The job-run lease rows: one winner per slot, takeover only after expiry, writes fenced by owner."""

from __future__ import annotations

import threading
import time

import pytest

from tests.pg import backend_stores

BACKENDS = pytest.mark.parametrize("kind", ["sqlite", "postgresql"])


@BACKENDS
def test_one_insert_wins_a_slot_among_many_threads_and_processes_sharing_a_file(tmp_path, kind):
    with backend_stores(kind, tmp_path, 4) as stores:  # separate connections, as separate processes have
        _contend_for_one_slot(stores)


def _contend_for_one_slot(stores):
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def contend(n: int) -> None:
        barrier.wait()
        if stores[n % 4].claim_job_slot("poll", "2026-03-01T10:00:00.000Z", f"owner-{n}", 60):
            winners.append(f"owner-{n}")

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    (run,) = stores[0].job_run_history("poll")
    assert (run["status"], run["owner"], run["attempts"]) == ("running", winners[0], 1)


@BACKENDS
def test_an_expired_lease_is_taken_over_and_the_old_owner_is_fenced_out(tmp_path, kind):
    with backend_stores(kind, tmp_path) as (store,):
        _expire_and_take_over(store)


def _expire_and_take_over(store):
    first = store.claim_job_slot("poll", "s1", "dead-process", 0.05)
    assert store.claim_job_slot("poll", "s1", "other", 60) is None  # lease still live
    time.sleep(0.1)
    assert [r["slot"] for r in store.expired_job_runs("poll")] == ["s1"]
    taken = store.claim_job_slot("poll", "s1", "other", 60)
    assert (taken["id"], taken["owner"], taken["attempts"]) == (first["id"], "other", 2)
    assert not store.renew_job_slot(first["id"], "dead-process", 60)
    assert not store.finish_job_slot(first["id"], "dead-process", "succeeded", {"late": True})
    assert store.finish_job_slot(taken["id"], "other", "failed", {"error": "boom"})
    run = store.job_run(first["id"])
    assert (run["status"], run["owner"], run["detail"], run["lease_expires"]) == ("failed", "other", {"error": "boom"},
                                                                                   None)
    assert store.claim_job_slot("poll", "s1", "third", 60) is None  # finished slots are never run again
    assert store.job_run_counts() == {"poll": {"failed": 1}}


@BACKENDS
def test_last_scheduled_slot_ignores_manual_runs(tmp_path, kind):
    with backend_stores(kind, tmp_path) as (store,):
        _manual_runs(store)


def _manual_runs(store):
    for slot in ("2026-03-01T10:00:00.000Z", "2026-03-01T10:05:00.000Z", "manual-2026-03-02T00:00:00.000Z"):
        run = store.claim_job_slot("poll", slot, "me", 60)
        store.finish_job_slot(run["id"], "me", "succeeded", {})
    assert store.last_scheduled_slot("poll") == "2026-03-01T10:05:00.000Z"
    assert store.last_scheduled_slot("other") is None
    assert set(store.last_job_success()) == {"poll"}

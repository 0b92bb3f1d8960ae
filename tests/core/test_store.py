"""The store contract. Every backend runs this suite: SQLite, and PostgreSQL (a database of its own per test,
skipped with the reason where no server answers, failed instead in CI — see tests/pg.py)."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest

from bridge.core.store.base import DeliveryOutcome, NewOutbox, ProcessingResult
from bridge.core.store.sqlite import SQLiteStore
from bridge.errors import BridgeError, LeaseLost
from tests import pg

# What a constraint violation raises, per backend (the store lets it through unchanged).
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(str(tmp_path / "store.db"))
        yield s
        s.close()
        return
    from bridge.core.store import open_store

    with pg.database() as url:
        s = open_store(url)
        yield s
        s.close()


@pytest.fixture
def sqlite_store(tmp_path):
    """For what only the SQLite backend has: its pragmas, per-thread connections and group commit."""
    s = SQLiteStore(str(tmp_path / "store.db"))
    yield s
    s.close()


def raw_sql(store, sql):
    """Run SQL behind the store's back, as someone with direct access to the database could."""
    if isinstance(store, SQLiteStore):
        store._conn().execute(sql)
        return
    with store._tx() as conn:
        conn.execute(sql)


def receive(store, raw=b"hello", key=None, channel="ch", lane=None):
    return store.receive(channel, "bridge", raw, dedupe_key=key, header={"control_id": "C1", "order_key": lane},
                         origin={"file": "f"})


def routed(store, claim, destinations=("d",), order_key="P1", mode="strict"):
    outbox = [NewOutbox(d, b"payload", "text/plain", "txt", order_key, mode) for d in destinations]
    store.finish_processing(claim, ProcessingResult(status="routed", outbox=outbox, keys={"patient_id": order_key},
                                                    records=[{"kind": "Patient"}], trace_id="t1"))


def test_sqlite_is_wal_with_full_sync(sqlite_store):
    conn = sqlite_store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migrations_are_versioned_and_idempotent(tmp_path):
    path = str(tmp_path / "m.db")
    from bridge.core.store.sqlite_schema import MIGRATIONS

    latest = MIGRATIONS[-1][0]
    first = SQLiteStore(path)
    assert first.schema_version() == latest
    first.close()
    again = SQLiteStore(path)
    assert again.schema_version() == latest
    assert again._read("SELECT COUNT(*) FROM schema_migrations")[0][0] == len(MIGRATIONS)
    again.close()


def test_receive_stores_raw_bytes_hash_and_dedupes(store):
    mid, dup = receive(store, b"\x00raw\xff", key="k1")
    assert not dup
    assert store.get_raw(mid) == b"\x00raw\xff"
    msg = store.get_message(mid)
    assert msg.size == 5 and len(msg.sha256) == 64 and msg.control_id == "C1" and msg.status == "received"
    again, dup = receive(store, b"\x00raw\xff", key="k1")
    assert dup and again == mid
    assert [e.kind for e in store.events(mid)] == ["received", "duplicate"]


def test_receive_with_error_keeps_the_message_as_failed(store):
    mid, _ = store.receive("ch", "bridge", b"junk", dedupe_key=None, header={}, origin={}, error="no MSH")
    assert store.get_message(mid).status == "failed" and store.get_message(mid).error == "no MSH"
    assert store.claim_message("w", 30) is None


def test_claim_is_exclusive_and_serial_per_lane(store):
    a, _ = receive(store, b"a", lane="P1")
    b, _ = receive(store, b"b", lane="P1")
    c, _ = receive(store, b"c", channel="other", lane="P1")
    first = store.claim_message("w1", 30)
    second = store.claim_message("w2", 30)
    assert first.id == a and second.id == c  # b waits: a of the same lane (channel, key) is in flight
    assert store.claim_message("w3", 30) is None
    routed(store, first)
    assert store.claim_message("w3", 30).id == b


def test_expired_lease_is_reclaimed_and_fences_the_old_owner(store):
    receive(store)
    stale = store.claim_message("crashed", 0.01)
    time.sleep(0.02)
    fresh = store.claim_message("w2", 30)
    assert fresh.id == stale.id and fresh.token > stale.token
    with pytest.raises(LeaseLost):
        routed(store, stale)
    routed(store, fresh)
    assert store.get_message(fresh.id).status == "routed"


def test_outbox_rows_commit_with_the_status_change(store):
    receive(store)
    claim = store.claim_message("w", 30)
    routed(store, claim, destinations=("d1", "d2"))
    rows = store.outbox_rows(message_id=claim.id)
    assert [r.destination for r in rows] == ["d1", "d2"] and {r.status for r in rows} == {"pending"}


def test_failed_transaction_leaves_nothing_behind(store):
    receive(store)
    claim = store.claim_message("w", 30)
    bad = [NewOutbox("d", None, "text/plain", "txt", None, "strict")]  # NOT NULL payload violates
    with pytest.raises(INTEGRITY_ERRORS):
        store.finish_processing(claim, ProcessingResult(status="routed", outbox=bad))
    assert store.get_message(claim.id).status == "processing"
    assert store.outbox_rows() == []


def test_delivery_outcomes_settle_the_message(store):
    receive(store)
    claim = store.claim_message("w", 30)
    routed(store, claim, destinations=("d1", "d2"))
    one = store.claim_delivery("x", 30)
    store.finish_delivery(one, "delivered", "ok")
    assert store.get_message(claim.id).status == "routed"
    two = store.claim_delivery("x", 30)
    store.finish_delivery(two, "dead", "refused")
    assert store.get_message(claim.id).status == "dead"


def test_retry_waits_until_due_and_stale_deliverer_is_fenced(store):
    receive(store)
    routed(store, store.claim_message("w", 30), order_key=None)
    first = store.claim_delivery("x", 0.01)
    time.sleep(0.02)
    second = store.claim_delivery("y", 30)
    assert second.row.id == first.row.id and second.row.attempts == 2
    with pytest.raises(LeaseLost):
        store.finish_delivery(first, "delivered", "late")
    store.finish_delivery(second, "retry", "busy", time.time() + 60)
    assert store.claim_delivery("z", 30) is None
    assert store.claim_delivery("z", 30, now=time.time() + 61).row.id == first.row.id


def test_search_by_keys_status_channel_and_paging(store):
    ids = []
    for n in range(5):
        mid, _ = receive(store, f"m{n}".encode(), channel="a" if n % 2 else "b")
        ids.append(mid)
    found = store.search(channel="b", limit=2)
    assert [m.id for m in found] == [ids[4], ids[2]]
    assert [m.id for m in store.search(channel="b", before_id=ids[2])] == [ids[0]]
    claim = store.claim_message("w", 30)
    routed(store, claim, order_key="MRN9")
    assert [m.id for m in store.search(keys={"patient_id": "MRN9"})] == [claim.id]
    assert [m.id for m in store.search(status="routed")] == [claim.id]
    with pytest.raises(BridgeError, match="unknown key"):
        store.search(keys={"name": "x"})
    assert store.counts()["a"]["received"] == 2


def test_search_by_received_time_window(store):
    ids = []
    for n in range(3):
        ids.append(receive(store, f"w{n}".encode())[0])
        time.sleep(0.01)  # distinct received_at values
    middle = store.get_message(ids[1]).received_at
    assert [m.id for m in store.search(since=middle)] == [ids[2], ids[1]]
    assert [m.id for m in store.search(until=middle)] == [ids[0]]
    assert [m.id for m in store.search(since=middle, until=store.get_message(ids[2]).received_at)] == [ids[1]]


def test_find_trace_by_encounter_prescription_and_related_control_id(store):
    receive(store, b"visit")
    claim = store.claim_message("w", 30)
    outbox = [NewOutbox("ehr", b"payload", "text/plain", "txt", "P1", "strict", control_id="OUT-1")]
    store.finish_processing(claim, ProcessingResult(status="routed", outbox=outbox, trace_id="trace-e",
                                                    keys={"encounter_id": "E1", "prescription_number": "RX-1"}))
    assert store.find_trace({"encounter_id": "E1"}) == "trace-e"
    assert store.find_trace({"prescription_number": "RX-1"}) == "trace-e"
    assert store.find_trace({"relates_to": "OUT-1"}) == "trace-e"
    assert store.find_trace({"relates_to": "OUT-2", "encounter_id": "E2"}) is None


def test_read_only_queries_have_one_definition_for_every_backend():
    """The reads differ between backends only in the placeholder, so they are written once (StoreReads)."""
    from bridge.core.store.postgres import PostgresStore
    from bridge.core.store.reads import StoreReads

    reads = ("get_message", "get_raw", "events", "outbox_rows", "search", "counts", "find_trace", "prescription",
             "prescription_events", "holds", "get_watermark", "audit_entries", "verify_audit")
    for name in reads:
        assert getattr(SQLiteStore, name) is getattr(StoreReads, name), name
        assert getattr(PostgresStore, name) is getattr(StoreReads, name), name
    assert (SQLiteStore.placeholder, PostgresStore.placeholder) == ("?", "%s")


def test_watermarks(store):
    assert store.get_watermark("epic-encounters") is None
    store.set_watermark("epic-encounters", "2026-11-27T00:00:00Z")
    store.set_watermark("epic-encounters", "2026-11-27T01:00:00Z")
    assert store.get_watermark("epic-encounters") == "2026-11-27T01:00:00Z"


def test_audit_log_is_hash_chained_append_only_and_verifiable(store):
    for n in range(3):
        store.audit("alice", "view", f"message:{n}", {"n": n})
    assert store.verify_audit() is None
    with pytest.raises((sqlite3.DatabaseError, psycopg.DatabaseError), match="append-only"):
        raw_sql(store, "UPDATE audit_log SET actor='mallory' WHERE id=2")
    with pytest.raises((sqlite3.DatabaseError, psycopg.DatabaseError), match="append-only"):
        raw_sql(store, "DELETE FROM audit_log WHERE id=3")
    # an attacker with direct access to the database
    raw_sql(store, "DROP TRIGGER audit_log_no_update" + ("" if isinstance(store, SQLiteStore) else " ON audit_log"))
    raw_sql(store, "UPDATE audit_log SET actor='mallory' WHERE id=2")
    assert store.verify_audit() == 2


def test_concurrent_receivers_lose_nothing(store):
    def worker(prefix):
        for n in range(50):
            receive(store, f"{prefix}-{n}".encode(), key=f"{prefix}-{n}")

    threads = [threading.Thread(target=worker, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(store.counts()["ch"].values()) == 200


def test_group_commit_batch_handles_duplicates_and_isolates_a_bad_row(sqlite_store):
    from bridge.core.store.sqlite import _Pending

    def pending(raw, key):
        return _Pending(("ch", "bridge", raw, key, {}, {}, None))

    batch = [pending(b"one", "k1"), pending(b"again", "k1"), pending(None, "k2"), pending(b"three", "k3")]
    sqlite_store._commit_batch(batch)
    first, dup = batch[0].result(), batch[1].result()
    assert dup == (first[0], True)
    with pytest.raises(Exception, match="could not store"):
        batch[2].result()
    assert sqlite_store.get_raw(batch[3].result()[0]) == b"three"


def test_concurrent_receivers_share_commits(sqlite_store, monkeypatch):
    batches = []
    original = sqlite_store._commit_batch
    monkeypatch.setattr(sqlite_store, "_commit_batch", lambda batch: (batches.append(len(batch)), original(batch)))
    barrier = threading.Barrier(8)

    def worker(prefix):
        barrier.wait()
        for n in range(25):
            receive(sqlite_store, f"{prefix}-{n}".encode(), key=f"{prefix}-{n}")

    threads = [threading.Thread(target=worker, args=(p,)) for p in "abcdefgh"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(sqlite_store.counts()["ch"].values()) == 200 == sum(batches)


def test_group_commit_survives_an_interrupted_leader(sqlite_store, monkeypatch):
    sqlite_store.max_batch = 2
    original = sqlite_store._commit_batch
    calls = []

    def interrupted(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original(batch)

    monkeypatch.setattr(sqlite_store, "_commit_batch", interrupted)
    items = [("ch", "bridge", f"m{n}".encode(), None, {}, {}, None) for n in range(3)]
    with pytest.raises(KeyboardInterrupt):
        sqlite_store.receive_many(items)
    assert sqlite_store._queue == []  # nothing of the interrupted caller is left to block the next one
    assert sqlite_store.receive("ch", "bridge", b"after", dedupe_key=None, header={}, origin={})[1] is False


def test_a_threads_connection_closes_when_the_thread_ends(sqlite_store):
    import gc
    import os

    def fds():
        return len(os.listdir("/proc/self/fd"))

    sqlite_store.search(limit=1)
    before = fds()
    for _ in range(50):
        worker = threading.Thread(target=lambda: sqlite_store.search(limit=1))
        worker.start()
        worker.join()
    gc.collect()
    assert fds() <= before + 2 and len(sqlite_store._all) <= 2


def test_an_outbox_row_with_an_encode_error_is_a_dead_letter_at_once(store):
    """Issue 12: a destination whose encoder refused gets a dead row (never claimed); the others queue."""
    mid, _ = receive(store)
    claim = store.claim_message("w", 60)
    error = "encoding fhir for refusing failed: period.start has no time zone"
    outbox = [NewOutbox("good", b"payload", "text/plain", "txt", "P1", "strict"),
              NewOutbox("refusing", b"", "application/fhir+json", "json", "P1", "strict", error=error)]
    store.finish_processing(claim, ProcessingResult(status="routed", outbox=outbox))
    rows = {r.destination: r for r in store.outbox_rows(message_id=mid)}
    assert (rows["refusing"].status, rows["refusing"].attempts, rows["refusing"].last_error) == ("dead", 0, error)
    assert rows["good"].status == "pending" and store.get_message(mid).status == "routed"
    assert ("encode_failed", {"destination": "refusing", "outbox_id": rows["refusing"].id, "error": error}) in [
        (e.kind, dict(e.detail)) for e in store.events(mid)]
    delivery = store.claim_delivery("d", 60)
    assert delivery.row.destination == "good" and store.claim_delivery("d2", 60) is None
    store.finish_delivery(delivery, "delivered", "ok")
    assert store.get_message(mid).status == "dead"


def test_a_message_whose_every_row_failed_to_encode_is_dead_when_processed(store):
    mid, _ = receive(store)
    claim = store.claim_message("w", 60)
    store.finish_processing(claim, ProcessingResult(status="routed", outbox=[
        NewOutbox("refusing", b"", "text/plain", "txt", None, "strict", error="encoding x for refusing failed")]))
    assert store.get_message(mid).status == "dead"
    assert [r.status for r in store.outbox_rows(status="dead")] == ["dead"]


def test_an_encode_dead_letter_holds_up_no_lane(store):
    """The dead letter never heads its destination's strict lane (PostgreSQL keeps lanes in a table of
    their own): the same destination's next row in that lane is claimed at once."""
    first, _ = receive(store, b"a", lane="patient:P1")
    second, _ = receive(store, b"b", lane="patient:P1")
    claim = store.claim_message("w", 60)
    store.finish_processing(claim, ProcessingResult(status="routed", outbox=[
        NewOutbox("d", b"", "text/plain", "txt", "patient:P1", "strict", error="encoding x for d failed")]))
    claim = store.claim_message("w", 60)
    assert claim.id == second
    routed(store, claim, order_key="patient:P1")
    delivery = store.claim_delivery("deliverer", 60)
    assert delivery is not None and delivery.row.message_id == second
    assert store.get_message(first).status == "dead"


# --- the queue: lanes and batches (every backend) -------------------------------------------------


def decide(store, claims, status="routed", destinations=("d",), mode="strict"):
    """Finish a batch of claims in one transaction; outbox rows carry each message's lane key."""
    results = []
    for claim in claims:
        outbox = [NewOutbox(d, b"payload", "text/plain", "txt", claim.order_key, mode) for d in destinations]
        results.append((claim, ProcessingResult(status=status, outbox=outbox if status == "routed" else (),
                                                hold_reasons=[{"id": "r"}] if status == "held" else None)))
    return store.finish_processing_many(results)


def test_a_batch_claim_takes_the_head_of_each_lane(store):
    a, _ = receive(store, b"a", lane="patient:P1")
    b, _ = receive(store, b"b", lane="patient:P1")
    c, _ = receive(store, b"c", lane="patient:P2")
    d, _ = receive(store, b"d")  # no key: a lane of its own
    e, _ = receive(store, b"e")
    f, _ = receive(store, b"f", channel="other", lane="patient:P1")  # same key, other channel: other lane
    claims = store.claim_messages("w1", 30, 10)
    assert [c.id for c in claims] == [a, c, d, e, f]
    assert claims[0].order_key == "patient:P1" and claims[3].order_key is None
    assert store.claim_messages("w2", 30, 10) == []  # b waits behind a, which is in flight
    assert decide(store, claims) == [None] * 5
    assert [c.id for c in store.claim_messages("w2", 30, 10)] == [b]


def test_a_batch_claim_stops_at_its_limit_oldest_first(store):
    ids = [receive(store, f"m{n}".encode(), lane=f"patient:P{n}")[0] for n in range(7)]
    first = store.claim_messages("w", 30, 3)
    second = store.claim_messages("w", 30, 3)
    assert [c.id for c in first] == ids[:3] and [c.id for c in second] == ids[3:6]


def test_the_same_key_never_overtakes_itself_with_concurrent_workers(store):
    lanes = [f"patient:P{n}" for n in range(5)]
    expected: dict[str, list[int]] = {lane: [] for lane in lanes}
    for n in range(100):
        lane = lanes[n % 3] if n % 4 else lanes[3 + n % 2]
        expected[lane].append(receive(store, f"m{n}".encode(), lane=lane)[0])
    finished: dict[str, list[int]] = {lane: [] for lane in lanes}
    in_flight: set[str] = set()
    overlaps: list[str] = []
    guard = threading.Lock()

    def worker(name):
        idle = 0
        while idle < 20:
            claims = store.claim_messages(name, 30, 4)
            if not claims:
                idle += 1
                time.sleep(0.005)
                continue
            idle = 0
            with guard:
                for claim in claims:
                    if claim.order_key in in_flight:
                        overlaps.append(claim.order_key)
                    in_flight.add(claim.order_key)
            time.sleep(0.002)  # "decoding"
            with guard:  # the result is written before the lane is free again
                assert decide(store, claims) == [None] * len(claims)
                for claim in claims:
                    finished[claim.order_key].append(claim.id)
                    in_flight.discard(claim.order_key)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []  # two messages of one lane were never in flight at once
    assert finished == expected  # each lane processed in arrival order; every message once


def test_held_and_failed_messages_let_their_lane_go_and_a_released_hold_rejoins_it(store):
    a, _ = receive(store, b"a", lane="patient:P1")
    b, _ = receive(store, b"b", lane="patient:P1")
    c, _ = receive(store, b"c", lane="patient:P1")
    decide(store, store.claim_messages("w", 30, 5), status="held")
    (second,) = store.claim_messages("w", 30, 5)
    assert second.id == b
    store.resolve_hold(a, "release", reason="reviewed", actor="alice")
    assert store.claim_messages("w", 30, 5) == []  # b is in flight: the released a waits at the back
    store.finish_processing(second, ProcessingResult(status="failed", error="bad"))
    (third,) = store.claim_messages("w", 30, 5)
    assert third.id == a  # the oldest waiting message of the lane is next
    decide(store, [third])
    assert [x.id for x in store.claim_messages("w", 30, 5)] == [c]


def test_a_paused_channel_is_left_out_of_batches(store):
    receive(store, b"a", channel="paused", lane="patient:P1")
    b, _ = receive(store, b"b", channel="open", lane="patient:P1")
    store.set_channel_paused("paused", True, reason="maintenance", actor="alice")
    assert [c.id for c in store.claim_messages("w", 30, 10)] == [b]
    store.set_channel_paused("paused", False, reason="done", actor="alice")
    assert [c.channel for c in store.claim_messages("w", 30, 10)] == ["paused"]


def test_finishing_a_batch_fences_each_item_and_commits_the_rest(store):
    receive(store, b"a", lane="patient:P1")
    receive(store, b"b", lane="patient:P2")
    stale = store.claim_messages("crashed", 0.01, 10)
    time.sleep(0.02)
    (fresh_a,) = [c for c in store.claim_messages("w2", 30, 1)]
    outcome = decide(store, stale)
    assert isinstance(outcome[0], LeaseLost) and outcome[1] is None
    assert store.get_message(stale[1].id).status == "routed"
    assert store.get_message(fresh_a.id).status == "processing"  # the new owner's claim is untouched
    assert decide(store, [fresh_a]) == [None]
    assert len(store.outbox_rows()) == 2  # the stale result wrote nothing


def test_a_replay_joins_the_back_of_its_lane(store):
    a, _ = receive(store, b"a", lane="patient:P1")
    decide(store, store.claim_messages("w", 30, 5), status="filtered")
    b, _ = receive(store, b"b", lane="patient:P1")
    (head,) = store.claim_messages("w", 30, 5)
    copy = store.replay(a, reason="resend", actor="alice")
    assert head.id == b and store.claim_messages("w", 30, 5) == []
    decide(store, [head], status="filtered")
    (replayed,) = store.claim_messages("w", 30, 5)
    assert replayed.id == copy and replayed.order_key == "patient:P1"


def routed_lanes(store, lanes, destinations=("d",), mode="strict"):
    """Receive and route one message per lane key given; returns their ids."""
    ids = [receive(store, f"m{n}".encode(), lane=lane)[0] for n, lane in enumerate(lanes)]
    while claims := store.claim_messages("w", 30, 50):
        decide(store, claims, destinations=destinations, mode=mode)
    return ids


def test_a_delivery_batch_takes_the_head_of_each_destination_lane(store):
    first, second, other = routed_lanes(store, ["patient:P1", "patient:P1", "patient:P2"], destinations=("d1", "d2"))
    claims = store.claim_deliveries("x", 30, 10)
    assert sorted((c.row.message_id, c.row.destination) for c in claims) == [
        (first, "d1"), (first, "d2"), (other, "d1"), (other, "d2")]
    assert all(c.row.order_key in ("patient:P1", "patient:P2") and c.row.attempts == 1 for c in claims)
    assert store.claim_deliveries("y", 30, 10) == []
    results = store.finish_deliveries([DeliveryOutcome(c, "delivered", "ok") for c in claims])
    assert results == [None] * 4
    assert store.get_message(first).status == "delivered" and store.get_message(other).status == "delivered"
    assert sorted((c.row.message_id, c.row.destination) for c in store.claim_deliveries("y", 30, 10)) == [
        (second, "d1"), (second, "d2")]


def test_strict_lane_waits_for_its_retrying_head(store):
    first, second = routed_lanes(store, ["patient:P1", "patient:P1"])
    (head,) = store.claim_deliveries("x", 30, 10)
    store.finish_deliveries([DeliveryOutcome(head, "retry", "busy", time.time() + 60)])
    assert store.claim_deliveries("x", 30, 10) == []  # the second waits for the first's retry
    (again,) = store.claim_deliveries("x", 30, 10, now=time.time() + 61)
    assert again.row.message_id == first and again.row.attempts == 2
    store.finish_deliveries([DeliveryOutcome(again, "dead", "refused")])
    (nxt,) = store.claim_deliveries("x", 30, 10)
    assert nxt.row.message_id == second  # a dead head lets the lane move on


def test_rotate_lane_lets_a_failing_head_step_aside(store):
    first, second, third = routed_lanes(store, ["patient:P1"] * 3, mode="rotate")
    (head,) = store.claim_deliveries("x", 30, 10)
    store.finish_deliveries([DeliveryOutcome(head, "retry", "busy", time.time() + 60)])
    (nxt,) = store.claim_deliveries("x", 30, 10)
    assert nxt.row.message_id == second  # the lane flows past the failing row ...
    assert store.claim_deliveries("x", 30, 10) == []  # ... but is still ordered behind its new head
    store.finish_deliveries([DeliveryOutcome(nxt, "delivered", "ok")])
    later = store.claim_deliveries("x", 30, 10, now=time.time() + 61)
    assert sorted(c.row.message_id for c in later) == [first, third]  # the failed row retries on its own


def test_finishing_a_delivery_batch_fences_each_item(store):
    routed_lanes(store, ["patient:P1", "patient:P2"])
    stale = store.claim_deliveries("crashed", 0.01, 10)
    time.sleep(0.02)
    fresh = store.claim_deliveries("y", 30, 1)
    results = store.finish_deliveries([DeliveryOutcome(c, "delivered", "late") for c in stale])
    assert isinstance(results[0], LeaseLost) and results[1] is None
    assert fresh[0].row.id == stale[0].row.id
    assert store.finish_deliveries([DeliveryOutcome(fresh[0], "delivered", "ok", reply=("d.replies", "bridge", b"ack"))
                                    ])[0] is not None  # the stored reply's message id
    with pytest.raises(ValueError, match="unknown delivery outcome 'sent'"):
        store.finish_deliveries([DeliveryOutcome(fresh[0], "sent", "?")])


def test_claim_cost_does_not_grow_with_the_backlog(store):
    """A lane whose head is in flight with a long backlog behind it is what made the old claim slow:
    the claim must read heads, not backlogs. 30x the backlog may not cost 3x the time per claim.
    (benchmarks/pipeline.py measures the drain rate at 100,000 against 1,000.)"""

    def claim_seconds(waiting: int) -> float:
        lanes = [f"patient:P{n}" for n in range(20)]
        items = [("bulk", "bridge", b"x", None, {"order_key": lanes[n % 20]}, {}, None) for n in range(waiting)]
        for start in range(0, waiting, 2000):
            store.receive_many(items[start:start + 2000])
        timings = []
        for _ in range(15):
            began = time.perf_counter()
            claims = store.claim_messages("w", 30, 10)
            timings.append(time.perf_counter() - began)
            decide(store, claims, status="filtered")
        return sorted(timings)[len(timings) // 2]

    small = claim_seconds(500)
    large = claim_seconds(15_000)  # on top of what is left of the small backlog
    assert large < small * 3 + 0.005, (small, large)


def test_wait_for_work_wakes_on_another_connections_commit(store):
    from bridge.core.store.base import Store

    if type(store).wait_for_work is Store.wait_for_work:
        pytest.skip("this backend has no wake-up hint (the default only sleeps)")
    timer = threading.Timer(0.2, lambda: receive(store, b"late"))
    began = time.monotonic()
    timer.start()
    woke = store.wait_for_work(10)
    timer.join()
    assert woke and time.monotonic() - began < 5


def test_each_message_keeps_its_own_origin_when_origins_are_remembered(sqlite_store):
    """The intake remembers each distinct origin's JSON (one json.dumps per connection, not per frame):
    equal-looking values of other types, key order and unhashable values must still come back as sent."""
    origins = [{"transport": "mllp", "peer": "10.0.0.1:5000"}, {"peer": "10.0.0.1:5000", "transport": "mllp"},
               {"transport": "mllp", "peer": "10.0.0.2:5000"}, {"n": 1}, {"n": True}, {"n": 1.0},
               {"files": ["a", "b"]}, {}]
    ids = [sqlite_store.receive("ch", "bridge", f"m{i}".encode(), dedupe_key=None, header={}, origin=origin)[0]
           for i, origin in enumerate(origins * 2)]
    for message_id, origin in zip(ids, origins * 2):
        stored = sqlite_store.get_message(message_id).origin
        assert stored == origin and [type(v) for v in stored.values()] == [type(v) for v in origin.values()]


def test_remembered_origins_are_bounded(sqlite_store, monkeypatch):
    from bridge.core.store import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_ORIGIN_JSON_MAX", 8)
    for i in range(50):
        mid, _ = sqlite_store.receive("ch", "bridge", b"m", dedupe_key=None, header={}, origin={"peer": f"p{i}"})
        assert sqlite_store.get_message(mid).origin == {"peer": f"p{i}"}
    assert len(sqlite_module._ORIGIN_JSON) <= 8


def test_message_intakes_reads_a_batch_of_messages_channels_and_intake_times_at_once(store):
    """The delivery latency metric reads a settled batch's messages in one query (both backends)."""
    before = time.time()
    first, _ = receive(store, b"one", channel="adt")
    second, _ = receive(store, b"two", channel="lab")
    intakes = store.message_intakes([second, first, second, first + second + 1000])  # repeats, one unknown id
    assert set(intakes) == {first, second}
    assert intakes[first][0] == "adt" and intakes[second][0] == "lab"
    assert all(before - 1 <= at <= time.time() + 1 for _, at in intakes.values())
    assert store.message_intakes([]) == {}
    assert store.message_intake(first) == intakes[first] and store.message_intake(first + second + 1000) is None


def test_two_rows_of_one_destination_lane_in_one_batch_are_delivered_in_order(store):
    """One processing batch may write two outbox rows into one delivery lane (the same key in two
    channels): the first becomes the lane's head, the second waits behind it (both backends)."""
    a, _ = receive(store, b"a", lane="patient:P1")
    f, _ = receive(store, b"f", channel="other", lane="patient:P1")
    g, _ = receive(store, b"g", lane="patient:P2")
    assert decide(store, store.claim_messages("w", 30, 10)) == [None] * 3
    first = store.claim_deliveries("x", 30, 10)
    assert sorted(c.row.message_id for c in first) == [a, g]  # f's row waits behind a's
    assert store.claim_deliveries("y", 30, 10) == []
    for claim in first:
        store.finish_delivery(claim, "delivered", "ok")
    assert [c.row.message_id for c in store.claim_deliveries("y", 30, 10)] == [f]

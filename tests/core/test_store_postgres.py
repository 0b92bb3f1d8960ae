"""What only the PostgreSQL store has to prove: several nodes (store instances, each with its own pool)
on one database, its migrations, its lanes' bookkeeping and its wake-up hint. The shared contract is
tests/core/test_store.py, which runs on both backends."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import psycopg
import pytest

from bridge.core.store import open_store
from bridge.core.store.base import DeliveryOutcome, NewOutbox, ProcessingResult
from bridge.core.store.postgres import PostgresStore, redact_url, split_url
from bridge.core.store.postgres_queue import NOTIFY_CHANNEL
from bridge.core.store.postgres_schema import MIGRATIONS
from bridge.errors import LeaseLost, StoreError
from tests import pg
from tests.pg import pg_url  # noqa: F401  (fixture)


@pytest.fixture
def nodes(pg_url):  # noqa: F811
    """Two stores on one database, as two engine processes would have."""
    stores = [open_store(pg_url), open_store(pg_url)]
    yield stores
    for s in stores:
        s.close()


def receive(store, raw, order_key=None, channel="ch", dedupe_key=None):
    return store.receive(channel, "bridge", raw, dedupe_key=dedupe_key, header={"order_key": order_key}, origin={})


def routed(order_key, destinations=("d",), mode="strict"):
    return ProcessingResult(status="routed", outbox=[NewOutbox(d, b"p", "text/plain", "txt", order_key, mode)
                                                     for d in destinations])


def count(store, table):
    with store._tx() as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_migrations_are_versioned_and_idempotent(pg_url):  # noqa: F811
    first = PostgresStore(pg_url)
    assert first.schema_version() == MIGRATIONS[-1][0]
    first.close()
    again = PostgresStore(pg_url)
    assert again._read("SELECT COUNT(*) FROM schema_migrations")[0][0] == len(MIGRATIONS)
    again.close()


def test_a_batch_with_a_bad_item_stores_the_others_and_dedupes(nodes):
    store = nodes[0]
    items = [("ch", "bridge", b"one", "k1", {}, {}, None), ("ch", "bridge", b"again", "k1", {}, {}, None),
             ("ch", "bridge", None, "k2", {}, {}, None), ("ch", "bridge", b"three", "k3", {}, {}, None)]
    first, dup, bad, third = store.receive_many(items)
    assert dup == (first[0], True)
    assert isinstance(bad, StoreError) and "could not store" in str(bad)
    assert store.get_raw(third[0]) == b"three"


def test_two_nodes_receiving_the_same_messages_store_each_once(nodes):
    barrier = threading.Barrier(8)
    results = []

    def sender(store):
        barrier.wait()
        for n in range(40):
            results.append(receive(store, f"m{n}".encode(), dedupe_key=f"key-{n}"))

    threads = [threading.Thread(target=sender, args=(nodes[n % 2],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(nodes[0], "messages") == 40
    assert sum(1 for _, dup in results if not dup) == 40 and len(results) == 320


def test_audit_chain_holds_under_concurrent_writers_on_two_nodes(nodes):
    def writer(store, name):
        for n in range(25):
            store.audit(name, "view", f"message:{n}", {"n": n})

    threads = [threading.Thread(target=writer, args=(nodes[n % 2], f"user{n}")) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(nodes[0], "audit_log") == 150
    assert nodes[1].verify_audit() is None


def test_workers_on_two_nodes_process_each_message_once_and_in_order_per_key(nodes):
    keys = [f"P{k}" for k in range(12)]
    expected = defaultdict(list)
    for n in range(240):
        key = keys[n % len(keys)]
        mid, _ = receive(nodes[n % 2], f"{key}-{n}".encode(), order_key=key)
        expected[key].append(mid)
    seen = defaultdict(list)
    busy: set[str] = set()
    overlaps = []
    lock = threading.Lock()

    def worker(store, name):
        idle = 0
        while idle < 20:
            claims = store.claim_messages(name, 30, 5)
            if not claims:
                idle += 1
                time.sleep(0.01)
                continue
            idle = 0
            with lock:
                for c in claims:
                    overlaps.extend([c.order_key] if c.order_key in busy else [])
                    busy.add(c.order_key)
                    seen[c.order_key].append(c.id)
            time.sleep(0.002)
            with lock:
                busy.difference_update(c.order_key for c in claims)
            assert store.finish_processing_many([(c, routed(c.order_key)) for c in claims]) == [None] * len(claims)

    threads = [threading.Thread(target=worker, args=(nodes[n % 2], f"w{n}")) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []  # a key was never in two workers' hands at once
    assert dict(seen) == dict(expected)  # each message once, in arrival order per key
    assert nodes[0].counts()["ch"] == {"routed": 240}
    assert count(nodes[0], "message_lanes") == 0  # the lanes' bookkeeping is gone with the work


def test_a_batch_claims_one_head_per_lane_and_a_stale_item_fails_alone(nodes):
    a1, _ = receive(nodes[0], b"a1", order_key="A")
    receive(nodes[0], b"a2", order_key="A")
    b1, _ = receive(nodes[0], b"b1", order_key="B")
    c1, _ = receive(nodes[0], b"c1")  # no key: a lane of its own
    claims = nodes[0].claim_messages("w1", 0.05, 10)
    assert [c.id for c in claims] == [a1, b1, c1]
    time.sleep(0.1)
    retaken = nodes[1].claim_messages("w2", 30, 1)
    assert [c.id for c in retaken] == [a1] and retaken[0].token > claims[0].token
    results = nodes[0].finish_processing_many([(c, routed(c.order_key)) for c in claims])
    assert isinstance(results[0], LeaseLost) and results[1:] == [None, None]
    assert nodes[1].finish_processing_many([(retaken[0], routed("A"))]) == [None]
    assert [m.status for m in (nodes[0].get_message(i) for i in (a1, b1, c1))] == ["routed"] * 3


def test_delivery_lanes_strict_waits_rotate_steps_aside(nodes):
    store = nodes[0]
    for mode in ("strict", "rotate"):
        for n in range(2):
            receive(store, f"{mode}{n}".encode(), order_key=mode)
    while claims := store.claim_messages("w", 30, 10):
        for claim in claims:
            store.finish_processing(claim, routed(claim.order_key, mode=claim.order_key))
    heads = store.claim_deliveries("x", 30, 10)
    assert sorted(h.row.order_key for h in heads) == ["rotate", "strict"]
    later = time.time() + 60
    assert store.finish_deliveries([DeliveryOutcome(h, "retry", "busy", later) for h in heads]) == [None, None]
    # strict: the lane waits for its head's retry; rotate: the failed row stepped aside, the next goes
    after = store.claim_deliveries("x", 3600, 10)  # held past the retries below
    assert [(h.row.order_key, h.row.attempts) for h in after] == [("rotate", 1)]
    due = store.claim_deliveries("x", 30, 10, now=later + 1)
    assert sorted((h.row.order_key, h.row.attempts) for h in due) == [("rotate", 2), ("strict", 2)]


def test_one_notify_per_committed_batch_and_it_wakes_another_node(nodes, pg_url):  # noqa: F811
    with psycopg.connect(split_url(pg_url)[0], autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        nodes[0].receive_many([("ch", "bridge", f"m{n}".encode(), None, {}, {}, None) for n in range(50)])
        assert len(list(listener.notifies(timeout=0.5))) == 1
    nodes[1].wait_for_work(0.01)  # starts node 2's listener
    time.sleep(0.3)
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(nodes[1].wait_for_work(5)))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.1)
    receive(nodes[0], b"wake up")
    waiter.join()
    assert woke == [True] and time.monotonic() - started < 3


def test_the_hint_says_which_kind_of_work_so_deliverers_sleep_through_received_messages(nodes):  # noqa: F811
    """A received message wakes a waiting worker, not a waiting deliverer; the result that makes its
    outbox row wakes the deliverer (each hint comes from another node)."""
    nodes[1].wait_for("messages", 0.01)  # starts node 2's listener
    time.sleep(0.3)

    def waiting(kind: str) -> tuple[threading.Thread, list[bool]]:
        woke: list[bool] = []
        thread = threading.Thread(target=lambda: woke.append(nodes[1].wait_for(kind, 1.5)))
        thread.start()
        return thread, woke

    (worker, worker_woke), (deliverer, deliverer_woke) = waiting("messages"), waiting("deliveries")
    time.sleep(0.1)
    receive(nodes[0], b"a message")
    worker.join(), deliverer.join()
    assert worker_woke == [True] and deliverer_woke == [False]
    claim = nodes[0].claim_message("w", 30)
    deliverer, deliverer_woke = waiting("deliveries")
    time.sleep(0.1)
    nodes[0].finish_processing(claim, ProcessingResult(status="routed", outbox=[
        NewOutbox("out", b"payload", "text/plain", "txt", None, "strict")]))
    deliverer.join()
    assert deliverer_woke == [True]


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    with pytest.raises(StoreError) as err:
        PostgresStore("postgresql://bridge:s3cret@127.0.0.1:1/bridge", connect_timeout=1)
    assert "127.0.0.1" in str(err.value) and "s3cret" not in str(err.value)
    with pytest.raises(StoreError, match="pool_size"):
        split_url("postgresql://u@h/db?pool_size=lots")
    assert split_url("postgresql://u@h:5432/db?pool_size=3&sslmode=require") == (
        "postgresql://u@h:5432/db?sslmode=require", 3)
    with pytest.raises(StoreError) as err:  # libpq also takes the password as a query parameter
        PostgresStore("postgresql://bridge@127.0.0.1:1/bridge?password=q-s3cret&sslmode=disable", connect_timeout=1)
    assert "q-s3cret" not in str(err.value) and "password=***" in str(err.value)
    assert redact_url("postgresql://u:p@h:5/db?sslpassword=k&pool_size=2") == \
        "postgresql://u:***@h:5/db?sslpassword=***&pool_size=2"


def test_without_a_server_tests_skip_with_the_reason_but_fail_in_ci(monkeypatch):
    monkeypatch.setattr(pg, "SERVER", "postgresql://postgres@127.0.0.1:1")
    monkeypatch.delenv("BRIDGE_REQUIRE_POSTGRES", raising=False)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server at postgresql://postgres@127.0.0.1:1"):
        pg.require_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is required here"):
        pg.require_server()


def test_a_batch_rolled_back_as_a_deadlock_victim_is_retried(nodes, monkeypatch):
    store = nodes[0]
    receive(store, b"a", order_key="A")
    claims = store.claim_messages("w", 30, 5)
    real = store._finish_processing_batch
    calls = []

    def victim_once(results):
        calls.append(len(results))
        if len(calls) == 1:
            with store._tx() as conn:  # the deadlock reaches the retry unchanged, not as a StoreError
                conn.execute("SELECT 1")
                raise psycopg.errors.DeadlockDetected("deadlock detected")
        return real(results)

    monkeypatch.setattr(store, "_finish_processing_batch", victim_once)
    assert store.finish_processing_many([(c, routed("A")) for c in claims]) == [None]
    assert calls == [1, 1] and store.get_message(claims[0].id).status == "routed"

    def always(results):
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    monkeypatch.setattr(store, "_finish_processing_batch", always)
    with pytest.raises(StoreError, match="rolled back 5 times"):
        store.finish_processing_many([])


def test_a_claim_passes_over_a_head_being_written_and_never_waits(nodes, pg_url):  # noqa: F811
    """A late owner writing its result holds the head's row lock; a claim must skip that lane rather than
    wait (waiting there while holding lane locks is how two nodes deadlock)."""
    a, _ = receive(nodes[0], b"a", order_key="A")
    b, _ = receive(nodes[0], b"b", order_key="B")
    with psycopg.connect(split_url(pg_url)[0]) as writer:
        writer.execute("SELECT 1 FROM messages WHERE id = %s FOR UPDATE", (a,))
        started = time.monotonic()
        claims = nodes[1].claim_messages("w", 30, 10)
        assert [c.id for c in claims] == [b] and time.monotonic() - started < 2
        writer.rollback()
    assert [c.id for c in nodes[1].claim_messages("w", 30, 10)] == [a]

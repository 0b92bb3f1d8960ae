"""Issue 16 defect 1: a send that outlasts its lease is not sent again concurrently, and max_attempts holds.

A real MLLP peer on loopback ACKs late (after 3 lease lengths, well inside ``ack_timeout_seconds``);
two deliverer threads run against one store. Before the fix the second thread claimed the row when the
first one's lease expired and sent it again, and the first thread's late AA was thrown away as
"lease lost". On SQLite and on PostgreSQL (skipped with the reason where no server answers).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from bridge.core.delivery_lease import DeliveryLeaseKeeper
from tests import pg
from tests.hl7v2.conftest_mllp import TEST_FORMAT, RawClient, ScriptedPeer, adt, channel, listening

LEASE_SECONDS = 0.6
LATE_SECONDS = 3 * LEASE_SECONDS


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None  # the default: a SQLite file in tmp_path
        return
    with pg.database() as url:
        yield url


@pytest.fixture
def late_peer() -> Iterator[ScriptedPeer]:
    peer = ScriptedPeer([f"late:{LATE_SECONDS}"])
    yield peer
    peer.close()


def config(peer_port: int, store_url: str | None, max_attempts: int = 2) -> dict:
    return {
        **({"store": store_url} if store_url else {}),
        "engine": {"lease_seconds": LEASE_SECONDS, "batch_size": 1},
        "channels": {"adt": channel(to="ehr")},
        "destinations": {"ehr": {"url": f"mllp://127.0.0.1:{peer_port}", "format": TEST_FORMAT,
                                 "options": {"ack_timeout_seconds": 10},
                                 "retry": {"max_attempts": max_attempts, "initial_seconds": 0, "jitter": 0}}},
    }


def run_deliverers(engine, threads: int, seconds: float) -> None:
    """``threads`` deliverer loops on one engine (as ``engine.deliverers`` runs them) for ``seconds``."""
    stop = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop:
            if not engine.deliver_batch():
                time.sleep(0.05)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_a_late_ack_is_recorded_and_the_message_is_sent_once(bridge_engine, late_peer, store_url):
    with listening(bridge_engine, config(late_peer.port, store_url)) as (engine, source):
        assert RawClient(source.port).send(adt("LATE-1"))[0] == "AA"
        while engine.process_batch():
            pass
        run_deliverers(engine, threads=2, seconds=LATE_SECONDS + 4 * LEASE_SECONDS)
        [message] = engine.store.search(channel="adt")
        [row] = engine.store.outbox_rows(message_id=message.id)
        assert len(late_peer.received) == 1, "the row was sent again while its first send was in flight"
        assert (row.status, row.attempts) == ("delivered", 1)


def test_attempts_whose_leases_ended_count_against_max_attempts(bridge_engine, store_url):
    """Deliverers that died mid-send (their leases ran out, no outcome written) used up the attempts:
    the next claim dead-letters the row instead of sending it a third time."""
    peer = ScriptedPeer()
    with contextlib.closing(peer), listening(bridge_engine, config(peer.port, store_url)) as (engine, source):
        assert RawClient(source.port).send(adt("LATE-2"))[0] == "AA"
        while engine.process_batch():
            pass
        for _ in range(2):  # two deliverers claim and vanish
            assert engine.store.claim_deliveries("vanished", 0.05, 1)
            time.sleep(0.1)
        assert engine.deliver_batch() == 1
        [message] = engine.store.search(channel="adt")
        [row] = engine.store.outbox_rows(message_id=message.id)
        assert (row.status, row.attempts) == ("dead", 3)
        assert "max_attempts 2" in row.last_error
        assert peer.received == []


def test_renewal_is_fenced_by_the_claims_token(bridge_engine, store_url):
    """A renewal extends a live claim's lease so no one else can claim the row; a claim that was taken
    over after its lease ended, or already settled, is not renewed."""
    peer = ScriptedPeer()
    with contextlib.closing(peer), listening(bridge_engine, config(peer.port, store_url)) as (engine, source):
        assert RawClient(source.port).send(adt("LATE-3"))[0] == "AA"
        while engine.process_batch():
            pass
        store = engine.store
        [first] = store.claim_deliveries("first", 0.3, 1)
        time.sleep(0.2)
        assert store.renew_deliveries([first], 5) == [True]
        time.sleep(0.3)  # past the first lease: only the renewal keeps the row
        assert store.claim_deliveries("second", 5, 1) == []
        store.finish_delivery(first, "retry", "scripted failure", time.time())
        assert store.renew_deliveries([first], 5) == [False]  # settled: nothing to renew
        [second] = store.claim_deliveries("second", 0.05, 1)
        time.sleep(0.1)
        [third] = store.claim_deliveries("third", 5, 1)
        assert store.renew_deliveries([second, third], 5) == [False, True]


def test_one_keeper_renews_each_batch_until_it_is_settled(bridge_engine, store_url):
    """Every deliverer's batches share one renewal thread (not one thread per batch): a batch still
    sending keeps its row past several lease lengths, while a batch settled early stops being renewed
    and its row becomes claimable again one lease later."""
    peer = ScriptedPeer()
    with contextlib.closing(peer), listening(bridge_engine, config(peer.port, store_url)) as (engine, source):
        for n, patient in enumerate(("P1", "P2")):
            assert RawClient(source.port).send(adt(f"KEEP-{n}", patient=patient))[0] == "AA"
        while engine.process_batch():
            pass
        store = engine.store
        slow, quick = store.claim_deliveries("slow", LEASE_SECONDS, 2)
        keeper = DeliveryLeaseKeeper(store)
        before = lease_threads()
        try:
            with keeper.keep([slow], LEASE_SECONDS), keeper.keep([quick], LEASE_SECONDS) as quick_batch:
                quick_batch.settled([quick])  # its outcome is being written: no renewal from now on
                time.sleep(3 * LEASE_SECONDS)
                assert lease_threads() == before + 1, "one renewal thread for both batches"
                taken = store.claim_deliveries("other", 5, 2)
                assert [c.row.id for c in taken] == [quick.row.id], "the slow batch's row was not kept"
        finally:
            keeper.close()
        assert lease_threads() == before


def lease_threads() -> int:
    return sum(t.name == "delivery-lease" for t in threading.enumerate())

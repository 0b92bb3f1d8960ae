"""The store's admin tables: users, tokens, channel pause (and its effect on claims), audit search."""

from __future__ import annotations

import time

import pytest

from bridge.core.store.base import ProcessingResult
from bridge.errors import BridgeError
from tests.pg import backend_stores


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with backend_stores(request.param, tmp_path) as (s,):
        yield s


def receive(store, channel: str, n: int) -> int:
    return store.receive(channel, "bridge", b"{}", dedupe_key=f"{channel}-{n}",
                         header={"order_key": f"channel:{channel}"}, origin={})[0]  # order.by: channel


def test_migration_3_is_applied(store):
    assert store.schema_version() >= 3


def test_claims_skip_a_paused_channel_and_keep_its_order(store):
    a1, b1, a2 = receive(store, "a", 1), receive(store, "b", 1), receive(store, "a", 2)
    store.set_channel_paused("a", True, reason="maintenance", actor="test")
    claim = store.claim_message("w", 30)
    assert claim.id == b1
    assert store.claim_message("w", 30) is None  # a1 and a2 wait while "a" is paused
    store.set_channel_paused("a", False, reason="back", actor="test")
    assert store.claim_message("w", 30).id == a1
    assert store.claim_message("w", 30) is None  # a2 waits for a1 (one in flight per lane, here the channel)
    assert a2 > a1
    assert [e.action for e in store.search_audit(target="channel:a")] == ["channel.resume", "channel.pause"]
    with pytest.raises(BridgeError, match="reason"):
        store.set_channel_paused("a", True, reason=" ", actor="test")


def claimable_lanes(store) -> int:
    """How many lane heads a claim may read (what it passes over when they are not due is its cost)."""
    if store.placeholder == "?":  # SQLite: the partial index the claim reads
        return store._select("SELECT COUNT(*) FROM messages INDEXED BY messages_lane_heads WHERE lane_head = 1")[0][0]
    return store._select("SELECT COUNT(*) FROM message_lanes WHERE due_at <= ?", (time.time(),))[0][0]


def test_a_paused_backlog_is_not_read_by_claims_and_comes_back_in_order(store):
    """Claims never pass over a paused channel's heads: pausing parks them, a message received while
    paused is parked, a head that finishes while paused hands over to a parked one, and resuming makes
    them claimable again, oldest first."""
    lone = [store.receive("a", "bridge", b"{}", dedupe_key=f"a-{n}", header={"order_key": None}, origin={})[0]
            for n in range(40)]  # order by none: every message is a lane of its own
    chained = [receive(store, "c", n) for n in range(3)]  # one lane
    b1 = receive(store, "b", 1)
    in_flight = store.claim_message("w", 30)
    assert in_flight.id == lone[0]
    store.set_channel_paused("a", True, reason="maintenance", actor="test")
    store.set_channel_paused("c", True, reason="maintenance", actor="test")
    assert claimable_lanes(store) == 1  # b's head only: 39 + 1 parked heads are not read
    late = store.receive("a", "bridge", b"{}", dedupe_key="a-late", header={"order_key": None}, origin={})[0]
    assert claimable_lanes(store) == 1
    claim_b = store.claim_message("w", 30)
    assert claim_b.id == b1
    store.set_channel_paused("c", False, reason="one back", actor="test")
    claim_c = store.claim_message("w", 30)
    assert claim_c.id == chained[0]
    store.set_channel_paused("c", True, reason="again", actor="test")
    store.finish_processing(claim_c, ProcessingResult(status="filtered"))  # its successor is parked
    store.finish_processing(in_flight, ProcessingResult(status="filtered"))
    store.finish_processing(claim_b, ProcessingResult(status="filtered"))
    assert claimable_lanes(store) == 0 and store.claim_message("w", 30) is None
    store.set_channel_paused("a", False, reason="back", actor="test")
    store.set_channel_paused("c", False, reason="back", actor="test")
    claimed = [c.id for c in store.claim_messages("w", 30, 100)]
    assert claimed == sorted([*lone[1:], late, chained[1]])


def test_channel_stats(store):
    receive(store, "a", 1)
    store.receive("a", "bridge", b"x", dedupe_key="bad", header={}, origin={}, error="cannot decode")
    stats = store.channel_stats(0)["a"]
    assert (stats.queue_depth, stats.received_recent, stats.errors_recent) == (1, 2, 1)
    assert stats.error_rate == 0.5 and stats.oldest_waiting_at and not stats.paused
    assert store.channel_stats(10 ** 11)["a"].received_recent == 0


def test_users_and_tokens_are_unique_validated_and_audited(store):
    store.create_user("alice", "scrypt$x", "analyst", actor="cli:root")
    with pytest.raises(BridgeError, match="already exists"):
        store.create_user("alice", "scrypt$y", "viewer", actor="cli:root")
    with pytest.raises(BridgeError, match="unknown role"):
        store.create_user("bob", "scrypt$y", "superuser", actor="cli:root")
    with pytest.raises(BridgeError, match="without spaces"):
        store.create_token("two words", "00", "viewer", actor="cli:root")
    store.create_token("ci", "ab" * 32, "operator", actor="cli:root")
    assert store.token_by_hash("ab" * 32).role == "operator"
    store.revoke_token("ci", actor="cli:root")
    assert store.token_by_hash("ab" * 32) is None
    with pytest.raises(BridgeError, match="no live token"):
        store.revoke_token("ci", actor="cli:root")
    assert store.update_user("alice", actor="cli:root", disabled=True).disabled
    actions = [e.action for e in store.search_audit(actor="cli:root")]
    assert actions == ["user.update", "token.revoke", "token.create", "user.create"]
    assert store.verify_audit() is None

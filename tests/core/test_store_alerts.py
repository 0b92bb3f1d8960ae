"""The store contract for alert state, on both backends: transitions and notice claims are
compare-and-set, so several nodes sharing a store fire, notify and resolve each alert once."""

from __future__ import annotations

import threading

import pytest

from bridge.core.store.base import DeliveryOutcome, NewOutbox, ProcessingResult
from tests import pg

RULE, SUBJECT = "ehr-down", "destination:ehr"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def two_nodes(backend, tmp_path):
    with pg.backend_stores(backend, tmp_path, count=2) as stores:
        yield stores


def test_an_alert_fires_once_repeats_after_the_interval_and_resolves(two_nodes):
    store = two_nodes[0]
    assert store.alert_seen(RULE, SUBJECT, "3 waiting", {"pending": 3}, now=100.0) is True
    assert store.alert_seen(RULE, SUBJECT, "4 waiting", {"pending": 4}, now=110.0) is False  # same episode
    [state] = store.alert_states()
    assert (state.state, state.episode, state.summary, state.facts, state.started_at, state.last_seen_at) == \
        ("firing", 1, "4 waiting", {"pending": 4}, 100.0, 110.0)

    first = store.claim_alert_notice(RULE, SUBJECT, "node-a", now=110.0, repeat_seconds=600, lease_seconds=30)
    assert first is not None and first.notices == 0 and first.claim_owner == "node-a"
    assert store.finish_alert_notice(first, "node-a", sent=True, error=None, now=111.0) is True
    assert store.claim_alert_notice(RULE, SUBJECT, "node-a", now=500.0, repeat_seconds=600, lease_seconds=30) is None
    repeat = store.claim_alert_notice(RULE, SUBJECT, "node-a", now=712.0, repeat_seconds=600, lease_seconds=30)
    assert repeat is not None and repeat.notices == 1
    store.finish_alert_notice(repeat, "node-a", sent=True, error=None, now=712.0)

    assert store.alert_cleared(RULE, SUBJECT, now=800.0) is True
    assert store.alert_cleared(RULE, SUBJECT, now=801.0) is False
    resolved = store.claim_alert_notice(RULE, SUBJECT, "node-a", now=800.0, repeat_seconds=600, lease_seconds=30)
    assert resolved is not None and (resolved.state, resolved.resolved_at, resolved.notices) == ("resolved", 800.0, 2)
    store.finish_alert_notice(resolved, "node-a", sent=True, error=None, now=800.0)
    assert store.claim_alert_notice(RULE, SUBJECT, "node-a", now=9999.0, repeat_seconds=600, lease_seconds=30) is None

    assert store.alert_seen(RULE, SUBJECT, "again", {}, now=900.0) is True  # a new episode
    [state] = store.alert_states(RULE)
    assert (state.state, state.episode, state.notices, state.notified_at, state.resolved_at) == \
        ("firing", 2, 0, None, None)


def test_an_unsent_notice_stays_due_with_its_error(two_nodes):
    store = two_nodes[0]
    store.alert_seen(RULE, SUBJECT, "s", {}, now=100.0)
    claim = store.claim_alert_notice(RULE, SUBJECT, "a", now=100.0, repeat_seconds=60, lease_seconds=30)
    assert store.finish_alert_notice(claim, "a", sent=False, error="webhook: HTTP 503", now=101.0) is False
    [state] = store.alert_states()
    assert (state.notified_at, state.notices, state.last_error, state.claim_owner) == \
        (None, 0, "webhook: HTTP 503", None)
    assert store.claim_alert_notice(RULE, SUBJECT, "a", now=102.0, repeat_seconds=60, lease_seconds=30) is not None


def test_a_lapsed_claim_is_fenced_off_when_another_node_took_it(two_nodes):
    a, b = two_nodes
    a.alert_seen(RULE, SUBJECT, "s", {}, now=100.0)
    slow = a.claim_alert_notice(RULE, SUBJECT, "a", now=100.0, repeat_seconds=60, lease_seconds=10)
    assert b.claim_alert_notice(RULE, SUBJECT, "b", now=105.0, repeat_seconds=60, lease_seconds=10) is None
    taken = b.claim_alert_notice(RULE, SUBJECT, "b", now=111.0, repeat_seconds=60, lease_seconds=10)
    assert taken is not None
    assert a.finish_alert_notice(slow, "a", sent=True, error=None, now=112.0) is False  # fenced by owner
    assert b.finish_alert_notice(taken, "b", sent=True, error=None, now=112.0) is True
    [state] = a.alert_states()
    assert (state.notices, state.notified_at) == (1, 112.0)


def test_a_notice_claimed_before_the_alert_resolved_does_not_count_as_the_resolved_notice(two_nodes):
    a, b = two_nodes
    a.alert_seen(RULE, SUBJECT, "s", {}, now=100.0)
    firing = a.claim_alert_notice(RULE, SUBJECT, "a", now=100.0, repeat_seconds=60, lease_seconds=30)
    assert b.alert_cleared(RULE, SUBJECT, now=101.0)
    assert a.finish_alert_notice(firing, "a", sent=True, error=None, now=102.0) is False
    resolved = b.claim_alert_notice(RULE, SUBJECT, "b", now=103.0, repeat_seconds=60, lease_seconds=30)
    assert resolved is not None and resolved.state == "resolved"


def test_nodes_racing_on_the_same_alert_fire_and_claim_it_once(two_nodes):
    barrier = threading.Barrier(8)
    started, claims = [], []

    def node(i):
        store = two_nodes[i % 2]
        barrier.wait()
        started.append(store.alert_seen(RULE, SUBJECT, "s", {}, now=100.0))
        claim = store.claim_alert_notice(RULE, SUBJECT, f"n{i}", now=100.0, repeat_seconds=60, lease_seconds=30)
        if claim is not None:
            claims.append(claim.claim_owner)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert started.count(True) == 1 and len(started) == 8
    assert len(claims) == 1


def test_alert_state_lives_in_the_database_not_the_process(backend, tmp_path):
    with pg.backend_stores(backend, tmp_path, count=2) as [writer, restarted]:
        writer.alert_seen(RULE, SUBJECT, "s", {"pending": 1}, now=100.0)
        writer.close()  # the process that saw it is gone; a new one (its own connections) reads it
        assert [(s.rule, s.state, s.facts) for s in restarted.alert_states()] == [(RULE, "firing", {"pending": 1})]


def test_destination_delivery_counts_waiting_failing_delivered_and_dead(two_nodes):
    store = two_nodes[0]
    ids = [store.receive("ch", "bridge", f"m{i}".encode(), dedupe_key=None, header={"order_key": f"k{i}"},
                         origin={})[0] for i in range(3)]
    claims = store.claim_messages("w", 60, 10)
    assert sorted(c.id for c in claims) == sorted(ids)
    store.finish_processing_many([
        (c, ProcessingResult("routed", outbox=[NewOutbox("ehr", b"p", "text/plain", "txt", f"k{c.id}", "rotate")]))
        for c in claims])
    first, second, third = sorted(store.claim_deliveries("d", 60, 10), key=lambda c: c.row.id)
    store.finish_deliveries([DeliveryOutcome(first, "delivered", "AA"),
                             DeliveryOutcome(second, "retry", "refused", next_attempt_at=0),
                             DeliveryOutcome(third, "dead", "AR")])
    facts = store.destination_delivery(since=0)["ehr"]
    assert (facts.pending, facts.retrying, facts.dead_recent) == (1, 1, 1)
    assert facts.last_delivered_at is not None and facts.oldest_pending_at is not None
    assert store.destination_delivery(since=facts.last_delivered_at + 3600)["ehr"].dead_recent == 0


def test_channel_backlog_and_errors_per_channel(two_nodes):
    store = two_nodes[0]
    for i in range(3):
        store.receive("lab", "bridge", f"l{i}".encode(), dedupe_key=None, header={"order_key": f"k{i}"}, origin={})
    store.receive("adt", "bridge", b"bad", dedupe_key=None, header={}, origin={}, error="cannot decode")
    backlog = store.channel_backlog()
    assert set(backlog) == {"lab"} and backlog["lab"][0] == 3
    errors = store.channel_errors(since=0)
    assert errors == {"lab": (3, 0), "adt": (1, 1)}
    assert store.channel_errors(since=backlog["lab"][1] + 3600) == {}

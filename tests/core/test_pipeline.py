"""The engine's path end to end in one process: intake → worker → outbox → deliverer."""

from __future__ import annotations

import json

import pytest

from bridge import PolicyDecision, PolicySpec, RuleResult, hookimpl
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import encounter_message, prescription_message
from tests.pg import store_url  # noqa: F401  (fixture: most tests run on SQLite and PostgreSQL)


def make_engine(tmp_path, scripted, *, routes=None, destinations=None, order=None, policies=(), store=None):
    # core mechanics under test: the telehealth gate has its own suite (tests/policy)
    plugins = plugin_manager(("scripted", scripted.plugin()), *policies, disabled=("telehealth_policy",))
    config = {
        "channels": {
            "visits": {
                "source": "file://inbox",
                "format": "bridge",
                "routes": routes if routes is not None else [{"to": ["ehr"]}],
                **({"order": order} if order else {}),
            }
        },
        "destinations": destinations
        or {"ehr": {"url": "script://ehr", "format": "bridge", "retry": {"max_attempts": 3, "initial_seconds": 0}}},
        **({"store": store} if store else {}),  # default: a SQLite file in tmp_path
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_destinations()
    return engine


def statuses(engine, message_id):
    return [e.kind for e in engine.store.events(message_id)]


def test_message_is_stored_routed_and_delivered(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    receipt = engine.submit("visits", encounter_message(1), {"file": "a.json"})
    assert receipt.accepted and not receipt.duplicate
    assert engine.store.get_message(receipt.message_id).status == "received"

    engine.drain()

    message = engine.store.get_message(receipt.message_id)
    assert message.status == "delivered"
    assert message.patient_id == "MRN1" and message.encounter_id == "ENC-1"
    assert message.records[0]["kind"] == "Encounter"
    assert statuses(engine, receipt.message_id) == ["received", "decoded", "routed", "queued", "delivered"]
    sent = scripted.sent["ehr"]
    assert len(sent) == 1
    payload = json.loads(sent[0].payload)
    assert payload["records"][0]["id"] == "ENC-1"
    assert payload["message_id"] == f"TB{receipt.message_id}"
    assert payload["trace_id"] == message.trace_id


def test_duplicate_is_not_queued_twice(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    first = engine.submit("visits", encounter_message(1, message_id="platform-42"))
    again = engine.submit("visits", encounter_message(1, message_id="platform-42"))
    assert again.duplicate and again.message_id == first.message_id
    engine.drain()
    assert len(scripted.sent["ehr"]) == 1
    assert "duplicate" in statuses(engine, first.message_id)


def test_undecodable_message_is_kept_with_its_error(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    raw = b'{"schema": "telemed-bridge/1", "records": [{"kind": "Encounter", "period": {"start": "yesterday"}}]}'
    receipt = engine.submit("visits", raw)
    engine.drain()
    message = engine.store.get_message(receipt.message_id)
    assert message.status == "failed"
    assert "records[0].period.start" in message.error and "ISO 8601" in message.error
    assert engine.store.get_raw(receipt.message_id) == raw
    assert "decode_failed" in statuses(engine, receipt.message_id)
    assert "ehr" not in scripted.sent


def test_transient_failure_is_retried_then_delivered(tmp_path, scripted, store_url):
    scripted.script("ehr", ["transient", "transient", "ok"])
    engine = make_engine(tmp_path, scripted, store=store_url)
    receipt = engine.submit("visits", encounter_message(1))
    engine.drain()
    message = engine.store.get_message(receipt.message_id)
    assert message.status == "delivered"
    assert statuses(engine, receipt.message_id).count("delivery_failed") == 2
    (row,) = engine.store.outbox_rows(message_id=receipt.message_id)
    assert row.attempts == 3 and row.status == "delivered"


def test_permanent_failure_goes_to_dead_letters_at_once(tmp_path, scripted, store_url):
    scripted.script("ehr", ["permanent"])
    engine = make_engine(tmp_path, scripted, store=store_url)
    receipt = engine.submit("visits", encounter_message(1))
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "dead"
    (row,) = engine.store.outbox_rows(status="dead")
    assert row.attempts == 1 and "peer refused" in row.last_error
    assert "dead_letter" in statuses(engine, receipt.message_id)


def test_retries_are_bounded(tmp_path, scripted, store_url):
    scripted.script("ehr", ["transient"] * 10)
    engine = make_engine(tmp_path, scripted, store=store_url)
    receipt = engine.submit("visits", encounter_message(1))
    engine.drain()
    (row,) = engine.store.outbox_rows(message_id=receipt.message_id)
    assert row.status == "dead" and row.attempts == 3
    assert "gave up after 3 attempts" in row.last_error


def test_unexpected_destination_exception_is_retried_not_fatal(tmp_path, scripted, store_url):
    scripted.script("ehr", ["boom", "ok"])
    engine = make_engine(tmp_path, scripted, store=store_url)
    receipt = engine.submit("visits", encounter_message(1))
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "delivered"


def test_replay_creates_a_linked_message_and_delivers_again(tmp_path, scripted, store_url):
    scripted.script("ehr", ["permanent"])
    engine = make_engine(tmp_path, scripted, store=store_url)
    receipt = engine.submit("visits", encounter_message(1))
    engine.drain()
    new_id = engine.store.replay(receipt.message_id, reason="EHR interface fixed", actor="test")
    engine.drain()
    replayed = engine.store.get_message(new_id)
    original = engine.store.get_message(receipt.message_id)
    assert replayed.status == "delivered" and replayed.replay_of == receipt.message_id
    assert replayed.trace_id == original.trace_id
    assert "replayed" in statuses(engine, receipt.message_id)
    entry = engine.store.audit_entries(1)[0]
    assert entry.action == "replay" and entry.detail["reason"] == "EHR interface fixed"
    with pytest.raises(Exception, match="reason"):
        engine.store.replay(receipt.message_id, reason=" ", actor="test")


def test_routes_filter_by_record_kind_and_field(tmp_path, scripted, store_url):
    destinations = {
        "ehr": {"url": "script://ehr", "format": "bridge"},
        "pharmacy": {"url": "script://pharmacy", "format": "bridge"},
    }
    routes = [
        {"when": {"record": "Encounter", "match": {"modality": ["video", "audio_only"]}}, "to": ["ehr"]},
        {"when": {"record": ["Prescription"]}, "to": ["pharmacy"]},
    ]
    engine = make_engine(tmp_path, scripted, store=store_url, routes=routes, destinations=destinations)
    video = engine.submit("visits", encounter_message(1))
    in_person = engine.submit("visits", encounter_message(2, modality="in_person"))
    rx = engine.submit("visits", prescription_message("RX-9"))
    engine.drain()
    assert engine.store.get_message(video.message_id).status == "delivered"
    assert engine.store.get_message(in_person.message_id).status == "filtered"
    assert engine.store.get_message(rx.message_id).status == "delivered"
    assert [json.loads(d.payload)["records"][0]["kind"] for d in scripted.sent["pharmacy"]] == ["Prescription"]
    assert len(scripted.sent["ehr"]) == 1


def test_trace_id_links_messages_of_one_encounter(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    visit = engine.submit("visits", encounter_message(7))
    rx = engine.submit("visits", prescription_message("RX-7", encounter="ENC-7"))
    other = engine.submit("visits", encounter_message(8))
    engine.drain()
    trace = engine.store.get_message(visit.message_id).trace_id
    assert engine.store.get_message(rx.message_id).trace_id == trace
    assert engine.store.get_message(other.message_id).trace_id != trace
    assert {m.id for m in engine.store.search(keys={"trace_id": trace})} == {visit.message_id, rx.message_id}


def test_a_batch_finds_traces_in_one_read_and_shares_a_new_one(tmp_path, scripted, store_url):
    """Two patients' messages about one new encounter are lane heads of one batch: neither is in the
    store when the other looks, yet they start one trace; a later message finds it in the store, and
    the whole batch's lookups are one store call."""
    engine = make_engine(tmp_path, scripted, store=store_url)
    first = engine.submit("visits", encounter_message(9, patient="P1"))
    second = engine.submit("visits", prescription_message("RX-9", patient="P2", encounter="ENC-9"))
    other = engine.submit("visits", encounter_message(10, patient="P3"))
    calls = []
    real = engine.store.find_traces
    engine.store.find_traces = lambda lookups: calls.append(len(lookups)) or real(lookups)
    assert engine.process_batch() == 3
    assert calls == [3]
    trace = engine.store.get_message(first.message_id).trace_id
    assert engine.store.get_message(second.message_id).trace_id == trace
    assert engine.store.get_message(other.message_id).trace_id not in (None, trace)
    later = engine.submit("visits", encounter_message(9, patient="P1", status="in-progress"))
    engine.drain()
    assert engine.store.get_message(later.message_id).trace_id == trace
    assert engine.store.find_traces([{"encounter_id": "ENC-9"}, {"prescription_number": "RX-9"},
                                     {"encounter_id": "ENC-NONE"}, {}]) == [trace, trace, None, None]


def _policy(outcome):
    class Gate:
        @hookimpl
        def bridge_policies(self):
            def evaluate(request):
                rx = [r for r in request.records if r.kind == "Prescription"]
                if not rx:
                    return PolicyDecision("ALLOW")
                return PolicyDecision(outcome, (RuleResult("T1", outcome, f"test says {outcome}", "test basis"),),
                                      ruleset="test-1")
            return [PolicySpec(name=f"gate-{outcome}", evaluate=evaluate)]

    return (f"gate-{outcome}", Gate())


def test_policy_block_rejects_with_reasons(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("BLOCK")])
    rx = engine.submit("visits", prescription_message())
    visit = engine.submit("visits", encounter_message(1))
    engine.drain()
    message = engine.store.get_message(rx.message_id)
    assert message.status == "rejected" and "T1: test says BLOCK" in message.error
    policy_event = next(e for e in engine.store.events(rx.message_id) if e.kind == "policy")
    assert policy_event.detail["rules"][0]["basis"] == "test basis"
    assert engine.store.get_message(visit.message_id).status == "delivered"


def test_policy_review_holds_until_released(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("REVIEW")])
    rx = engine.submit("visits", prescription_message())
    engine.drain()
    assert engine.store.get_message(rx.message_id).status == "held"
    (hold,) = engine.store.holds()
    assert hold.message_id == rx.message_id and hold.reasons[0]["id"] == "T1"
    assert "ehr" not in scripted.sent

    engine.store.resolve_hold(rx.message_id, "release", reason="checked PDMP by phone", actor="pharmacist")
    engine.drain()
    assert engine.store.get_message(rx.message_id).status == "delivered"
    assert "policy_override" in statuses(engine, rx.message_id)
    assert engine.store.audit_entries(1)[0].action == "hold.release"


def test_policy_review_can_be_rejected(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("REVIEW")])
    rx = engine.submit("visits", prescription_message())
    engine.drain()
    engine.store.resolve_hold(rx.message_id, "reject", reason="no DEA registration", actor="pharmacist")
    engine.drain()
    assert engine.store.get_message(rx.message_id).status == "rejected"
    assert engine.store.holds() == []


def test_policy_that_raises_holds_for_review(tmp_path, scripted, store_url):
    class Broken:
        @hookimpl
        def bridge_policies(self):
            def evaluate(request):
                raise ValueError("bug")
            return [PolicySpec(name="broken", evaluate=evaluate)]

    engine = make_engine(tmp_path, scripted, store=store_url, policies=[("broken", Broken())])
    rx = engine.submit("visits", prescription_message())
    engine.drain()
    assert engine.store.get_message(rx.message_id).status == "held"


def test_strict_lane_waits_for_its_head(tmp_path, scripted):
    scripted.script("ehr", ["transient"])
    engine = make_engine(tmp_path, scripted, order={"by": "patient", "mode": "strict"})
    first = engine.submit("visits", encounter_message(1, patient="P1"))
    second = engine.submit("visits", encounter_message(2, patient="P1"))
    other = engine.submit("visits", encounter_message(3, patient="P2"))
    engine.process_one(), engine.process_one(), engine.process_one()
    assert engine.deliver_one()  # head of P1 fails transiently
    _delay_retries(engine, 3600)
    while engine.deliver_one():
        pass
    sent_ids = [d.message_id for d in scripted.sent["ehr"]]
    assert sent_ids == [first.message_id, other.message_id]  # P1's second waits behind its head
    assert engine.store.get_message(second.message_id).status == "routed"


def test_rotate_lane_flows_past_a_failing_message(tmp_path, scripted):
    scripted.script("ehr", ["transient"])
    engine = make_engine(tmp_path, scripted, order={"by": "patient", "mode": "rotate"})
    first = engine.submit("visits", encounter_message(1, patient="P1"))
    second = engine.submit("visits", encounter_message(2, patient="P1"))
    engine.process_one(), engine.process_one()
    assert engine.deliver_one()
    _delay_retries(engine, 3600)
    while engine.deliver_one():
        pass
    assert [d.message_id for d in scripted.sent["ehr"]] == [first.message_id, second.message_id]
    assert engine.store.get_message(second.message_id).status == "delivered"
    assert engine.store.get_message(first.message_id).status == "routed"


def _delay_retries(engine, seconds):
    conn = engine.store._conn()
    conn.execute("UPDATE outbox SET next_attempt_at = next_attempt_at + ? WHERE status='pending' AND attempts > 0",
                 (seconds,))


def test_oversized_message_is_refused_before_storing(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    channel = engine.config.channels["visits"]
    big = b"x" * (channel.max_message_bytes + 1)
    receipt = engine.submit("visits", big)
    assert not receipt.accepted and receipt.message_id is None
    assert "over the channel limit" in receipt.error


def test_source_refusal_keeps_the_bytes_as_failed(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    engine.open_sources()
    (source,) = engine.sources
    receipt = source.ctx.submit(b"not json", {"peer": "127.0.0.1"}, error="invalid JSON at line 1")
    assert not receipt.accepted and receipt.message_id is not None
    message = engine.store.get_message(receipt.message_id)
    assert message.status == "failed" and message.error == "invalid JSON at line 1"
    assert engine.store.get_raw(receipt.message_id) == b"not json"
    from bridge import DecodeError

    with pytest.raises(DecodeError):
        source.ctx.decode(b"not json")
    assert source.ctx.decode(encounter_message(3))[0].id == "ENC-3"


def test_policy_check_at_the_source_skips_messages_no_policy_judges(tmp_path, scripted, store_url):
    """A gate that judges only prescriptions is not run, and nothing is decoded, for an ADT at the source."""
    from bridge import FormatSpec, MessageHeader

    decoded = []

    class Typed:
        @hookimpl
        def bridge_formats(self):
            def decode(raw, options):
                decoded.append(raw)
                from bridge import record_from_dict
                return [record_from_dict({"kind": raw.decode().split("|")[0]})]

            return [FormatSpec(name="typed", media_type="text/plain", decode=decode, encode=lambda r, o: b"",
                               peek=lambda raw: MessageHeader(message_type=raw.decode().split("|")[0]),
                               record_kinds=lambda header: frozenset({header.message_type}))]

    class RxGate:
        @hookimpl
        def bridge_policies(self):
            rule = RuleResult("T9", "BLOCK", "no", "test")
            return [PolicySpec(name="rx-only", record_kinds=("Prescription",),
                               evaluate=lambda request: PolicyDecision("BLOCK", (rule,)))]

    plugins = plugin_manager(("typed", Typed()), ("rx-gate", RxGate()), disabled=("telehealth_policy",))
    config = {"channels": {"c": {"source": "file://in", "format": "typed"}}, "destinations": {}}
    engine = engine_from_dict(config, tmp_path, plugins)
    assert engine.processor.verdict("c", b"Encounter|x") is None and decoded == []
    assert engine.processor.verdict("c", b"Prescription|x").outcome == "BLOCK" and len(decoded) == 1
    receipt = engine.submit("c", b"Encounter|y")
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "filtered"  # the gate never saw it


def test_an_unexpected_processing_error_fails_the_message_and_frees_the_channel(tmp_path, scripted, monkeypatch, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    first = engine.submit("visits", encounter_message(1))
    second = engine.submit("visits", encounter_message(2))
    real = engine.processor._judge

    def broken_once(decoded, trace):
        if decoded.claim.id == first.message_id:
            raise RuntimeError("router bug")
        return real(decoded, trace)

    monkeypatch.setattr(engine.processor, "_judge", broken_once)
    engine.drain()
    failed = engine.store.get_message(first.message_id)
    assert failed.status == "failed" and "RuntimeError" in failed.error
    assert engine.store.get_message(second.message_id).status == "delivered"  # the lane moved on


def test_held_or_blocked_prescriptions_do_not_move_the_lifecycle(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("REVIEW")])
    rx = engine.submit("visits", prescription_message("RX-H"))
    engine.drain()
    assert engine.store.prescription("RX-H") is None  # held: not created until let through
    engine.store.resolve_hold(rx.message_id, "release", reason="ok", actor="t")
    engine.drain()
    state = engine.store.prescription("RX-H")
    assert state.state == "created" and state.message_id == rx.message_id  # created once, when released

    blocked = make_engine(tmp_path / "b", scripted, policies=[_policy("BLOCK")])
    blocked.submit("visits", prescription_message("RX-B"))
    blocked.drain()
    assert blocked.store.prescription("RX-B") is None  # a blocked NewRx never existed for the lifecycle


def test_rotate_keeps_order_while_nothing_fails(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, order={"by": "patient", "mode": "rotate"})
    first = engine.submit("visits", encounter_message(1, patient="P1"))
    engine.submit("visits", encounter_message(2, patient="P1"))
    engine.process_one(), engine.process_one()
    head = engine.store.claim_delivery("deliverer-a", 60)
    assert head.row.message_id == first.message_id
    assert engine.store.claim_delivery("deliverer-b", 60) is None  # the second waits for the one in flight


def test_failing_a_claim_whose_lease_was_lost_leaves_the_new_owners_work_alone(tmp_path, scripted, store_url):
    import time

    engine = make_engine(tmp_path, scripted, store=store_url)
    receipt = engine.submit("visits", encounter_message(1))
    stale = engine.store.claim_message("crashed-worker", 0.01)
    time.sleep(0.02)
    fresh = engine.store.claim_message("new-worker", 60)
    engine.processor.fail(stale, "late error from the old owner")  # fenced: no exception, no effect
    assert engine.store.get_message(receipt.message_id).status == "processing"
    engine.processor.process(fresh)
    assert engine.store.get_message(receipt.message_id).status == "routed"

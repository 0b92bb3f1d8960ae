"""Issue 11 §1, store and engine level: a replay never sends a second prescription that looks new,
never opens a second hold for a prescription, and resolves the dead letter it delivers.
Real SQLite file or PostgreSQL database (each test runs on both), real worker and deliverer in process
(see tests/core/test_pipeline.py)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bridge.errors import ReplayRefused
from tests.core.helpers import encounter_message, prescription_message
from tests.pg import store_url  # noqa: F401  (fixture: each test on SQLite and PostgreSQL)
from tests.core.test_pipeline import _policy, make_engine

TWO_DESTINATIONS = {
    "ehr": {"url": "script://ehr", "format": "bridge", "retry": {"max_attempts": 1}},
    "pharmacy": {"url": "script://pharmacy", "format": "bridge", "retry": {"max_attempts": 1}},
    "lab": {"url": "script://lab", "format": "bridge"},
}
TO_EHR_AND_PHARMACY = [{"to": ["ehr", "pharmacy"]}]


def payload_ids(deliveries) -> list[str]:
    return [json.loads(d.payload)["message_id"] for d in deliveries]


def test_a_replay_chain_keeps_the_first_message_s_identities(tmp_path, scripted, store_url):
    """Seen: a replay went out with a new MessageID (TB12 where the original was TB3)."""
    engine = make_engine(tmp_path, scripted, store=store_url)
    first = engine.submit("visits", prescription_message("RX-9")).message_id
    engine.drain()
    second = engine.store.replay(first, reason="pharmacy lost it", actor="test", force=True)
    engine.drain()
    third = engine.store.replay(second, reason="again", actor="test", force=True)
    engine.drain()
    sent = scripted.sent["ehr"]
    assert [d.message_id for d in sent] == [first, second, third]
    assert payload_ids(sent) == [f"TB{first}"] * 3  # the encoder's control id: MessageID, MSH-10 …
    first_row = engine.store.outbox_rows(message_id=first)[0].id
    assert {(d.original_message_id, d.original_outbox_id) for d in sent} == {(first, first_row)}
    assert {d.idempotency_key for d in sent} == {f"tb-{first}-{first_row}"}
    assert engine.store.get_message(third).replay_root == first
    assert engine.store.get_message(third).replay_of == second
    assert {r.control_id for m in (first, second, third) for r in engine.store.outbox_rows(message_id=m)} == {
        f"TB{first}"}


def test_replaying_a_delivered_prescription_needs_force_and_the_audit_says_so(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    rx = engine.submit("visits", prescription_message("RX-5")).message_id
    visit = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    with pytest.raises(ReplayRefused, match=r"already delivered to ehr.*--force"):
        engine.store.replay(rx, reason="resend", actor="test")
    assert len(engine.store.search()) == 2, "a refused replay stores nothing"
    engine.store.replay(visit, reason="no prescription: no force needed", actor="test")
    new_id = engine.store.replay(rx, reason="pharmacy asked", actor="ops", force=True)
    entry = engine.store.search_audit(action="replay")[0]
    assert entry.target == f"message:{rx}" and entry.detail["force"] is True
    assert entry.detail["already_delivered_to"] == ["ehr"] and entry.detail["new_message"] == new_id
    engine.drain()
    assert len(scripted.sent["ehr"]) == 4


def test_a_replay_goes_only_to_the_destinations_asked_for(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, routes=TO_EHR_AND_PHARMACY, destinations=TWO_DESTINATIONS)
    rx = engine.submit("visits", prescription_message("RX-6")).message_id
    scripted.script("pharmacy", ["permanent"])
    engine.drain()
    assert engine.store.get_message(rx).status == "dead"
    # the pharmacy never got it: replaying only there needs no force; the EHR does not get it again
    new_id = engine.store.replay(rx, reason="pharmacy back up", actor="test", destinations=["pharmacy"])
    engine.drain()
    assert [d.message_id for d in scripted.sent["ehr"]] == [rx]
    assert [d.message_id for d in scripted.sent["pharmacy"]] == [rx, new_id]
    assert engine.store.get_message(new_id).replay_destinations == ["pharmacy"]
    with pytest.raises(ReplayRefused, match=r"never went to destination 'lab' \(it went to: ehr, pharmacy\)"):
        engine.store.replay(rx, reason="x", actor="test", destinations=["lab"])
    with pytest.raises(ReplayRefused, match="already delivered to ehr"):
        engine.store.replay(rx, reason="x", actor="test", destinations=["ehr"])


def test_a_replay_asked_for_a_destination_the_routes_no_longer_pick_skips_it(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, routes=TO_EHR_AND_PHARMACY, destinations=TWO_DESTINATIONS)
    visit = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    engine.stop()
    engine = make_engine(tmp_path, scripted, store=store_url, routes=[{"to": ["ehr"]}], destinations=TWO_DESTINATIONS)
    new_id = engine.store.replay(visit, reason="x", actor="test", destinations=["pharmacy"])
    engine.drain()
    replay = engine.store.get_message(new_id)
    assert replay.status == "filtered"
    skipped = [e for e in engine.store.events(new_id) if e.kind == "replay_skipped"]
    assert skipped and skipped[0].detail["destinations"] == ["pharmacy"]


def test_replaying_a_held_message_is_refused(tmp_path, scripted, store_url):
    """Seen: replaying a held message opened a second hold for the same prescription."""
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("REVIEW")])
    rx = engine.submit("visits", prescription_message("RX-H")).message_id
    engine.drain()
    with pytest.raises(ReplayRefused, match=rf"message {rx} is held for review.*release or reject it instead"):
        engine.store.replay(rx, reason="try again", actor="test")
    assert [h.message_id for h in engine.store.holds("open")] == [rx]
    assert len(engine.store.search()) == 1


def test_a_prescription_has_one_open_hold_and_later_ones_wait_their_turn(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("REVIEW")])
    first = engine.submit("visits", prescription_message("RX-H")).message_id
    resend = engine.submit("visits", prescription_message("RX-H", patient="MRN1 ")).message_id  # EHR resent it
    other = engine.submit("visits", prescription_message("RX-OTHER")).message_id
    engine.drain()
    assert sorted(h.message_id for h in engine.store.holds("open")) == [first, other]
    assert [h.message_id for h in engine.store.holds("waiting")] == [resend]
    assert engine.store.get_message(resend).status == "held"
    waiting = [e for e in engine.store.events(resend) if e.kind == "hold_waiting"]
    assert waiting[0].detail["behind_message"] == first
    with pytest.raises(Exception, match=rf"waits behind the hold of message {first}"):
        engine.store.resolve_hold(resend, "release", reason="x", actor="test")

    engine.store.resolve_hold(first, "release", reason="checked", actor="pharmacist")
    assert sorted(h.message_id for h in engine.store.holds("open")) == sorted([other, resend])
    opened = [e for e in engine.store.events(resend) if e.kind == "hold_opened"]
    assert opened[0].detail == {"after_message": first, "which_was": "released"}
    engine.drain()
    engine.store.resolve_hold(resend, "reject", reason="duplicate of the released one", actor="pharmacist")
    engine.drain()
    assert [d.message_id for d in scripted.sent["ehr"]] == [first], "the prescription went out once"


def test_a_replay_whose_review_repeats_waits_behind_the_open_hold(tmp_path, scripted, store_url):
    """Whatever is replayed: a rejected prescription replayed while a resend of it is held."""
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("REVIEW")])
    first = engine.submit("visits", prescription_message("RX-R")).message_id
    engine.drain()
    engine.store.resolve_hold(first, "reject", reason="wrong dose", actor="pharmacist")
    engine.submit("visits", prescription_message("RX-R", patient="MRN1 "))
    engine.drain()
    replay = engine.store.replay(first, reason="dose was right after all", actor="test")
    engine.drain()
    assert len(engine.store.holds("open")) == 1
    assert [h.message_id for h in engine.store.holds("waiting")] == [replay]


def test_a_dead_letter_is_resolved_when_its_replay_is_delivered(tmp_path, scripted, store_url):
    """Seen: a dead letter whose replay was delivered stayed dead, listed and counted."""
    engine = make_engine(tmp_path, scripted, store=store_url, routes=TO_EHR_AND_PHARMACY, destinations=TWO_DESTINATIONS)
    scripted.script("pharmacy", ["permanent", "permanent"])
    original = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    first_replay = engine.store.replay(original, reason="retry", actor="test", destinations=["pharmacy"])
    engine.drain()
    assert engine.store.get_message(first_replay).status == "dead"
    second_replay = engine.store.replay(first_replay, reason="fixed now", actor="test", destinations=["pharmacy"])
    engine.drain()

    assert engine.store.outbox_rows(status="dead") == []
    resolved = engine.store.outbox_rows(status="resolved")
    delivered_row = engine.store.outbox_rows(message_id=second_replay)[0]
    assert {(r.message_id, r.resolved_by, r.resolved_by_message) for r in resolved} == {
        (original, delivered_row.id, second_replay), (first_replay, delivered_row.id, second_replay)}
    assert engine.store.get_message(original).status == "resolved"  # its EHR row was delivered, pharmacy resolved
    assert engine.store.get_message(first_replay).status == "resolved"
    assert "dead" not in engine.store.counts()["visits"]
    back = [e.detail for e in engine.store.events(original) if e.kind == "dead_letter_resolved"]
    assert back == [{"outbox_id": resolved[0].id, "destination": "pharmacy", "by_message": second_replay,
                     "by_outbox_id": delivered_row.id}]
    forward = [e.detail["message"] for e in engine.store.events(second_replay) if e.kind == "resolves_dead_letter"]
    assert forward == [original, first_replay]


def test_a_later_dead_letter_is_not_resolved_by_an_earlier_delivery(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    original = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    scripted.script("ehr", ["permanent"] * 3)
    replay = engine.store.replay(original, reason="x", actor="test")
    engine.drain()
    assert engine.store.get_message(replay).status == "dead"
    assert [r.message_id for r in engine.store.outbox_rows(status="dead")] == [replay]


def test_migration_6_applies_to_a_store_made_before_it(tmp_path):
    """An existing store gains the replay columns; its old messages read as originals."""
    from bridge.core.store.sqlite import SQLiteStore
    from bridge.core.store.sqlite_schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for version, description, sql in MIGRATIONS[:5]:
        conn.executescript(sql)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                 " applied_at REAL NOT NULL)")
    conn.executemany("INSERT INTO schema_migrations VALUES (?, ?, 0)", [(v, d) for v, d, _ in MIGRATIONS[:5]])
    conn.execute("INSERT INTO messages (channel, format, status, received_at, updated_at, raw, sha256, size)"
                 " VALUES ('visits', 'bridge', 'delivered', 0, 0, x'7b7d', 'x', 2)")
    conn.commit()
    conn.close()
    store = SQLiteStore(str(path))
    assert store.schema_version() >= 6
    old = store.get_message(1)
    assert old.replay_root is None and old.replay_destinations is None
    store.close()


def test_a_second_replay_of_a_prescription_waits_until_the_first_is_done(tmp_path, scripted, store_url):
    """Two clicks on Replay must not queue two copies of a prescription before either is sent."""
    scripted.script("ehr", ["permanent"])
    engine = make_engine(tmp_path, scripted, store=store_url)
    rx = engine.submit("visits", prescription_message("RX-2")).message_id
    engine.drain()
    first = engine.store.replay(rx, reason="pharmacy back", actor="test")
    with pytest.raises(ReplayRefused, match=rf"message {first} of the same replay chain is still being processed"):
        engine.store.replay(rx, reason="pharmacy back", actor="test")
    engine.drain()
    assert [d.message_id for d in scripted.sent["ehr"]] == [rx, first]
    with pytest.raises(ReplayRefused, match="already delivered to ehr"):
        engine.store.replay(first, reason="again", actor="test")


def test_a_replay_of_a_replay_not_yet_processed_is_still_a_prescription(tmp_path, scripted, store_url):
    engine = make_engine(tmp_path, scripted, store=store_url)
    rx = engine.submit("visits", prescription_message("RX-3")).message_id
    engine.drain()
    queued = engine.store.replay(rx, reason="x", actor="test", force=True)
    assert engine.store.get_message(queued).prescription_number is None  # known only once decoded
    with pytest.raises(ReplayRefused, match="still being processed"):
        engine.store.replay(queued, reason="x", actor="test")
    engine.drain()
    with pytest.raises(ReplayRefused, match="already delivered to ehr"):
        engine.store.replay(queued, reason="x", actor="test")


def test_a_replay_is_refused_while_a_copy_from_the_same_chain_is_held(tmp_path, scripted, store_url):
    """Review of issue 11: a rejected prescription replayed twice (the first replay held again) opened a
    second hold for the same chain; releasing both sent the same NewRx twice."""
    engine = make_engine(tmp_path, scripted, store=store_url, policies=[_policy("REVIEW")])
    rx = engine.submit("visits", prescription_message("RX-C")).message_id
    engine.drain()
    engine.store.resolve_hold(rx, "reject", reason="wrong dose", actor="pharmacist")
    held_copy = engine.store.replay(rx, reason="dose was right", actor="test")
    engine.drain()
    assert engine.store.get_message(held_copy).status == "held"
    with pytest.raises(ReplayRefused, match=rf"message {held_copy} of the same replay chain is held for review"
                                            rf".*bridge release\|reject {held_copy}"):
        engine.store.replay(rx, reason="clicked again", actor="test")
    with pytest.raises(ReplayRefused, match=rf"message {held_copy} of the same replay chain is held"):
        engine.store.replay(rx, reason="clicked again", actor="test", force=True)
    assert engine.store.holds("waiting") == []
    assert len(engine.store.search()) == 2, "a refused replay stores nothing"


def test_the_replay_rules_have_one_definition_for_both_backends():
    """The rules differ between backends only in the placeholder, so PostgreSQL uses SQLite's functions."""
    from bridge.core.store import postgres_replay, sqlite_replay

    for name in postgres_replay.__all__:
        assert getattr(postgres_replay, name) is getattr(sqlite_replay, name), name

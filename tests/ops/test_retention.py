"""Retention: only old, finished messages go, with their events, outbox rows and holds; audited."""

from __future__ import annotations

from bridge.core.retention import prune
from bridge.core.scheduler import run_now
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import ScriptedDestinations, encounter_message

from tests.pg import store_url  # noqa: F401  (fixture: pruning runs on SQLite and on PostgreSQL)

from .helpers import ScriptedJobs

DAY = 86400


def make_engine(tmp_path, scripted: ScriptedDestinations, jobs=None, store=None):
    plugins = plugin_manager(("scripted", scripted.plugin()), ("ops-test-jobs", ScriptedJobs()),
                             disabled=("telehealth_policy",))
    route = [{"when": {"record": "Encounter", "match": {"modality": ["video"]}}, "to": ["ehr"]}]
    config = {
        "channels": {
            "visits": {"source": "file://inbox", "format": "bridge", "routes": route, "order": {"by": "none"},
                       "retention": {"days": 30, "statuses": ["delivered", "filtered", "failed"]}},
            "forever": {"source": "file://inbox2", "format": "bridge", "routes": route},
        },
        "destinations": {"ehr": {"url": "script://ehr", "format": "bridge",
                                 "retry": {"max_attempts": 5, "initial_seconds": 3600}}},
        "jobs": jobs or {},
        **({"store": store} if store else {}),  # default: a SQLite file in tmp_path
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_destinations()
    return engine, plugins


def sql(engine, statement, params=()):
    """A statement on the engine's own store, whichever backend (the test reaches past the API on purpose)."""
    with engine.store._tx() as conn:
        engine.store._x(conn, statement, params)


def backdate(engine, ids, days=40):
    sql(engine, f"UPDATE messages SET received_at = received_at - ? WHERE id IN ({','.join('?' * len(ids))})",
        (days * DAY, *ids))


def seed(engine, scripted):
    ids = {}
    ids["delivered_old"] = engine.submit("visits", encounter_message(1)).message_id
    ids["delivered_new"] = engine.submit("visits", encounter_message(2)).message_id
    ids["filtered_old"] = engine.submit("visits", encounter_message(3, modality="in_person")).message_id
    ids["failed_old"] = engine.submit("visits", b"not json at all").message_id
    ids["replayed_old"] = engine.submit("visits", encounter_message(4)).message_id
    ids["other_channel_old"] = engine.submit("forever", encounter_message(5)).message_id
    engine.drain()
    scripted.script("ehr", ["transient"])
    ids["routed_old"] = engine.submit("visits", encounter_message(6)).message_id
    engine.drain()
    ids["received_old"] = engine.submit("visits", encounter_message(7)).message_id  # never processed
    ids["replay"] = engine.store.replay(ids["replayed_old"], reason="resend", actor="tester")
    backdate(engine, [v for k, v in ids.items() if k.endswith("_old")])
    return ids


def test_prune_takes_only_old_finished_messages_with_their_rows_and_audits_once(tmp_path, store_url):
    scripted = ScriptedDestinations()
    engine, _ = make_engine(tmp_path, scripted, store=store_url)
    ids = seed(engine, scripted)
    status = {k: engine.store.get_message(v).status for k, v in ids.items()}
    assert status == {"delivered_old": "delivered", "delivered_new": "delivered", "filtered_old": "filtered",
                      "failed_old": "failed", "replayed_old": "delivered", "other_channel_old": "delivered",
                      "routed_old": "routed", "received_old": "received", "replay": "received"}
    events_before = {k: len(engine.store.events(v)) - 1 for k, v in ids.items()}  # minus the derived "received"

    dry = prune(engine.store, engine.config, actor="tester", dry_run=True)
    assert dry["visits"]["messages"] == 3 and engine.store.get_message(ids["delivered_old"]) is not None
    assert not [e for e in engine.store.audit_entries() if e.action == "retention.prune"]  # a dry run is not audited

    counts = prune(engine.store, engine.config, actor="tester")
    assert counts == dry
    gone = {"delivered_old", "filtered_old", "failed_old"}
    assert {k for k, v in ids.items() if engine.store.get_message(v) is None} == gone
    assert counts["visits"] == {"messages": 3, "outbox": 1,
                                "events": sum(events_before[k] for k in gone), "holds": 0}
    for key in gone:
        assert engine.store.events(ids[key]) == [] and engine.store.outbox_rows(message_id=ids[key]) == []
    assert len(engine.store.outbox_rows(message_id=ids["routed_old"], status="pending")) == 1
    (entry,) = [e for e in engine.store.audit_entries() if e.action == "retention.prune"]
    assert (entry.actor, entry.detail["channels"]) == ("tester", counts)
    assert engine.store.verify_audit() is None
    assert prune(engine.store, engine.config, actor="tester")["visits"]["messages"] == 0


def test_an_original_stays_while_its_replay_stays_and_resolved_holds_go(tmp_path, store_url):
    scripted = ScriptedDestinations()
    engine, _ = make_engine(tmp_path, scripted, store=store_url)
    ids = seed(engine, scripted)
    engine.drain()  # the replay is delivered now, but it is new: both stay
    prune(engine.store, engine.config, actor="tester")
    assert engine.store.get_message(ids["replayed_old"]) is not None
    backdate(engine, [ids["replay"]])
    counts = prune(engine.store, engine.config, actor="tester")
    assert counts["visits"]["messages"] == 2  # the replay and, with it, its original
    assert engine.store.get_message(ids["replayed_old"]) is None

    sql(engine, "INSERT INTO holds (message_id, status, created_at, reasons) VALUES (?, 'rejected', 0, '[]')",
        (ids["delivered_new"],))  # a rejected hold, resolved long ago
    backdate(engine, [ids["delivered_new"]])
    assert prune(engine.store, engine.config, actor="tester")["visits"]["holds"] == 1


def test_prune_runs_as_a_job_with_an_audit_entry_naming_the_job(tmp_path):
    scripted = ScriptedDestinations()
    engine, plugins = make_engine(tmp_path, scripted, jobs={
        "nightly-prune": {"type": "prune", "trigger": {"cron": "15 2 * * *"}, "settings": {"max_messages": 2}}})
    seed(engine, scripted)
    run = run_now(engine.store, engine.config, plugins, "nightly-prune")
    assert run["status"] == "succeeded" and run["detail"]["result"] == {"messages": 2, "channels": 1}
    entry = engine.store.audit_entries()[0]
    assert (entry.action, entry.actor) == ("retention.prune", "job:nightly-prune")

"""Issue 12, destinations are independent: an encode or send failure at one destination fails only that
destination's outbox row; the others are delivered, and the message's status and views say which
destination failed, where (encode or send) and why. A real engine and SQLite file in one process; the
same story through real `bridge run` / `bridge send` processes is in tests/e2e/test_independent_destinations.py."""

from __future__ import annotations

import json
import logging

import pytest

from bridge import EncodeError, FormatSpec, hookimpl
from bridge.cli import main
from bridge.core.outcomes import destination_outcomes, failed_at, outcome_line
from bridge.core.store.base import OutboxRow
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import encounter_message


class Picky:
    """Two formats that refuse some encounters, as a FHIR destination refuses a time without a zone:
    ``picky`` raises EncodeError, ``buggy`` a plain exception (a plugin bug). ``refuse`` holds the
    encounter ids they refuse; clearing it is "fixing the cause"."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse

    @hookimpl
    def bridge_formats(self):
        def picky(records, options):
            if records[0].id in self.refuse:
                raise EncodeError(f"Encounter {records[0].id}: period.start has no time zone")
            return json.dumps({"picky": records[0].id, "control": options["message_control_id"]}).encode()

        def buggy(records, options):
            if records[0].id in self.refuse:
                raise KeyError("visit_number")
            return b"ok"

        return [FormatSpec(name="picky", media_type="application/json", decode=lambda raw, o: [], encode=picky,
                           file_extension="json"),
                FormatSpec(name="buggy", media_type="text/plain", decode=lambda raw, o: [], encode=buggy)]


def make_engine(tmp_path, scripted, picky: Picky, *, order: dict | None = None, to=("ehr", "fhir")):
    plugins = plugin_manager(("scripted", scripted.plugin()), ("picky", picky), disabled=("telehealth_policy",))
    retry = {"max_attempts": 3, "initial_seconds": 0}
    config = {
        "channels": {"visits": {"source": "file://inbox", "format": "bridge", "routes": [{"to": list(to)}],
                                **({"order": order} if order else {})}},
        "destinations": {
            "ehr": {"url": "script://ehr", "format": "bridge", "retry": retry},
            "fhir": {"url": "script://fhir", "format": "picky", "retry": retry},
            "plugin": {"url": "script://plugin", "format": "buggy", "retry": retry},
        },
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_destinations()
    return engine


def rows_by_destination(engine, message_id: int) -> dict[str, OutboxRow]:
    return {r.destination: r for r in engine.store.outbox_rows(message_id=message_id)}


def kinds(engine, message_id: int) -> list[str]:
    return [e.kind for e in engine.store.events(message_id)]


def sent_ids(scripted, name: str) -> list[int]:
    return [d.message_id for d in scripted.sent.get(name, [])]


def test_an_encoder_refusal_dead_letters_only_that_destination(tmp_path, scripted):
    engine = make_engine(tmp_path, scripted, Picky({"ENC-1"}))
    message_id = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()

    assert sent_ids(scripted, "ehr") == [message_id]  # the other destination got it
    assert "fhir" not in scripted.sent  # nothing was sent for the refused one
    rows = rows_by_destination(engine, message_id)
    assert rows["ehr"].status == "delivered"
    dead = rows["fhir"]
    assert dead.status == "dead" and dead.attempts == 0
    assert dead.last_error == "encoding picky for fhir failed: Encounter ENC-1: period.start has no time zone"
    assert failed_at(dead) == "encode" and failed_at(rows["ehr"]) is None
    message = engine.store.get_message(message_id)
    assert message.status == "dead" and message.error is None  # the message was fine; one destination was not
    events = {e.kind: e.detail for e in engine.store.events(message_id)}
    assert events["routed"] == {"destinations": ["ehr", "fhir"], "encode_failed": ["fhir"]}
    assert events["encode_failed"] == {"destination": "fhir", "outbox_id": dead.id, "error": dead.last_error}
    assert [r.id for r in engine.store.outbox_rows(status="dead")] == [dead.id]  # on the dead-letter list


def test_a_plugin_encoder_bug_for_one_destination_fails_only_that_row(tmp_path, scripted, caplog):
    caplog.set_level(logging.DEBUG)
    engine = make_engine(tmp_path, scripted, Picky({"ENC-7"}), to=("ehr", "plugin", "fhir"))
    message_id = engine.submit("visits", encounter_message(7, patient="MRN-SECRET")).message_id
    engine.drain()

    rows = rows_by_destination(engine, message_id)
    assert {name: row.status for name, row in rows.items()} == {"ehr": "delivered", "plugin": "dead", "fhir": "dead"}
    assert rows["plugin"].last_error == "buggy encoder error for plugin (KeyError): 'visit_number'"
    assert sent_ids(scripted, "ehr") == [message_id]
    assert engine.store.get_message(message_id).status == "dead"
    # the log names the destination and the exception type, never the message contents or the error text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "destination plugin: buggy encoder raised KeyError" in logged
    assert "MRN-SECRET" not in logged and "visit_number" not in logged and "time zone" not in logged


def test_a_message_every_destination_refuses_is_dead_at_once_and_never_claimed(tmp_path, scripted):
    engine = make_engine(tmp_path, scripted, Picky({"ENC-2"}), to=("fhir",))
    message_id = engine.submit("visits", encounter_message(2)).message_id
    assert engine.process_one()
    # settled in the processing transaction: no delivery will ever come to settle it
    assert engine.store.get_message(message_id).status == "dead"
    assert engine.store.claim_delivery("deliverer", 60) is None
    (row,) = engine.store.outbox_rows(message_id=message_id)
    assert row.status == "dead" and row.attempts == 0 and row.next_attempt_at <= row.created_at
    assert kinds(engine, message_id) == ["received", "decoded", "routed", "encode_failed"]


@pytest.mark.parametrize("answers", [["permanent"], ["transient"] * 3], ids=["permanent", "retries-exhausted"])
def test_a_send_failure_at_one_destination_does_not_stop_the_others(tmp_path, scripted, answers):
    scripted.script("fhir", answers)
    engine = make_engine(tmp_path, scripted, Picky(set()))
    message_id = engine.submit("visits", encounter_message(3)).message_id
    engine.drain()

    rows = rows_by_destination(engine, message_id)
    assert rows["ehr"].status == "delivered" and rows["fhir"].status == "dead"
    assert failed_at(rows["fhir"]) == "send" and rows["fhir"].attempts == len(answers)
    assert engine.store.get_message(message_id).status == "dead"
    assert outcome_line(list(rows.values())) == "fhir dead (send), ehr delivered"


def test_a_transient_failure_holds_only_its_own_strict_lane(tmp_path, scripted):
    """Lanes are (destination, key): while fhir retries a patient's first visit, that patient's second
    visit waits for fhir only; ehr gets both, in order."""
    scripted.script("fhir", ["transient"])
    engine = make_engine(tmp_path, scripted, Picky(set()), order={"by": "patient", "mode": "strict"})
    first = engine.submit("visits", encounter_message(1, patient="P1")).message_id
    second = engine.submit("visits", encounter_message(2, patient="P1")).message_id
    engine.process_one(), engine.process_one()
    assert engine.deliver_one() and engine.deliver_one()  # the first visit: ehr delivered, fhir failed once
    _move_retries(engine, "next_attempt_at + 3600")
    while engine.deliver_one():
        pass
    assert sent_ids(scripted, "ehr") == [first, second]
    assert sent_ids(scripted, "fhir") == [first]  # the retry is not due; the second waits behind it
    assert rows_by_destination(engine, second)["fhir"].status == "pending"
    assert engine.store.get_message(first).status == "routed"

    _move_retries(engine, "0")
    while engine.deliver_one():
        pass
    assert sent_ids(scripted, "fhir") == [first, first, second]  # retried, then the lane moved on in order
    assert {engine.store.get_message(m).status for m in (first, second)} == {"delivered"}


def _move_retries(engine, when: str) -> None:
    """Set when the failed rows' retries are due (an SQL expression): later, or now."""
    engine.store._conn().execute(f"UPDATE outbox SET next_attempt_at = {when} WHERE status='pending' AND attempts > 0")


def test_an_encode_failure_does_not_block_a_strict_lane(tmp_path, scripted):
    """A refused encode is a permanent failure: like a peer's permanent refusal, its dead letter steps
    out of the lane, and the patient's next message reaches that destination."""
    engine = make_engine(tmp_path, scripted, Picky({"ENC-1"}), order={"by": "patient", "mode": "strict"})
    first = engine.submit("visits", encounter_message(1, patient="P1")).message_id
    second = engine.submit("visits", encounter_message(2, patient="P1")).message_id
    engine.drain()
    assert sent_ids(scripted, "fhir") == [second] and sent_ids(scripted, "ehr") == [first, second]
    assert rows_by_destination(engine, first)["fhir"].order_key == "patient:P1"  # the lane key, as read at intake
    assert engine.store.get_message(first).status == "dead"
    assert engine.store.get_message(second).status == "delivered"


def test_the_dead_letter_replayed_to_its_destination_after_the_fix_is_delivered_and_resolved(tmp_path, scripted):
    picky = Picky({"ENC-1"})
    engine = make_engine(tmp_path, scripted, picky)
    message_id = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    dead = rows_by_destination(engine, message_id)["fhir"]

    picky.refuse.clear()  # the cause is fixed
    replay_id = engine.store.replay(message_id, reason="time zone set", actor="ops", destinations=["fhir"])
    engine.drain()

    (delivered,) = engine.store.outbox_rows(message_id=replay_id)
    assert delivered.destination == "fhir" and delivered.status == "delivered"
    assert (delivered.original_message_id, delivered.original_outbox_id) == (message_id, dead.id)  # its identity
    assert json.loads(scripted.sent["fhir"][0].payload)["control"] == f"TB{message_id}"
    assert sent_ids(scripted, "ehr") == [message_id]  # the replay went only where it was asked to
    resolved = rows_by_destination(engine, message_id)["fhir"]
    assert resolved.status == "resolved" and resolved.resolved_by_message == replay_id
    assert engine.store.get_message(message_id).status == "resolved"
    assert engine.store.outbox_rows(status="dead") == []
    assert destination_outcomes([resolved])["fhir"] == {
        "status": "resolved", "outbox_id": dead.id, "attempts": 0, "failed_at": "encode",
        "error": dead.last_error, "resolved_by_message": replay_id}


def test_a_replay_whose_encode_fails_again_is_a_dead_letter_of_its_own(tmp_path, scripted):
    engine = make_engine(tmp_path, scripted, Picky({"ENC-1"}))
    message_id = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    replay_id = engine.store.replay(message_id, reason="try again", actor="ops", destinations=["fhir"])
    engine.drain()
    (row,) = engine.store.outbox_rows(message_id=replay_id)
    assert row.status == "dead" and failed_at(row) == "encode"
    assert engine.store.get_message(replay_id).status == "dead"
    assert rows_by_destination(engine, message_id)["fhir"].status == "dead"  # still waiting for a fix


def test_bridge_show_names_the_failed_destination_and_why(tmp_path, scripted, capsys):
    engine = make_engine(tmp_path, scripted, Picky({"ENC-1"}))
    message_id = engine.submit("visits", encounter_message(1)).message_id
    engine.drain()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"store: {engine.config.store_url}\n")

    assert main(["show", str(message_id), "-c", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"message {message_id}  channel visits  format bridge  status dead" in text
    assert "destinations: fhir dead (encode), ehr delivered" in text
    line = next(ln for ln in text.splitlines() if "-> fhir" in ln)
    assert "failed at: encode" in line and "period.start has no time zone" in line

    assert main(["show", str(message_id), "-c", str(config), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    ehr = shown["destinations"]["ehr"]
    assert ehr == {"status": "delivered", "outbox_id": ehr["outbox_id"], "attempts": 1}
    fhir = shown["destinations"]["fhir"]
    assert fhir["status"] == "dead" and fhir["failed_at"] == "encode" and "no time zone" in fhir["error"]
    assert {d["destination"]: d["failed_at"] for d in shown["deliveries"]} == {"ehr": None, "fhir": "encode"}

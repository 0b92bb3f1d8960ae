"""One test per action, through a loaded map (YAML as an analyst writes it), and bad actions."""

from __future__ import annotations

import json

import pytest

from bridge.core.maps import run_maps
from bridge.core.model.codec import record_to_dict
from bridge.core.model.records import (Coding, Condition, Encounter, HumanName, Identifier, Patient, Period,
                                       Prescription, Practitioner)
from tests.maps.helpers import make_map, problems_of


def visit(cls: str = "AMB") -> Encounter:
    return Encounter(id="E1", encounter_class=cls, period=Period(start="2026-03-15T09:05:00-05:00"),
                     patient=Patient(identifiers=[Identifier("A1", type="MR", assigner="RIVERBEND")],
                                     name=HumanName(family="Testpatient", given=["Alex"])),
                     reason=[Coding("R1", "LOCAL"), Coding("R2", "LOCAL")])


def run(tmp_path, yaml_text, records, files=None):
    return run_maps([make_map(tmp_path, yaml_text, files)], records, "channel")


def test_set_with_a_condition_changes_only_matching_records(tmp_path):
    a, b = visit("AMB"), visit("IMP")
    out = run(tmp_path, """
        steps:
          - id: virtual
            when: {equals: {encounter.class: AMB}}
            set: {encounter.modality: video, encounter.period.end: "2026-03-15T09:30:00-05:00"}
    """, [a, b])
    assert (a.modality, a.period.end) == ("video", "2026-03-15T09:30:00-05:00")
    assert b.modality is None and b.period.end is None
    (event,) = out.events
    assert event["steps"] == [{"id": "virtual", "action": "set", "applied": 1, "changed": 2,
                               "paths": ["encounter.modality", "encounter.period.end"]}]
    assert "video" not in json.dumps(event)  # paths and counts, no values


def test_copy_and_move(tmp_path):
    record = visit()
    run(tmp_path, """
        steps:
          - {id: c, copy: {from: encounter.id, to: encounter.appointment_id}}
          - {id: m, move: {from: encounter.practitioner_state, to: encounter.extra.old_state}}
    """, [record])
    assert record.appointment_id == "E1" and record.id == "E1"
    record.practitioner_state = "MN"
    run(tmp_path / "2", """
        steps:
          - {id: m, move: {from: encounter.practitioner_state, to: encounter.extra.old_state}}
    """, [record])
    assert record.practitioner_state is None and record.extra["old_state"] == "MN"


def test_delete_an_item_a_field_and_a_list(tmp_path):
    record = visit()
    run(tmp_path, """
        steps:
          - {id: d1, delete: "encounter.reason[0]"}
          - {id: d2, delete: encounter.period.start}
          - {id: d3, delete: encounter.patient.name.given}
    """, [record])
    assert [c.code for c in record.reason] == ["R2"]
    assert record.period.start is None and record.patient.name.given == []


def test_lookup_sets_columns_beside_the_key_and_applies_missing_behaviour(tmp_path):
    records = [Condition(code=Coding("L1", "LOCAL")), Condition(code=Coding("L9", "LOCAL"))]
    yaml_text = """
        tables:
          dx: {file: dx.csv, key: local, columns: [snomed, text], missing: %s %s}
        steps:
          - id: dx
            lookup: {table: dx, key: condition.code.code, set: {condition.code.code: snomed, condition.code.display: text},
                     also: {condition.code.system: "http://snomed.info/sct"}}
    """
    files = {"dx.csv": "local,snomed,text\nL1,38341003,Hypertensive disorder\n"}
    out = run(tmp_path / "pass", yaml_text % ("pass", ""), records, files)
    assert record_to_dict(records[0].code) == {"code": "38341003", "system": "http://snomed.info/sct",
                                               "display": "Hypertensive disorder"}
    assert records[1].code.code == "L9" and not out.holds and not out.failure
    again = [Condition(code=Coding("L9", "LOCAL"))]
    assert run(tmp_path / "hold", yaml_text % ("hold", ", reason: unlisted"), again, files).holds[0]["reason"] == "unlisted"
    failed = run(tmp_path / "fail", yaml_text % ("fail", ""), [Condition(code=Coding("L9"))], files).failure
    assert failed == "map m step dx: table dx has no row for the code at condition.code.code"
    defaulted = [Condition(code=Coding("L9"))]
    run(tmp_path / "default", yaml_text % ("default", ", default: {snomed: '261665006', text: Unknown}"),
        defaulted, files)
    assert defaulted[0].code.code == "261665006"


def test_format_date_to_a_precision_and_with_a_pattern(tmp_path):
    record = visit()
    run(tmp_path, """
        steps:
          - {id: day, format_date: {path: encounter.period.start, format: "%Y%m%d", to: encounter.extra.visit_day}}
          - {id: minute, format_date: {path: encounter.period.start, format: minute}}
    """, [record])
    assert record.extra["visit_day"] == "20260315"
    assert record.period.start == "2026-03-15T09:05-05:00"


def test_split_and_join(tmp_path):
    record = visit()
    record.patient.name = HumanName(family="Testpatient", given=["Alex Jo"])
    run(tmp_path, """
        steps:
          - {id: s, split: {path: "encounter.patient.name.given[0]", separator: " ", to: encounter.patient.name.given}}
          - {id: j, join: {from: [encounter.patient.name.family, "encounter.patient.name.given[0]"], separator: ", ",
                           to: encounter.extra.display_name}}
    """, [record])
    assert record.patient.name.given == ["Alex", "Jo"]
    assert record.extra["display_name"] == "Testpatient, Alex"


def test_add_identifier_once(tmp_path):
    record = visit()
    yaml_text = """
        steps:
          - id: registry-id
            add_identifier: {to: patient.identifiers, from: "patient.identifiers[type=MR].value",
                             system: "urn:oid:2.16.840.1.113883.3.999", type: PI}
    """
    run(tmp_path, yaml_text, [record])
    run(tmp_path / "again", yaml_text, [record])
    assert [(i.value, i.system, i.type) for i in record.patient.identifiers] == [
        ("A1", None, "MR"), ("A1", "urn:oid:2.16.840.1.113883.3.999", "PI")]


def test_drop_route_and_hold(tmp_path):
    records = [visit("IMP"), visit("AMB"), Prescription(prescriber=Practitioner(npi="1234567893"))]
    out = run(tmp_path, """
        steps:
          - {id: inpatient, when: {equals: {encounter.class: IMP}}, drop: encounter}
          - {id: copy-to-audit, when: {exists: prescription.prescriber.npi}, route: {to: audit, records: prescription}}
          - {id: review, when: {exists: encounter.id}, hold: visits are reviewed this week}
    """, records)
    assert [r.kind for r in out.records] == ["Encounter", "Prescription"] and out.records[0].encounter_class == "AMB"
    assert out.routes == {"audit": ("Prescription",)}
    assert out.holds == [{"id": "review", "reason": "visits are reviewed this week", "map": "m",
                          "version": out.events[0]["version"]}]


def test_a_value_that_does_not_fit_its_field_fails_the_message_without_quoting_it(tmp_path):
    record = visit()
    record.extra["mode"] = "telepathy"
    out = run(tmp_path, """
        steps:
          - {id: modality, copy: {from: encounter.extra.mode, to: encounter.modality}}
    """, [record])
    assert out.failure is not None and out.failure.startswith("map m step modality: encounter.modality: the value")
    assert "telepathy" not in out.failure


@pytest.mark.parametrize("step, message", [
    ("{id: x, set: {encounter.modality: telepathy}}", "expected one of video, audio_only, async, in_person"),
    ("{id: x, set: {encounter.clas: AMB}}", "has no field 'clas' (did you mean 'class'?)"),
    ("{id: x, set: {encounter.class: AMB}, drop: encounter}", "give exactly one action"),
    ("{id: x, sett: {encounter.class: AMB}}", "unknown key(s) sett"),
    ("{id: x, delete: encounter.patient.identifiers.value}", "required field"),
    ("{id: x, lookup: {table: nope, key: encounter.class}}", "no table 'nope' is declared"),
    ("{id: x, format_date: {path: encounter.period.start, format: '%d/%m/%Y'}}", "does not write one"),
    ("{id: x, add_identifier: {to: encounter.reason, value: '1'}}", "not a list of identifiers"),
    ("{id: x, add_identifier: {to: patient.identifiers, value: '1', system: local}}", "absolute URI"),
    ("{id: x, drop: visit}", "expected a record kind"),
    ("{id: x, hold: ''}", "expected the reason"),
    ("{id: x, copy: {from: encounter.id, to: encounter.period}}", "hold different kinds of value"),
    ("{id: x, when: {pattern: {encounter.id: '(('}}, set: {encounter.class: AMB}}", "bad regular expression"),
])
def test_bad_steps_are_reported_with_file_and_step(tmp_path, step, message):
    problems = problems_of(tmp_path, f"steps:\n  - {{id: ok, set: {{encounter.class: AMB}}}}\n  - {step}\n")
    (where, text), = problems
    assert where == "maps/bad/map.yaml steps[2] (id: x)"
    assert message in text


def test_table_problems_name_the_file(tmp_path):
    yaml_text = """
        tables:
          dx: {file: dx.csv, key: local, columns: [snomed], missing: hold}
          gone: {file: gone.csv, key: k}
          odd: {file: dx.csv, key: local, missing: sometimes}
        steps:
          - {id: x, lookup: {table: dx, key: condition.code.code, set: {condition.code.code: snowmed}}}
    """
    problems = dict(problems_of(tmp_path, yaml_text, {"dx.csv": "local,text\nL1,a\nL1,b\n"}))
    assert problems["maps/bad/map.yaml tables.dx"] == "dx.csv: no column 'snomed' in its header (it has: local, text)"
    assert problems["maps/bad/map.yaml tables.gone"] == "file 'gone.csv' not found in the map's folder"
    assert "missing: expected one of pass, hold, fail, default" in problems["maps/bad/map.yaml tables.odd"]
    assert "no table 'dx' is declared" in problems["maps/bad/map.yaml steps[1] (id: x)"]


def test_duplicate_codes_in_a_table_name_the_line(tmp_path):
    problems = problems_of(tmp_path, """
        tables: {dx: {file: dx.csv, key: local, columns: [text]}}
        steps: [{id: x, lookup: {table: dx, key: condition.code.code}}]
    """, {"dx.csv": "local,text\nL1,a\nL1,b\n"})
    assert problems[0] == ("maps/bad/map.yaml tables.dx", "dx.csv line 3: local 'L1' is listed twice")


def test_the_version_is_a_digest_of_the_files_not_the_tests(tmp_path):
    text = "steps: [{id: x, set: {encounter.class: AMB}}]\n"
    first = make_map(tmp_path, text)
    (tmp_path / "maps" / "m" / "tests").mkdir()
    (tmp_path / "maps" / "m" / "tests" / "a.in.json").write_text("{}")
    assert make_map(tmp_path, text).version == first.version
    assert make_map(tmp_path, text.replace("AMB", "IMP")).version != first.version


def test_a_step_that_adds_or_removes_records_is_seen_by_the_next_steps(tmp_path):
    record = visit()
    out = run(tmp_path, """
        steps:
          - {id: add, set: {encounter.practitioner: {npi: "1234567893"}}}
          - {id: name-them, set: {practitioner.name.family: Example}}
          - {id: remove, delete: encounter.practitioner}
          - {id: none-left, when: {exists: practitioner.npi}, hold: a practitioner is still there}
    """, [record])
    steps = {s["id"]: s for s in out.events[0]["steps"]}
    assert steps["name-them"]["changed"] == 1  # the practitioner the first step added was found
    assert record.practitioner is None and not out.holds  # and the removed one no longer is


def test_copy_and_delete_find_records_again_only_when_records_moved(tmp_path):
    """A later step sees the records as they are: once a visit's patient is deleted, the next step
    finds one patient fewer. A copy or delete of plain values does not make the engine look for
    records again (every step of every message would pay for it)."""
    a, b = visit("AMB"), visit("IMP")
    out = run(tmp_path, """
        steps:
          - id: tag
            set: {patient.extra.seen: "yes"}
          - id: unlink
            when: {equals: {encounter.class: IMP}}
            delete: encounter.patient
          - id: untag
            delete: patient.extra.seen
    """, [a, b])
    assert b.patient is None and a.patient is not None and a.patient.extra == {"seen": None}
    steps = {s["id"]: s for s in out.events[0]["steps"]}
    assert steps["tag"]["applied"] == 2 and steps["untag"]["applied"] == 1
    map_ = make_map(tmp_path, """
        steps:
          - {id: c, copy: {from: encounter.class, to: encounter.extra.was}}
          - {id: d, delete: encounter.extra.was}
          - {id: p, copy: {from: encounter.patient, to: encounter.patient}}
          - {id: q, delete: encounter.patient}
          - {id: m, move: {from: encounter.extra.was, to: encounter.extra.now}}
    """, name="reshape")
    assert [s.action.reshapes for s in map_.steps] == [False, False, True, True, False]


def test_compiled_steps_write_every_owner_and_record_every_change(tmp_path):
    """The steps compiled at load (runner closures, direct writes on each owner) change the same
    values and keep the same per-step record as a slot-by-slot walk: every identifier of a list,
    created intermediate objects, a false condition that records nothing."""
    record = visit()
    record.patient.identifiers.append(Identifier("B2", type="PI"))
    map_ = make_map(tmp_path, """
        steps:
          - id: systems
            set: {"patient.identifiers[*].system": "urn:oid:1.2.3"}
          - id: end
            when: {exists: encounter.period.start}
            copy: {from: encounter.period.start, to: encounter.extra.started}
          - id: never
            when: {equals: {encounter.class: IMP}}
            set: {encounter.modality: video}
          - id: day
            format_date: {path: encounter.period.start, format: date, to: encounter.extra.day}
    """)
    out = run_maps([map_], [record], "channel")
    assert [i.system for i in record.patient.identifiers] == ["urn:oid:1.2.3", "urn:oid:1.2.3"]
    assert record.extra == {"started": "2026-03-15T09:05:00-05:00", "day": "2026-03-15"}
    assert record.modality is None
    (event,) = out.events
    assert [(s["id"], s["applied"], s["changed"]) for s in event["steps"]] == [
        ("systems", 1, 2), ("end", 1, 1), ("day", 1, 1)]
    assert all(step.runner is step.runner for step in map_.steps)  # compiled once, kept on the step
    again = run_maps([map_], [record], "channel")  # nothing left to change: applied, zero changes
    assert [(s["id"], s["changed"]) for s in again.events[0]["steps"]] == [("systems", 0), ("end", 0), ("day", 0)]

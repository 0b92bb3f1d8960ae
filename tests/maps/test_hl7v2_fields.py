"""HL7v2 field-position paths (docs/maps.md "HL7v2 field positions"): parsing, reading with the
message's own escapes, writing, the field actions, conditions on the sender's message, and what
``bridge check`` refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.core.maps import run_maps
from bridge.core.maps.hl7v2_fields import (
    EVERY,
    FieldPathError,
    escaped,
    parse_field_path,
    parse_messages,
    read_fields,
    write_field,
)
from bridge.core.maps.pipeline import edit_outbound, inbound_messages
from bridge.plugins.hl7v2.codec import decode

from .helpers import make_map, problems_of

ADT = ("MSH|^~\\&|TELEVISIT|RIVERBEND|LAB|RIVERBEND|20261127092500-0600||ORU^R01^ORU_R01|C-1|P|2.5.1\r"
       "PID|1||MRN1^^^RIVERBEND^MR~SSN9^^^SSA^SS||Doe^Jane\\T\\Ann||19800412|F\r"
       "PV1|1|O|CLINIC2^204^B^RIVERBEND\r"
       "OBX|1|NM|GLU^Glucose^LOCAL||98|mg/dL\r"
       "OBX|2|NM|K^Potassium^LOCAL||4.1|mmol/L\r"
       "OBX|3|ST|NOTE^Note^LOCAL||fasting\\S\\yes\r").encode()

CUSTOM = ("MSH|@~#$|SENDER|FAC||||||ADT@A04|C-2|P|2.5\r"
          "PID|1||MRN2@@@RIVERBEND@MR||Roe@Pat#T#Q\r").encode()
"""A sender with its own encoding characters: component @, repetition ~, escape #, subcomponent $."""


def message(raw: bytes = ADT):
    return parse_messages(raw).messages[0]


def read(raw_or_message, text: str) -> list[str]:
    msg = message(raw_or_message) if isinstance(raw_or_message, bytes) else raw_or_message
    return read_fields([msg], parse_field_path(text))


@pytest.mark.parametrize("text, expected", [
    ("PID-3", ["MRN1^^^RIVERBEND^MR"]),            # no selector: the first repetition, as written
    ("PID-3[2]", ["SSN9^^^SSA^SS"]),
    ("PID-3[2].4", ["SSA"]),
    ("PID-3[*].1", ["MRN1", "SSN9"]),
    ("PID-3[3]", []),                              # no third repetition: nothing
    ("PID-5.2", ["Jane&Ann"]),                     # a single value: its escape (\T\) expanded
    ("PID-5.2.1", ["Jane&Ann"]),
    ("OBX-5", ["98"]),                             # the first OBX
    ("OBX[2]-5", ["4.1"]),
    ("OBX[*]-5", ["98", "4.1", "fasting^yes"]),
    ("OBX[*]-3.2", ["Glucose", "Potassium", "Note"]),
    ("OBX[4]-5", []),
    ("PV1-2", ["O"]),
    ("PV1-3.4", ["RIVERBEND"]),
    ("MSH-9.2", ["R01"]),
    ("MSH-1", ["|"]),
    ("MSH-2", ["^~\\&"]),
    ("ZZZ-1", []),
])
def test_paths_read_as_hl7_people_count(text, expected):
    assert read(ADT, text) == expected


def test_the_parser_says_what_is_wrong():
    path = parse_field_path("OBX[*]-5[2].3.1")
    assert (path.segment, path.occurrence, path.field, path.repetition, path.component, path.subcomponent) == (
        "OBX", EVERY, 5, 2, 3, 1)
    for bad, why in [("pid-3", "segment names are upper case (PID)"), ("PID-0", "count from 1"),
                     ("PID-3[0]", "[0] after the field must be [N] (1 is the first) or [*]"),
                     ("PID[x]-3", "[x] after the segment must be"), ("PID-3.x", "not a field position"),
                     ("PID-3..1", "not a field position")]:
        with pytest.raises(FieldPathError, match=__import__("re").escape(why)):
            parse_field_path(bad)


def test_writing_escapes_with_the_messages_own_characters_and_adds_no_separators():
    msg = message(CUSTOM)
    assert read(msg, "PID-5.2") == ["Pat$Q"]  # #T# is this sender's escape of its subcomponent separator $
    assert write_field(msg, parse_field_path("PV1-1"), "x") == 0  # no PV1: a segment is never created
    pid = msg.segments[1]
    assert write_field(msg, parse_field_path("PID-3.4"), escaped("STATE@REG#1", msg)) == 1
    assert pid.fields[3] == "MRN2@@@STATE#S#REG#E#1@MR"
    assert read(msg, "PID-3.4") == ["STATE@REG#1"]  # read back unescaped, the same text
    write_field(msg, parse_field_path("PID-3[3].2"), "X")  # padded up to the third repetition only
    assert pid.fields[3] == "MRN2@@@STATE#S#REG#E#1@MR~~@X"
    write_field(msg, parse_field_path("PID-8"), "F")
    assert pid.fields[-2:] == ["", "F"] and len(pid.fields) == 9  # PID-8, fields 6-7 empty, nothing after
    write_field(msg, parse_field_path("PID-3[*]"), "")
    assert pid.fields[3] == ""  # delete of every repetition empties the field
    assert parse_messages(CUSTOM).render().startswith(b"MSH|@~#$|SENDER|FAC||||||ADT@A04|C-2|P|2.5\rPID|")


def test_an_unchanged_message_renders_as_it_came_and_latin1_stays_latin1():
    assert parse_messages(ADT).render() == ADT
    latin = "MSH|^~\\&|S|F||||||ADT^A04|C|P|2.5\rPID|1||M||Müller^Jürgen\r".encode("latin-1")
    outbound = parse_messages(latin)
    write_field(outbound.messages[0], parse_field_path("PID-5.2"), "Jörg")
    assert outbound.render() == "MSH|^~\\&|S|F||||||ADT^A04|C|P|2.5\rPID|1||M||Müller^Jörg\r".encode("latin-1")


def edit(tmp_path: Path, yaml_text: str, raw: bytes = ADT, files: dict[str, str] | None = None):
    map_ = make_map(tmp_path, yaml_text, files)
    events: list = []
    payload, outcome = edit_outbound([map_], raw, [], "destination:lab", events)
    return payload.decode().split("\r"), outcome, map_


def test_field_actions_edit_the_outbound_message(tmp_path):
    lines, outcome, _ = edit(tmp_path, """
        steps:
          - {id: units, set: {"OBX[*]-6.1": "mg/dL^x"}}
          - {id: copy-mrn, copy: {from: "PID-3[2]", to: PID-4}}
          - {id: move-facility, move: {from: PV1-3.4, to: MSH-4.2}}
          - {id: no-ssn, delete: "PID-3[2]"}
          - {id: date, format_date: {path: MSH-7, format: date, to: PV1-44}}
          - {id: pattern-date, format_date: {path: MSH-7, format: "%d/%m/%Y", to: PV1-45}}
          - {id: split-name, split: {path: PID-5.2, separator: "&", to: [PID-9.1, PID-9.2]}}
          - {id: join, join: {from: ["OBX[*]-5"], separator: ",", to: "OBX[3]-5"}}
    """)
    assert outcome.failure is None
    assert lines[0].split("|")[3] == "RIVERBEND^RIVERBEND"  # MSH-4.2 after the move
    assert lines[1] == "PID|1||MRN1^^^RIVERBEND^MR|SSN9^^^SSA^SS|Doe^Jane\\T\\Ann||19800412|F|Jane^Ann"
    assert lines[2].startswith("PV1|1|O|CLINIC2^204^B|")
    assert lines[2].split("|")[44:46] == ["20261127", "27/11/2026"]
    assert [line.split("|")[6] for line in lines[3:6]] == ["mg/dL\\S\\x", "mg/dL\\S\\x", "mg/dL\\S\\x"]
    assert lines[5].split("|")[5] == "98,4.1,fasting\\S\\yes"
    steps = {s["id"]: s["changed"] for s in outcome.events[0]["steps"]}
    assert steps == {"units": 3, "copy-mrn": 1, "move-facility": 2, "no-ssn": 1, "date": 1, "pattern-date": 1,
                     "split-name": 2, "join": 1}
    assert "RIVERBEND" not in repr(outcome.events) and "Jane" not in repr(outcome.events)  # paths and counts only


def test_a_lookup_reads_and_writes_each_segment_the_key_names(tmp_path):
    lines, outcome, _ = edit(tmp_path, """
        tables:
          loinc: {file: loinc.csv, key: local, columns: [loinc, name], missing: pass}
        steps:
          - id: to-loinc
            when: {equals: {OBX-2: NM}}
            lookup:
              table: loinc
              key: OBX[*]-3.1
              set: {OBX-3.1: loinc, OBX-3.2: name}
              also: {OBX-3.3: LN}
    """, files={"loinc.csv": "local,loinc,name\nGLU,2345-7,Glucose [Mass/volume] in Serum or Plasma\n"
                             "K,2823-3,Potassium\n"})
    assert [line.split("|")[3] for line in lines[3:6]] == [
        "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN", "2823-3^Potassium^LN", "NOTE^Note^LOCAL"]
    assert outcome.events[0]["steps"][0]["changed"] == 5  # Potassium's name was already right


def test_conditions_read_the_outbound_message_and_the_senders(tmp_path):
    lines, outcome, _ = edit(tmp_path, """
        steps:
          - {id: only-outpatients, when: {equals: {PV1-2: I}}, set: {PV1-3.1: WARD}}
          - {id: glucose-high, when: {range: {"OBX[*]-5": {min: 90, max: 200}}}, set: {OBX-8: H}}
          - {id: recent, when: {range: {MSH-7: {min: "2026-11", max: "2026-11-27"}}}, set: {MSH-5: NEWLAB}}
          - {id: tele, when: {pattern: {PV1-3.1: "CLINIC\\\\d"}}, set: {PV1-2: O}}
          - {id: never, when: {exists: ZTH-1}, set: {PV1-2: X}}
    """)
    assert lines[2].startswith("PV1|1|O|CLINIC2^")
    assert lines[3].split("|")[8] == "H" and lines[0].split("|")[4] == "NEWLAB"
    assert [s["id"] for s in outcome.events[0]["steps"]] == ["glucose-high", "recent", "tele"]

    channel = make_map(tmp_path, """
        steps:
          - {id: drop-inpatients, when: {not: {equals: {PV1-2: O}}}, drop: encounter}
    """, name="channel")
    raw_adt = ("MSH|^~\\&|A|B|C|D|20261127092500||ADT^A04^ADT_A01|X|P|2.5\rEVN|A04|20261127092500\r"
               "PID|1||MRN1^^^RIVERBEND^MR||Doe^Jane\rPV1|1|{}|CLINIC2\r")
    for patient_class, kept in (("O", 1), ("I", 0)):
        raw = raw_adt.format(patient_class).encode()
        outcome = run_maps([channel], decode(raw), "channel", inbound_messages([channel], raw))
        assert len(outcome.records) == kept
    # From a channel that is not HL7v2 there is no message to read: the condition does not hold.
    assert len(run_maps([channel], decode(raw_adt.format("O").encode()), "channel").records) == 0


def test_map_loading_refuses_what_cannot_work(tmp_path):
    problems = problems_of(tmp_path, """
        steps:
          - {id: a, set: {PID-0: x}}
          - {id: b, set: {MSH-2: "^~"}}
          - {id: c, copy: {from: patient.birth_date, to: PID-7}}
          - {id: d, add_identifier: {to: PID-3, value: X}}
          - {id: e, when: {equals: {"PID-3[0]": X}}, set: {PID-4: Y}}
          - {id: f, lookup: {table: t, key: "OBX[*]-3[*].1", set: {OBX-3.2: b}}}
          - {id: g, lookup: {table: t, key: OBX-3.1, set: {PID-5: b}}}
    """, files={"t.csv": "a,b\nx,y\n"})
    text = "\n".join(f"{where}: {message}" for where, message in problems)
    assert "(id: a): set: PID-0: field, component and subcomponent numbers count from 1" in text
    assert "(id: b): set: MSH-2 holds the message's separators and cannot be written" in text
    assert "(id: c): copy.from: 'patient.birth_date': every path of a step that edits HL7v2 fields" in text
    assert "(id: d): add_identifier.to: PID-3: an HL7v2 field position is read in conditions" in text
    assert "(id: e): when: PID-3[0]: [0] after the field must be [N]" in text
    assert "lookup.table: no table 't'" in text  # tables: not declared in this map


def write_site(tmp_path: Path, map_yaml: str, channel_format: str = "hl7v2", dest: str = "format: hl7v2",
               on: str = "destination") -> Path:
    folder = tmp_path / "maps" / "m"
    folder.mkdir(parents=True)
    (folder / "map.yaml").write_text(textwrap.dedent(map_yaml))
    channel_maps, dest_maps = ("[m]", "[]") if on == "channel" else ("[]", "[m]")
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          in:
            source: file://inbox
            format: {channel_format}
            policies: []
            maps: {channel_maps}
            routes: [{{to: [out]}}]
        destinations:
          out: {{url: file://outbox, {dest}, maps: {dest_maps}}}
    """))
    return config


@pytest.mark.parametrize("map_yaml, where, extra, expected", [
    ("steps: [{id: s, set: {PV1-3.1: X}}]", "channel", {},
     "a channel's map cannot edit HL7v2 fields (the message is decoded already)"),
    ("steps: [{id: s, when: {equals: {PV1-2: O}}, drop: encounter}]", "channel", {"channel_format": "bridge"},
     "the condition reads HL7v2 field positions, but channel in receives bridge, not HL7v2"),
    ("steps: [{id: s, set: {PV1-3.1: X}}]", "destination", {"dest": "format: fhir"},
     "edits HL7v2 fields, but destination out sends fhir, not HL7v2"),
    ("steps: [{id: s, set: {encounter.class: AMB}}]", "destination", {"dest": "format: hl7v2, passthrough: true"},
     "destination out passes the sender's message through, so a change to the records changes nothing it sends"),
])
def test_check_refuses_field_positions_where_there_is_no_hl7v2_message(tmp_path, capsys, map_yaml, where, extra,
                                                                      expected):
    config = write_site(tmp_path, map_yaml, on=where, **extra)
    assert main(["check", "-c", str(config)]) == 2
    assert expected in capsys.readouterr().err


def test_check_refuses_pass_through_on_another_format_and_accepts_drop_on_a_pass_through(tmp_path, capsys):
    config = write_site(tmp_path, "steps: [{id: s, set: {PV1-3.1: X}}]", dest="format: fhir, passthrough: true")
    assert main(["check", "-c", str(config)]) == 2
    assert ("destinations.out.passthrough: only an hl7v2 destination can pass the sender's HL7v2 message through"
            in capsys.readouterr().err)
    ok = write_site(tmp_path / "ok", """
        steps:
          - {id: outpatients-only, when: {not: {equals: {PV1-2: O}}}, drop: encounter}
          - {id: unit, set: {PV1-3.1: X}}
    """, dest="format: hl7v2, passthrough: true")
    assert main(["check", "-c", str(ok)]) == 0


def test_check_refuses_a_destination_record_step_reading_fields_no_hl7v2_sender_has(tmp_path, capsys):
    map_yaml = "steps: [{id: s, when: {equals: {PV1-2: O}}, set: {encounter.class: AMB}}]"
    config = write_site(tmp_path, map_yaml, channel_format="bridge")
    assert main(["check", "-c", str(config)]) == 2
    assert ("the condition reads the sender's HL7v2 fields, but every channel sending to out receives bridge"
            in capsys.readouterr().err)
    assert main(["check", "-c", str(write_site(tmp_path / "ok", map_yaml))]) == 0  # an HL7v2 channel sends to it

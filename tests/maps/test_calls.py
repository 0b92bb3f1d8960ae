"""The escape hatch `call: module:function`: the map folder's own code, run like any step (timeline
counts, holds, drops), its failures failing the one message with the error's type and line but no
value, its source in the map's version, and `bridge check` refusing what cannot be called."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from bridge.cli import main
from bridge.core.maps import load_map, map_version, run_maps
from bridge.core.model.codec import record_from_dict
from bridge.core.model.records import Encounter
from bridge.testing import engine_from_dict, plugin_manager
from tests.core.helpers import encounter_message, prescription_message
from tests.maps.helpers import make_map, problems_of, write_map

ROOT = Path(__file__).resolve().parents[2]
NPI_MAP = ROOT / "examples" / "maps" / "maps" / "npi-check-digit"
DOCS = ROOT / "docs" / "maps.md"
CALL = """
    steps:
      - id: by-hand
        call: steps:{function}
"""


def visit(**fields) -> list:
    doc = json.loads(encounter_message(1, **fields))
    return [record_from_dict(doc["records"][0])]


def call_map(tmp_path: Path, function: str, source: str):
    return make_map(tmp_path, CALL.format(function=function), {"steps.py": source})


def test_a_call_changes_records_and_the_timeline_counts_it(tmp_path):
    map_ = call_map(tmp_path, "to_audio", """
        def to_audio(ctx):
            assert ctx.stage == "channel" and ctx.map == "m" and ctx.step == "by-hand"
            changed = 0
            for encounter in ctx.of_kind("encounter"):
                encounter.modality = "audio_only"
                changed += 1
            return changed
    """)
    records = visit()
    outcome = run_maps([map_], records, "channel")
    assert outcome.failure is None and isinstance(outcome.records[0], Encounter)
    assert outcome.records[0].modality == "audio_only"
    assert outcome.events[0]["steps"] == [{"id": "by-hand", "action": "call", "paths": [], "applied": 1, "changed": 1}]
    assert not list((tmp_path / "maps" / "m").glob("__pycache__"))  # no bytecode written into the map's folder


def test_hold_drop_and_fail_from_a_call(tmp_path):
    held = run_maps([call_map(tmp_path / "a", "check", """
        def check(ctx):
            ctx.hold("a visit the site reviews by hand")
    """)], visit(), "channel")
    assert held.hold_rules == [{"policy": "map:m", "ruleset": held.events[0]["version"], "id": "by-hand",
                                "outcome": "REVIEW", "reason": "a visit the site reviews by hand", "basis": ""}]
    dropped = run_maps([call_map(tmp_path / "b", "check", """
        def check(ctx):
            for record in list(ctx.records):
                ctx.drop(record)
    """)], visit(), "destination:ehr")
    assert dropped.records == [] and dropped.failure is None
    failed = run_maps([call_map(tmp_path / "c", "check", """
        def check(ctx):
            if ctx.stage.startswith("destination:"):
                ctx.fail("this receiver takes no visits")
    """)], visit(), "destination:ehr")
    assert failed.failure == "map m step by-hand: call steps:check: this receiver takes no visits"


def test_an_exception_fails_the_message_with_its_type_and_line_never_its_text(tmp_path):
    map_ = call_map(tmp_path, "boom", """
        def boom(ctx):
            patient = ctx.records[0].patient
            raise KeyError(patient.name.family)
    """)
    outcome = run_maps([map_], visit(), "channel")
    assert outcome.failure == "map m step by-hand: call steps:boom raised KeyError (m/steps.py line 3)"
    assert "Testpatient" not in outcome.failure
    assert outcome.events[0]["steps"] == [{"id": "by-hand", "action": "call", "failed": True}]


def test_a_value_that_does_not_fit_or_a_strange_return_fails_the_message(tmp_path):
    wrong_value = run_maps([call_map(tmp_path / "a", "bad", """
        def bad(ctx):
            ctx.records[0].modality = "telepathy"
    """)], visit(), "channel")
    assert wrong_value.failure.startswith("map m step by-hand: call steps:bad left a value that does not fit in "
                                          "records[0] (Encounter")
    assert "telepathy" not in wrong_value.failure
    wrong_return = run_maps([call_map(tmp_path / "b", "bad", """
        def bad(ctx):
            return "done"
    """)], visit(), "channel")
    assert wrong_return.failure == ("map m step by-hand: call steps:bad returned a str; expected None or the "
                                    "number of values it changed")


def test_the_call_s_source_is_part_of_the_map_s_version(tmp_path):
    source = "def same(ctx):\n    return 0\n"
    folder = write_map(tmp_path / "maps" / "m", CALL.format(function="same"), {"steps.py": source})
    before = map_version(folder)
    (folder / "steps.py").write_text(source + "\n# a comment is a change too\n")
    assert map_version(folder) != before
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "steps.cpython-311.pyc").write_bytes(b"\0")
    after = map_version(folder)
    (folder / "__pycache__" / "steps.cpython-311.pyc").write_bytes(b"\1")
    assert map_version(folder) == after  # Python's caches are not the map


def test_load_problems_name_what_cannot_be_called(tmp_path):
    def problem(function: str, files: dict[str, str] | None = None) -> str:
        text = CALL.format(function=function) if ":" not in function else CALL.replace("steps:{function}", function)
        found = problems_of(tmp_path / function.replace(":", "_"), text, files)
        assert len(found) == 1
        return found[0][1]

    assert "no file steps.py in the map's folder bad/" in problem("missing")
    assert problem("os:system") == ("call: no file os.py in the map's folder bad/ (a call names a module of the "
                                    "map's own folder, not an installed one)")
    assert problem("nothere", {"steps.py": "def one(ctx):\n    pass\ndef two(ctx):\n    pass\n"}) == \
        "call: steps.py has no function 'nothere' (functions: one, two)"
    assert problem("two_args", {"steps.py": "def two_args(ctx, other):\n    pass\n"}) == \
        "call: steps:two_args must take one argument, the step context (def two_args(ctx): …); it is two_args(ctx, other)"
    assert problem("f", {"steps.py": "def f(ctx):\n    return (\n"}).startswith("call: steps.py line 2:")
    assert "expected module:function" in problem("../etc:passwd")


def test_bridge_check_refuses_a_call_to_a_missing_function(tmp_path, capsys):
    write_map(tmp_path / "maps" / "checks", CALL.format(function="gone"), {"steps.py": "def here(ctx):\n    pass\n"})
    (tmp_path / "bridge.yaml").write_text(
        "store: sqlite:///bridge.db\n"
        "channels:\n  visits: {source: 'file://inbox', format: bridge, policies: [], maps: [checks],"
        " routes: [{to: [ehr]}]}\n"
        "destinations:\n  ehr: {url: 'file://out/ehr', format: bridge}\n")
    assert main(["check", "-c", str(tmp_path / "bridge.yaml")]) == 2
    assert "maps/checks/map.yaml steps[1] (id: by-hand): call: steps.py has no function 'gone' (functions: here)" \
        in capsys.readouterr().err


def _engine(tmp_path: Path):
    shutil.copytree(NPI_MAP, tmp_path / "maps" / "npi-check-digit")
    config = {"channels": {"rx": {"source": "file://inbox", "format": "bridge", "policies": [],
                                  "maps": ["npi-check-digit"], "routes": [{"to": ["ehr"]}]}},
              "destinations": {"ehr": {"url": "file://out/ehr", "format": "bridge"}}}
    engine = engine_from_dict(config, tmp_path, plugin_manager(disabled=("telehealth_policy",)))
    engine.open_destinations()
    return engine


def _with_npi(number: str, npi: str) -> bytes:
    doc = json.loads(prescription_message(number))
    doc["records"][0]["prescriber"] = {"name": {"family": "Prescriber"}, "npi": npi}
    return json.dumps(doc).encode()


def test_the_npi_example_runs_through_the_engine(tmp_path, caplog):
    engine = _engine(tmp_path)
    with caplog.at_level(logging.DEBUG):
        good = engine.submit("rx", _with_npi("RX-1", "1234567893")).message_id
        typo = engine.submit("rx", _with_npi("RX-2", "1234567890")).message_id
        engine.drain()
    assert engine.store.get_message(good).status == "delivered"
    assert engine.store.get_message(typo).status == "held"
    (hold,) = engine.store.holds()
    assert [(r["policy"], r["id"], r["reason"]) for r in hold.reasons] == [
        ("map:npi-check-digit", "npi-check-digit", "the prescriber NPI fails its check digit")]
    mapped = [e.detail for e in engine.store.events(typo) if e.kind == "mapped"]
    assert mapped[0]["version"] == map_version(tmp_path / "maps" / "npi-check-digit")
    assert "1234567890" not in caplog.text and "1234567890" not in json.dumps(mapped)
    engine.store.close()


def test_docs_quote_the_npi_example():
    text = DOCS.read_text(encoding="utf-8")
    for name in ("map.yaml", "steps.py"):
        assert (NPI_MAP / name).read_text(encoding="utf-8").strip() in text, name
    loaded, problems = load_map(NPI_MAP)
    assert loaded is not None and not problems


def test_a_failing_call_fails_that_message_in_the_engine_and_the_next_one_flows(tmp_path, caplog):
    write_map(tmp_path / "maps" / "picky", CALL.format(function="picky"), {"steps.py": """
        def picky(ctx):
            for encounter in ctx.of_kind("encounter"):
                if encounter.id == "ENC-1":
                    raise ValueError(encounter.patient.name.family)
    """})
    config = {"channels": {"visits": {"source": "file://inbox", "format": "bridge", "policies": [],
                                      "maps": ["picky"], "routes": [{"to": ["ehr"]}]}},
              "destinations": {"ehr": {"url": "file://out/ehr", "format": "bridge"}}}
    engine = engine_from_dict(config, tmp_path, plugin_manager(disabled=("telehealth_policy",)))
    engine.open_destinations()
    with caplog.at_level(logging.DEBUG):
        first = engine.submit("visits", encounter_message(1)).message_id
        second = engine.submit("visits", encounter_message(2, patient="MRN2")).message_id
        engine.drain()
    failed = engine.store.get_message(first)
    assert failed.status == "failed"
    assert failed.error == "map picky step by-hand: call steps:picky raised ValueError (picky/steps.py line 4)"
    assert engine.store.get_message(second).status == "delivered"
    assert "Testpatient" not in caplog.text and "Testpatient" not in failed.error
    engine.store.close()

"""``bridge map try``: one message through a channel's maps, step by step, as an analyst runs it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "maps"
CONFIG = str(EXAMPLE / "bridge.yaml")
SAMPLES = EXAMPLE / "maps"


def _final(out: str) -> dict:
    return json.loads(out.split("records after the maps:\n", 1)[1])


def test_each_step_shows_its_condition_and_changes_then_the_records(capsys):
    sample = SAMPLES / "local-dx-to-snomed" / "tests" / "known-code.in.hl7"
    assert main(["map", "try", "-c", CONFIG, "adt-in", str(sample)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].startswith("map outpatient-only (version ")
    assert "  step drop-other-visits (drop): condition held for 0 of 1 Encounter" in lines
    assert "  step dx-to-snomed (lookup): condition held for 1 of 1 Condition" in lines
    assert '      Condition #1: code.code: "HTN01" -> "38341003"' in lines
    assert '      Condition #1: code.system: "LOCALDX" -> "http://snomed.info/sct"' in lines
    # steps in the channel's order: the first map's steps before the second's
    assert out.index("step drop-their-diagnoses") < out.index("step dx-to-snomed")
    conditions = [r for r in _final(out)["records"] if r["kind"] == "Condition"]
    assert conditions[0]["code"]["code"] == "38341003"


def test_dropped_records_and_holds_are_shown(capsys):
    inpatient = SAMPLES / "outpatient-only" / "tests" / "inpatient.in.hl7"
    assert main(["map", "try", "-c", CONFIG, "adt-in", str(inpatient)]) == 0
    out = capsys.readouterr().out
    assert "      dropped Encounter #1" in out and "      dropped Condition #1" in out
    assert "  step dx-to-snomed (lookup): no Condition in the message" in out
    assert _final(out)["records"] == []
    unlisted = SAMPLES / "local-dx-to-snomed" / "tests" / "unlisted-code.in.hl7"
    assert main(["map", "try", "-c", CONFIG, "adt-in", str(unlisted)]) == 0
    out = capsys.readouterr().out
    assert "      held for review: a diagnosis code is not in the local-to-SNOMED CT table" in out
    assert _final(out)["outcome"]["held"][0]["step"] == "dx-to-snomed"


def test_a_bridge_json_channel_and_a_message_wide_step(capsys):
    sample = SAMPLES / "credentialed-prescribers" / "tests" / "not-credentialed.in.json"
    assert main(["map", "try", "-c", CONFIG, "rx-in", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "  step prescriber-credentialed (lookup): no condition (applies to 1 Prescription)" in out
    assert "  step prescriber-named (hold): condition did not hold" in out


def _site(tmp_path: Path, steps: str, maps: str = "[edit]") -> Path:
    folder = tmp_path / "maps" / "edit"
    folder.mkdir(parents=True)
    (folder / "map.yaml").write_text(textwrap.dedent(steps))
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          adt-in: {{source: file://inbox, format: hl7v2, policies: [], maps: {maps}, routes: [{{to: [out]}}]}}
          bare: {{source: file://inbox2, format: hl7v2, policies: [], routes: [{{to: [out]}}]}}
        destinations:
          out: {{url: file://outbox, format: bridge}}
    """))
    return config


def test_a_value_created_and_a_failing_step(tmp_path, capsys):
    config = _site(tmp_path, """
        steps:
          - {id: modality, set: {encounter.modality: video}}
          - {id: copy-bad, copy: {from: patient.gender, to: encounter.period.start}}
          - {id: never, set: {encounter.modality: audio_only}}
    """)
    sample = SAMPLES / "registry-mrn-authority" / "tests" / "riverbend-mrn.in.hl7"
    assert main(["map", "try", "-c", str(config), "adt-in", str(sample)]) == 1  # fails, as the engine would
    out = capsys.readouterr().out
    assert "  step modality (set): no condition (applies to 1 Encounter)" in out
    assert '      Encounter #1: modality: (absent) -> "video"' in out
    failed = next(line for line in out.splitlines() if "FAILED the message: " in line)
    assert "encounter.period.start: the value does not fit the field" in failed and "female" not in failed
    assert "step never" not in out  # the steps after a failure do not run
    assert _final(out)["outcome"]["failed"].startswith("map edit step copy-bad: ")


def test_clear_errors(tmp_path, capsys):
    config = _site(tmp_path, "steps:\n  - {id: one, set: {encounter.modality: video}}\n")
    sample = SAMPLES / "registry-mrn-authority" / "tests" / "riverbend-mrn.in.hl7"
    assert main(["map", "try", "-c", str(config), "nope", str(sample)]) == 2
    assert "bridge: no channel 'nope' (channels: adt-in, bare)" in capsys.readouterr().err
    assert main(["map", "try", "-c", str(config), "bare", str(sample)]) == 2
    assert "bridge: channel 'bare' has no maps" in capsys.readouterr().err
    garbage = tmp_path / "garbage.hl7"
    garbage.write_bytes(b"not a message\r")
    assert main(["map", "try", "-c", str(config), "adt-in", str(garbage)]) == 2
    assert "does not decode as hl7v2 (channel adt-in)" in capsys.readouterr().err
    assert main(["map", "try", "-c", str(config), "adt-in", str(tmp_path / "missing.hl7")]) == 2
    assert "cannot read" in capsys.readouterr().err

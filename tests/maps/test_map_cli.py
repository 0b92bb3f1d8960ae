"""``bridge map test`` and ``bridge check`` on maps, as an analyst runs them."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "maps"


def site(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "site")
    return tmp_path / "site" / "bridge.yaml"


def test_map_test_passes_on_the_example_maps(capsys):
    assert main(["map", "test", "-c", str(EXAMPLE / "bridge.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok    maps/registry-mrn-authority/tests/riverbend-mrn.in.hl7" in out
    assert out.strip().endswith("11 passed, 0 failed")


def test_an_edited_expectation_fails_with_a_readable_diff(tmp_path, capsys):
    config = site(tmp_path)
    expected = config.parent / "maps" / "registry-mrn-authority" / "tests" / "riverbend-mrn.expected.json"
    expected.write_text(expected.read_text().replace('"assigner": "STATEREG"', '"assigner": "STATE-REG"', 1))
    assert main(["map", "test", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  maps/registry-mrn-authority/tests/riverbend-mrn.in.hl7" in out
    assert "--- maps/registry-mrn-authority/tests/riverbend-mrn.expected.json (expected)" in out
    assert '-            "assigner": "STATE-REG",' in out and '+            "assigner": "STATEREG",' in out
    assert out.strip().endswith("10 passed, 1 failed")


def test_a_missing_expectation_shows_what_the_map_gives(tmp_path, capsys):
    config = site(tmp_path)
    (config.parent / "maps" / "outpatient-only" / "tests" / "inpatient.expected.json").unlink()
    assert main(["map", "test", "-c", str(config), "outpatient-only"]) == 1
    out = capsys.readouterr().out
    assert "no inpatient.expected.json; the map gives:" in out and '"records": []' in out
    assert main(["map", "test", "-c", str(config), "no-such-map"]) == 2


def test_a_changed_hold_shows_in_the_diff(tmp_path, capsys):
    config = site(tmp_path)
    folder = config.parent / "maps" / "credentialed-prescribers"
    csv = folder / "credentialed-prescribers.csv"
    csv.write_text(csv.read_text() + "1999999992,Now credentialed (fictional)\n")
    assert main(["map", "test", "-c", str(config), "credentialed-prescribers"]) == 1
    out = capsys.readouterr().out
    assert '-  "outcome": {' in out and "the prescriber is not in the credentialed prescribers list" in out


def write_config(tmp_path: Path, channel_maps: str, destination_maps: str = "[]") -> Path:
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          adt-in:
            source: file://inbox
            format: hl7v2
            policies: []
            maps: {channel_maps}
            routes: [{{to: [out]}}]
        destinations:
          out: {{url: file://outbox, format: bridge, maps: {destination_maps}}}
    """))
    return config


def test_check_refuses_an_unknown_map_and_a_route_step_on_a_destination(tmp_path, capsys):
    folder = tmp_path / "maps" / "router"
    folder.mkdir(parents=True)
    (folder / "map.yaml").write_text("steps:\n  - {id: copy-out, route: [elsewhere]}\n")
    config = write_config(tmp_path, "[outpatient]", "[router]")
    assert main(["check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "channels.adt-in.maps[0]: no map 'outpatient'" in err
    assert ("destinations.out.maps[0] (maps/router/map.yaml steps[1] (id: copy-out)): a destination's map cannot "
            "route") in err
    assert "route to unknown destination 'elsewhere'" in err


def test_check_reports_every_broken_map_with_file_and_step(tmp_path, capsys):
    folder = tmp_path / "maps" / "broken"
    folder.mkdir(parents=True)
    text = textwrap.dedent("""
        tables:
          dx: {file: dx.csv, key: local, columns: [snomed]}
        steps:
          - {id: one, when: {pattern: {encounter.id: "[a-"}}, set: {encounter.class: AMB}}
          - {id: two, set: {"patient.identifers[type=MR].assigner": X}}
    """)
    (folder / "map.yaml").write_text(text + "  - {id: three, set: {patient.identifiers[type=MR].assigner: X}}\n")
    config = write_config(tmp_path, "[broken]")
    assert main(["check", "-c", str(config)]) == 2
    assert "quote a path with a [selector] inside { }" in capsys.readouterr().err  # flow style reads [ as a list
    (folder / "map.yaml").write_text(text)
    assert main(["check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "maps/broken/map.yaml tables.dx: file 'dx.csv' not found in the map's folder" in err
    assert "maps/broken/map.yaml steps[1] (id: one): when: pattern: encounter.id: bad regular expression" in err
    assert ("maps/broken/map.yaml steps[2] (id: two): set: patient.identifers[type=MR].assigner: Patient has no "
            "field 'identifers' (did you mean 'identifiers'?)") in err


def test_check_accepts_the_example(capsys):
    assert main(["check", "-c", str(EXAMPLE / "bridge.yaml")]) == 0
    assert json.dumps(capsys.readouterr().err).count("error") == 0

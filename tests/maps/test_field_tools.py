"""Field-position maps in the analyst's tools (``bridge map try --destination``, ``bridge map test``
with ``.expected.hl7``) and in the engine where no HL7v2 message exists (a JSON channel feeding a
pass-through destination)."""

from __future__ import annotations

import json
import logging
import shutil
import textwrap
from pathlib import Path

from bridge.cli import main
from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.testing import plugin_manager

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "maps"
CONFIG = str(EXAMPLE / "bridge.yaml")
BEDBOARD = EXAMPLE / "maps" / "bedboard-locations" / "tests"


def test_map_try_follows_a_message_to_a_pass_through_destination_field_by_field(capsys):
    assert main(["map", "try", "-c", CONFIG, "adt-in", str(BEDBOARD / "clinic2.in.hl7"),
                 "--destination", "bedboard-hl7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "destination bedboard-hl7 (hl7v2, passthrough): maps: bedboard-locations" in lines
    assert "  step unit-code (lookup): condition held for 1 of 1 outbound HL7v2 message" in lines
    assert '      HL7v2 message #1: PV1-3: "CLINIC2^204^B^RIVERBEND" -> "OP-2^204^B^RB-MAIN"' in lines
    sent = lines[lines.index("message bedboard-hl7 sends (MSH-10 and MSH-7 as in the sample):") + 1:]
    assert sent == (BEDBOARD / "clinic2.expected.hl7").read_text().splitlines()


def test_map_try_shows_an_encoded_message_edited_and_a_failing_field_step(capsys):
    sample = EXAMPLE / "maps" / "lab-facility-msh4" / "tests" / "riverbend-visit.in.hl7"
    assert main(["map", "try", "-c", CONFIG, "adt-in", str(sample), "--destination", "lab-hl7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert '      HL7v2 message #1: MSH-4: (absent) -> "RIVERBEND"' in lines
    assert '      HL7v2 message #1: MSH-4: "RIVERBEND" -> "RIVERBEND^2.999.1.7^ISO"' in lines
    # the lab gets HL7 2.3 (options.version): MSH-9 without its structure, MSH-12 2.3
    assert lines[-5] == "MSH|^~\\&||RIVERBEND^2.999.1.7^ISO|||20261127092500||ADT^A04|REG-1|P|2.3"

    assert main(["map", "try", "-c", CONFIG, "adt-in", str(BEDBOARD / "unknown-unit.in.hl7"),
                 "--destination", "bedboard-hl7"]) == 1
    out = capsys.readouterr().out
    assert "      FAILED the message: table units has no row for the code at PV1-3.1" in out
    assert main(["map", "try", "-c", CONFIG, "adt-in", str(BEDBOARD / "clinic2.in.hl7"),
                 "--destination", "nowhere"]) == 2


def test_map_test_diffs_an_edited_outbound_expectation(tmp_path, capsys):
    shutil.copytree(EXAMPLE, tmp_path / "site")
    expected = tmp_path / "site" / "maps" / "bedboard-locations" / "tests" / "clinic2.expected.hl7"
    expected.write_text(expected.read_text().replace("OP-2^204", "OP-3^204"))
    assert main(["map", "test", "-c", str(tmp_path / "site" / "bridge.yaml"), "bedboard-locations"]) == 1
    out = capsys.readouterr().out
    assert "--- maps/bedboard-locations/tests/clinic2.expected.hl7 (expected)" in out
    assert "\n-PV1|1|O|OP-3^204^B^RB-MAIN|" in out and "\n+PV1|1|O|OP-2^204^B^RB-MAIN|" in out
    assert out.strip().endswith("1 passed, 1 failed")  # unknown-unit's failure is its expectation


def test_a_pass_through_fed_a_json_message_dead_letters_and_logs_no_values(tmp_path, caplog):
    (tmp_path / "maps" / "unit").mkdir(parents=True)
    (tmp_path / "maps" / "unit" / "map.yaml").write_text("steps: [{id: unit, set: {PV1-3.1: TELE}}]\n")
    (tmp_path / "bridge.yaml").write_text(textwrap.dedent("""
        store: sqlite:///var/bridge.db
        channels:
          json-in: {source: file://inbox, format: bridge, policies: [], routes: [{to: [board, files]}]}
        destinations:
          board: {url: file://board, format: hl7v2, passthrough: true, maps: [unit]}
          files: {url: file://files, format: bridge}
    """))
    plugins = plugin_manager()
    engine = Engine(load_config(tmp_path / "bridge.yaml", plugins), plugins)
    engine.open_destinations()
    try:
        sample = EXAMPLE / "maps" / "credentialed-prescribers" / "tests" / "credentialed.in.json"
        with caplog.at_level(logging.DEBUG):
            message_id = engine.submit("json-in", sample.read_bytes()).message_id
            engine.drain()
        rows = {r.destination: r for r in engine.store.outbox_rows(message_id)}
        assert rows["board"].status == "dead"
        assert rows["board"].last_error == ("destination board passes the sender's HL7v2 message through, but this "
                                            "message did not arrive as HL7v2")
        assert rows["files"].status == "delivered"
        record = json.loads(sample.read_text())["records"][0]
        assert record["prescriber"]["npi"] not in caplog.text and record["patient"]["name"]["family"] not in caplog.text
    finally:
        engine.store.close()


def test_a_field_lookups_hold_holds_the_message_and_a_release_sends_it_as_is(tmp_path):
    (tmp_path / "maps" / "units").mkdir(parents=True)
    (tmp_path / "maps" / "units" / "map.yaml").write_text(textwrap.dedent("""
        tables:
          units: {file: units.csv, key: ours, columns: [theirs], missing: hold, reason: unit not in the table}
        steps:
          - {id: unit, lookup: {table: units, key: PV1-3.1, set: {PV1-3.1: theirs}}}
    """))
    (tmp_path / "maps" / "units" / "units.csv").write_text("ours,theirs\nCLINIC2,OP-2\n")
    (tmp_path / "bridge.yaml").write_text(textwrap.dedent("""
        store: sqlite:///var/bridge.db
        channels:
          adt: {source: file://inbox, format: hl7v2, policies: [], routes: [{to: [board]}]}
        destinations:
          board: {url: file://board, format: hl7v2, passthrough: true, maps: [units]}
    """))
    plugins = plugin_manager()
    engine = Engine(load_config(tmp_path / "bridge.yaml", plugins), plugins)
    engine.open_destinations()
    try:
        raw = (BEDBOARD / "unknown-unit.in.hl7").read_bytes()
        message_id = engine.submit("adt", raw).message_id
        engine.drain()
        assert engine.store.get_message(message_id).status == "held"
        (hold,) = engine.store.holds()
        assert [(r["policy"], r["id"], r["reason"]) for r in hold.reasons] == [
            ("map:units", "unit", "unit not in the table")]
        engine.store.resolve_hold(message_id, "release", reason="the board knows ANNEX9", actor="test")
        engine.drain()
        assert engine.store.get_message(message_id).status == "delivered"
        (sent,) = [p.read_bytes() for p in (tmp_path / "board").glob("*")]
        assert sent == raw.replace(b"|ADM-8|", f"|TB{message_id}|".encode())  # as the sender wrote it
    finally:
        engine.store.close()


def test_every_message_of_a_pass_through_gets_its_own_stable_control_id():
    from bridge.core.maps.hl7v2_fields import parse_messages
    from bridge.core.maps.pipeline import stamp_control_ids

    two = (BEDBOARD / "clinic2.in.hl7").read_bytes() + (BEDBOARD / "unknown-unit.in.hl7").read_bytes()
    outbound = parse_messages(two)
    stamp_control_ids(outbound.messages, "TB41")
    assert [m.msh.get(10) for m in outbound.messages] == ["TB41", "TB41-2"]

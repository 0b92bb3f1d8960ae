"""`bridge replay` (issue 11 §1): --destination and --force, and the refusals that exit 2 with a message
saying what to do instead. The CLI runs in process against the real SQLite file the engine uses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.core.plugin_manager import load_plugins
from tests.web.conftest import prescription as incomplete_prescription

ROOT = Path(__file__).resolve().parents[2]
PRESCRIPTION = ROOT / "examples" / "messages" / "prescription.json"


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent("""
        store: sqlite:///var/bridge.db
        channels:
          platform:
            source: file://inbox
            format: bridge
            routes: [{when: {record: Prescription}, to: [pharmacy-files, ehr-files]}]
        destinations:
          pharmacy-files: {url: file://pharmacy, format: bridge}
          ehr-files: {url: file://ehr, format: bridge}
          archive: {url: file://archive, format: bridge}
    """))
    plugins = load_plugins(entry_points=False)
    engine = Engine(load_config(path, plugins), plugins)
    engine.open_destinations()
    yield engine, str(path), tmp_path
    engine.store.close()


def test_replaying_a_delivered_prescription_without_force_explains_and_exits_2(site, capsys):
    engine, config, folder = site
    rx = engine.submit("platform", PRESCRIPTION.read_bytes()).message_id
    engine.drain()
    assert engine.store.get_message(rx).status == "delivered"

    assert main(["replay", "-c", config, str(rx), "--reason", "pharmacy lost it"]) == 2
    err = capsys.readouterr().err
    assert f"message {rx}: message {rx} carries a prescription already delivered to ehr-files, pharmacy-files" in err
    assert "--force" in err and "--destination" in err
    assert len(engine.store.search()) == 1, "nothing was queued"

    assert main(["replay", "-c", config, str(rx), "--destination", "pharmacy-files", "--force",
                 "--reason", "pharmacy lost it"]) == 0
    assert f"message {rx} replayed as message" in capsys.readouterr().out
    engine.drain()
    entry = engine.store.search_audit(action="replay")[0]
    assert entry.detail["force"] is True and entry.detail["destinations"] == ["pharmacy-files"]
    assert entry.detail["already_delivered_to"] == ["pharmacy-files"]
    # one file per destination: the replay overwrote the pharmacy's file, the EHR got nothing new
    assert len(list((folder / "pharmacy").glob("*.json"))) == 1
    assert len(list((folder / "ehr").glob("*.json"))) == 1


def test_an_unknown_destination_is_refused_naming_the_configured_ones(site, capsys):
    engine, config, _ = site
    rx = engine.submit("platform", PRESCRIPTION.read_bytes()).message_id
    engine.drain()
    assert main(["replay", "-c", config, str(rx), "--destination", "pharmcy", "--reason", "x"]) == 2
    assert ("--destination: unknown destination 'pharmcy' (configured: archive, ehr-files, pharmacy-files)"
            in capsys.readouterr().err)
    assert main(["replay", "-c", config, str(rx), "--destination", "archive", "--reason", "x"]) == 2
    assert "never went to destination 'archive' (it went to: ehr-files, pharmacy-files)" in capsys.readouterr().err
    assert len(engine.store.search()) == 1


def test_replaying_a_held_message_is_refused_with_exit_2(site, capsys):
    engine, config, _ = site
    held = engine.submit("platform", incomplete_prescription("RX-77", "MRN-A1", "ENC-1")).message_id
    engine.drain()
    assert engine.store.get_message(held).status == "held"
    assert main(["replay", "-c", config, str(held), "--reason", "try again"]) == 2
    err = capsys.readouterr().err
    assert f"message {held} is held for review" in err
    assert f"release or reject it instead (bridge release|reject {held})" in err
    assert len(engine.store.holds("open")) == 1 and len(engine.store.search()) == 1


def test_several_ids_report_each_and_exit_2_if_any_was_refused(site, capsys):
    engine, config, _ = site
    held = engine.submit("platform", incomplete_prescription("RX-78", "MRN-A1", "ENC-1")).message_id
    failed = engine.submit("platform", b"not json").message_id
    engine.drain()
    assert main(["replay", "-c", config, str(failed), str(held), "--reason", "x"]) == 2
    captured = capsys.readouterr()
    assert f"message {failed} replayed as message" in captured.out
    assert f"message {held}: message {held} is held" in captured.err


def test_show_names_the_original_and_the_replay_that_resolved_a_dead_letter(tmp_path, capsys):
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent("""
        store: sqlite:///var/bridge.db
        channels:
          platform: {source: file://inbox, format: bridge, routes: [{to: [pharmacy-files]}]}
        destinations:
          pharmacy-files: {url: file://pharmacy, format: bridge, options: {filename: "{message_id}/x.json"}}
    """))
    plugins = load_plugins(entry_points=False)
    engine = Engine(load_config(path, plugins), plugins)
    engine.open_destinations()
    rx = engine.submit("platform", PRESCRIPTION.read_bytes()).message_id
    engine.drain()  # the filename pattern leaves the folder: a permanent failure
    first = engine.store.replay(rx, reason="x", actor="test")
    engine.drain()
    assert engine.store.get_message(rx).status == engine.store.get_message(first).status == "dead"
    engine.store.close()
    path.write_text(path.read_text().replace(', options: {filename: "{message_id}/x.json"}', ""))
    engine = Engine(load_config(path, plugins), plugins)
    engine.open_destinations()
    second = engine.store.replay(first, reason="x", actor="test", destinations=["pharmacy-files"])
    engine.drain()
    assert main(["show", "-c", str(path), str(second)]) == 0
    assert f"replay of message {first} (original message {rx}), only to pharmacy-files" in capsys.readouterr().out
    assert main(["show", "-c", str(path), str(rx)]) == 0
    shown = capsys.readouterr().out
    assert "status resolved" in shown and f"resolved by message {second}" in shown
    engine.store.close()


def test_holds_lists_a_hold_waiting_behind_the_open_one(site, capsys):
    engine, config, _ = site
    held = engine.submit("platform", incomplete_prescription("RX-79", "MRN-A1", "ENC-1")).message_id
    resend = engine.submit("platform", incomplete_prescription("RX-79", "MRN-A1 ", "ENC-1")).message_id
    engine.drain()
    assert main(["holds", "-c", config]) == 0
    out = capsys.readouterr().out
    assert f"message {held}  open" in out and f"message {resend}  waiting" in out
    assert main(["release", "-c", config, str(resend), "--reason", "x"]) == 2  # bad input, said why
    assert f"waits behind the hold of message {held}" in capsys.readouterr().err
    assert main(["reject", "-c", config, str(held), "--reason", "duplicate order"]) == 0
    capsys.readouterr()
    assert main(["reject", "-c", config, str(held), "--reason", "again"]) == 2  # decided already
    assert "no open hold" in capsys.readouterr().err

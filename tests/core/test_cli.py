"""The `bridge` command: exit codes, clear messages, and the analyst's story of a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.cli import main
from tests.core.helpers import encounter_message

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "messages" / "encounter.json"


def config_file(tmp_path, extra_channel=""):
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        channels:
          intake-json:
            source: file://inbox
            format: bridge
            routes:
              - when: {{record: Encounter}}
                to: [ehr-files]
        destinations:
          ehr-files:
            url: file://outbox
            format: bridge
        {extra_channel}
    """))
    return path


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_version_and_plugins_json(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "bridge 0.1.0" in capsys.readouterr().out
    assert main(["plugins", "--json"]) == 0
    plugins = json.loads(capsys.readouterr().out)
    provided = {p for item in plugins for p in item["provides"]}
    assert {"format:bridge", "transport:file"} <= provided
    assert all({"name", "provides"} <= item.keys() for item in plugins)


def test_check_good_config_prints_nothing(tmp_path, capsys):
    assert main(["check", "-c", str(config_file(tmp_path))]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_check_typo_exits_2_with_path(tmp_path):
    path = config_file(tmp_path)
    path.write_text(path.read_text().replace("routes:", "rutes:"))
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert "channels.intake-json.rutes: unknown key (did you mean 'routes'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_is_a_clear_error(tmp_path):
    result = run_cli("messages", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read config" in result.stderr and "Traceback" not in result.stderr


def test_translate_bridge_to_bridge_and_bad_input(tmp_path, capsys):
    assert main(["translate", "--from", "bridge", "--to", "bridge", str(EXAMPLE)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"][0]["kind"] == "Encounter" and out["schema"] == "telemed-bridge/1"
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "telemed-bridge/1", "records": [{"kind": "Encountr"}]}')
    assert main(["translate", "--from", "bridge", "--to", "bridge", str(bad)]) == 2
    assert "unknown record kind 'Encountr'" in capsys.readouterr().err
    assert main(["translate", "--from", "nope", "--to", "bridge", str(bad)]) == 2
    assert "unknown format 'nope'" in capsys.readouterr().err


def test_messages_show_and_replay_tell_the_story(tmp_path, capsys):
    from bridge.core.config import load_config
    from bridge.core.engine import Engine
    from bridge.core.plugin_manager import load_plugins

    path = config_file(tmp_path)
    plugins = load_plugins(entry_points=False)
    engine = Engine(load_config(path, plugins), plugins)
    engine.open_destinations()
    receipt = engine.submit("intake-json", EXAMPLE.read_bytes(), {"file": "encounter.json"})
    engine.drain()
    engine.store.close()

    assert main(["messages", "-c", str(path), "--key", "patient_id=MRN00012345", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == receipt.message_id and row["status"] == "delivered" and row["encounter_id"] == "V100234"
    assert main(["messages", "-c", str(path), "--status", "failed"]) == 0
    assert "no messages match" in capsys.readouterr().err
    assert main(["messages", "-c", str(path), "--key", "mrn=1"]) == 2
    assert "unknown key 'mrn'" in capsys.readouterr().err

    assert main(["show", "-c", str(path), str(receipt.message_id)]) == 0
    text = capsys.readouterr().out
    for expected in ("status delivered", "Encounter id=TV-1001", "received", "decoded", "routed", "delivered",
                     "ehr-files"):
        assert expected in text
    assert main(["show", "-c", str(path), "999"]) == 2  # an id that does not exist is bad input

    assert main(["replay", "-c", str(path), str(receipt.message_id), "--reason", "resend to EHR"]) == 0
    assert f"message {receipt.message_id} replayed as message" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["replay", "-c", str(path), "12345", "--reason", "x"]) == 2  # bad input, like show
    assert "no message with id 12345" in capsys.readouterr().err
    assert main(["show", "-c", str(path), str(receipt.message_id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["event"] for e in shown["timeline"]][-1] == "replayed"
    assert shown["deliveries"][0]["status"] == "delivered"


def test_run_moves_an_encounter_from_inbox_to_outbox(tmp_path):
    """`bridge run` as a process: drop a file in the inbox, see it delivered, then stop cleanly."""
    path = config_file(tmp_path)
    (tmp_path / "inbox").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"})
    try:
        (tmp_path / "inbox" / ".visit.json.tmp").write_bytes(encounter_message(5))
        os.replace(tmp_path / "inbox" / ".visit.json.tmp", tmp_path / "inbox" / "visit.json")
        outbox = tmp_path / "outbox"
        for _ in range(100):
            if outbox.exists() and list(outbox.glob("*.json")):
                break
            subprocess.run(["sleep", "0.1"])
        (delivered,) = outbox.glob("*.json")
        assert json.loads(delivered.read_text())["records"][0]["id"] == "ENC-5"
        assert (tmp_path / "inbox" / ".processed" / "visit.json").exists()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_holds_release_and_reject_from_the_cli(tmp_path, capsys):
    from bridge import PolicyDecision, PolicySpec, RuleResult, hookimpl
    from bridge.core.config import load_config
    from bridge.core.engine import Engine
    from bridge.testing import plugin_manager
    from tests.core.helpers import prescription_message

    class Review:
        @hookimpl
        def bridge_policies(self):
            rule = RuleResult("R2", "REVIEW", "patient location unknown", "21 CFR 1306.05")
            return [PolicySpec(name="review-all", evaluate=lambda req: PolicyDecision("REVIEW", (rule,), "test"))]

    path = config_file(tmp_path)
    plugins = plugin_manager(("review", Review()))
    path.write_text(path.read_text().replace("record: Encounter", "record: [Encounter, Prescription]"))
    engine = Engine(load_config(path, plugins), plugins)
    engine.open_destinations()
    first = engine.submit("intake-json", prescription_message("RX-1")).message_id
    second = engine.submit("intake-json", prescription_message("RX-2")).message_id
    engine.drain()

    assert main(["holds", "-c", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"message {first}" in text and "R2: REVIEW — patient location unknown [21 CFR 1306.05]" in text
    assert main(["release", "-c", str(path), str(first), "--reason", "location confirmed by phone"]) == 0
    assert "released: location confirmed by phone" in capsys.readouterr().out
    assert main(["reject", "-c", str(path), str(second), "--reason", "no DEA registration in IA"]) == 0
    assert main(["reject", "-c", str(path), str(second), "--reason", "again"]) == 2  # no open hold: bad input
    assert "has no open hold" in capsys.readouterr().err
    assert main(["holds", "-c", str(path), "--all", "--json"]) == 0
    holds = json.loads(capsys.readouterr().out)
    assert {h["status"] for h in holds} == {"released", "rejected"}
    engine.drain()
    assert engine.store.get_message(first).status == "delivered"
    assert engine.store.get_message(second).status == "rejected"
    actions = [e.action for e in engine.store.audit_entries()]
    assert actions[:2] == ["hold.reject", "hold.release"]

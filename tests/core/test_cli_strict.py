"""The CLI says no when it should (issue 11): each "Seen" reproduced, now a clear exit 2.

- ``--status deliverd`` and an unknown ``--channel`` exited 0 with no results;
- a message id that does not exist exited 1 (the README promises 2 for bad input);
- ``bridge messages`` against a store path that does not exist created an empty database;
- ``bridge user create`` without a terminal ended in an EOFError traceback;
- ``translate --to ncpdp`` failed with "Header/From is missing" and no hint of ``--option from_id=…``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
PRESCRIPTION = ROOT / "examples" / "messages" / "prescription.json"


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent("""
        store: sqlite:///var/bridge.db
        channels:
          intake-json:
            source: file://inbox
            format: bridge
            routes: [{to: [ehr-files]}]
        destinations:
          ehr-files: {url: file://outbox, format: bridge}
    """))
    return path


def run_cli(*args: str, cwd: Path = ROOT, stdin=subprocess.DEVNULL, input: str | None = None):
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, **({"input": input} if input is not None else {"stdin": stdin}))


@pytest.fixture
def stored(tmp_path):
    """A config whose store exists and holds one delivered message (a real SQLite file)."""
    from bridge.core.config import load_config
    from bridge.core.engine import Engine
    from bridge.core.plugin_manager import load_plugins

    path = config_file(tmp_path)
    plugins = load_plugins(entry_points=False)
    engine = Engine(load_config(path, plugins), plugins)
    engine.open_destinations()
    receipt = engine.submit("intake-json", (ROOT / "examples" / "messages" / "encounter.json").read_bytes())
    engine.drain()
    engine.store.close()
    return path, receipt.message_id


READ_ONLY = [["messages"], ["show", "1"], ["holds"], ["audit", "verify"], ["token", "list"],
             ["user", "list"], ["release", "1", "--reason", "x"], ["prune", "--dry-run"],
             ["replay", "1", "--reason", "x"]]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_read_only_commands_never_create_a_store(tmp_path, command, capsys):
    path = config_file(tmp_path)
    assert main([*command, "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"no store at {tmp_path / 'var' / 'bridge.db'} (run `bridge run` first or check `store:`)" in err
    assert not (tmp_path / "var").exists()


def test_listing_jobs_before_the_first_run_reads_the_config_and_creates_no_store(tmp_path, capsys):
    path = config_file(tmp_path)
    path.write_text(path.read_text() + 'jobs:\n  nightly: {type: prune, trigger: {cron: "15 2 * * *"}}\n')
    assert main(["jobs", "-c", str(path)]) == 0
    captured = capsys.readouterr()
    assert "nightly" in captured.out and "never run" in captured.out
    assert "no store at" in captured.err and "no runs recorded yet" in captured.err
    assert not (tmp_path / "var").exists()


def test_setting_up_access_may_create_the_store(tmp_path, capsys):
    path = config_file(tmp_path)
    assert main(["token", "create", "--name", "ops", "--role", "viewer", "-c", str(path)]) == 0
    assert (tmp_path / "var" / "bridge.db").is_file()
    assert main(["token", "list", "-c", str(path)]) == 0 and "ops" in capsys.readouterr().out


def test_an_unknown_status_is_bad_input_with_the_valid_ones(stored, capsys):
    path, _ = stored
    assert main(["messages", "-c", str(path), "--status", "deliverd"]) == 2
    err = capsys.readouterr().err
    assert "unknown status 'deliverd' (did you mean 'delivered'?)" in err
    assert "received, processing, failed, held, rejected, filtered, routed, delivered, dead" in err
    assert main(["messages", "-c", str(path), "--status", "delivered", "--json"]) == 0
    assert '"status": "delivered"' in capsys.readouterr().out


def test_an_unknown_channel_is_bad_input_but_a_known_empty_one_is_not(stored, capsys):
    path, _ = stored
    assert main(["messages", "-c", str(path), "--channel", "intake-jsn"]) == 2
    err = capsys.readouterr().err
    assert "unknown channel 'intake-jsn' (did you mean 'intake-json'?)" in err and "ehr-files.replies" in err
    assert main(["messages", "-c", str(path), "--channel", "ehr-files.replies"]) == 0
    assert "no messages match" in capsys.readouterr().err
    assert main(["messages", "-c", str(path), "--channel", "intake-json"]) == 0


def test_a_channel_removed_from_the_config_can_still_be_searched(stored, capsys):
    path, message_id = stored
    path.write_text(path.read_text().replace("intake-json", "intake-v2"))
    assert main(["messages", "-c", str(path), "--channel", "intake-json", "--json"]) == 0
    assert f'"id": {message_id}' in capsys.readouterr().out


def test_a_message_id_that_does_not_exist_exits_2(stored):
    path, message_id = stored
    for command in (["show", "999"], ["release", "999", "--reason", "checked"],
                    ["reject", "999", "--reason", "checked"], ["replay", "999", "--reason", "checked"]):
        result = run_cli(*command, "-c", str(path))
        assert result.returncode == 2, command
        assert "no message with id 999" in result.stderr and "Traceback" not in result.stderr
    assert run_cli("show", str(message_id), "-c", str(path)).returncode == 0


def test_user_create_without_a_terminal_is_a_clear_error(tmp_path):
    path = config_file(tmp_path)
    result = run_cli("user", "create", "ana", "--role", "viewer", "-c", str(path))  # stdin: /dev/null
    assert result.returncode == 2, result.stderr
    assert "no terminal to ask for the password: pipe it in with --password-stdin" in result.stderr
    assert "Traceback" not in result.stderr and "EOFError" not in result.stderr
    assert not (tmp_path / "var").exists()
    empty = run_cli("user", "create", "ana", "--role", "viewer", "--password-stdin", "-c", str(path), input="")
    assert empty.returncode == 2 and "no password on standard input" in empty.stderr
    piped = run_cli("user", "create", "ana", "--role", "viewer", "--password-stdin", "-c", str(path),
                    input="correct horse battery staple\n")
    assert piped.returncode == 0, piped.stderr
    assert "ana" in run_cli("user", "list", "-c", str(path)).stdout


def test_translate_to_ncpdp_without_from_id_names_the_option(capsys):
    assert main(["translate", "--from", "bridge", "--to", "ncpdp", str(PRESCRIPTION)]) == 2
    err = capsys.readouterr().err
    assert "Header/From is missing: set the ncpdp option from_id" in err and "--option from_id=…" in err
    assert main(["translate", "--from", "bridge", "--to", "ncpdp", "--option", "from_id=CLINIC1",
                 str(PRESCRIPTION)]) == 0
    assert '<From Qualifier="D">CLINIC1</From>' in capsys.readouterr().out


def test_translate_refuses_an_option_neither_format_reads(capsys):
    assert main(["translate", "--from", "bridge", "--to", "ncpdp", "--option", "fromid=CLINIC1",
                 str(PRESCRIPTION)]) == 2
    assert "--option fromid: unknown option (did you mean 'from_id'?) for bridge → ncpdp" in capsys.readouterr().err


def test_bridge_web_does_not_create_a_store_either(tmp_path):
    """Review of issue 11: README says only `run`, `jobs run`, `token create` and `user create` create the
    store, but `bridge web` against a wrong `store:` made an empty one and served an empty dashboard."""
    path = config_file(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "web", "-c", str(path), "--port", "0"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("bridge web served an empty store it created")
    assert process.returncode == 2, err
    assert f"no store at {tmp_path / 'var' / 'bridge.db'} (run `bridge run` first or check `store:`)" in err
    assert not (tmp_path / "var").exists()

"""``bridge plugins`` lists third-party plugins with name, distribution, version and what they provide;
a broken one is listed with its error and the engine goes on without it. Run as real subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from bridge.core.plugin_manager import load_plugins
from bridge.testing import engine_from_dict

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = [sys.executable, "-c", "import sys; from bridge.cli import main; sys.exit(main())"]


def run_bridge(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    return subprocess.run([*BRIDGE, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def acme_version() -> str:
    try:
        return metadata.version("acme-bridge-plugin")
    except metadata.PackageNotFoundError:
        pytest.skip("acme-bridge-plugin is not installed: pip install -e examples/acme-ehr-plugin (CI does)")


def test_the_example_plugin_is_discovered_and_listed():
    version = acme_version()
    done = run_bridge("plugins", "--json")
    assert done.returncode == 0, done.stderr
    acme = next(p for p in json.loads(done.stdout) if p["name"] == "acme")
    assert acme == {"name": "acme", "distribution": "acme-bridge-plugin", "version": version, "builtin": False,
                    "provides": ["format:acme-json", "profile:acme"], "error": None}
    text = run_bridge("plugins").stdout
    assert re.search(rf"^acme\s+acme-bridge-plugin\s+{re.escape(version)}\s+format:acme-json, profile:acme$",
                     text, re.M), text


def broken_distribution(folder: Path) -> Path:
    """A fake installed distribution with three plugins: one good, one that fails to import, one whose
    hook raises — the failures a third-party plugin really has."""
    dist = folder / "shaky_plugins-2.5.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shaky-plugins\nVersion: 2.5\n")
    (dist / "entry_points.txt").write_text(
        "[bridge.plugins]\nshaky_good = shaky_good\nshaky_import = shaky_import\nshaky_hook = shaky_hook\n")
    (folder / "shaky_good.py").write_text(textwrap.dedent("""
        from bridge import FormatSpec, Patient, hookimpl

        @hookimpl
        def bridge_formats():
            return [FormatSpec(name="shaky-text", media_type="text/plain", file_extension="txt",
                               decode=lambda raw, o: [Patient(id=raw.decode().strip())],
                               encode=lambda records, o: (records[0].id or "").encode())]
    """))
    (folder / "shaky_import.py").write_text("import a_module_that_is_not_installed\n")
    (folder / "shaky_hook.py").write_text(textwrap.dedent("""
        from bridge import hookimpl

        @hookimpl
        def bridge_transports():
            raise RuntimeError("licence server unreachable")
    """))
    return folder


def test_broken_plugins_are_listed_with_their_error_and_the_rest_still_work(tmp_path):
    broken_distribution(tmp_path)
    done = run_bridge("plugins", "--json", extra_path=tmp_path)
    assert done.returncode == 0, done.stderr
    infos = {p["name"]: p for p in json.loads(done.stdout)}
    for name in ("shaky_good", "shaky_import", "shaky_hook"):
        assert (infos[name]["distribution"], infos[name]["version"]) == ("shaky-plugins", "2.5")
    assert infos["shaky_good"]["provides"] == ["format:shaky-text"] and infos["shaky_good"]["error"] is None
    assert "failed to load" in infos["shaky_import"]["error"] and "a_module_that_is_not_installed" in infos[
        "shaky_import"]["error"]
    assert "licence server unreachable" in infos["shaky_hook"]["error"]
    assert "format:bridge" in infos["bridge_format"]["provides"]
    text = run_bridge("plugins", extra_path=tmp_path).stdout
    assert re.search(r"^shaky_import\s+shaky-plugins\s+2\.5\s+ERROR: failed to load", text, re.M), text
    assert re.search(r"^bridge_format\s+telemed-bridge \(built-in\)\s+\S+\s+format:bridge", text, re.M), text


def test_an_engine_runs_with_a_broken_plugin_installed(tmp_path, monkeypatch):
    """The engine starts and moves a message end to end, using the good plugin from the same distribution."""
    broken_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        plugins = load_plugins()
        (tmp_path / "inbox").mkdir()
        engine = engine_from_dict({
            "channels": {"in": {"source": "file://inbox", "format": "shaky-text", "routes": [{"to": ["out"]}]}},
            "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
        }, tmp_path, plugins)
        engine.open_destinations()
        engine.submit("in", b"P-42\n")
        engine.drain(timeout=10)
        (written,) = (tmp_path / "outbox").glob("*.json")
        assert json.loads(written.read_text())["records"] == [{"kind": "Patient", "id": "P-42"}]
        engine.store.close()
    finally:
        for name in ("shaky_good", "shaky_hook"):
            sys.modules.pop(name, None)

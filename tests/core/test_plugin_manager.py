"""The plugin contract: registration, isolation, duplicates, disabling, documentation."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path

import pytest

import bridge
from bridge import FormatSpec, PluginError, TransportSpec, hookimpl, hookspecs
from bridge.core.plugin_manager import PluginManager, load_plugins
from bridge.testing import plugin_manager

ROOT = Path(__file__).resolve().parents[2]


def _format_plugin(name):
    class Plugin:
        @hookimpl
        def bridge_formats(self):
            return [FormatSpec(name=name, media_type="text/plain", decode=lambda r, o: [], encode=lambda r, o: b"")]

    return Plugin()


def hook_names():
    return sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("bridge_"))


def test_every_hook_is_prefixed_typed_and_has_a_docstring_with_an_example():
    names = hook_names()
    assert len(names) >= 8
    for name in names:
        func = getattr(hookspecs, name)
        doc = inspect.getdoc(func) or ""
        assert "Called" in doc, f"{name}: docstring must say when it is called"
        assert "Example::" in doc, f"{name}: docstring must show an example"
        assert inspect.signature(func).return_annotation != inspect.Signature.empty, f"{name}: no return type"


def test_every_hook_is_documented_in_docs_plugins_md():
    text = (ROOT / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"^### `(bridge_\w+)\(", text, re.M))
    missing = set(hook_names()) - documented
    assert not missing, f"hooks missing from docs/plugins.md: {sorted(missing)}"
    assert not documented - set(hook_names()), "docs/plugins.md documents hooks that do not exist"


def test_builtins_register_like_plugins_and_report_what_they_provide():
    pm = load_plugins(entry_points=False)
    infos = {i.name: i for i in pm.plugins()}
    assert "format:bridge" in infos["bridge_format"].provides
    assert "transport:file" in infos["file"].provides
    assert infos["file"].builtin and infos["file"].distribution == "telemed-bridge"
    assert pm.format("bridge").file_extension == "json"


def test_duplicate_names_are_an_error_naming_both_plugins():
    pm = plugin_manager(("acme", _format_plugin("bridge")))
    with pytest.raises(PluginError) as err:
        pm.formats()
    message = str(err.value)
    assert "format 'bridge'" in message and "bridge_format" in message and "acme" in message
    assert "telemed-bridge" in message and "distribution test" in message


def test_a_failing_hook_is_isolated_and_reported():
    class Broken:
        @hookimpl
        def bridge_transports(self):
            raise RuntimeError("cannot reach licence server")

    pm = plugin_manager(("broken", Broken()))
    assert "file" in pm.transports()  # the engine goes on
    info = next(i for i in pm.plugins() if i.name == "broken")
    assert "cannot reach licence server" in info.error


def test_a_hook_returning_the_wrong_type_is_isolated():
    class Wrong:
        @hookimpl
        def bridge_formats(self):
            return [TransportSpec(scheme="nope")]

    pm = plugin_manager(("wrong", Wrong()))
    assert "bridge" in pm.formats() and "nope" not in pm.transports()
    assert "expected FormatSpec" in next(i for i in pm.plugins() if i.name == "wrong").error


def test_misspelt_hook_fails_check_pending():
    class Typo:
        @hookimpl
        def bridge_format(self):
            return []

    pm = PluginManager(disabled=())
    pm.register(Typo(), "typo")
    with pytest.raises(PluginError, match="typo"):
        pm.check_pending()


def test_disabled_plugins_env(monkeypatch):
    monkeypatch.setenv("BRIDGE_DISABLED_PLUGINS", "file, acme")
    pm = load_plugins(entry_points=False)
    assert "file" not in pm.transports() and "bridge" in pm.formats()


def test_entry_point_plugins_load_and_broken_ones_are_isolated(tmp_path, monkeypatch):
    dist = tmp_path / "acme_plugin-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text(
        "[bridge.plugins]\nwidget = acme_bridge_plugin\nbroken = acme_missing_module\n")
    (tmp_path / "acme_bridge_plugin.py").write_text(textwrap.dedent("""
        from bridge import FormatSpec, hookimpl

        @hookimpl
        def bridge_formats():
            return [FormatSpec(name="widget-json", media_type="application/json",
                               decode=lambda raw, o: [], encode=lambda r, o: b"{}")]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = load_plugins()
    infos = {i.name: i for i in pm.plugins()}
    assert infos["widget"].distribution == "acme-plugin" and infos["widget"].version == "1.2"
    assert infos["widget"].provides == ["format:widget-json"]
    assert "failed to load" in infos["broken"].error
    assert "widget-json" in pm.formats()
    sys.modules.pop("acme_bridge_plugin", None)


def test_public_api_reexports_what_plugins_need():
    for name in ("hookimpl", "FormatSpec", "TransportSpec", "PolicySpec", "Prescription", "Encounter",
                 "DecodeError", "TransientDeliveryError", "PermanentDeliveryError", "CommandSpec"):
        assert hasattr(bridge, name), name


def test_builtin_plugins_import_only_the_public_api():
    for path in (ROOT / "bridge" / "plugins").rglob("*.py"):
        text = path.read_text()
        assert "bridge.core" not in text, f"{path.relative_to(ROOT)} imports bridge.core internals"


def test_core_never_imports_a_plugin():
    for path in (ROOT / "bridge" / "core").rglob("*.py"):
        assert "bridge.plugins." not in path.read_text().replace("bridge.plugins import BUILTIN_PLUGINS", ""), path

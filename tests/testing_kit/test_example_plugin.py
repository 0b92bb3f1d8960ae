"""The Acme example is what vendors copy: it must use only the public API and be a real package."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme-ehr-plugin"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    return names


def test_the_plugin_code_imports_only_the_public_api():
    for path in (EXAMPLE / "acme_bridge").rglob("*.py"):
        private = sorted(m for m in imported_modules(path) if m.startswith("bridge.") and m != "bridge")
        assert not private, f"{path.name} imports {private}: plugins use `from bridge import …` only"


def test_the_tests_use_only_the_public_api_and_the_kit():
    for path in (EXAMPLE / "tests").rglob("*.py"):
        private = sorted(m for m in imported_modules(path)
                         if m.startswith("bridge.") and not m.startswith("bridge.testing"))
        assert not private, f"{path.name} imports {private}"


def test_the_package_declares_its_entry_point_and_dependencies():
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["name"] == "acme-bridge-plugin"
    assert project["entry-points"]["bridge.plugins"] == {"acme": "acme_bridge"}
    assert any(d.startswith("telemed-bridge") for d in project["dependencies"])

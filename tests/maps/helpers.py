"""Building maps from YAML text in a temporary folder, for the unit tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from bridge.core.maps import Map, load_map


def write_map(folder: Path, yaml_text: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "map.yaml").write_text(textwrap.dedent(yaml_text))
    for name, text in (files or {}).items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def make_map(tmp_path: Path, yaml_text: str, files: dict[str, str] | None = None, name: str = "m") -> Map:
    loaded, problems = load_map(write_map(tmp_path / "maps" / name, yaml_text, files))
    assert not problems, problems
    assert loaded is not None
    return loaded


def problems_of(tmp_path: Path, yaml_text: str, files: dict[str, str] | None = None) -> list[tuple[str, str]]:
    loaded, problems = load_map(write_map(tmp_path / "maps" / "bad", yaml_text, files))
    assert loaded is None
    return problems

"""``bridge map test``: run each map's sample messages and compare with what is expected.

A map folder may hold ``tests/NAME.in.hl7`` (or ``NAME.in.json``, the bridge JSON format) and
``tests/NAME.expected.json``: the records after the map, as a bridge JSON document, plus an
``outcome`` key when a step held the message, failed it or routed it. An input is decoded as the
channel it would come through decodes it (the first of its format naming the map, or feeding a
destination that names it: its options and time zone), so the sample behaves as in production. Every difference is shown as a unified diff of the two JSON texts.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.core.maps.model import Map
from bridge.core.maps.runner import MapOutcome, run_maps
from bridge.core.model.codec import record_to_dict
from bridge.core.model.records import SCHEMA_VERSION

INPUT_FORMATS = {".hl7": "hl7v2", ".json": "bridge"}


@dataclass(frozen=True)
class Case:
    map: Map
    name: str
    input: Path
    expected: Path


@dataclass(frozen=True)
class CaseResult:
    case: Case
    ok: bool
    diff: str = ""
    problem: str = ""


def cases(maps: Mapping[str, Map]) -> Iterator[Case]:
    for name in sorted(maps):
        folder = Path(maps[name].folder) / "tests"
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            stem, dot, suffix = path.name.rpartition(".in")
            if dot and suffix in INPUT_FORMATS:
                yield Case(maps[name], stem, path, folder / f"{stem}.expected.json")


def document(outcome: MapOutcome) -> dict[str, Any]:
    """The records after the map as a bridge JSON document, and what steps asked for, if anything."""
    doc: dict[str, Any] = {"schema": f"telemed-bridge/{SCHEMA_VERSION}",
                           "records": [record_to_dict(r) for r in outcome.records]}
    asked: dict[str, Any] = {}
    if outcome.holds:
        asked["held"] = [{"step": h["id"], "reason": h["reason"]} for h in outcome.holds]
    if outcome.failure:
        asked["failed"] = outcome.failure
    if outcome.routes:
        asked["routes"] = {name: list(kinds) if kinds is not None else "all" for name, kinds in outcome.routes.items()}
    if asked:
        doc["outcome"] = asked
    return doc


def _text(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def run_case(case: Case, decode: Callable[[str, bytes], tuple[list[Any], str]]) -> CaseResult:
    """Decode the input, run the map, compare with the expected document."""
    try:
        records, _ = decode(INPUT_FORMATS[case.input.suffix], case.input.read_bytes())
    except Exception as exc:  # a sample that does not decode is a failed test, said plainly
        return CaseResult(case, False, problem=f"input does not decode: {exc}")
    actual = _text(document(run_maps([case.map], records, "test")))
    if not case.expected.is_file():
        return CaseResult(case, False, problem=f"no {case.expected.name}; the map gives:\n{actual}")
    try:
        expected = _text(json.loads(case.expected.read_text(encoding="utf-8")))
    except ValueError as exc:
        return CaseResult(case, False, problem=f"{case.expected.name} is not JSON: {exc}")
    if expected == actual:
        return CaseResult(case, True)
    where = f"maps/{case.map.name}/tests/{case.expected.name}"
    diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                        fromfile=f"{where} (expected)", tofile=f"{where} (actual)"))
    return CaseResult(case, False, diff=diff)

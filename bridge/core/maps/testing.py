"""``bridge map test``: run each map's sample messages and compare with what is expected.

A map folder may hold ``tests/NAME.in.hl7`` (or ``NAME.in.json``, the bridge JSON format) and
``tests/NAME.expected.json``: the records after the map, as a bridge JSON document, plus an
``outcome`` key when a step held the message, failed it or routed it. A map whose steps edit HL7v2
fields is tested on the outbound message instead: ``tests/NAME.expected.hl7``, the message its
destination sends (encoded, or the sample itself for a ``passthrough`` destination, then edited). An input is decoded as the
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
from bridge.core.maps.pipeline import inbound_messages
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

    @property
    def outbound(self) -> bool:
        """Compared as the outbound HL7v2 message (the map edits fields), not as records."""
        return self.map.edits_fields


MakeOutbound = Callable[[Map, list[Any], bytes], tuple[bytes, MapOutcome]]
"""(map, records after its record steps, the sample's bytes) → the destination's edited message and
what the field-position steps did (a failure or hold among them)."""


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
                yield Case(maps[name], stem, path, _expected(folder, stem, maps[name]))


def _expected(folder: Path, stem: str, map_: Map) -> Path:
    """``CASE.expected.hl7`` (the outbound message) or ``CASE.expected.json`` (records and outcome: also
    how a map that edits fields states that a sample fails or is held); absent: the map's usual one."""
    hl7, doc = folder / f"{stem}.expected.hl7", folder / f"{stem}.expected.json"
    if hl7.is_file() or doc.is_file():
        return hl7 if hl7.is_file() else doc
    return hl7 if map_.edits_fields else doc


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


def hl7_lines(payload: bytes) -> str:
    """An HL7v2 message one segment a line (CR, LF or CRLF endings alike), for comparing and diffs."""
    text = payload.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    return "".join(line + "\n" for line in text.split("\n") if line.strip())


def _text(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def run_case(case: Case, decode: Callable[[str, bytes], tuple[list[Any], str]],
             outbound: MakeOutbound | None = None) -> CaseResult:
    """Decode the input, run the map, compare with the expected document (or outbound message)."""
    raw = case.input.read_bytes()
    try:
        records, fmt = decode(INPUT_FORMATS[case.input.suffix], raw)
    except Exception as exc:  # a sample that does not decode is a failed test, said plainly
        return CaseResult(case, False, problem=f"input does not decode: {exc}")
    mapped = run_maps([case.map], records, "test", inbound_messages([case.map], raw if fmt == "hl7v2" else None))
    actual = None
    if case.outbound and not (mapped.failure or mapped.holds) and mapped.records:
        if outbound is None:
            return CaseResult(case, False, problem="the map edits HL7v2 fields, but no hl7v2 destination names it")
        try:
            payload, edited = outbound(case.map, mapped.records, raw)
        except Exception as exc:  # an encoder's refusal, a pass-through of a JSON sample: said plainly
            return CaseResult(case, False, problem=f"the outbound message could not be made: {exc}")
        mapped.failure, mapped.holds = edited.failure, edited.holds
        if not (edited.failure or edited.holds) and case.expected.suffix == ".hl7":
            actual = hl7_lines(payload)
    if actual is None:
        actual = _text(document(mapped))
    if not case.expected.is_file():
        return CaseResult(case, False, problem=f"no {case.expected.name}; the map gives:\n{actual}")
    try:
        expected = (hl7_lines(case.expected.read_bytes()) if case.expected.suffix == ".hl7"
                    else _text(json.loads(case.expected.read_text(encoding="utf-8"))))
    except ValueError as exc:
        return CaseResult(case, False, problem=f"{case.expected.name} is not JSON: {exc}")
    if expected == actual:
        return CaseResult(case, True)
    where = f"maps/{case.map.name}/tests/{case.expected.name}"
    diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                        fromfile=f"{where} (expected)", tofile=f"{where} (actual)"))
    return CaseResult(case, False, diff=diff)

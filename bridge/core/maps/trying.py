"""``bridge map try``: a message through a channel's maps, shown step by step for the analyst.

Writing a map is trial and error: the analyst needs to see, for one real message, which steps'
conditions held and what each step changed. This runs the channel's maps one step at a time (with
the same step runner as the engine) and compares the records before and after each step. Values
are printed to the analyst's own terminal, like ``bridge translate``; nothing here logs them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from bridge.core.maps.actions import MapFailure, Run
from bridge.core.maps.hl7v2_fields import MESSAGE_KIND, parse_messages
from bridge.core.maps.model import Map, Step
from bridge.core.maps.runner import MapOutcome, run_step, subjects_of  # the engine's own step, so try == run
from bridge.core.maps.testing import document, hl7_lines
from bridge.core.model.codec import record_to_dict
from bridge.core.model.records import Record
from bridge.er7 import Message

ABSENT = "(absent)"


@dataclass
class StepTrace:
    """What one step did to the message: how many subjects its condition held for, and the changes."""

    map: Map
    step: Step
    subjects: int
    held: int
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)
    routes: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    failure: str | None = None


def trace_maps(maps: Sequence[Map], records: Sequence[Record], inbound: Sequence[Any] = (),
               outbound: Sequence[Message] | None = None) -> tuple[list[StepTrace], MapOutcome]:
    """Run ``maps`` step by step on ``records``; every step's trace and the outcome at the end. As in
    the engine, without ``outbound`` the record steps run; with it, the field-position steps."""
    run = Run(list(records), inbound=inbound, outbound=outbound or ())
    labels = _labels(run.records)
    traces: list[StepTrace] = []
    failure = None
    for map_ in maps:
        for step in map_.steps:
            if step.edits_fields != (outbound is not None):
                continue
            trace = _trace_step(map_, step, run, labels)
            traces.append(trace)
            if trace.failure:
                failure = f"map {map_.name} step {step.id}: {trace.failure}"
                break
        if failure:
            break
    return traces, MapOutcome(run.records, holds=run.holds, routes=run.routes, failure=failure)


def _trace_step(map_: Map, step: Step, run: Run, labels: dict[int, str]) -> StepTrace:
    snapshot = _fields_snapshot if step.edits_fields else _snapshot
    before = snapshot(run.records if not step.edits_fields else run.outbound, labels)
    holds_before, routes_before = len(run.holds), dict(run.routes)
    trace = StepTrace(map_, step, _subject_count(step, run), 0)
    try:
        trace.held, _ = run_step(step, run)
    except MapFailure as exc:
        trace.failure = str(exc)
    after = snapshot(run.records if not step.edits_fields else run.outbound, labels)
    trace.changes, trace.dropped = _diff(before, after)
    trace.holds = [h["reason"] for h in run.holds[holds_before:]]
    trace.routes = {k: v for k, v in run.routes.items() if routes_before.get(k, ...) != v}
    return trace


def _subject_count(step: Step, run: Run) -> int:
    """How many records (or outbound messages) the step's condition is asked about (1 for a
    message-wide step)."""
    return 1 if step.action.kind is None else len(subjects_of(step, run))


def _fields_snapshot(messages: Sequence[Message], labels: dict[int, str]) -> dict[str, dict[str, Any]]:
    """Each outbound message's fields by position (``PV1-3``, ``OBX[2]-5``), as written."""
    out: dict[str, dict[str, Any]] = {}
    for number, message in enumerate(messages, start=1):
        flat: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for seg in message.segments:
            seen[seg.name] = seen.get(seg.name, 0) + 1
            name = seg.name if seen[seg.name] == 1 else f"{seg.name}[{seen[seg.name]}]"
            first = 3 if seg.name == "MSH" else 1
            for index in range(first, len(seg.fields)):
                if seg.fields[index]:
                    flat[f"{name}-{index}"] = seg.fields[index]
        out[f"HL7v2 message #{number}"] = flat
    return out


def _labels(records: Sequence[Record]) -> dict[int, str]:
    """``Encounter #1``-style names of the message's records, fixed before the first step so a
    record keeps its name when an earlier one is dropped."""
    counts: dict[str, int] = {}
    out = {}
    for record in records:
        counts[record.kind] = counts.get(record.kind, 0) + 1
        out[id(record)] = f"{record.kind} #{counts[record.kind]}"
    return out


def _snapshot(records: Sequence[Record], labels: dict[int, str]) -> dict[str, dict[str, Any]]:
    """Each record's leaf values by path (``patient.identifiers[0].assigner``), under its label."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        data = record_to_dict(record)
        data.pop("kind", None)
        flat: dict[str, Any] = {}
        _flatten(data, "", flat)
        out[labels.get(id(record), f"{record.kind} (new)")] = flat
    return out


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", out)
    else:
        out[prefix] = value


def _diff(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
          ) -> tuple[list[tuple[str, Any, Any]], list[str]]:
    """(path, before, after) for every value that changed, and the records that left the message."""
    changes: list[tuple[str, Any, Any]] = []
    dropped = [label for label in before if label not in after]
    for label, new in after.items():
        old = before.get(label, {})
        for path in [*old, *(p for p in new if p not in old)]:
            was, now = old.get(path, ABSENT), new.get(path, ABSENT)
            if was != now:
                changes.append((f"{label}: {path}", was, now))
    return changes, dropped


# --- printing --------------------------------------------------------------------------------------


def print_trace(traces: Sequence[StepTrace], outcome: MapOutcome, out: TextIO) -> None:
    """Every step (map by map), then the records after the maps as a bridge JSON document."""
    print_steps(traces, out)
    print("records after the maps:", file=out)
    print(json.dumps(document(outcome), indent=2, sort_keys=True, ensure_ascii=False), file=out)


def print_steps(traces: Sequence[StepTrace], out: TextIO) -> None:
    current = None
    for trace in traces:
        if trace.map is not current:
            current = trace.map
            print(f"map {current.name} (version {current.version})", file=out)
        for line in _step_lines(trace):
            print(line, file=out)


def trace_destination(config: Any, plugins: Any, name: str, records: Sequence[Record], raw: bytes,
                      inbound: Sequence[Any], out: TextIO) -> MapOutcome:
    """After the channel's maps: destination ``name``'s record steps on its own copy of the records,
    then (for an hl7v2 destination) its outbound message, made as ``bridge map test`` makes it
    (MSH-10 and MSH-7 the sample's), and its field-position steps on it; the message is printed."""
    from bridge.core.maps.cli import sample_outbound

    dest = config.destinations[name]
    maps = [config.maps[m] for m in dest.maps]
    shown = ", ".join(dest.maps) or "none"
    print(f"destination {name} ({dest.format}{', passthrough' if dest.passthrough else ''}): maps: {shown}", file=out)
    traces, outcome = trace_maps(maps, copy.deepcopy(list(records)), inbound)
    print_steps(traces, out)
    if outcome.failure or outcome.holds or not outcome.records or dest.format != "hl7v2":
        print(f"records {name} gets:", file=out)
        print(json.dumps(document(outcome), indent=2, sort_keys=True, ensure_ascii=False), file=out)
        return outcome
    outbound = parse_messages(sample_outbound(config, plugins, dest, outcome.records, raw))
    print("on the outbound HL7v2 message:", file=out)
    field_traces, edited = trace_maps(maps, outcome.records, inbound, outbound.messages)
    print_steps(field_traces, out)
    if edited.failure or edited.holds:
        print(json.dumps(document(edited), indent=2, sort_keys=True, ensure_ascii=False), file=out)
        return edited
    print(f"message {name} sends (MSH-10 and MSH-7 as in the sample):", file=out)
    print(hl7_lines(outbound.render()), file=out, end="")
    return edited


def _step_lines(trace: StepTrace) -> Iterator[str]:
    step = trace.step
    yield f"  step {step.id} ({step.action.name}): {_condition(trace)}"
    for path, was, now in trace.changes:
        yield f"      {path}: {_shown(was)} -> {_shown(now)}"
    for label in trace.dropped:
        yield f"      dropped {label}"
    for reason in trace.holds:
        yield f"      held for review: {reason}"
    for name, kinds in trace.routes.items():
        yield f"      routed to {name}" + (f" ({', '.join(kinds)})" if kinds else "")
    if trace.failure:
        yield f"      FAILED the message: {trace.failure}"
    elif trace.held and not (trace.changes or trace.dropped or trace.holds or trace.routes):
        yield "      (nothing changed)"


def _condition(trace: StepTrace) -> str:
    step, kind = trace.step, trace.step.action.kind
    if kind is None:
        if step.when is None:
            return "no condition (applies)"
        return "condition held" if trace.held else "condition did not hold"
    if kind == MESSAGE_KIND:
        kind = "outbound HL7v2 message"
    if trace.subjects == 0:
        return f"no {kind} in the message"
    if step.when is None:
        return f"no condition (applies to {trace.subjects} {kind})"
    return f"condition held for {trace.held} of {trace.subjects} {kind}"


def _shown(value: Any) -> str:
    return value if value is ABSENT else json.dumps(value, ensure_ascii=False)

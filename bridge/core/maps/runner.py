"""Running maps on one message's records.

The pipeline calls :func:`run_maps` with a channel's maps right after decoding (and the time-zone
step), and with a destination's maps on that destination's own copy of the routed records. The
result says what the pipeline must do (hold, fail, add routes) and carries one timeline entry per
map that ran: its name, version, and per step that did something the action, the paths it names
and how many values changed. Values never go there: the timeline is shown to operators and logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.core.maps.actions import DropAction, MapFailure, Run
from bridge.core.maps.conditions import Condition, Scope
from bridge.core.maps.hl7v2_fields import MESSAGE_KIND
from bridge.core.maps.model import Map, Step
from bridge.core.model.records import Record


@dataclass
class MapOutcome:
    records: list[Record]
    events: list[dict[str, Any]] = field(default_factory=list)
    holds: list[dict[str, str]] = field(default_factory=list)
    routes: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    failure: str | None = None

    @property
    def hold_rules(self) -> list[dict[str, Any]]:
        return hold_rules(self.holds)


def run_maps(maps: Sequence[Map], records: Sequence[Record], stage: str, inbound: Sequence[Any] = (),
             outbound: Sequence[Any] | None = None) -> MapOutcome:
    """Apply ``maps`` in order to ``records`` (changed in place; dropped ones leave the list).

    Two phases, because a destination's HL7v2 message exists only once its records are encoded:
    without ``outbound`` the steps on records run (field-position steps wait); with ``outbound``
    (the encoded, or passed-through, HL7v2 messages) only the field-position steps run, on them.
    ``inbound`` is the sender's parsed HL7v2 message, for conditions that read field positions."""
    run = Run(list(records), inbound=inbound, outbound=outbound or (), stage=stage)
    outcome = MapOutcome(run.records)
    on_message = outbound is not None
    scope = Scope(run.records, None, None, run.of_kind, run.inbound)  # one for every step's condition
    for map_ in maps:
        steps: list[dict[str, Any]] = []
        held_before = len(run.holds)
        outcome.events.append({"map": map_.name, "version": map_.version, "stage": stage, "steps": steps})
        for step in map_.field_steps if on_message else map_.record_steps:
            try:
                fired, changed = step.runner(run, scope)
            except MapFailure as exc:
                outcome.failure = f"map {map_.name} step {step.id}: {exc}"
                steps.append({"id": step.id, "action": step.action.name, "failed": True})
                break
            if fired:
                steps.append({"id": step.id, "action": step.action.name, "paths": list(step.action.paths),
                              "applied": fired, "changed": changed})
        for hold in run.holds[held_before:]:
            hold["map"], hold["version"] = map_.name, map_.version
        if outcome.failure:
            break
    outcome.holds = run.holds
    outcome.routes = run.routes
    return outcome


def run_step(step: Step, run: Run, scope: Scope | None = None) -> tuple[int, int]:
    """(how many subjects the step applied to, how many values it changed). ``scope``: the run's
    condition scope, reused from step to step (a condition only reads it while it runs)."""
    if scope is None:
        scope = Scope(run.records, None, None, run.of_kind, run.inbound)
    return step.runner(run, scope)


StepRunner = Callable[[Run, Scope], tuple[int, int]]


def compile_step(step: Step) -> StepRunner:
    """One closure per step with what :func:`run_step` would decide for every message decided once:
    message-wide or per subject, how the subjects are found, with or without a condition, and
    whether a change makes the records be found again. Per message only the condition and the
    action run; a subject whose condition is false costs one call and no allocation."""
    action = step.action
    kind, when, apply, reshapes = action.kind, step.when, action.apply, bool(action.reshapes)
    if kind is None:  # the message as a whole: route, hold
        return _whole_message(when, apply)
    find = _finder(step)
    indexed = not (kind is MESSAGE_KIND or type(action) is DropAction)  # the run's index, read inline
    if when is None:
        def every(run: Run, scope: Scope) -> tuple[int, int]:
            fired = changed = 0
            for subject in (run._index.get(kind) or run.of_kind(kind)) if indexed else find(run):
                fired += 1
                changed += apply(run, subject)
            if changed and reshapes:
                run.reshaped()
            return fired, changed
        return every

    def where(run: Run, scope: Scope) -> tuple[int, int]:
        fired = changed = 0
        scope.subject_kind = kind
        for subject in (run._index.get(kind) or run.of_kind(kind)) if indexed else find(run):
            scope.subject = subject
            if when(scope):
                fired += 1
                changed += apply(run, subject)
        scope.subject = None
        if changed and reshapes:
            run.reshaped()
        return fired, changed
    return where


def _whole_message(when: Condition | None, apply: Callable[[Run, Any], int]) -> StepRunner:
    if when is None:
        return lambda run, scope: (1, apply(run, None))

    def whole(run: Run, scope: Scope) -> tuple[int, int]:
        scope.subject, scope.subject_kind = None, None
        if when(scope):
            return 1, apply(run, None)
        return 0, 0
    return whole


def _finder(step: Step) -> Callable[[Run], Sequence[Any]]:
    """How the step finds its subjects: the outbound messages, a fresh list for ``drop`` (it
    changes the records while it runs), else the run's index of records by kind (found once until
    a step reshapes the message, :meth:`Run.of_kind`)."""
    kind = step.action.kind
    if kind is MESSAGE_KIND or type(step.action) is DropAction:
        return lambda run: subjects_of(step, run)
    return lambda run: run._index.get(kind) or run.of_kind(kind)  # type: ignore[arg-type]


def subjects_of(step: Step, run: Run) -> list[Any]:
    """What the step's action works on, each in turn: records of its kind, or HL7v2 messages."""
    kind = step.action.kind
    if kind is MESSAGE_KIND:
        return list(run.outbound)
    if type(step.action) is DropAction:
        return [r for r in run.records if r.kind == kind]
    return run.of_kind(kind)  # type: ignore[arg-type]  # a new list after a reshape: safe to iterate


def hold_rules(holds: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """Hold reasons in the shape policy holds use (``policy`` names the map, ``ruleset`` its
    version), so reviewers see them in the same list and release them the same way."""
    return [{"policy": f"map:{h['map']}", "ruleset": h.get("version"), "id": h["id"], "outcome": "REVIEW",
             "reason": h["reason"], "basis": ""} for h in holds]

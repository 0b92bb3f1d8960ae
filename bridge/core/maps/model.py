"""A map folder (``maps/NAME/map.yaml`` and its CSV tables) read into frozen, compiled steps.

Loading reports every problem at once, each as ``(where, message)`` with the file and the step
(``maps/rx/map.yaml steps[2] (id: prescriber)``), because the person fixing it is an analyst
editing YAML, and ``bridge check`` prints them all. The map's version is a digest of its files
(tests excluded: they do not change what the map does), recorded on every message it touches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from bridge.core.maps.actions import ACTIONS, Action, ActionError, compile_action
from bridge.core.maps.calls import compile_call
from bridge.core.maps.conditions import Condition, ConditionError, compile_condition
from bridge.core.maps.hl7v2_fields import MESSAGE_KIND, FieldPath
from bridge.core.maps.tables import Table, TableError, load_table

MAP_FILE = "map.yaml"
MAPS_FOLDER = "maps"
MAP_KEYS = ("description", "tables", "steps")
STEP_KEYS = ("id", "description", "when")


@dataclass(frozen=True)
class Step:
    id: str
    index: int
    action: Action
    when: Condition | None = None
    reads_fields: bool = False
    """Its condition reads HL7v2 field positions (``PV1-2``)."""

    @property
    def edits_fields(self) -> bool:
        """Its action edits an HL7v2 message by field position: it runs on the outbound message."""
        return self.action.kind is MESSAGE_KIND

    @cached_property
    def runner(self) -> Any:
        """The step compiled into one function of (run, scope) → (applied, changed), built once
        (:func:`bridge.core.maps.runner.compile_step`): the runner's per-message loop only calls it."""
        from bridge.core.maps.runner import compile_step  # the runner imports this module

        return compile_step(self)


@dataclass(frozen=True)
class Map:
    name: str
    folder: str
    version: str
    steps: tuple[Step, ...]
    tables: Mapping[str, Table]
    description: str = ""

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(step.action.name for step in self.steps)

    @cached_property
    def record_steps(self) -> tuple[Step, ...]:
        """The steps that run on the records (before encoding, for a destination), in order."""
        return tuple(step for step in self.steps if not step.edits_fields)

    @cached_property
    def field_steps(self) -> tuple[Step, ...]:
        """The steps that edit the outbound HL7v2 message by field position, in order."""
        return tuple(step for step in self.steps if step.edits_fields)

    @cached_property
    def edits_fields(self) -> bool:
        """Some step edits the outbound HL7v2 message by field position."""
        return bool(self.field_steps)

    @cached_property
    def reads_inbound(self) -> bool:
        """Some step that does not edit fields reads field positions: the sender's message is parsed."""
        return any(step.reads_fields and not step.edits_fields for step in self.steps)


def map_version(folder: Path) -> str:
    """A digest of every file of the map (names and bytes, a ``call`` step's code included), the
    tests folder and Python's bytecode caches left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith("tests/") or "__pycache__/" in relative or relative.endswith(".pyc"):
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def map_folders(config_dir: str | Path) -> dict[str, Path]:
    """Map name → folder, for every ``maps/NAME/map.yaml`` beside the config."""
    root = Path(config_dir) / MAPS_FOLDER
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / MAP_FILE).is_file()}


def load_map(folder: Path, where: str | None = None) -> tuple[Map | None, list[tuple[str, str]]]:
    """The compiled map of ``folder`` and the problems found (the map is None when there are any)."""
    where = where or f"{MAPS_FOLDER}/{folder.name}/{MAP_FILE}"
    problems: list[tuple[str, str]] = []
    try:
        data = yaml.safe_load((folder / MAP_FILE).read_text(encoding="utf-8"))
    except OSError as exc:
        return None, [(where, f"cannot read: {exc.strerror or exc}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        hint = ("; quote a path with a [selector] inside { } (\"patient.identifiers[type=MR].value\": …)"
                if "got '['" in str(getattr(exc, "problem", "")) else "")
        return None, [(where, f"invalid YAML{at}: {getattr(exc, 'problem', exc)}{hint}")]
    if not isinstance(data, Mapping):
        return None, [(where, "expected a mapping with steps: (and optionally tables:, description:)")]
    for key in data:
        if key not in MAP_KEYS:
            problems.append((where, f"unknown key {key!r} (allowed: {', '.join(MAP_KEYS)})"))
    tables = _tables(data.get("tables"), folder, where, problems)
    steps = _steps(data.get("steps"), tables, where, problems, folder)
    if problems:
        return None, problems
    return Map(folder.name, str(folder), map_version(folder), steps, tables, str(data.get("description") or "")), []


def _tables(raw: Any, folder: Path, where: str, problems: list[tuple[str, str]]) -> dict[str, Table]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append((f"{where} tables", "expected a mapping of table name: declaration"))
        return {}
    tables = {}
    for name, spec in raw.items():
        try:
            tables[str(name)] = load_table(str(name), spec, folder)
        except TableError as exc:
            problems.append((f"{where} tables.{name}", str(exc)))
    return tables


def _steps(raw: Any, tables: Mapping[str, Table], where: str, problems: list[tuple[str, str]],
           folder: Path) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append((f"{where} steps", "expected a list of steps"))
        return ()
    steps, seen = [], set()
    for i, body in enumerate(raw):
        step_id = str(body.get("id")) if isinstance(body, Mapping) and body.get("id") is not None else str(i + 1)
        at = f"{where} steps[{i + 1}] (id: {step_id})"
        if step_id in seen:
            problems.append((at, "a step with this id comes earlier; ids must be unique in a map"))
        seen.add(step_id)
        try:
            steps.append(_step(body, step_id, i + 1, tables, folder))
        except (ActionError, ConditionError) as exc:
            problems.append((at, str(exc)))
    return tuple(steps)


def _step(body: Any, step_id: str, index: int, tables: Mapping[str, Table], folder: Path) -> Step:
    if not isinstance(body, Mapping):
        raise ActionError("expected a mapping with an action (and optionally id, description, when)")
    unknown = [k for k in body if k not in STEP_KEYS and k not in ACTIONS]
    if unknown:
        raise ActionError(f"unknown key(s) {', '.join(map(str, unknown))} (actions: {', '.join(ACTIONS)}; "
                          f"also {', '.join(STEP_KEYS)})")
    actions = [k for k in body if k in ACTIONS]
    if len(actions) != 1:
        raise ActionError(f"give exactly one action (one of {', '.join(ACTIONS)}), got {len(actions)}")
    when = None
    read: list[Any] = []
    if body.get("when") is not None:
        try:
            when = compile_condition(body["when"], read)
        except ConditionError as exc:
            raise ConditionError(f"when: {exc}") from None
    if actions[0] == "call":
        return Step(step_id, index, compile_call(body["call"], folder, folder.name, step_id), when,
                    any(isinstance(p, FieldPath) for p in read))
    action = compile_action(actions[0], body[actions[0]], tables, step_id)
    return Step(step_id, index, action, when, any(isinstance(p, FieldPath) for p in read))

"""Loading the rule data (``config/policy/*.yaml``) into typed, validated objects.

The rules are data so that compliance staff can change a date, a look-back or a state row without a
code release, and so that every decision can name the exact rule-set it was judged by. A bad file
fails loudly at start-up (``ConfigError`` listing every problem with its file and key), never per
message. The code here knows the *shape* of the data; the evaluator knows what the values mean.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from bridge import ConfigError, DrugRow, parse_drug_rows

from .dates import parse_day

DATA_FILES = ("rules.yaml", "federal.yaml", "states.yaml", "schedules.yaml")
RULES_DIR_ENV = "BRIDGE_POLICY_RULES_DIR"
OUTCOMES = ("ALLOW", "REVIEW", "BLOCK")
SCHEDULES = ("CI", "CII", "CIII", "CIV", "CV", "none")
PATHWAYS = ("buprenorphine", "special_registration")
ORDER_CATEGORIES = ("inpatient", "outpatient", "community", "discharge")
RESTRICTION_KINDS = ("chronic_pain_recent_visit", "opioid_needs_in_person")
REQUIRED_RULES = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R10", "R11", "R12", "R13", "R14",
                  "R15", "R16", "R17", "R19", "R21", "R22", "R23", "R24", "R25", "R26", "R27", "R28")
_STATE = re.compile(r"^[A-Z]{2}$")


# --- typed rule data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effective:
    """A date range judged by the written date; ``None`` ends are open."""

    start: date | None = None
    end: date | None = None

    def covers(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def describe(self) -> str:
        return f"{self.start or '…'} to {self.end or '…'}"


@dataclass(frozen=True)
class RuleDef:
    id: str
    title: str
    outcome: str
    basis: str
    effective: Effective


@dataclass(frozen=True)
class Window:
    name: str
    effective: Effective
    basis: str
    audio_only_schedules: tuple[str, ...]


@dataclass(frozen=True)
class Pathway:
    name: str
    enabled: bool
    effective: Effective
    basis: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class PdmpRow:
    state: str
    program: str
    basis: str
    effective: Effective
    schedules: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    lookback_hours: float | None = None
    new_course_lookback_hours: float | None = None
    lookback_days: float | None = None
    outage_outcome: str | None = None
    outage_max_days_supply: int | None = None


@dataclass(frozen=True)
class Restriction:
    state: str
    kind: str
    basis: str
    effective: Effective
    outcome: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class RuleSet:
    """Everything the evaluator needs, loaded once. ``label`` goes into every decision."""

    name: str
    version: str
    digest: str
    rules: Mapping[str, RuleDef]
    windows: Mapping[str, Window]
    pathways: Mapping[str, Pathway]
    limits: Mapping[str, int]
    carried_none_outcome: str
    pdmp_reviewed: tuple[str, ...]
    pdmp_unavailable: tuple[str, ...]
    us_codes: tuple[str, ...]
    licensure_all_drugs: bool
    licensure_effective: Effective
    pdmp: tuple[PdmpRow, ...]
    restrictions: tuple[Restriction, ...]
    drugs: tuple[DrugRow, ...]
    source_dir: str = ""
    stay_classes: tuple[str, ...] = ()
    """Encounter classes of a hospital stay or emergency visit (IMP, EMER…): orders there are for
    immediate administration unless marked otherwise (``federal.yaml: not_a_prescription``)."""
    stay_order_categories: tuple[str, ...] = ("inpatient",)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} (sha256:{self.digest[:12]})"

    def pathway_on(self, name: str, day: date) -> Pathway | None:
        pathway = self.pathways.get(name)
        return pathway if pathway and pathway.enabled and pathway.effective.covers(day) else None


# --- locating the data -----------------------------------------------------------------------------


def default_rules_dir() -> Path:
    """``$BRIDGE_POLICY_RULES_DIR``, else the repository's ``config/policy`` next to the package.

    The package lives at ``<repo>/bridge/plugins/telehealth_policy``; an editable install and the
    tests both see the repository, so the shipped data is found without configuration.
    """
    override = os.environ.get(RULES_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "config" / "policy"


# --- reading with problem collection ----------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, message: str) -> None:
        self.items.append((where, message))


def _read_yaml(path: Path, problems: _Problems) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.add(str(path), f"cannot read rule data: {exc.strerror or exc}")
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problems.add(str(path), f"invalid YAML{where}: {getattr(exc, 'problem', exc)}")
        return None


def _mapping(value: Any, where: str, problems: _Problems) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(where, f"expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _day(value: Any, where: str, problems: _Problems, *, end: bool = False) -> date | None:
    if value is None:
        return None
    parsed = parse_day(str(value), end=end)
    if parsed is None:
        problems.add(where, f"expected a date like 2026-12-31 or null, got {value!r}")
    return parsed


def _effective(value: Any, where: str, problems: _Problems) -> Effective:
    data = _mapping(value, where, problems)
    start = _day(data.get("from"), f"{where}.from", problems)
    end = _day(data.get("to"), f"{where}.to", problems, end=True)
    if start and end and start > end:
        problems.add(where, f"'from' {start} is after 'to' {end}")
    return Effective(start, end)


def _choice(value: Any, choices: tuple[str, ...], where: str, problems: _Problems, default: str = "") -> str:
    if value not in choices:
        problems.add(where, f"expected one of {', '.join(choices)}, got {value!r}")
        return default
    return str(value)


def _schedules(value: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    items = value or []
    if not isinstance(items, list):
        problems.add(where, "expected a list of schedules such as [CII, CIII]")
        return ()
    return tuple(_choice(s, SCHEDULES, f"{where}[{i}]", problems) for i, s in enumerate(items))


def _strings(value: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    items = value or []
    if not isinstance(items, list) or not all(isinstance(i, (str, int)) for i in items):
        problems.add(where, "expected a list of strings")
        return ()
    return tuple(str(i) for i in items)


def _number(value: Any, where: str, problems: _Problems) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        problems.add(where, f"expected a non-negative number, got {value!r}")
        return None
    return value


def _state(value: Any, where: str, problems: _Problems) -> str:
    if not isinstance(value, str) or not _STATE.match(value):
        problems.add(where, f"expected a two-letter state code such as NY, got {value!r}")
        return ""
    return value


# --- the four files ------------------------------------------------------------------------------


def _rules(doc: Mapping[str, Any], where: str, problems: _Problems) -> dict[str, RuleDef]:
    rules = {}
    for rule_id, body in _mapping(doc.get("rules"), f"{where}: rules", problems).items():
        at = f"{where}: rules.{rule_id}"
        body = _mapping(body, at, problems)
        rules[str(rule_id)] = RuleDef(
            id=str(rule_id), title=str(body.get("title", "")),
            outcome=_choice(body.get("outcome"), OUTCOMES, f"{at}.outcome", problems, "REVIEW"),
            basis=str(body.get("basis", "")), effective=_effective(body.get("effective"), f"{at}.effective", problems))
    for rule_id in REQUIRED_RULES:
        if rule_id not in rules:
            problems.add(f"{where}: rules", f"rule {rule_id} is missing (the evaluator needs every rule it knows)")
    return rules


def _windows(doc: Mapping[str, Any], where: str, problems: _Problems) -> dict[str, Window]:
    windows = {}
    for name, body in _mapping(doc.get("windows"), f"{where}: windows", problems).items():
        at = f"{where}: windows.{name}"
        body = _mapping(body, at, problems)
        audio = _schedules(body.get("audio_only_schedules"), f"{at}.audio_only_schedules", problems)
        windows[str(name)] = Window(str(name), _effective(body, at, problems), str(body.get("basis", "")), audio)
    if "telemedicine_flexibilities" not in windows:
        problems.add(f"{where}: windows", "the telemedicine_flexibilities window is missing")
    return windows


def _pathways(doc: Mapping[str, Any], where: str, problems: _Problems,
              switches: Mapping[str, bool]) -> dict[str, Pathway]:
    pathways = {}
    for name, body in _mapping(doc.get("pathways"), f"{where}: pathways", problems).items():
        at = f"{where}: pathways.{name}"
        if name not in PATHWAYS:
            problems.add(at, f"unknown pathway (known: {', '.join(PATHWAYS)})")
            continue
        body = _mapping(body, at, problems)
        enabled = body.get("enabled", False)
        if not isinstance(enabled, bool):
            problems.add(f"{at}.enabled", f"expected true or false, got {enabled!r}")
        enabled = bool(switches.get(name, enabled))
        params = {k: v for k, v in body.items() if k not in ("enabled", "from", "to", "basis")}
        pathways[name] = Pathway(name, enabled, _effective(body, at, problems), str(body.get("basis", "")), params)
    return pathways


def _limits(doc: Mapping[str, Any], where: str, problems: _Problems) -> dict[str, int]:
    limits = {}
    body = _mapping(doc.get("limits"), f"{where}: limits", problems)
    for key in ("cii_max_refills", "cii_serial_max_days", "ciii_civ_max_refills"):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.add(f"{where}: limits.{key}", f"expected a whole number, got {value!r}")
            value = 0
        limits[key] = value
    return limits


def _pdmp_rows(doc: Mapping[str, Any], where: str, problems: _Problems) -> tuple[PdmpRow, ...]:
    rows = []
    for i, body in enumerate(doc.get("pdmp") or []):
        at = f"{where}: pdmp[{i}]"
        body = _mapping(body, at, problems)
        outage = _mapping(body.get("outage"), f"{at}.outage", problems)
        row = PdmpRow(
            state=_state(body.get("state"), f"{at}.state", problems), program=str(body.get("program", "PDMP")),
            basis=str(body.get("basis", "")), effective=_effective(body.get("effective"), f"{at}.effective", problems),
            schedules=_schedules(body.get("schedules"), f"{at}.schedules", problems),
            classes=_strings(body.get("classes"), f"{at}.classes", problems),
            lookback_hours=_number(body.get("lookback_hours"), f"{at}.lookback_hours", problems),
            new_course_lookback_hours=_number(body.get("new_course_lookback_hours"),
                                              f"{at}.new_course_lookback_hours", problems),
            lookback_days=_number(body.get("lookback_days"), f"{at}.lookback_days", problems),
            outage_outcome=_choice(outage["outcome"], OUTCOMES, f"{at}.outage.outcome", problems)
            if "outcome" in outage else None,
            outage_max_days_supply=_number(outage.get("max_days_supply"), f"{at}.outage.max_days_supply", problems),
        )
        if not (row.lookback_hours or row.lookback_days or row.new_course_lookback_hours):
            problems.add(at, "needs lookback_hours, lookback_days or new_course_lookback_hours")
        if not (row.schedules or row.classes):
            problems.add(at, "needs schedules or classes saying which drugs trigger the check")
        rows.append(row)
    return tuple(rows)


def _restrictions(doc: Mapping[str, Any], where: str, problems: _Problems) -> tuple[Restriction, ...]:
    rows = []
    for i, body in enumerate(doc.get("restrictions") or []):
        at = f"{where}: restrictions[{i}]"
        body = _mapping(body, at, problems)
        params = {k: v for k, v in body.items() if k not in ("state", "kind", "basis", "effective", "outcome", "note")}
        rows.append(Restriction(
            state=_state(body.get("state"), f"{at}.state", problems),
            kind=_choice(body.get("kind"), RESTRICTION_KINDS, f"{at}.kind", problems),
            basis=str(body.get("basis", "")), effective=_effective(body.get("effective"), f"{at}.effective", problems),
            outcome=_choice(body.get("outcome", "BLOCK"), OUTCOMES, f"{at}.outcome", problems, "BLOCK"),
            params=params))
    return tuple(rows)


def drug_rows(doc: Mapping[str, Any], where: str, problems: _Problems) -> dict[str, DrugRow]:
    """The ``drugs:`` mapping of a schedule file (read by the public :func:`bridge.parse_drug_rows`)."""
    return parse_drug_rows(doc, where, problems.add)


def _federal_settings(doc: Mapping[str, Any], where: str, problems: _Problems) -> dict[str, Any]:
    unknown = _mapping(doc.get("unknown_drug"), f"{where}: unknown_drug", problems)
    outcomes = _mapping(doc.get("pdmp_outcomes"), f"{where}: pdmp_outcomes", problems)
    return {
        "carried_none_outcome": _choice(unknown.get("carried_none", "REVIEW"), OUTCOMES,
                                        f"{where}: unknown_drug.carried_none", problems, "REVIEW"),
        "pdmp_reviewed": _strings(outcomes.get("reviewed", ["reviewed"]), f"{where}: pdmp_outcomes.reviewed", problems),
        "pdmp_unavailable": _strings(outcomes.get("unavailable", ["unavailable"]),
                                     f"{where}: pdmp_outcomes.unavailable", problems),
        "us_codes": tuple(c.upper() for c in _strings(doc.get("us_country_codes", ["US"]),
                                                      f"{where}: us_country_codes", problems)),
        **_not_a_prescription(doc, where, problems),
    }


def _not_a_prescription(doc: Mapping[str, Any], where: str, problems: _Problems) -> dict[str, Any]:
    """``not_a_prescription: {encounter_classes, order_categories}``: what marks an order for immediate
    administration in a hospital stay or emergency visit (21 CFR 1300.01), which the gate does not judge."""
    at = f"{where}: not_a_prescription"
    body = _mapping(doc.get("not_a_prescription"), at, problems)
    categories = _strings(body.get("order_categories", ["inpatient"]), f"{at}.order_categories", problems)
    for i, category in enumerate(categories):
        if category not in ORDER_CATEGORIES:
            problems.add(f"{at}.order_categories[{i}]", f"expected one of {', '.join(ORDER_CATEGORIES)}, "
                                                        f"got {category!r}")
    return {"stay_classes": tuple(c.upper() for c in _strings(body.get("encounter_classes"),
                                                              f"{at}.encounter_classes", problems)),
            "stay_order_categories": categories}


# --- entry point ---------------------------------------------------------------------------------


def load_ruleset(rules_dir: str | os.PathLike[str] | None = None, *, pathways: Mapping[str, bool] | None = None,
                 schedule_overrides: str | os.PathLike[str] | None = None) -> RuleSet:
    """Read and validate a rule folder; raises ConfigError naming every problem's file and key."""
    folder = Path(rules_dir) if rules_dir else default_rules_dir()
    problems = _Problems()
    if not folder.is_dir():
        raise ConfigError([("policy.rules_dir", f"rule folder {folder} does not exist")])
    docs, hasher = {}, hashlib.sha256()
    for name in DATA_FILES:
        path = folder / name
        docs[name] = _mapping(_read_yaml(path, problems), name, problems)
        hasher.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    drugs = drug_rows(docs["schedules.yaml"], "schedules.yaml", problems)
    if schedule_overrides:
        override_path = Path(schedule_overrides)
        override_doc = _mapping(_read_yaml(override_path, problems), str(override_path), problems)
        drugs.update(drug_rows(override_doc, str(override_path), problems))
        hasher.update(b"overrides\0" + (override_path.read_bytes() if override_path.is_file() else b""))
    ruleset = _assemble(docs, drugs, problems, dict(pathways or {}), folder)
    hasher.update(repr(sorted((p.name, p.enabled) for p in ruleset.pathways.values())).encode())
    if problems.items:
        raise ConfigError(problems.items)
    return _with_digest(ruleset, hasher.hexdigest())


def _assemble(docs: Mapping[str, Mapping[str, Any]], drugs: Mapping[str, DrugRow], problems: _Problems,
              switches: Mapping[str, bool], folder: Path) -> RuleSet:
    rules_doc, federal, states = docs["rules.yaml"], docs["federal.yaml"], docs["states.yaml"]
    licensure = _mapping(states.get("licensure"), "states.yaml: licensure", problems)
    version = rules_doc.get("version")
    if not isinstance(version, str) or not version:
        problems.add("rules.yaml: version", "expected a version string such as \"2026.11.0\"")
    return RuleSet(
        name=str(rules_doc.get("ruleset", "telehealth-controlled-substances")), version=str(version), digest="",
        rules=_rules(rules_doc, "rules.yaml", problems), windows=_windows(federal, "federal.yaml", problems),
        pathways=_pathways(federal, "federal.yaml", problems, switches),
        limits=_limits(federal, "federal.yaml", problems), **_federal_settings(federal, "federal.yaml", problems),
        licensure_all_drugs=licensure.get("applies_to", "all") == "all",
        licensure_effective=_effective(licensure.get("effective"), "states.yaml: licensure.effective", problems),
        pdmp=_pdmp_rows(states, "states.yaml", problems), restrictions=_restrictions(states, "states.yaml", problems),
        drugs=tuple(drugs.values()), source_dir=str(folder))


def _with_digest(ruleset: RuleSet, digest: str) -> RuleSet:
    return replace(ruleset, digest=digest)

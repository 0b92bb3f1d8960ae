"""Which DEA schedule a drug is in: the schedule table, and what a record itself claims.

Public API (``from bridge import DrugTable, load_drug_table, carried_schedule …``): the telehealth
policy gate judges prescriptions by it, and a format plugin uses it so a controlled drug is never
sent as if it were not (an NCPDP NewRx needs the schedule, the prescriber's DEA number and the
signature whether or not the prescriber's system stated the schedule).

The table is data (``config/policy/schedules.yaml``, or a site's file): one row per substance or
product family with its federal schedule, RxNorm codes, ingredient names and brands. A drug is found
by what the record codes before any text: RxNorm codes of the product or of all its ingredients,
ingredient names given as codings, then NDC, then the words of its description.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bridge.errors import ConfigError

from .records import Coding, Medication

SCHEDULES = ("CI", "CII", "CIII", "CIV", "CV", "none")
SCHEDULE_STRICTNESS = {"none": 0, "CV": 1, "CIV": 2, "CIII": 3, "CII": 4, "CI": 5}
NCI_SCHEDULES = {"C48672": "CI", "C48675": "CII", "C48676": "CIII", "C48677": "CIV", "C48679": "CV",
                 "C38046": "none"}
"""NCI Thesaurus codes for DEA schedules, as SCRIPT and FDA SPL carry them on a drug."""
RULES_DIR_ENV = "BRIDGE_POLICY_RULES_DIR"
_ROMAN = {**{r: r for r in ("I", "II", "III", "IV", "V")}, "1": "I", "2": "II", "3": "III", "4": "IV", "5": "V"}
_STATE = re.compile(r"^[A-Z]{2}$")
Problem = Callable[[str, str], None]  # problem(where, message): how a reader reports what it refused


@dataclass(frozen=True)
class DrugRow:
    """One row of the schedule table."""

    key: str
    schedule: str
    narcotic: bool
    oud_treatment: bool
    classes: tuple[str, ...]
    source: str
    rxnorm: tuple[str, ...] = ()
    ingredient_rxnorm: tuple[str, ...] = ()
    ndc: tuple[str, ...] = ()
    ingredients: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    state_schedules: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DrugTable:
    """The rows of a schedule table, with the lookup everyone uses."""

    rows: tuple[DrugRow, ...]

    def find(self, medication: Medication) -> tuple[DrugRow | None, str]:
        """The row for a medication and how it matched (``""`` when none did).

        A combination product matches the row naming the most of its ingredients (codeine with
        acetaminophen is the CIII row, not codeine's CII row); a tie goes to the stricter schedule.
        """
        codes = {c for c in [medication.rxnorm, *_codes(medication.codings, "rxnorm"),
                             *_codes(medication.ingredients, "rxnorm")] if c}
        names = {(c.display or "").strip().lower() for c in medication.ingredients} - {""}
        found = [(row, how) for row in self.rows if (how := _coded_match(row, codes, names))]
        if found:
            return max(found, key=lambda hit: (len(hit[0].ingredients), SCHEDULE_STRICTNESS[hit[0].schedule]))
        ndcs = [normalise_ndc(c) for c in [medication.ndc, *_codes(medication.codings, "ndc")] if c]
        for row in self.rows:
            if any(n in row.ndc for n in ndcs):
                return row, "NDC"
        return self._by_description(medication.description or "")

    def _by_description(self, description: str) -> tuple[DrugRow | None, str]:
        words = set(re.findall(r"[a-z]+", description.lower()))
        best: DrugRow | None = None
        for row in self.rows:
            named = bool(row.ingredients) and all(set(i.split()) <= words for i in row.ingredients)
            branded = any(b in words for b in row.brands)
            if (named or branded) and (best is None or len(row.ingredients) > len(best.ingredients)):
                best = row
        return (best, "description") if best else (None, "")


def normalise_schedule(value: object) -> str | None:
    """``"CII"``, ``"II"``, ``"2"``, ``"C2"``, ``"2N"`` → ``"CII"``; ``"none"`` stays; else None."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    if text in ("NONE", "0", ""):
        return "none" if text else None
    text = text.removeprefix("C").removesuffix("N")
    roman = _ROMAN.get(text)
    return f"C{roman}" if roman else None


def stricter_schedule(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if SCHEDULE_STRICTNESS[a] >= SCHEDULE_STRICTNESS[b] else b


def carried_schedule(medication: Medication) -> str | None:
    """The schedule the record states: ``dea_schedule`` and any NCI Thesaurus schedule coding
    (C48672 CI … C48679 CV, C38046 not scheduled); the stricter when both are there."""
    stated = normalise_schedule(medication.dea_schedule)
    for code in (c.code for c in medication.codings if c.code in NCI_SCHEDULES):
        stated = stricter_schedule(stated, NCI_SCHEDULES[code])
    return stated


def normalise_ndc(value: str) -> str:
    return re.sub(r"[^0-9]", "", value)


def _codes(codings: list[Coding], marker: str) -> list[str]:
    return [c.code for c in codings if c.code and c.system and marker in c.system.lower()]


def _coded_match(row: DrugRow, codes: set[str], names: set[str]) -> str:
    """How a row matches the record's codes ("" when it does not): one of its RxNorm codes, all of
    its ingredients' RxNorm codes, or all of its ingredient names among the record's ingredients."""
    direct = sorted(codes & set(row.rxnorm))
    if direct:
        return f"RxNorm {', '.join(direct)}"
    if row.ingredient_rxnorm and set(row.ingredient_rxnorm) <= codes:
        return f"RxNorm ingredients {', '.join(row.ingredient_rxnorm)}"
    if row.ingredients and set(row.ingredients) <= names:
        return "ingredient names (medication.ingredients)"
    return ""


# --- reading a table ---------------------------------------------------------------------------------


def parse_drug_rows(doc: Mapping[str, Any], where: str, problem: Problem) -> dict[str, DrugRow]:
    """The ``drugs:`` mapping of a schedule file (the shipped table or a site override file); every
    problem is reported through ``problem(where, message)`` and the row kept with a safe default."""
    rows = {}
    for key, body in _mapping(doc.get("drugs"), f"{where}: drugs", problem).items():
        at = f"{where}: drugs.{key}"
        body = _mapping(body, at, problem)
        states = _mapping(body.get("state_schedules"), f"{at}.state_schedules", problem)
        rows[str(key)] = DrugRow(
            key=str(key), schedule=_choice(body.get("schedule"), SCHEDULES, f"{at}.schedule", problem),
            narcotic=bool(body.get("narcotic", False)), oud_treatment=bool(body.get("oud_treatment", False)),
            classes=_strings(body.get("classes"), f"{at}.classes", problem), source=str(body.get("source", "")),
            rxnorm=_strings(body.get("rxnorm"), f"{at}.rxnorm", problem),
            ingredient_rxnorm=_strings(body.get("ingredient_rxnorm"), f"{at}.ingredient_rxnorm", problem),
            ndc=tuple(normalise_ndc(n) for n in _strings(body.get("ndc"), f"{at}.ndc", problem)),
            ingredients=tuple(s.lower() for s in _strings(body.get("ingredients"), f"{at}.ingredients", problem)),
            brands=tuple(s.lower() for s in _strings(body.get("brands"), f"{at}.brands", problem)),
            state_schedules={_state(s, f"{at}.state_schedules", problem):
                             _choice(v, SCHEDULES, f"{at}.state_schedules.{s}", problem)
                             for s, v in states.items()})
    return rows


def default_schedule_file() -> Path:
    """``$BRIDGE_POLICY_RULES_DIR/schedules.yaml``, else the shipped ``config/policy/schedules.yaml``."""
    folder = os.environ.get(RULES_DIR_ENV)
    return Path(folder) / "schedules.yaml" if folder else Path(__file__).resolve().parents[3] / "config" / \
        "policy" / "schedules.yaml"


def load_drug_table(path: str | os.PathLike[str] | None = None,
                    overrides: str | os.PathLike[str] | None = None) -> DrugTable:
    """The schedule table of ``path`` (default: :func:`default_schedule_file`), with a site's override
    rows replacing or adding rows by key. Raises ConfigError naming every problem's file and key."""
    files = [Path(path) if path else default_schedule_file(), *([Path(overrides)] if overrides else [])]
    return _load(tuple((str(f), f.stat().st_mtime_ns if f.is_file() else 0) for f in files))


@lru_cache(maxsize=8)
def _load(files: tuple[tuple[str, int], ...]) -> DrugTable:
    """Read once per file version (the mtime is part of the key, so an edited file is read again)."""
    problems: list[tuple[str, str]] = []

    def problem(where: str, message: str) -> None:
        problems.append((where, message))

    rows: dict[str, DrugRow] = {}
    for name, _ in files:
        try:
            doc = yaml.safe_load(Path(name).read_text(encoding="utf-8"))
        except OSError as exc:
            problem(name, f"cannot read the schedule table: {exc.strerror or exc}")
            continue
        except yaml.YAMLError as exc:
            problem(name, f"invalid YAML: {getattr(exc, 'problem', None) or type(exc).__name__}")
            continue
        rows.update(parse_drug_rows(_mapping(doc, name, problem), name, problem))
    if problems:
        raise ConfigError(problems)
    return DrugTable(tuple(rows.values()))


def _mapping(value: Any, where: str, problem: Problem) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problem(where, f"expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str, problem: Problem) -> str:
    if value not in choices:
        problem(where, f"expected one of {', '.join(choices)}, got {value!r}")
        return "none"
    return str(value)


def _strings(value: Any, where: str, problem: Problem) -> tuple[str, ...]:
    items = value or []
    if not isinstance(items, list) or not all(isinstance(i, (str, int)) for i in items):
        problem(where, "expected a list of strings")
        return ()
    return tuple(str(i) for i in items)


def _state(value: Any, where: str, problem: Problem) -> str:
    if not isinstance(value, str) or not _STATE.match(value):
        problem(where, f"expected a two-letter state code such as NY, got {value!r}")
        return ""
    return value

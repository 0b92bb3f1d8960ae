"""Which schedule a prescribed drug is in: the table, the prescription's own claim, and the state.

The prescription carries ``medication.dea_schedule`` (and NCI schedule codings) from the prescriber's
system; the table is our independent reading of the same drug, found by the codes the record carries
before any text. Both are used: the stricter one is applied, and a difference
is reported (R23) because it usually means a coding error somewhere upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge import Coding, Medication

from .ruleset import DrugRow, RuleSet, normalise_ndc

STRICTNESS = {"none": 0, "CV": 1, "CIV": 2, "CIII": 3, "CII": 4, "CI": 5}
NCI_SCHEDULES = {"C48672": "CI", "C48675": "CII", "C48676": "CIII", "C48677": "CIV", "C48679": "CV",
                 "C38046": "none"}
"""NCI Thesaurus codes for DEA schedules, as SCRIPT and FDA SPL carry them on a drug."""
_ROMAN = {**{r: r for r in ("I", "II", "III", "IV", "V")}, "1": "I", "2": "II", "3": "III", "4": "IV", "5": "V"}


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


def stricter(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if STRICTNESS[a] >= STRICTNESS[b] else b


@dataclass(frozen=True)
class DrugFacts:
    """What the gate knows about the drug, and how it knows it."""

    row: DrugRow | None
    matched_by: str
    carried: str | None
    table: str | None
    state_override: str | None
    schedule: str | None

    @property
    def mismatch(self) -> bool:
        return self.carried is not None and self.table is not None and self.carried != self.table

    @property
    def controlled(self) -> bool:
        return self.schedule not in (None, "none")

    def has_class(self, name: str) -> bool | None:
        """True/False from the table; None when the drug is not in the table (unknown)."""
        return None if self.row is None else name in self.row.classes


def _codes(codings: list[Coding], marker: str) -> list[str]:
    return [c.code for c in codings if c.code and c.system and marker in c.system.lower()]


def find_row(ruleset: RuleSet, medication: Medication) -> tuple[DrugRow | None, str]:
    """The table row for a medication and how it matched: by what the record codes (RxNorm codes of
    the product and of its ingredients, ingredient names given as codings), then NDC, then the
    description text as the last resort.

    A combination product matches the row naming the most of its ingredients (codeine with
    acetaminophen is the CIII row, not codeine's CII row); a tie goes to the stricter schedule.
    """
    codes = {c for c in [medication.rxnorm, *_codes(medication.codings, "rxnorm"),
                         *_codes(medication.ingredients, "rxnorm")] if c}
    names = {(c.display or "").strip().lower() for c in medication.ingredients} - {""}
    found = [(row, how) for row in ruleset.drugs if (how := _coded_match(row, codes, names))]
    if found:
        return max(found, key=lambda hit: (len(hit[0].ingredients), STRICTNESS[hit[0].schedule]))
    ndcs = [normalise_ndc(c) for c in [medication.ndc, *_codes(medication.codings, "ndc")] if c]
    for row in ruleset.drugs:
        if any(n in row.ndc for n in ndcs):
            return row, "NDC"
    return _by_description(ruleset, medication.description or "")


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


def carried_schedule(medication: Medication) -> str | None:
    """The schedule the record states: ``dea_schedule`` and any NCI Thesaurus schedule coding
    (C48672 CI … C48679 CV, C38046 not scheduled); the stricter when both are there."""
    coded = [NCI_SCHEDULES[c.code] for c in medication.codings if c.code in NCI_SCHEDULES]
    stated = normalise_schedule(medication.dea_schedule)
    for schedule in coded:
        stated = stricter(stated, schedule)
    return stated


def registration_schedule(value: object) -> tuple[str | None, bool]:
    """A DEA registration's schedule and whether it covers narcotics: ``"CII"`` → (CII, True);
    the non-narcotic sub-schedules ``"2N"``/``"CIIN"`` and ``"3N"``/``"CIIIN"`` → (CII/CIII, False)."""
    text = value.strip().upper() if isinstance(value, str) else ""
    non_narcotic = text.endswith("N") and text not in ("N", "NONE")
    schedule = normalise_schedule(text)
    return schedule, not (non_narcotic and schedule in ("CII", "CIII"))


def _by_description(ruleset: RuleSet, description: str) -> tuple[DrugRow | None, str]:
    words = set(re.findall(r"[a-z]+", description.lower()))
    best: DrugRow | None = None
    for row in ruleset.drugs:
        named = bool(row.ingredients) and all(set(i.split()) <= words for i in row.ingredients)
        branded = any(b in words for b in row.brands)
        if (named or branded) and (best is None or len(row.ingredients) > len(best.ingredients)):
            best = row
    return (best, "description") if best else (None, "")


def classify(ruleset: RuleSet, medication: Medication | None, state: str | None) -> DrugFacts:
    if medication is None:
        return DrugFacts(None, "", None, None, None, None)
    row, how = find_row(ruleset, medication)
    carried = carried_schedule(medication)
    table = row.schedule if row else None
    override = row.state_schedules.get(state) if row and state else None
    schedule = stricter(stricter(table, carried), override)
    return DrugFacts(row, how, carried, table, override, schedule)

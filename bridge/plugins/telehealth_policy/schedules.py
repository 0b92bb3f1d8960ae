"""Which schedule a prescribed drug is in: the table, the prescription's own claim, and the state.

The prescription carries ``medication.dea_schedule`` (and NCI schedule codings) from the prescriber's
system; the table (the public :class:`bridge.DrugTable`, shared with format plugins) is our
independent reading of the same drug, found by the codes the record carries before any text. Both
are used: the stricter one is applied, and a difference is reported (R23) because it usually means a
coding error somewhere upstream.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge import (
    DrugRow,
    DrugTable,
    Medication,
    carried_schedule,
    normalise_schedule,
    stricter_schedule,
)

from .ruleset import RuleSet


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


def find_row(ruleset: RuleSet, medication: Medication) -> tuple[DrugRow | None, str]:
    """The rule-set's table row for a medication and how it matched (see :meth:`bridge.DrugTable.find`)."""
    return DrugTable(ruleset.drugs).find(medication)


def registration_schedule(value: object) -> tuple[str | None, bool]:
    """A DEA registration's schedule and whether it covers narcotics: ``"CII"`` → (CII, True);
    the non-narcotic sub-schedules ``"2N"``/``"CIIN"`` and ``"3N"``/``"CIIIN"`` → (CII/CIII, False)."""
    text = value.strip().upper() if isinstance(value, str) else ""
    non_narcotic = text.endswith("N") and text not in ("N", "NONE")
    schedule = normalise_schedule(text)
    return schedule, not (non_narcotic and schedule in ("CII", "CIII"))


def classify(ruleset: RuleSet, medication: Medication | None, state: str | None) -> DrugFacts:
    if medication is None:
        return DrugFacts(None, "", None, None, None, None)
    row, how = find_row(ruleset, medication)
    carried = carried_schedule(medication)
    table = row.schedule if row else None
    override = row.state_schedules.get(state) if row and state else None
    schedule = stricter_schedule(stricter_schedule(table, carried), override)
    return DrugFacts(row, how, carried, table, override, schedule)

"""DiagnosticReport and Observation records as the OBR and OBX segments of an ORU^R01.

The inverse of :mod:`.results`: status codes back to tables 0123/0085, interpretation codings to
their table 0078 flag, each value shape to the OBX-5 of its value type (NM, SN, coded, date, text),
units to OBX-6 and the reference range to OBX-7 (its text when it has one, else ``low-high``,
``<high`` or ``>low``). The decoder compares the sender's fields with what these writers give and
keeps the sender's wording where they differ (see :mod:`.wire`), so a decoded ORU goes out as it
came in.
"""

from __future__ import annotations

from bridge import Coding, DiagnosticReport, Identifier, Observation, Quantity, ReferenceRange

from . import datatypes as dt
from . import results
from .datatypes import write_number as number
from .reader import comp, esc, join

OBSERVATION_CODES = {"final": "F", "preliminary": "P", "corrected": "C", "entered-in-error": "W",
                     "cancelled": "X", "registered": "I", "amended": "A"}
REPORT_CODES = {"registered": "O", "partial": "A", "preliminary": "P", "corrected": "C", "final": "F",
                "cancelled": "X", "amended": "C", "appended": "C", "entered-in-error": "X", "unknown": ""}
"""FHIR statuses back to OBX-11 (0085) and OBR-25 (0123); R4 report statuses v2 has no code for
(amended, appended) are sent as corrected, entered-in-error as cancelled."""


def _codings(codings: list[Coding]) -> str:
    """A CWE from up to two codings (the second as the alternate triplet)."""
    parts = [part for c in codings[:2] for part in (esc(c.code), esc(c.display), esc(dt.system_name(c.system)))]
    return comp(*parts)


def _ei(ident: Identifier | None) -> str:
    if ident is None:
        return ""
    oid = ident.system[8:] if ident.system and ident.system.startswith("urn:oid:") else ""
    return comp(esc(ident.value), esc(ident.assigner), esc(oid), "ISO" if oid else "")


def _quantity_text(q: Quantity) -> str:
    return (q.comparator or "") + number(q.value)


def value(obs: Observation) -> str:
    """OBX-5 for the record's value shape and OBX-2 value type."""
    kind = obs.value_type or ""
    if obs.value_quantity is not None:
        q = obs.value_quantity
        if kind == "SN":
            comparator = q.comparator or ""
            return comp(esc(comparator), number(q.value))
        return esc(_quantity_text(q))
    if obs.value_range is not None:
        low, high = obs.value_range.low, obs.value_range.high
        return comp("", number(low.value) if low else "", "-", number(high.value) if high else "")
    if obs.value_ratio is not None:
        top, bottom = obs.value_ratio.numerator, obs.value_ratio.denominator
        return comp("", number(top.value) if top else "", ":", number(bottom.value) if bottom else "")
    if obs.value_codings:
        return "~".join(dt.write_coding(c) for c in obs.value_codings)
    if obs.value_datetime:
        return dt.write_datetime(obs.value_datetime)
    if obs.value_text is not None:
        return "~".join(esc(line) for line in obs.value_text.split("\n"))
    return ""


def value_type(obs: Observation) -> str:
    """OBX-2: the record's own, else the one its value shape implies."""
    if obs.value_type:
        return obs.value_type
    if obs.value_range is not None or obs.value_ratio is not None:
        return "SN"
    if obs.value_quantity is not None:
        return "NM"
    if obs.value_codings:
        return "CWE"
    if obs.value_datetime:
        return "DTM"
    return "TX" if obs.value_text is not None else ""


def reference_range(found: ReferenceRange | None) -> str:
    if found is None:
        return ""
    if found.text:
        return esc(found.text)
    if found.low and found.high:
        return f"{number(found.low.value)}-{number(found.high.value)}"
    if found.high:
        return f"<{number(found.high.value)}"
    return f">{number(found.low.value)}" if found.low else ""


def units(obs: Observation) -> str:
    """OBX-6; a pain score's implied ``{score}`` (no OBX-6 sent) is not written."""
    if obs.units is not None:
        return dt.write_coding(obs.units)
    return ""


def obx(obs: Observation, set_id: int) -> dict[int, str]:
    """OBX field values of one observation."""
    return {
        1: str(set_id), 2: value_type(obs), 3: _codings(obs.code), 5: value(obs), 6: units(obs),
        7: reference_range(obs.reference_range),
        8: "~".join(esc(c.code) for c in obs.interpretation),
        11: OBSERVATION_CODES.get(obs.status or "", ""),
        14: dt.write_datetime(obs.effective), 16: dt.write_practitioner(obs.performer),
        21: _ei(obs.identifiers[0]) if obs.identifiers else "",
    }


def nte(note: str, set_id: int) -> str:
    """An NTE for one note: its lines as NTE-3 repetitions."""
    return join(["NTE", str(set_id), "", "~".join(esc(line) for line in note.split("\n"))], "|")


def obr(report: DiagnosticReport, set_id: int) -> dict[int, str]:
    """OBR field values of one report."""
    placer = next((i for i in report.identifiers if i.type == "PLAC"), None)
    filler = next((i for i in report.identifiers if i.type == "FILL"), None)
    section = report.category.code if report.category and report.category.system == results.V2_0074 else ""
    return {
        1: str(set_id), 2: _ei(placer), 3: _ei(filler), 4: _codings(report.code),
        7: dt.write_datetime(report.effective), 22: dt.write_datetime(report.issued), 24: esc(section),
        25: REPORT_CODES.get(report.status or "", ""),
    }


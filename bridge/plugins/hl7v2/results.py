"""HL7v2 result segments (OBR, OBX, NTE) to DiagnosticReport and Observation records.

The tables here say how v2 codes become the FHIR codes the records use: result status (table 0085
and 0123), abnormal flags (table 0078), the service section (table 0074) and which observations are
vital signs or questionnaire scores. They are data, so docs/hl7v2.md can list them and a reviewer
can check them against the v2-to-FHIR concept maps without reading code.
"""

from __future__ import annotations

import re

from bridge import Coding, Quantity, Range, Ratio, ReferenceRange

from . import datatypes as dt

OBSERVATION_STATUS = {"C": "corrected", "D": "entered-in-error", "F": "final", "I": "registered",
                      "N": "cancelled", "O": "registered", "P": "preliminary", "R": "preliminary",
                      "S": "preliminary", "U": "final", "W": "entered-in-error", "X": "cancelled",
                      "A": "amended"}
"""OBX-11 (table 0085) → FHIR observation-status. N "not asked" is cancelled: the result will not come."""

REPORT_STATUS = {"O": "registered", "I": "registered", "S": "partial", "A": "partial", "R": "partial",
                 "P": "preliminary", "C": "corrected", "F": "final", "X": "cancelled"}
"""OBR-25 (table 0123) → FHIR diagnostic-report-status."""

INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V2_0078 = "http://terminology.hl7.org/CodeSystem/v2-0078"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATIONS = {
    "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high", "LU": "Significantly low",
    "HU": "Significantly high", "<": "Off scale low", ">": "Off scale high", "N": "Normal",
    "A": "Abnormal", "AA": "Critical abnormal", "U": "Significant change up", "D": "Significant change down",
    "B": "Better", "W": "Worse", "S": "Susceptible", "R": "Resistant", "I": "Intermediate",
    "MS": "moderately susceptible", "VS": "very susceptible", "NEG": "Negative", "POS": "Positive",
    "IND": "Indeterminate", "DET": "Detected", "ND": "Not detected", "E": "Equivocal", "EX": "outside threshold",
    "HX": "above high threshold", "LX": "below low threshold", "NR": "Non-reactive", "RR": "Reactive",
    "WR": "Weakly reactive", "QCF": "Quality control failure", "TOX": "Cytotoxic substance present",
    "AC": "Anti-complementary substances present", "IE": "Insufficient evidence", "CAR": "Carrier",
    "NS": "not susceptible", "SDD": "susceptible-dose dependent", "EXP": "Expected", "UNE": "Unexpected",
}
"""Table 0078 abnormal flags that are also R4 v3-ObservationInterpretation codes (the same code and
meaning). Any other flag is kept as a v2-0078 coding rather than guessed."""

PAIN_SCORE = "72514-3"
"""LOINC: Pain severity - 0-10 verbal numeric rating [Score] - Reported."""
SCORE_UNIT = "{score}"
VITAL_SIGNS = frozenset({"85353-1", "9279-1", "8867-4", "2708-6", "59408-5", "8310-5", "8302-2", "9843-4",
                         "29463-7", "39156-5", "85354-9", "8480-6", "8462-4", "8478-0"})
"""The LOINC codes of FHIR's vital-signs profile (panel, respiratory rate, heart rate, SpO2, body
temperature, height, head circumference, weight, BMI, blood pressure and its parts)."""
LAB_SECTIONS = frozenset({"BG", "BLB", "CG", "CH", "CP", "GE", "HM", "IMM", "LAB", "MB", "MCB", "MYC", "OSL",
                          "PAR", "PAT", "SP", "SR", "TX", "URN", "VR"})
IMAGING_SECTIONS = frozenset({"CT", "CUS", "NMR", "NMS", "OUS", "RAD", "RUS", "RX", "VUS", "XRC"})
"""OBR-24 diagnostic service sections (table 0074) that say laboratory or imaging."""

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_COMPARED = re.compile(rf"^\s*(<=|>=|<|>)?\s*({NUMBER})\s*$")
_BETWEEN = re.compile(rf"^\s*({NUMBER})\s*(?:-|–|to|TO)\s*({NUMBER})\s*$")
TEXT_VALUE_TYPES = ("ST", "TX", "FT", "ID", "IS", "TM", "TN")
CODED_VALUE_TYPES = ("CWE", "CE", "CNE", "CF", "CV")
DATE_VALUE_TYPES = ("DT", "DTM", "TS")


def category(codes: list[Coding], section: str) -> str | None:
    """A pain score is ``survey``, a vital sign ``vital-signs``; otherwise OBR-24 decides, and an ORU
    without one is a laboratory result (ORU^R01 is the lab results message). A section that is
    neither laboratory nor imaging (nursing, therapy…) gives no category rather than a wrong one."""
    loinc = {c.code for c in codes if c.system == dt.CODE_SYSTEMS["LN"]}
    if PAIN_SCORE in loinc:
        return "survey"
    if loinc & VITAL_SIGNS:
        return "vital-signs"
    if section in IMAGING_SECTIONS:
        return "imaging"
    if not section or section in LAB_SECTIONS:
        return "laboratory"
    return None


def is_pain_score(codes: list[Coding]) -> bool:
    return any(c.code == PAIN_SCORE and c.system == dt.CODE_SYSTEMS["LN"] for c in codes)


def interpretation(flag: str) -> Coding:
    display = INTERPRETATIONS.get(flag)
    if display is not None:
        return Coding(code=flag, system=INTERPRETATION_SYSTEM, display=display)
    return Coding(code=flag, system=V2_0078)


def quantity(number: float, units: Coding | None, comparator: str | None = None) -> Quantity:
    """A number in the OBX-6 units. ``unit`` is the sender's human-readable text (CWE.2); a coded unit
    without text (``beats/min^^ISO``) has its code and system and no invented text. The unit code is
    kept as a code only with its system (a FHIR Quantity with a code must name the system), so a bare
    code with neither text nor system stays readable as ``unit``; all of OBX-6 is kept in ``units``."""
    if units is None:
        return Quantity(value=number, comparator=comparator)
    code = units.code or None if units.system else None
    return Quantity(value=number, unit=units.display or (None if code else units.code or None),
                    code=code, system=units.system, comparator=comparator)


def score(number: float) -> Quantity:
    return Quantity(value=number, unit=SCORE_UNIT, code=SCORE_UNIT, system=dt.CODE_SYSTEMS["UCUM"])


def read_number(raw: str, units: Coding | None) -> Quantity | None:
    """NM text, with a leading comparator as real feeds send it (``<5``); None when not a number."""
    match = _COMPARED.match(raw)
    if match is None:
        return None
    return quantity(float(match.group(2)), units, match.group(1))


def read_structured(parts: list[str], units: Coding | None) -> Quantity | Range | Ratio | None:
    """SN: comparator ^ number ^ separator ^ number. ``-`` is a range, ``:`` and ``/`` a ratio,
    no separator a plain (possibly compared) number; anything else is not read."""
    parts = (parts + ["", "", "", ""])[:4]
    comparator, first, separator, second = (p.strip() for p in parts)
    try:
        one = float(first) if first else None
        two = float(second) if second else None
    except ValueError:
        return None
    if comparator not in ("", "<", ">", "<=", ">=", "="):
        return None
    if not separator and two is None and one is not None:
        return quantity(one, units, comparator if comparator not in ("", "=") else None)
    if one is None or two is None or comparator not in ("", "="):
        return None
    if separator == "-":
        return Range(low=quantity(one, units), high=quantity(two, units))
    if separator in (":", "/"):
        return Ratio(numerator=Quantity(value=one), denominator=Quantity(value=two))
    return None


def reference_range(raw: str, units: Coding | None) -> ReferenceRange | None:
    """OBX-7 as sent, with numeric bounds when it reads as ``a-b``, ``a to b``, ``<b`` or ``>a``."""
    if not raw.strip():
        return None
    found = ReferenceRange(text=raw)
    between = _BETWEEN.match(raw)
    compared = _COMPARED.match(raw)
    if between:
        found.low = quantity(float(between.group(1)), units)
        found.high = quantity(float(between.group(2)), units)
    elif compared and compared.group(1) in ("<", "<="):
        found.high = quantity(float(compared.group(2)), units)
    elif compared and compared.group(1) in (">", ">="):
        found.low = quantity(float(compared.group(2)), units)
    return found


def section_coding(code: str) -> Coding | None:
    return Coding(code=code, system=V2_0074) if code else None

"""The HL7 v2 version an encoded message is written in (destination option ``version``).

The encoder builds every message in v2.5, as it always has; a receiver that speaks another version
gets that message made to fit it here, after it is built, so no writer needs a branch per version:

- MSH-12 names the version; in 2.3 MSH-9 has two components (the message structure, MSH-9.3,
  came in 2.3.1), and RDE^O11 is RDE^O01 (O11 came in 2.4).
- A segment the version does not define is left out (SFT, TQ1, TQ2, SPM before 2.5; IAM before
  2.4; PRT before 2.7, so in every version offered but 2.8). Z-segments and segments this table
  does not list are written as they are.
- A field beyond the segment's last field in that version is cut (OBX-23/24, the performing
  organization, exist from 2.5.1; PID-31…39 from 2.4/2.5), and a field 2.8 withdrew is emptied
  (EVN-1, PID-28, DG1-7…14, SCH-9/11, OBR-14/15/27…).
- Value types (OBX-2, table 0125) follow the version: CWE/CNE are CE and DTM is TS before 2.5;
  CE is CWE and TS is DTM in 2.8.
- An appointment's start and end: TQ1-7/8 in 2.5 and later, SCH-11.4/.5 (TQ) before; in 2.8,
  where SCH-11 is withdrawn, an SCH-11 timing moves to a TQ1.

The facts (segment lengths, withdrawn fields, value types) are those of the HL7 v2 standard as its
public machine-readable tables list them; docs/hl7v2.md ("Outbound version") has the table.
Version 2.5 is the default and is written exactly as before (nothing here runs for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import EncodeError

from .reader import join

DEFAULT = "2.5"
VERSIONS = ("2.3", "2.4", "2.5", "2.5.1", "2.8")

_V23 = {"MSH": 19, "EVN": 6, "PID": 30, "PD1": 12, "NK1": 37, "PV1": 52, "PV2": 37, "ROL": 8, "AL1": 6,
        "DG1": 19, "DRG": 10, "PR1": 15, "GT1": 55, "IN1": 49, "IN2": 72, "IN3": 25, "ACC": 6, "UB1": 23,
        "UB2": 17, "MRG": 7, "ORC": 19, "RXO": 22, "RXE": 30, "RXR": 4, "RXC": 6, "RXD": 24, "RXA": 22,
        "RXG": 22, "OBR": 43, "OBX": 17, "NTE": 3, "SCH": 25, "AIS": 10, "AIG": 14, "AIL": 12, "AIP": 12,
        "RGS": 3, "TXA": 23, "FT1": 25, "CTI": 3}
_V24 = {**_V23, "MSH": 21, "EVN": 7, "PID": 38, "PD1": 21, "PV2": 47, "ROL": 12, "IAM": 20, "DRG": 11,
        "PR1": 18, "ACC": 10, "ORC": 25, "RXO": 24, "RXE": 31, "RXR": 5, "RXC": 7, "RXD": 27, "OBR": 47,
        "OBX": 19, "NTE": 4, "SCH": 27, "AIS": 12, "FT1": 26}
_V25 = {**_V24, "SFT": 6, "PID": 39, "NK1": 39, "PV2": 49, "DG1": 21, "PR1": 20, "GT1": 57, "IN1": 53,
        "ACC": 11, "ORC": 30, "RXO": 28, "RXE": 44, "RXR": 6, "RXC": 9, "RXD": 33, "RXA": 26, "RXG": 26,
        "TQ1": 14, "TQ2": 10, "OBR": 49, "SPM": 29, "FT1": 31}
_V251 = {**_V25, "ORC": 31, "OBR": 50, "OBX": 25}
_V28 = {**_V251, "MSH": 25, "UAC": 2, "PID": 40, "PD1": 22, "NK1": 41, "PV1": 54, "PV2": 50, "ROL": 14,
        "PRT": 15, "AL1": 5, "IAM": 30, "DG1": 26, "DRG": 33, "PR1": 25, "IN1": 55, "IN3": 27, "ACC": 13,
        "ORC": 34, "RXO": 36, "RXE": 45, "RXC": 11, "RXD": 35, "RXA": 29, "RXG": 33, "OBR": 54, "OBX": 28,
        "NTE": 8, "SPM": 32, "TXA": 26, "FT1": 43}
"""Segment → its last field number in each version (v2.8: AL1-6 is withdrawn, so AL1 ends at 5)."""

KNOWN = frozenset(_V28) | {"PRT", "SFT", "UAC", "TQ1", "TQ2", "SPM", "IAM"}
"""Segments whose presence per version this table knows; any other is written as it is."""

_WITHDRAWN_28 = {"EVN": (1,), "PID": (28,), "PV1": (52,), "DG1": tuple(range(7, 15)), "IN1": (38, 40, 41),
                 "RXD": (13,), "RXA": (11,), "RXG": (11,), "OBR": (14, 15, 27), "SCH": (9, 11), "FT1": (8, 9)}
"""Fields v2.8 withdrew (their numbers stay, their values go)."""

_BEFORE_25 = {"CWE": "CE", "CNE": "CE", "DTM": "TS"}
_IN_28 = {"CE": "CWE", "TS": "DTM"}


@dataclass(frozen=True)
class Profile:
    """What one version allows: segment lengths, withdrawn fields, value-type renames."""

    name: str
    lengths: Mapping[str, int]
    withdrawn: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    value_types: Mapping[str, str] = field(default_factory=dict)
    structure_in_msh9: bool = True
    timing_in_tq1: bool = True

    def defines(self, segment: str) -> bool:
        return segment not in KNOWN or segment in self.lengths


PROFILES = {
    "2.3": Profile("2.3", _V23, value_types=_BEFORE_25, structure_in_msh9=False, timing_in_tq1=False),
    "2.4": Profile("2.4", _V24, value_types=_BEFORE_25, timing_in_tq1=False),
    "2.5.1": Profile("2.5.1", _V251),
    "2.8": Profile("2.8", _V28, _WITHDRAWN_28, _IN_28),
}
"""2.5 has no profile: the encoder's own output is 2.5."""


def version_of(options: Mapping[str, Any]) -> str:
    """The ``version`` option as one of :data:`VERSIONS` (default 2.5); EncodeError otherwise."""
    raw = options.get("version")
    if raw is None or raw == "":
        return DEFAULT
    text = str(raw)
    if text not in VERSIONS:
        raise EncodeError(f"options.version: expected one of {', '.join(VERSIONS)} (quoted in YAML), got {raw!r}")
    return text


def message_type(version: str, kind: str, event: str, structure: str) -> tuple[str, str, str]:
    """MSH-9's parts in ``version``: no structure in 2.3, where RDE^O11 was RDE^O01."""
    profile = PROFILES.get(version)
    if profile is None or profile.structure_in_msh9:
        return kind, event, structure
    if (kind, event) == ("RDE", "O11"):
        event = "O01"
    return kind, event, ""


def conform(segments: list[str], version: str) -> list[str]:
    """The body segments (no MSH) made to fit ``version``; for 2.5 they are returned unchanged."""
    profile = PROFILES.get(version)
    if profile is None:
        return segments
    segments = _move_timing(segments, profile)
    out = []
    for segment in segments:
        name = segment[:3]
        if not profile.defines(name):
            continue
        out.append(_fit_fields(segment, name, profile))
    return out


def _fit_fields(segment: str, name: str, profile: Profile) -> str:
    last = profile.lengths.get(name)
    withdrawn = profile.withdrawn.get(name, ())
    rename = name == "OBX" and profile.value_types
    if last is None and not withdrawn and not rename:
        return segment
    fields = segment.split("|")
    if last is not None and len(fields) > last + 1:
        fields = fields[:last + 1]
    for number in withdrawn:
        if number < len(fields):
            fields[number] = ""
    if rename and len(fields) > 2:
        fields[2] = profile.value_types.get(fields[2], fields[2])
    return join(fields, "|")


def _move_timing(segments: list[str], profile: Profile) -> list[str]:
    """An appointment's start and end where the version keeps them (SCH-11 or TQ1-7/8)."""
    at = next((i for i, s in enumerate(segments) if s.startswith("SCH|")), None)
    if at is None:
        return segments
    fields = segments[at].split("|")
    tq1 = next((i for i, s in enumerate(segments) if s.startswith("TQ1|")), None)
    if not profile.timing_in_tq1 and tq1 is not None:
        timing = (segments[tq1].split("|") + [""] * 9)[7:9]
        if any(timing) and not (fields[11] if len(fields) > 11 else ""):
            fields += [""] * (12 - len(fields))
            fields[11] = join(["", "", "", *timing], "^")
            segments = [*segments[:at], join(fields, "|"), *segments[at + 1:]]
    elif profile.timing_in_tq1 and tq1 is None and _valued(fields, 11) and 11 in profile.withdrawn.get("SCH", ()):
        parts = (fields[11].split("~")[0].split("^") + [""] * 5)[3:5]
        if any(parts):
            segments = [*segments[:at + 1], join(["TQ1", "1", "", "", "", "", "", *parts], "|"), *segments[at + 1:]]
    return segments


def _valued(fields: list[str], number: int) -> bool:
    return len(fields) > number and bool(fields[number])

"""The sender's own wording of mapped fields, kept where our writers would word them differently.

A record holds what a field means, not how it was written: PID-2 and PID-4 identifiers sit in one
list with PID-3's, a name keeps no degree (XPN.6), a phone number no area code split (XTN.5-7), an
identifier no CX.6. Writing the record back would lose those details, so the decoder keeps, for each
group of fields below whose wording differs from what the encoder would write, the raw fields and
the encoder's wording of them (``extra["hl7v2"]["wire"] = {"PID-3": [raw, written], ...}``).

The encoder writes the raw fields back only when the record still says the same thing, i.e. when
its own wording of the group today equals the wording kept at decode. A record changed on the way
(a channel map set a new MRN, ``options.timezone`` moved a time) is written from its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge import Appointment, Coding, Encounter, Patient, Prescription

from . import datatypes as dt
from .header import Separators
from .reader import STANDARD, Segment, esc, reencode

GROUPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "PID": ((1,), (2, 3, 4, 19), (5,), (11,), (13, 14)),
    "PV1": ((1,), (7,), (19,), (44, 45)),
    "RGS": ((1,),),
    "AIP": ((1,),),
    "SCH": ((9, 10), (11,), (25,)),
    "OBR": ((1,), (2,), (3,), (4,), (7,), (22,), (24,), (25,)),
    "OBX": ((1,), (2,), (3,), (5,), (6,), (7,), (8,), (11,), (14,), (16,), (21,)),
    "RXE": ((2,), (7,)),
    "TQ1": ((1,),),
    "ORC": ((12,),),
}
"""Fields written from one record value together: set ids (PID-1, PV1-1, RGS-1, AIP-1, TQ1-1: ``1``
when we write them, ``0001`` from some senders), identifiers (PID-2/3/4 and the SSN in PID-19),
names, addresses, phones (home PID-13 and work PID-14), attending doctor, visit number, the visit's
period (PV1-44/45), the appointment's duration and its timing; each mapped field of a result (OBR, OBX) on its own;
an RDE's give code (RXE-2: a CWE's original text, more than two triplets) and administration
instructions (RXE-7: one repetition per line, text in the identifier); ORC-12 of a pharmacy order
whose prescriber was read from RXE-13 (ORC-12 empty, written back empty)."""


APPOINTMENT_CODES = {"booked": "Booked", "pending": "Pending", "cancelled": "Cancelled", "fulfilled": "Complete",
                     "noshow": "Noshow", "waitlist": "Waitlist", "arrived": "Started",
                     "entered-in-error": "Deleted"}
"""Appointment.status as SCH-25 filler status codes (table 0278)."""


def pid_written(patient: Patient) -> dict[int, str]:
    """PID fields of the groups as the encoder writes them from ``patient``."""
    ids = [i for i in patient.identifiers if not (i.system == dt.SSN_SYSTEM and i.type == "SS")]
    ssn = next((i for i in patient.identifiers if i.system == dt.SSN_SYSTEM and i.type == "SS"), None)
    home = [c for c in patient.telecom if c.use != "work"]
    work = [c for c in patient.telecom if c.use == "work"]
    return {
        1: "1",
        3: "~".join(dt.write_identifier(i) for i in ids),
        5: dt.write_name(patient.name),
        11: "~".join(dt.write_address(a) for a in patient.addresses),
        13: "~".join(dt.write_telecom(c) for c in home),
        14: "~".join(dt.write_telecom(c) for c in work),
        19: esc(ssn.value) if ssn else "",
    }


def pv1_written(encounter: Encounter) -> dict[int, str]:
    """PV1-7, PV1-19 and PV1-44/45 as the encoder writes them. The period is a group because it can
    come from PV2-8/9 (a planned visit's expected dates) or lack a cancelled discharge's PV1-45: the
    sender's PV1-44/45 then go back as sent."""
    visit = next((i for i in encounter.identifiers if i.type == "VN"), None) or \
        (encounter.identifiers[0] if encounter.identifiers else None)
    period = encounter.period
    return {1: "1", 7: dt.write_practitioner(encounter.practitioner),
            19: dt.write_identifier(visit) if visit else "",
            44: dt.write_datetime(period.start) if period else "",
            45: dt.write_datetime(period.end) if period else ""}


def sch_written(appt: Appointment) -> dict[int, str]:
    """SCH-9/10 duration and SCH-11 timing as the encoder writes them."""
    from .reader import comp
    timing = comp("", "", "", dt.write_datetime(appt.start), dt.write_datetime(appt.end)) \
        if appt.start or appt.end else ""
    minutes = appt.duration_minutes
    return {9: str(minutes) if minutes is not None else "", 10: "min" if minutes is not None else "", 11: timing,
            25: APPOINTMENT_CODES.get(appt.status or "", "")}


def give_codings(rx: Prescription) -> list[Coding]:
    """The codings RXE-2 is written from: the medication's own, else one made of its NDC (or
    RxNorm) code and description."""
    med = rx.medication
    if med is None:
        return []
    if med.codings:
        return list(med.codings)
    if not (med.ndc or med.rxnorm or med.description):
        return []
    code, system = (med.ndc, dt.CODE_SYSTEMS["NDC"]) if med.ndc else (med.rxnorm, dt.CODE_SYSTEMS["RXNORM"])
    return [Coding(code=code or "", display=med.description, system=system if code else None)]


def rxe_written(rx: Prescription) -> dict[int, str]:
    """RXE-2 give code (the first two codings as CWE triplets) and RXE-7 provider's administration
    instructions (the sig, as the text of one CWE) as the encoder writes them from ``rx``."""
    from .reader import comp
    triplets = [[esc(c.code), esc(c.display), esc(dt.system_name(c.system))] for c in give_codings(rx)[:2]]
    return {2: comp(*[part for triplet in triplets for part in triplet]),
            7: comp("", esc(rx.sig)) if rx.sig else ""}


def note_obx(note_text: str | None) -> list[str]:
    """The text OBX segments the encoder writes for a note: one TX line each."""
    from .reader import comp, join
    lines = note_text.split("\n") if note_text is not None else []
    return [join(["OBX", str(i), "TX", comp("NOTE", "Note text"), "", esc(line), "", "", "", "", "", "F"], "|")
            for i, line in enumerate(lines, start=1)]


def keep(seg: Segment | None, seps: Separators, written: Mapping[int, str]) -> dict[str, list[str]]:
    """The groups of ``seg`` whose raw fields differ from ``written``, as wire entries."""
    if seg is None:
        return {}
    out: dict[str, list[str]] = {}
    standard = seps == STANDARD
    fields = seg.fields
    for group in GROUPS.get(seg.name, ()):
        raw = [fields[n] if n < len(fields) else "" for n in group]
        if not standard:
            raw = [reencode(value, seps) if value else "" for value in raw]
        wanted = [written.get(n, "") for n in group]
        if raw != wanted:  # the per-message path: one list comparison for the common case
            for n, value, ours in zip(group, raw, wanted):
                out[f"{seg.name}-{n}"] = [value, ours]
    return out


def apply(name: str, values: dict[int, str], wire: Mapping[str, Any]) -> None:
    """Put the kept raw fields of each group back where the record still says the same thing."""
    for group in GROUPS.get(name, ()):
        kept = [wire.get(f"{name}-{n}") for n in group]
        if any(k is None for k in kept):
            continue
        if all(values.get(n, "") == k[1] for n, k in zip(group, kept)):  # type: ignore[index]
            for n, k in zip(group, kept):
                values[n] = k[0]  # type: ignore[index]

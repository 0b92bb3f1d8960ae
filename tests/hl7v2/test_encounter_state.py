"""Encounter status and period from PV1/PV2 in every message type (issue 13, field agreement).

Outside ADT a PV1 says where the visit stands (finished with a discharge time, planned for a
pre-admit, else in progress) when it names a class; a planned or cancelled visit takes its expected
dates (PV2-8/9) as its period; a cancelled discharge is no end. The messages are the project's own,
with fictional people (names Testpatient, 555 numbers)."""

from __future__ import annotations

import pytest

from bridge import DiagnosticReport, Encounter, Observation
from bridge.plugins.hl7v2.codec import decode, encode

OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00"}
PID = "PID|1||MRN00012345^^^RIVERBEND^MR||Testpatient^Alex||19800412|F"
OBR = "OBR|1|ORD1|FIL1|72514-3^Pain severity^LN|||20261120101500"
OBX = "OBX|1|NM|72514-3^Pain severity^LN||6|{score}|||||F"


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from its valued fields by HL7 number."""
    values = [""] * (max(fields) + 1)
    for number, value in fields.items():
        values[number] = value
    return "|".join([name, *values[1:]])


def oru(pv1: str | None) -> bytes:
    segments = ["MSH|^~\\&|LAB|CLINIC|TB|TB|20261120104500||ORU^R01^ORU_R01|R1|P|2.5.1", PID,
                *([pv1] if pv1 else []), OBR, OBX]
    return "\r".join(segments).encode() + b"\r"


def adt(event: str, pv1: str, pv2: str | None = None) -> bytes:
    segments = [f"MSH|^~\\&|EHR|RIVERBEND|TB|TB|20261120104500||ADT^{event}|C{event}|P|2.5",
                f"EVN|{event}|20261120104500", PID, pv1, *([pv2] if pv2 else [])]
    return "\r".join(segments).encode() + b"\r"


def result_encounter(raw: bytes) -> Encounter | None:
    record = decode(raw, {})[0]
    assert isinstance(record, (DiagnosticReport, Observation))
    return record.encounter


@pytest.mark.parametrize(("fields", "status"), [
    ({1: "1", 2: "I", 44: "20261120090000"}, "in-progress"),
    ({1: "1", 2: "O"}, "in-progress"),
    ({1: "1", 2: "I", 44: "20261119090000", 45: "20261120090000"}, "finished"),
    ({1: "1", 2: "P", 44: "20261121090000"}, "planned"),
    ({1: "1", 2: "U", 45: "20261120090000"}, "finished"),
])
def test_a_result_reads_the_visit_status_from_pv1(fields: dict[int, str], status: str) -> None:
    encounter = result_encounter(oru(seg("PV1", fields)))
    assert encounter is not None and encounter.status == status


@pytest.mark.parametrize("pv1", ["PV1|1|U", "PV1|1|N|||||^Example^Dana"])
def test_a_pv1_without_class_or_discharge_gets_no_invented_status(pv1: str) -> None:
    encounter = result_encounter(oru(pv1))  # a bare PV1|1|U gives no Encounter at all
    assert encounter is None or encounter.status is None
    assert pv1 == "PV1|1|U" or encounter is not None


def test_a_result_without_pv1_has_no_encounter() -> None:
    assert result_encounter(oru(None)) is None


def test_a_planned_visit_takes_its_expected_dates_and_writes_them_back_where_they_were() -> None:
    raw = adt("A05", seg("PV1", {1: "1", 2: "P"}),
              seg("PV2", {1: "", 8: "20261125080000-0600", 9: "20261127120000-0600"}))
    (encounter,) = decode(raw, {})
    assert encounter.status == "planned"
    assert (encounter.period.start, encounter.period.end) == ("2026-11-25T08:00:00-06:00",
                                                              "2026-11-27T12:00:00-06:00")
    again = encode([encounter], OPTS).decode().split("\r")
    pv1 = next(s for s in again if s.startswith("PV1|")).split("|")
    pv2 = next(s for s in again if s.startswith("PV2|")).split("|")
    assert pv1[44:46] in ([], [""], ["", ""]) and pv2[8:10] == ["20261125080000-0600", "20261127120000-0600"]


def test_actual_times_win_over_expected_ones() -> None:
    raw = adt("A14", seg("PV1", {1: "1", 2: "P", 44: "20261125073000-0600"}),
              seg("PV2", {1: "", 8: "20261125080000-0600", 9: "20261127120000-0600"}))
    (encounter,) = decode(raw, {})
    assert (encounter.period.start, encounter.period.end) == ("2026-11-25T07:30:00-06:00",
                                                              "2026-11-27T12:00:00-06:00")


def test_an_expected_discharge_is_no_end_of_a_visit_in_progress() -> None:
    raw = adt("A16", seg("PV1", {1: "1", 2: "I", 44: "20261120090000-0600"}),
              seg("PV2", {1: "", 9: "20261122120000-0600"}))
    (encounter,) = decode(raw, {})
    assert encounter.status == "in-progress"
    assert encounter.period.start == "2026-11-20T09:00:00-06:00" and encounter.period.end is None


@pytest.mark.parametrize("event", ["A13", "A25"])
def test_a_cancelled_discharge_leaves_the_visit_open_and_pv1_45_on_the_wire(event: str) -> None:
    raw = adt(event, seg("PV1", {1: "1", 2: "I", 44: "20261120090000-0600", 45: "20261121090000-0600"}))
    (encounter,) = decode(raw, {})
    assert encounter.status == "in-progress" and encounter.period.end is None
    pv1 = next(s for s in encode([encounter], OPTS).decode().split("\r") if s.startswith("PV1|")).split("|")
    assert pv1[44:46] == ["20261120090000-0600", "20261121090000-0600"]


def test_a_discharge_is_still_an_end_outside_the_cancels() -> None:
    raw = adt("A08", seg("PV1", {1: "1", 2: "I", 44: "20261120090000-0600", 45: "20261121090000-0600"}))
    (encounter,) = decode(raw, {})
    assert encounter.status == "finished" and encounter.period.end == "2026-11-21T09:00:00-06:00"

"""Outbound HL7 v2 version (destination option ``version``): the same records written in 2.3, 2.4,
2.5, 2.5.1 and 2.8, each read back, and what each version leaves out or writes differently."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import (
    Appointment,
    Coding,
    DiagnosticReport,
    EncodeError,
    Identifier,
    Observation,
    Organization,
    Patient,
    record_to_dict,
)
from bridge.plugins.hl7v2 import versions
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "sending_application": "TB"}
LATER_SEGMENTS = ("SFT", "TQ1", "TQ2", "SPM", "PRT", "IAM", "UAC")


def corpus(name: str) -> list:
    return decode((CORPUS / name).read_bytes(), {})


def written(records: list, version: str | None) -> bytes:
    options = dict(OPTS, **({"version": version} if version else {}))
    return encode(records, options)


def segments(raw: bytes) -> list:
    return [s for m in read_messages(raw) for s in m.segments]


def msh(raw: bytes) -> list[str]:
    return read_messages(raw)[0].segments[0].fields


def test_the_default_is_today_s_2_5_output_byte_for_byte() -> None:
    records = corpus("ADT-A01-01.hl7")
    assert written(records, None) == written(records, "2.5")
    assert msh(written(records, None))[12] == "2.5"


@pytest.mark.parametrize("name", ["ADT-A01-01.hl7", "RDE-O11-01.hl7", "SIU-S12-01.hl7", "ORU-R01-01.hl7",
                                  "MDM-T02-01.hl7"])
@pytest.mark.parametrize("version", versions.VERSIONS)
def test_each_version_reads_back_and_has_no_field_its_segments_lack(name: str, version: str) -> None:
    records = corpus(name)
    raw = written(records, version)
    assert msh(raw)[12] == version
    profile = versions.PROFILES.get(version)
    for seg in segments(raw)[1:]:
        if profile is not None:
            assert profile.defines(seg.name), f"{seg.name} is not a {version} segment"
            last = profile.lengths.get(seg.name)
            assert last is None or len(seg.fields) - 1 <= last, f"{seg.name} has {len(seg.fields) - 1} fields"
    back = decode(raw, {})
    main = back[0]
    assert main.kind == records[0].kind
    patient = main if main.kind == "Patient" else main.patient  # type: ignore[attr-defined]
    first = records[0] if records[0].kind == "Patient" else records[0].patient  # type: ignore[attr-defined]
    assert [i.value for i in patient.identifiers] == [i.value for i in first.identifiers]
    assert patient.birth_date == first.birth_date


def test_a_2_3_message_has_none_of_the_later_segments_and_a_two_part_msh_9() -> None:
    raw = written(corpus("RDE-O11-01.hl7"), "2.3")
    names = {s.name for s in segments(raw)}
    assert not names & set(LATER_SEGMENTS)
    assert msh(raw)[9] == "RDE^O01"  # v2.3 has no MSH-9.3, and its encoded pharmacy order is O01
    assert {"SFT", "PRT", "TQ1"} <= {s.name for s in segments(written(corpus("RDE-O11-01.hl7"), "2.8"))}
    prescriptions = [r for r in decode(raw, {}) if r.kind == "Prescription"]
    before = [r for r in corpus("RDE-O11-01.hl7") if r.kind == "Prescription"]
    assert [p.medication.codings[0].code for p in prescriptions] == [p.medication.codings[0].code for p in before]


def test_fields_a_version_lacks_are_cut_and_2_8_withdrawn_ones_emptied() -> None:
    records = corpus("ADT-A01-01.hl7")
    in_25 = {s.name: s for s in segments(written(records, "2.5"))}
    assert len(in_25["PID"].fields) - 1 > 30  # the sender's 2.8 PID goes out whole in 2.5, as before
    in_23 = {s.name: s for s in segments(written(records, "2.3"))}
    assert len(in_23["PID"].fields) - 1 <= 30 and len(in_23["PV1"].fields) - 1 <= 52
    in_28 = {s.name: s for s in segments(written(records, "2.8"))}
    assert in_28["EVN"].get(1) == "" and in_25["EVN"].get(1) == "A01"  # EVN-1 was withdrawn in 2.8


def _lab_report() -> DiagnosticReport:
    patient = Patient(identifiers=[Identifier(value="MRN1", type="MR", assigner="RIVERBEND")], birth_date="1980-04-12")
    lab = Organization(name="Riverbend Lab", identifiers=[Identifier(value="LAB1", type="FI")])
    coded = Observation(code=[Coding(code="600-7", display="Blood culture", system="http://loinc.org")],
                        value_codings=[Coding(code="3092008", display="Staphylococcus aureus",
                                              system="http://snomed.info/sct")],
                        status="final", performing_organization=lab, patient=patient)
    dated = Observation(code=[Coding(code="8665-2", display="Last menstrual period", system="http://loinc.org")],
                        value_datetime="2024-04-20", status="final", patient=patient)
    return DiagnosticReport(code=[Coding(code="600-7", system="http://loinc.org")], status="final",
                            observations=[coded, dated], patient=patient)


@pytest.mark.parametrize(("version", "coded", "dated", "lab_fields"), [
    ("2.3", "CE", "TS", False), ("2.4", "CE", "TS", False), ("2.5", "CWE", "DTM", True),
    ("2.5.1", "CWE", "DTM", True), ("2.8", "CWE", "DTM", True)])
def test_value_types_and_the_performing_lab_follow_the_version(version, coded, dated, lab_fields) -> None:
    raw = written([_lab_report()], version)
    obx = [s for s in segments(raw) if s.name == "OBX"]
    assert [o.get(2) for o in obx] == [coded, dated]
    assert (obx[0].get(23).startswith("Riverbend Lab")) is lab_fields  # OBX-23 exists from 2.5.1 (2.5: as before)
    back = decode(raw, {})[0]
    assert back.observations[0].value_codings[0].code == "3092008"  # type: ignore[attr-defined]
    assert back.observations[1].value_datetime == "2024-04-20"  # type: ignore[attr-defined]


def test_2_8_value_types_replace_ce_and_ts() -> None:
    report = _lab_report()
    report.observations[0].value_type = "CE"
    report.observations[1].value_type = "TS"
    obx = [s for s in segments(written([report], "2.8")) if s.name == "OBX"]
    assert [o.get(2) for o in obx] == ["CWE", "DTM"]


def _appointment(timing: str | None) -> Appointment:
    patient = Patient(identifiers=[Identifier(value="MRN1", type="MR")])
    return Appointment(identifiers=[Identifier(value="A1", type="PLAC")], status="booked",
                       start="2024-05-02T09:00:00-05:00", end="2024-05-02T09:30:00-05:00", patient=patient,
                       extra={"hl7v2": {"timing": timing}} if timing else {})


@pytest.mark.parametrize("version", ["2.3", "2.4"])
def test_before_2_5_an_appointment_s_tq1_times_go_to_sch_11(version: str) -> None:
    raw = written([_appointment("TQ1")], version)
    sch = next(s for s in segments(raw) if s.name == "SCH")
    assert "TQ1" not in {s.name for s in segments(raw)}
    assert sch.get(11).split("^")[3:5] == ["20240502090000-0500", "20240502093000-0500"]
    back = decode(raw, {})[0]
    assert (back.start, back.end) == ("2024-05-02T09:00:00-05:00", "2024-05-02T09:30:00-05:00")


def test_in_2_8_an_sch_11_timing_moves_to_tq1() -> None:
    raw = written([_appointment(None)], "2.8")
    found = {s.name: s for s in segments(raw)}
    assert found["SCH"].get(11) == "" and found["TQ1"].get(7) == "20240502090000-0500"
    assert record_to_dict(decode(raw, {})[0])["start"] == "2024-05-02T09:00:00-05:00"
    in_25 = {s.name: s for s in segments(written([_appointment(None)], "2.5"))}
    assert "TQ1" not in in_25 and in_25["SCH"].get(11)  # 2.5 as before


def test_an_unknown_version_is_refused_with_the_choices() -> None:
    with pytest.raises(EncodeError, match=r"options.version: expected one of 2.3, 2.4, 2.5, 2.5.1, 2.8"):
        written(corpus("ADT-A01-01.hl7"), "2.6")

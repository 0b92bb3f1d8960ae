"""Every ADT event decodes (issue 13): status by event, merges as patient links, AL1/DG1/IN1 as
records, ADT without PID and EVN before MSH. The messages are the project's own, with fictional
people (names Testpatient/Example, 555 numbers)."""

from __future__ import annotations

import pytest

from bridge import (
    AllergyIntolerance,
    Condition,
    Coverage,
    DecodeError,
    EncodeError,
    Encounter,
    Patient,
    record_to_dict,
)
from bridge.plugins.hl7v2.codec import FORMAT, decode, encode

from .test_hl7v2_corpus import corpus_files

OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00"}


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from its valued fields by HL7 number (no counting of bars by hand)."""
    values = [""] * (max(fields) + 1)
    for number, value in fields.items():
        values[number] = value
    return "|".join([name, *values[1:]])


MSH = "MSH|^~\\&|EHR|RIVERBEND|TB|TB|20261120104500||ADT^{event}|CTL{event}|P|2.5"
PID = "PID|1||MRN00012345^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR||Testpatient^Alex^J||19800412|F"
CLINICIAN = "1234567893^Example^Dana^^^^^^^^^^NPI"
PV1 = seg("PV1", {1: "1", 2: "O", 7: CLINICIAN, 19: "V20261120-0042^^^RIVERBEND^VN", 44: "20261120103000"})
BACKGROUND = [
    "AL1|1|DA|7980^penicillin G^RXNORM|SV|Hives~Wheezing|20190302",
    "AL1|2|FA|^Peanuts|MO||",
    seg("DG1", {1: "1", 2: "I10", 3: "G89.4^Chronic pain syndrome^I10C", 4: "Chronic pain, lower back",
                5: "202506", 6: "F", 16: CLINICIAN, 19: "20261120104500"}),
    "DG1|2|I10|M54.50^Low back pain, unspecified|||W",
    seg("IN1", {1: "1", 2: "PPO-GOLD^Gold PPO", 3: "PHI-0001^^^^NIIP", 4: "Prairie Health Insurance",
                8: "GRP-4410", 9: "Pella Window Works", 12: "20260101", 13: "20261231", 15: "PPO",
                16: "Testpatient^Alex^J", 17: "SEL", 36: "XJP123456789", 49: "XJP100000001"}),
    "IN2|1|123-45-6789",
    "IN1|2|||||||",
]


def message(event: str, *segments: str) -> bytes:
    return "\r".join([MSH.format(event=event), f"EVN|{event}|20261120104500", *segments]).encode() + b"\r"


def by_kind(records: list, kind: type) -> list:
    return [r for r in records if isinstance(r, kind)]


# --- every event -------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [n for n in range(1, 63) if n != 20])
def test_every_adt_event_decodes(number: int) -> None:
    event = f"A{number:02d}"
    records = decode(message(event, PID, PV1), {})
    assert records and records[0].kind in ("Encounter", "Patient")
    patient = records[0].patient if isinstance(records[0], Encounter) else records[0]
    assert patient.identifiers[0].value == "MRN00012345"
    again = decode(encode(records, OPTS), {})
    assert [record_to_dict(r) for r in again] == [record_to_dict(r) for r in records], event


@pytest.mark.parametrize(("event", "status"), [
    ("A01", "in-progress"), ("A03", "finished"), ("A05", "planned"), ("A14", "planned"), ("A11", "cancelled"),
    ("A27", "cancelled"), ("A38", "cancelled"), ("A13", "in-progress"), ("A02", "in-progress"),
    ("A23", "entered-in-error"),
])
def test_encounter_status_follows_the_event(event: str, status: str) -> None:
    (encounter,) = decode(message(event, PID, PV1), {})
    assert encounter.status == status


def test_an_update_reads_the_visit_end_from_pv1() -> None:
    ended = PV1 + "|20261120113000"  # PV1-45, discharge date/time
    assert decode(message("A08", PID, ended), {})[0].status == "finished"
    assert decode(message("A08", PID, PV1), {})[0].status == "in-progress"


def test_a_person_level_event_with_a_bare_pv1_gives_a_patient_and_keeps_the_pv1() -> None:
    raw = message("A28", PID, "PV1|1|N")
    (patient,) = decode(raw, {})
    assert isinstance(patient, Patient) and patient.name.family == "Testpatient"
    out = encode([patient], OPTS).decode()
    assert "ADT^A28^ADT_A05" in out and "\rPV1|1|N\r" in out


def test_a_bed_status_update_is_refused_with_the_reason() -> None:
    with pytest.raises(DecodeError, match=r"ADT\^A20 is a bed status update"):
        decode(message("A20", "NPU|4W^401^1|C"), {})


def test_a_swap_gives_both_visits() -> None:
    other_pid = "PID|2||MRN00067890^^^RIVERBEND^MR||Example^Sam||19700101|M"
    other_pv1 = "PV1|2|I|4W^402^1||||||||||||||||V20261120-0099^^^RIVERBEND^VN"
    records = decode(message("A17", PID, "PV1|1|I|4W^401^1", other_pid, other_pv1), {})
    encounters = by_kind(records, Encounter)
    assert [e.patient.identifiers[0].value for e in encounters] == ["MRN00012345", "MRN00067890"]
    assert encounters[1].identifiers[0].value == "V20261120-0099"
    assert encode(records, OPTS).count(b"MSH|") == 1  # the second visit travels in the first's message


# --- merges and links --------------------------------------------------------------------------


def test_a40_merge_gives_the_surviving_patient_a_replaces_link() -> None:
    raw = message("A40", PID, "MRG|MRN00099999^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR")
    (patient,) = decode(raw, {})
    assert patient.identifiers[0].value == "MRN00012345"
    (link,) = patient.links
    assert (link.type, link.other.value, link.other.type) == ("replaces", "MRN00099999", "MR")
    assert link.other.system == "urn:oid:2.16.840.1.113883.3.999.2"
    again = decode(encode([patient], OPTS), {})
    assert record_to_dict(again[0]) == record_to_dict(patient)


def test_a40_merge_list_gives_each_survivor_its_link() -> None:
    second = "PID|2||MRN00055555^^^RIVERBEND^MR||Example^Sam"
    raw = message("A40", PID, "MRG|MRN00099999^^^RIVERBEND^MR", second, "MRG|MRN00044444^^^RIVERBEND^MR")
    patients = by_kind(decode(raw, {}), Patient)
    assert [(p.identifiers[0].value, [k.other.value for k in p.links]) for p in patients] == [
        ("MRN00012345", ["MRN00099999"]), ("MRN00055555", ["MRN00044444"])]


def test_an_account_merge_that_keeps_the_patient_id_gives_no_link() -> None:
    raw = message("A41", PID, "MRG|MRN00012345^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR||ACCT-1")
    (patient,) = decode(raw, {})
    assert patient.links == []


def test_a24_links_the_two_patients() -> None:
    raw = message("A24", PID, "PID|2||MRN00055555^^^RIVERBEND^MR||Testpatient^Alex")
    first, second = decode(raw, {})
    assert [(k.type, k.other.value) for k in first.links] == [("seealso", "MRN00055555")]
    assert second.links == []


# --- AL1, DG1, IN1 ---------------------------------------------------------------------------------


def test_allergies_diagnoses_and_insurance_become_records() -> None:
    records = decode(message("A01", PID, PV1, *BACKGROUND), {})
    encounter = records[0]
    allergies, conditions, coverages = (by_kind(records, k) for k in (AllergyIntolerance, Condition, Coverage))
    assert len(allergies) == 2 and len(conditions) == 2 and len(coverages) == 1  # IN1|2 names no payer
    penicillin, peanuts = allergies
    assert (penicillin.category, penicillin.severity) == ("medication", "severe")
    assert penicillin.reactions == ["Hives", "Wheezing"]
    assert penicillin.code.code == "7980" and penicillin.code.system == "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert penicillin.identified_at == "2019-03-02" and penicillin.clinical_status == "active"
    assert (peanuts.category, peanuts.severity, peanuts.code.display) == ("food", "moderate", "Peanuts")
    pain, back = conditions
    assert pain.code.system == "http://hl7.org/fhir/sid/icd-10-cm" and pain.code.code == "G89.4"
    assert back.code.system == "http://hl7.org/fhir/sid/icd-10"  # from DG1-2 when DG1-3 names none
    assert pain.category == "encounter-diagnosis" and pain.diagnosis_type.code == "F"
    assert (pain.onset, pain.recorded) == ("2025-06", "2026-11-20T10:45:00")
    assert pain.asserter.npi == "1234567893" and pain.encounter is encounter
    (cover,) = coverages
    assert (cover.payer_name, cover.member_id, cover.group_number, cover.subscriber_id) == (
        "Prairie Health Insurance", "XJP123456789", "GRP-4410", "XJP100000001")
    assert cover.relationship == "self" and cover.period.start == "2026-01-01" and cover.status == "active"
    assert cover.plan.code == "PPO-GOLD" and cover.subscriber_name.family == "Testpatient"
    assert all(r.patient is encounter.patient for r in records[1:])


def test_in2_gives_member_number_and_relationship_when_in1_does_not() -> None:
    in1 = seg("IN1", {1: "1", 3: "PHI-0001^^^^NIIP", 4: "Prairie Health Insurance", 16: "Example^Sam"})
    in2 = seg("IN2", {1: "1", 61: "XJP555000111", 72: "SPO"})
    (coverage,) = by_kind(decode(message("A01", PID, PV1, in1, in2), {}), Coverage)
    assert (coverage.member_id, coverage.relationship) == ("XJP555000111", "spouse")


def test_background_segments_survive_an_hl7v2_round_trip() -> None:
    raw = message("A01", PID, PV1, *BACKGROUND)
    records = decode(raw, {})
    out = encode(records, OPTS).decode()
    assert out.count("MSH|") == 1
    for segment in BACKGROUND:
        assert segment in out.split("\r")
    assert [record_to_dict(r) for r in decode(out.encode(), {})] == [record_to_dict(r) for r in records]


# --- broken grammar ----------------------------------------------------------------------------


def test_adt_without_pid_but_with_a_visit_decodes_with_a_warning() -> None:
    raw = "\r".join([MSH.format(event="A04"), "EVN|A04|20261120104500", PV1]).encode()
    (encounter,) = decode(raw, {})
    assert encounter.patient is None and encounter.identifiers[0].value == "V20261120-0042"
    (warning,) = encounter.extra["hl7v2"]["warnings"]
    assert warning == "ADT^A04 has no PID segment: the visit is decoded without a patient"
    assert "PID|" not in encode([encounter], OPTS).decode()


def test_adt_with_neither_pid_nor_visit_is_refused_with_the_reason() -> None:
    raw = "\r".join([MSH.format(event="A01"), "IN1|1|PPO|PHI-0001|Prairie Health Insurance"]).encode()
    with pytest.raises(DecodeError, match="no PID segment and no visit") as caught:
        decode(raw, {})
    assert "<" not in str(caught.value)  # a reason, not a Python object


def test_evn_before_msh_is_read_as_the_messages_evn() -> None:
    raw = "\r".join(["EVN|A04|20261120104500", MSH.format(event="A04"), PID, PV1]).encode()
    (encounter,) = decode(raw, {})
    assert encounter.patient.identifiers[0].value == "MRN00012345"
    assert "came before the MSH segment" in encounter.extra["hl7v2"]["warnings"][0]


def test_the_intake_reads_the_header_of_a_message_sent_evn_first() -> None:
    raw = "\r".join(["EVN|A04|20261120104500", MSH.format(event="A04"), PID, PV1]).encode()
    assert FORMAT.detect(raw)
    header = FORMAT.peek(raw)
    assert (header.message_type, header.control_id, header.patient_id) == ("ADT^A04", "CTLA04", "MRN00012345")


def test_evn_with_no_msh_is_refused_with_the_reason() -> None:
    raw = "\r".join(["BHS|^~\\&|EHR", "EVN|A04|20261120104500", PID, "BTS|1"]).encode()
    with pytest.raises(DecodeError, match="before any MSH segment and no MSH follows"):
        decode(raw, {})


def test_no_corpus_adt_is_unsupported_any_more() -> None:
    """Before issue 13's ADT slice, 66 corpus ADT messages were refused as unsupported types."""
    unsupported = []
    for path in corpus_files("fhir-converter-input") + corpus_files("lfh-hl7v2-fhir-converter"):
        raw = path.read_bytes()
        if b"ADT^A" not in raw[:600]:
            continue
        try:
            decode(raw, {})
        except DecodeError as exc:
            if "unsupported" in str(exc):
                unsupported.append(path.name)
    assert unsupported == []


def test_carried_records_alone_are_refused_with_the_reason() -> None:
    records = decode(message("A01", PID, PV1, *BACKGROUND), {})
    with pytest.raises(EncodeError, match="route that record with them"):
        encode(records[1:], OPTS)


def test_an_update_without_a_visit_is_still_an_encounter() -> None:
    (encounter,) = decode(message("A08", PID), {})
    assert isinstance(encounter, Encounter) and encounter.patient.name.family == "Testpatient"


def test_allergies_diagnoses_and_insurance_built_elsewhere_go_out_in_the_visits_adt() -> None:
    from tests.fhir import records as R

    encounter = R.encounter()
    background = [R.allergy(), R.condition(), R.coverage()]
    for record in background:
        record.patient = encounter.patient
    out = encode([encounter, *background], OPTS).decode()
    assert out.count("MSH|") == 1
    names = [line[:3] for line in out.split("\r") if line]
    assert names.index("AL1") > names.index("PV1") and {"DG1", "IN1"} <= set(names)
    decoded = decode(out.encode(), {})
    allergy, condition, coverage = decoded[1:]
    assert (allergy.code.code, allergy.severity, allergy.reactions) == ("7980", "severe", ["Hives", "Wheezing"])
    assert allergy.category == "medication" and allergy.identified_at == "2019-03-02"
    assert (condition.code.code, condition.description, condition.diagnosis_type.code) == (
        "G89.4", "Chronic pain syndrome, lower back", "F")
    assert condition.asserter.name.family == "Okafor" and condition.identifiers[0].value == "DX-9"
    assert (coverage.member_id, coverage.group_number, coverage.relationship) == ("XJP123456789", "GRP-4410", "spouse")
    assert coverage.subscriber_name.family == "Rivera" and coverage.period.end == "2026-12-31"

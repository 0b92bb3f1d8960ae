"""A map's change to the allergies, diagnoses, procedures and insurance an ADT carried reaches an
HL7v2 destination: the kept segment is rewritten where (and only where) its record changed."""

from __future__ import annotations

from pathlib import Path

from bridge import Coding
from bridge.plugins.hl7v2 import kept_edits
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "records_mapped": True}  # the engine's: maps ran
ADT = ("MSH|^~\\&|TELEVISIT|RIVERBEND|EHR|RIVERBEND|20261127092500||ADT^A04^ADT_A01|DX-1|P|2.5\r"
       "EVN|A04|20261127092500\r"
       "PID|1||MRN00012345^^^RIVERBEND^MR||Testpatient^Alex^J||19800412|F\r"
       "PV1|1|O|CLINIC2^^^RIVERBEND||||||||||||||||V100234^^^RIVERBEND^VN\r"
       "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r"
       "DG1|1|I10|HTN01^High blood pressure^LOCALDX||20261127|F|||||||||||||DX-77^RIVERBEND\r"
       "DG1|2||DM201^Diabetes type 2^LOCALDX||20261127|F|||||||||||||20261127093000\r"
       "IN1|1|PPO^Preferred|AETNA01^^^AETNA|Aetna" + "|" * 32 + "M-1\r"  # IN1-36 member id
       "IN2|1|123-45-6789\r"
       "ZPV|local|stuff\r").encode()


def segments(raw: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for seg in read_messages(raw)[0].segments:
        out.setdefault(seg.name, []).append("|".join(seg.fields))
    return out


def kinds(records, kind: str) -> list:
    return [r for r in records if r.kind == kind]


def test_unchanged_records_leave_every_corpus_message_s_kept_segments_alone() -> None:
    """The pairing reads each kept segment as the decoder did: nothing differs, nothing is copied."""
    checked = 0
    for path in sorted(CORPUS.glob("*.hl7")):
        records = decode(path.read_bytes(), {})
        edited = kept_edits.with_edits(records)
        assert all(a is b for a, b in zip(edited, records)), path.name
        checked += 1
    assert checked > 100


def test_a_mapped_diagnosis_rewrites_only_the_fields_that_changed() -> None:
    records = decode(ADT, {})
    before = segments(encode(records, OPTS))
    first, second = kinds(records, "Condition")
    first.code = Coding(code="38341003", display="Hypertensive disorder", system="http://snomed.info/sct")
    after = segments(encode(records, OPTS))

    # DG1-3 from the record; DG1-2 (coding method), DG1-20 (identifier) and the rest as the sender wrote them
    assert after["DG1"][0] == "DG1|1|I10|38341003^Hypertensive disorder^SCT||20261127|F|||||||||||||DX-77^RIVERBEND"
    assert after["DG1"][1] == before["DG1"][1]  # the other diagnosis did not change
    for name in ("MSH", "EVN", "PID", "PV1", "AL1", "IN1", "IN2", "ZPV"):
        if name != "MSH":
            assert after[name] == before[name], name
    back = kinds(decode(encode(records, OPTS), {}), "Condition")
    assert back[0].code == first.code and back[1].code == second.code
    assert records[0].extra["hl7v2"]["segments"][1]["segment"].startswith("DG1|1|I10|HTN01")  # input untouched


def test_allergy_and_insurance_edits_reach_al1_and_in1() -> None:
    records = decode(ADT, {})
    (allergy,) = kinds(records, "AllergyIntolerance")
    (coverage,) = kinds(records, "Coverage")
    allergy.severity = "moderate"
    coverage.member_id = "M-2"
    after = segments(encode(records, OPTS))
    assert after["AL1"] == ["AL1|1|DA|70618^Penicillin^RXNORM|MO|Hives"]
    assert after["IN1"] == ["IN1|1|PPO^Preferred|AETNA01^^^AETNA|Aetna" + "|" * 32 + "M-2"]
    assert after["IN2"] == ["IN2|1|123-45-6789"]
    back = decode(encode(records, OPTS), {})
    assert kinds(back, "AllergyIntolerance")[0].severity == "moderate"
    assert kinds(back, "Coverage")[0].member_id == "M-2"


def test_without_every_record_of_a_kind_the_segments_go_as_sent() -> None:
    """A dropped (or not routed) diagnosis: which segment is whose cannot be told, so none is rewritten."""
    records = decode(ADT, {})
    first, second = kinds(records, "Condition")
    first.code = Coding(code="38341003", system="http://snomed.info/sct")
    without_second = [r for r in records if r is not second]
    after = segments(encode(without_second, OPTS))
    assert after["DG1"][0].startswith("DG1|1|I10|HTN01^High blood pressure^LOCALDX|")
    without_conditions = [r for r in records if r.kind != "Condition"]
    assert segments(encode(without_conditions, OPTS))["DG1"] == segments(encode(decode(ADT, {}), OPTS))["DG1"]


def test_without_maps_the_kept_segments_are_not_read_again() -> None:
    """The engine says when maps ran (``records_mapped``); otherwise encoding pays nothing for this."""
    records = decode(ADT, {})
    kinds(records, "Condition")[0].code = Coding(code="38341003", system="http://snomed.info/sct")
    unmapped = {k: v for k, v in OPTS.items() if k != "records_mapped"}
    assert segments(encode(records, unmapped))["DG1"][0].startswith("DG1|1|I10|HTN01^")


def test_a_channel_time_zone_is_no_change() -> None:
    """The channel's zone makes the records' times exact; their segments still say what was sent."""
    from bridge.core.model.times import localize_records

    records = decode(ADT, {})
    localize_records(records, "America/Chicago")
    assert kinds(records, "Condition")[1].recorded == "2026-11-27T09:30:00-06:00"
    assert segments(encode(records, OPTS))["DG1"] == segments(encode(decode(ADT, {}), OPTS))["DG1"]

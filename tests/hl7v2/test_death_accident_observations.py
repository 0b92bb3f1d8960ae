"""Issue 13, the last coverage pass (branch h13-last), on real messages of the corpus:

* an OUL^R24's RESULT OBX after the specimen's container (SPECIMEN {SPM, OBX, CONTAINER {SAC, INV}},
  then RESULT {OBX}) are results of the report, not observations of the sample;
* an ORM^O01 lab order without SPM gets the sample its OBR describes (the v2-to-FHIR IG's *Segment OBR
  to Specimen*, as for OML^O21, which replaced ORM^O01) where the OBR itself says a sample was taken
  (OBR-9/10/14/15 or a laboratory OBR-24): ORM^O01 also orders imaging, whose OBR-7 is the exam's time;
* PDA-6 (autopsy), PDA-9 (coroner) and ACC-8 (accident description) as the Observations the US death
  reporting guide (VRDR) records: LOINC 85699-7 and 74497-9 valued with HL7 table 0136, and 11374-6
  with the text and ACC-1 as effective time.

All derived: the segments stay kept, so an HL7v2 round trip is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import DiagnosticReport, Observation, Specimen, localize_records
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2
from tests.hl7v2.fhir_of_records import bundle, decode, replace_field, resources

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus"
MICROSOFT = FIXTURES / "fhir-converter-input"
CDC = FIXTURES / "cdc-trusted-intermediary"
YES_NO = "http://terminology.hl7.org/CodeSystem/v2-0136"
LOINC = "http://loinc.org"


def raw(name: str, folder: Path = MICROSOFT) -> bytes:
    return (folder / f"{name}.hl7").read_bytes()


def sent_segments(data: bytes) -> list[str]:
    return [s for s in data.decode("utf-8-sig").replace("\n", "\r").split("\r") if s and not s.startswith("MSH")]


def written_back(data: bytes) -> list[str]:
    return [s for s in HL7V2.encode(decode(data), {}).decode().split("\r") if s and not s.startswith("MSH")]


# --- OUL^R24: the RESULT group after the specimen's container ----------------------------------------


def codes_of(report: DiagnosticReport) -> list[str | None]:
    return [o.code[0].code if o.code else None for o in report.observations]


def test_an_oul_r24_reads_its_results_after_the_specimens_container() -> None:
    (report,) = [r for r in decode(raw("OUL-R24-01")) if isinstance(r, DiagnosticReport)]
    # the ED after the ORC, then OBX 1-4 after SAC/INV; OBX 7 right after the SPM is the sample's own
    assert codes_of(report) == [None, "3DHISTECH_SLD", "3DHISTECH_THUMBNAIL", "3DHISTECH_LABELAREA",
                                "3DHISTECH_PREVIEWCAM"]
    slide = report.observations[1]
    assert slide.value_type == "RP" and slide.status == "final"
    assert "8867-4" not in codes_of(report)


def test_an_oul_r24s_first_order_keeps_its_results_before_the_next_obr() -> None:
    first, second = [r for r in decode(raw("OUL-R24-02")) if isinstance(r, DiagnosticReport)]
    assert codes_of(first) == [None, "3DHISTECH_SLD", "3DHISTECH_THUMBNAIL"]
    assert codes_of(second) == ["3DHISTECH_LABELAREA", "3DHISTECH_PREVIEWCAM"]


def test_an_oul_r22s_specimen_obx_stays_the_samples() -> None:
    """OUL^R22-02: the second SPM's OBX 17 precedes its SAC and its own OBR: not a result."""
    reports = [r for r in decode(raw("OUL-R22-02")) if isinstance(r, DiagnosticReport)]
    assert all("8867-4" not in codes_of(r) for r in reports)


def test_the_oul_r24_results_reach_fhir_as_the_reports_results() -> None:
    doc = bundle(decode(raw("OUL-R24-01")))
    (report,) = resources(doc, "DiagnosticReport")
    urls = {e["fullUrl"]: e["resource"] for e in doc["entry"]}
    results = [urls[r["reference"]] for r in report["result"]]
    assert [r["code"]["coding"][0]["code"] for r in results[1:]] == [
        "3DHISTECH_SLD", "3DHISTECH_THUMBNAIL", "3DHISTECH_LABELAREA", "3DHISTECH_PREVIEWCAM"]
    (back,) = [r for r in FHIR.decode(json.dumps(doc).encode(), {}) if isinstance(r, DiagnosticReport)]
    assert len(back.observations) == 5


@pytest.mark.parametrize("name", ["OUL-R24-01", "OUL-R24-02"])
def test_an_oul_is_still_written_back_as_sent(name: str) -> None:
    assert written_back(raw(name)) == sent_segments(raw(name))


# --- ORM^O01: the OBR's sample where the OBR says there is one ---------------------------------------


def samples(records: list) -> list[Specimen]:
    return [r for r in records if isinstance(r, Specimen)]


def test_an_orm_lab_order_gets_the_sample_its_obr_collector_names() -> None:
    """LAB-ORM-1: a hemogram (OBR-24 HM) collected by OBR-10 ^COLLECT^JOHN, no SPM."""
    (sample,) = samples(decode(raw("LAB-ORM-1")))
    assert sample.collector is not None and sample.collector.name.family == "COLLECT"  # type: ignore[union-attr]
    assert sample.identifiers == [] and sample.extra["hl7v2"]["carried"] is True
    records = decode(raw("LAB-ORM-1"))
    localize_records(records, "America/Chicago")  # its times carry no offset: the channel's zone
    (fhir_sample,) = resources(bundle(records), "Specimen")
    assert "collector" in fhir_sample["collection"]


def test_an_orm_obr_15_names_the_samples_type() -> None:
    (sample,) = samples(decode(raw("Epic__001_Epic_ORM_O01", CDC)))
    assert sample.specimen_type is not None and sample.specimen_type.code == "URINE"


def test_an_orm_imaging_order_has_no_sample_from_its_exam_time() -> None:
    """ORM-O01-01..03: CT head and MR brain orders whose OBR states OBR-7 only (the exam's time)."""
    for name in ("ORM-O01-01", "ORM-O01-02", "ORM-O01-03"):
        assert samples(decode(raw(name))) == []


def test_an_orm_obr_whose_section_is_a_lab_gets_its_sample_from_obr_7() -> None:
    data = replace_field(raw("ORM-O01-01"), "OBR", 24, "CH")
    (sample,) = samples(decode(data))
    assert sample.collected is not None and sample.collected.start == "2021-10-20T12:00+02:15"


@pytest.mark.parametrize("name", ["LAB-ORM-1", "ORM-O01-01"])
def test_an_orm_is_still_written_back_as_sent(name: str) -> None:
    assert written_back(raw(name)) == sent_segments(raw(name))


# --- PDA and ACC flags as VRDR Observations ----------------------------------------------------------


VRDR = {"85699-7", "74497-9", "11374-6"}


def flags_of(records: list) -> list[Observation]:
    return [r for r in records if isinstance(r, Observation) and r.code and r.code[0].code in VRDR]


def test_pda_autopsy_and_coroner_and_acc_description_are_observations_of_the_patient() -> None:
    records = decode(raw("ADT-A01-01"))
    visit = records[0]
    injury, autopsy, coroner = flags_of(records)  # ACC comes before PDA in ADT-A01-01
    assert (autopsy.code[0].code, autopsy.code[0].system) == ("85699-7", LOINC)  # PDA-6 Y
    assert [(c.code, c.system) for c in autopsy.value_codings] == [("Y", YES_NO)]
    assert coroner.code[0].code == "74497-9" and [c.code for c in coroner.value_codings] == ["N"]  # PDA-9 N
    assert (injury.code[0].code, injury.value_text, injury.effective) == (
        "11374-6", "vehicle acident", "2014-03-17")  # ACC-8 as sent, ACC-1
    for obs in (autopsy, coroner, injury):
        assert obs.patient is visit.patient and obs.encounter is visit and obs.status == "final"
        assert obs.extra == {"hl7v2": {"carried": True}}


def test_a_flag_neither_yes_nor_no_gives_no_observation() -> None:
    data = replace_field(replace_field(raw("ADT-A01-01"), "PDA", 6, "U"), "PDA", 9, "")
    data = replace_field(data, "ACC", 8, "")
    assert flags_of(decode(data)) == []


def test_the_flags_reach_fhir_with_loinc_and_table_0136_and_read_back() -> None:
    doc = bundle(decode(raw("ADT-A01-01")))
    found = {r["code"]["coding"][0]["code"]: r for r in resources(doc, "Observation")
             if r["code"]["coding"][0]["code"] in VRDR}
    assert found["85699-7"]["valueCodeableConcept"]["coding"] == [
        {"system": YES_NO, "code": "Y", "display": "Yes"}]
    assert found["74497-9"]["valueCodeableConcept"]["coding"][0]["code"] == "N"
    assert (found["11374-6"]["valueString"], found["11374-6"]["effectiveDateTime"]) == ("vehicle acident", "2014-03-17")
    patient = resources(doc, "Patient")[0]
    subjects = {r["subject"]["reference"] for r in found.values()}
    assert len(subjects) == 1 and any(e["fullUrl"] in subjects and e["resource"] is patient for e in doc["entry"])
    back = flags_of(FHIR.decode(json.dumps(doc).encode(), {}))
    assert [(o.code[0].code, [c.code for c in o.value_codings], o.value_text) for o in back] == [
        ("11374-6", [], "vehicle acident"), ("85699-7", ["Y"], None), ("74497-9", ["N"], None)]


@pytest.mark.parametrize("name", ["REF-I14-02", "BAR-P01-01", "DFT-P11-02"])
def test_an_acc_outside_adt_is_an_injury_incident_of_the_patient(name: str) -> None:
    records = decode(raw(name))
    (injury,) = flags_of(records)
    assert injury.code[0].code == "11374-6" and injury.value_text and injury.effective == "2014-03-17"
    assert injury.patient is not None and injury.encounter is None and injury.extra["hl7v2"]["carried"]
    bundle(records)


@pytest.mark.parametrize("name", ["ADT-A01-01", "ADT-A08-01", "REF-I14-02", "BAR-P01-01"])
def test_pda_and_acc_are_written_back_as_sent(name: str) -> None:
    out = written_back(raw(name))
    for seg in sent_segments(raw(name)):
        if seg.startswith(("PDA|", "ACC|")):
            assert seg in out

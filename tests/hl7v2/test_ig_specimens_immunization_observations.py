"""Issue 13, what the HL7 Version 2 to FHIR implementation guide (STU1) maps and we kept raw:

* *Segment OBR to Specimen*, which its ORU^R01 and OML^O21 message maps apply to each OBR: the
  sample an OBR describes when no SPM does (OBR-7/8 collection, OBR-9 volume, OBR-10 collector,
  OBR-14 received, OBR-15 source);
* its VXU^V04 map's OBX → Observation: the patient's (before the first ORC) and the vaccination's
  (``partOf`` the Immunization), except funding source and eligibility, which are the Immunization's
  own fields.

All derived: the segments stay kept, so an HL7v2 round trip is unchanged. Real messages from
Microsoft's FHIR-Converter samples (tests/fixtures/hl7v2/corpus/fhir-converter-input).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bridge import DiagnosticReport, Immunization, Observation, Specimen, record_to_dict
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2
from tests.hl7v2.fhir_of_records import bundle, decode, replace_field, resources
from bridge.plugins.hl7v2.reader import read_messages
from tests.hl7v2 import fidelity

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
SCHEMA = json.loads((ROOT / "docs" / "telemed-bridge-1.schema.json").read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    return (CORPUS / f"{name}.hl7").read_bytes()


def entry_of(doc: dict, reference: str) -> dict:
    return next(e for e in doc["entry"] if e["fullUrl"] == reference)


def round_trip_tally(data: bytes) -> fidelity.Tally:
    original = read_messages(data)[0]
    tally = fidelity.measure_one(original, data)
    assert tally is not None
    return tally


# --- OBR → Specimen --------------------------------------------------------------------------------


def report_of(data: bytes) -> DiagnosticReport:
    (report,) = [r for r in decode(data) if isinstance(r, DiagnosticReport)]
    return report


def test_an_oru_obr_without_spm_gives_its_sample_from_obr_7() -> None:
    report = report_of(raw("ORU-R01-RMGEAD"))
    (sample,) = report.specimens
    assert sample.collected is not None and sample.collected.start == "2002-02-15T07:30:00+06:00"
    assert sample.collected.end is None
    assert sample.identifiers == []  # OBR-2/3 are the order's numbers, not said to be the accession's
    assert sample.specimen_type is None and sample.quantity is None and sample.collector is None
    assert sample.patient is report.patient


def test_the_obr_sample_goes_to_fhir_referenced_by_the_report_and_keyed_for_redelivery() -> None:
    doc = bundle(decode(raw("ORU-R01-RMGEAD")))
    (diag,) = resources(doc, "DiagnosticReport")
    (ref,) = diag["specimen"]
    entry = entry_of(doc, ref["reference"])
    sample = entry["resource"]
    assert sample["collection"] == {"collectedDateTime": "2002-02-15T07:30:00+06:00"}
    assert entry_of(doc, sample["subject"]["reference"])["resource"]["identifier"] == [{"value": "555-44-4444"}]
    assert entry["request"]["method"] == "PUT" and "specimen-key" in entry["request"]["url"]
    again = bundle(decode(raw("ORU-R01-RMGEAD")))
    assert [e for e in again["entry"] if e["resource"]["resourceType"] == "Specimen"] == [entry]
    (back,) = [r for r in FHIR.decode(json.dumps(doc).encode(), {}) if isinstance(r, DiagnosticReport)]
    assert [s.collected.start for s in back.specimens] == ["2002-02-15T07:30:00+06:00"]  # type: ignore[union-attr]


def test_obr_9_10_14_15_give_volume_collector_received_type_and_site() -> None:
    data = raw("ORU-R01-RMGEAD")
    data = replace_field(data, "OBR", 8, "20020215074500+0600")
    data = replace_field(data, "OBR", 9, "5^mL&milliliter&UCUM")
    data = replace_field(data, "OBR", 10, "C-77^DRAWER^DANA")
    data = replace_field(data, "OBR", 14, "20020215081000+0600")
    data = replace_field(data, "OBR", 15, "SER&Serum&HL70070^^^LA&Left arm&HL70163")
    (sample,) = report_of(data).specimens
    assert (sample.collected.start, sample.collected.end) == (  # type: ignore[union-attr]
        "2002-02-15T07:30:00+06:00", "2002-02-15T07:45:00+06:00")
    assert sample.quantity is not None and (sample.quantity.value, sample.quantity.code) == (5.0, "mL")
    assert sample.collector is not None and sample.collector.name.family == "DRAWER"  # type: ignore[union-attr]
    assert sample.received == "2002-02-15T08:10:00+06:00"
    assert (sample.specimen_type.code, sample.body_site.code) == ("SER", "LA")  # type: ignore[union-attr]
    doc = bundle(decode(data))
    (fhir_sample,) = resources(doc, "Specimen")
    collection = fhir_sample["collection"]
    assert collection["collectedPeriod"] == {"start": "2002-02-15T07:30:00+06:00", "end": "2002-02-15T07:45:00+06:00"}
    assert collection["quantity"] == {"value": 5.0, "unit": "milliliter", "system": "http://unitsofmeasure.org",
                                      "code": "mL"}
    collector = entry_of(doc, collection["collector"]["reference"])["resource"]
    assert collector["resourceType"] == "Practitioner" and collector["name"][0]["family"] == "DRAWER"
    assert fhir_sample["receivedTime"] == "2002-02-15T08:10:00+06:00"
    assert fhir_sample["type"]["coding"][0]["code"] == "SER"
    (back,) = [r for r in FHIR.decode(json.dumps(doc).encode(), {}) if isinstance(r, DiagnosticReport)]
    (again,) = back.specimens
    assert again.quantity == sample.quantity
    assert again.collector is not None and again.collector.name.family == "DRAWER"  # type: ignore[union-attr]


def test_the_bridge_json_schema_accepts_the_new_fields() -> None:
    data = replace_field(raw("ORU-R01-RMGEAD"), "OBR", 9, "5^mL&milliliter&UCUM")
    data = replace_field(data, "OBR", 10, "C-77^DRAWER^DANA")
    records = decode(data) + decode(raw("IZ_1_1.1_Admin_Child_Max_Message"))
    doc = {"schema": "telemed-bridge/1", "records": [record_to_dict(r) for r in records]}
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)


@pytest.mark.parametrize("section", ["RAD", "EC", "CUS"])
def test_an_obr_of_a_section_that_examines_the_patient_has_no_sample(section: str) -> None:
    data = replace_field(raw("ORU-R01-RMGEAD"), "OBR", 24, section)
    assert report_of(data).specimens == []


def test_an_obr_that_states_no_specimen_field_has_no_sample() -> None:
    data = replace_field(raw("ORU-R01-RMGEAD"), "OBR", 7, "")
    assert report_of(data).specimens == []


def test_an_spm_keeps_naming_the_sample_alone() -> None:
    """LRI's CBC: its SPM is the sample; the OBR adds no second one."""
    (report,) = [r for r in decode(raw("LRI_2.0-NG_CBC_Typ_Message")) if isinstance(r, DiagnosticReport)]
    (sample,) = report.specimens
    assert sample.specimen_type is not None and sample.specimen_type.code == "119297000"


def test_an_oul_reads_no_obr_sample() -> None:
    """OUL^R22 names its specimens in SPM (before the OBR); the guide maps no OUL OBR to a Specimen."""
    records = decode(raw("OUL-R22-01"))
    from_obr = [s for r in records if isinstance(r, DiagnosticReport) for s in r.specimens]
    assert from_obr == []


def order_specimens(records: list) -> list[Specimen]:
    return [r for r in records if isinstance(r, Specimen)]


def test_an_oml_order_without_spm_gets_its_obr_sample_carried() -> None:
    lines = raw("OML-O21-01").decode("utf-8-sig").replace("\n", "\r").split("\r")
    without_spm = "\r".join(line for line in lines if not line.startswith(("SPM|", "SAC|"))).encode()
    assert order_specimens(decode(raw("OML-O21-01")))  # with its SPM: that one
    (sample,) = order_specimens(decode(without_spm))
    assert sample.identifiers == [] and sample.collected is not None
    assert (sample.collected.start, sample.collected.end) == ("2021-10-20T12:00+02:15", None)  # OBR-7, as sent
    assert sample.extra["hl7v2"]["carried"] is True
    (fhir_sample,) = resources(bundle(decode(without_spm)), "Specimen")
    assert fhir_sample["collection"] == {"collectedDateTime": "2021-10-20T12:00:00+02:15"}


def test_an_oml_sample_an_spm_names_is_not_made_twice() -> None:
    """MDHHS: two OBRs of one order, the SPM after the second; same collection time, one sample."""
    samples = order_specimens(decode(raw("MDHHS-OML-O21-2")))
    assert len(samples) == 1 and samples[0].specimen_type.code == "119339001"  # type: ignore[union-attr]


def test_an_omls_earlier_results_give_no_sample() -> None:
    """OML-O21-03: three orders with SPM, two PRIOR_RESULT groups without (the guide maps none of them)."""
    data = raw("OML-O21-03")
    spm = sum(1 for s in read_messages(data)[0].segments if s.name == "SPM")
    assert len(order_specimens(decode(data))) == spm


def test_orm_and_mdm_obr_give_no_sample() -> None:
    """MDM^T02's map applies no OBR → Specimen map (an MDM's OBR is the exam); ORM-O01-01's OBR is a CT
    of the head stating OBR-7 only, no sample (test_death_accident_observations.py: ORM lab orders)."""
    for name in ("ORM-O01-01", "MDM-T02-01"):
        records = decode(raw(name))
        assert order_specimens(records) == []
        assert all(not r.specimens for r in records if isinstance(r, DiagnosticReport))


# --- VXU OBX → Observation -------------------------------------------------------------------------


def test_a_vaccinations_obx_are_its_observations_except_funding_and_eligibility() -> None:
    records = decode(raw("IZ_1_1.1_Admin_Child_Max_Message"))
    (shot,) = [r for r in records if isinstance(r, Immunization)]
    assert [c.code for c in shot.program_eligibility] == ["V05"]  # OBX-1, the Immunization's own field
    assert [o.code[0].code for o in shot.observations] == ["30956-7", "29768-9", "29769-7"]
    vaccine, published, presented = shot.observations
    assert (vaccine.value_codings[0].code, vaccine.value_codings[0].system) == ("88", "CVX")
    assert (published.value_datetime, presented.value_datetime) == ("2012-07-02", "2012-08-14")
    assert all(o.patient is shot.patient and o.status == "final" and o.category is None for o in shot.observations)
    assert not any(isinstance(r, Observation) for r in records)  # held by the Immunization, not loose


def test_the_patients_obx_before_the_first_orc_is_an_observation_of_the_patient() -> None:
    records = decode(raw("VXU-V04-02"))
    (person,) = [r for r in records if isinstance(r, Observation)]
    assert person.code[0].code == "8867-4" and person.category == "vital-signs"
    assert person.value_quantity is None  # OBX-5 repeats (60~120): kept as sent, no single value read
    assert person.extra["hl7v2"]["warnings"]
    shots = [r for r in records if isinstance(r, Immunization)]
    assert [[o.code[0].code for o in s.observations] for s in shots] == [["69764-9", "29769-7"], [], ["29769-7"]]


def test_fhir_observations_are_part_of_their_immunization_and_read_back() -> None:
    records = decode(raw("IZ_1_1.1_Admin_Child_Max_Message"))
    doc = bundle(records)
    (shot_entry,) = [e for e in doc["entry"] if e["resource"]["resourceType"] == "Immunization"]
    parts = resources(doc, "Observation")
    assert [o["code"]["coding"][0]["code"] for o in parts] == ["30956-7", "29768-9", "29769-7"]
    assert parts[0]["valueCodeableConcept"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/cvx"
    assert (parts[1]["valueDateTime"], parts[2]["valueDateTime"]) == ("2012-07-02", "2012-08-14")
    assert all(o["partOf"] == [{"reference": shot_entry["fullUrl"]}] for o in parts)
    assert all(o["subject"] == shot_entry["resource"]["patient"] for o in parts)
    decoded = FHIR.decode(json.dumps(doc).encode(), {})
    (back,) = [r for r in decoded if isinstance(r, Immunization)]
    assert [o.code[0].code for o in back.observations] == ["30956-7", "29768-9", "29769-7"]
    assert not any(isinstance(r, Observation) for r in decoded)  # parts, not records of their own
    assert all("fhir" not in o.extra for o in back.observations)  # partOf is the field, not kept again
    assert json.loads(FHIR.encode(decoded, {}))["entry"] == doc["entry"]


def test_a_foreign_bundles_observation_part_of_an_immunization_is_read_into_it() -> None:
    doc = bundle(decode(raw("IZ_1_1.1_Admin_Child_Max_Message")))
    foreign = {"resourceType": "Bundle", "type": "collection",
               "entry": [{k: v for k, v in e.items() if k not in ("request", "extension")} for e in doc["entry"]]}
    decoded = FHIR.decode(json.dumps(foreign).encode(), {})
    (shot,) = [r for r in decoded if isinstance(r, Immunization)]
    assert len(shot.observations) == 3
    assert not any(isinstance(r, Observation) for r in decoded)


# --- derived: HL7v2 round trip unchanged ----------------------------------------------------------


@pytest.mark.parametrize("name", ["ORU-R01-RMGEAD", "LAB-ORU-1", "ORU-R01-01"])
def test_the_obr_stays_as_sent_in_an_hl7v2_round_trip(name: str) -> None:
    tally = round_trip_tally(raw(name))
    assert (tally.unchanged, tally.added, tally.losses) == (tally.compared, 0, {}), tally


@pytest.mark.parametrize("name", ["IZ_1_1.1_Admin_Child_Max_Message", "VXU-V04-02", "OML-O21-03"])
def test_kept_whole_messages_are_written_back_unchanged(name: str) -> None:
    data = raw(name)
    out = HL7V2.encode(decode(data), {}).decode()
    sent = [s for s in data.decode("utf-8-sig").replace("\n", "\r").split("\r") if s and not s.startswith("MSH")]
    assert [s for s in out.split("\r") if s and not s.startswith("MSH")] == sent


# --- ORU PATIENT_OBSERVATION OBX → Observation -----------------------------------------------------


def test_an_orus_patient_group_obx_is_an_observation_of_the_patient() -> None:
    """ORU-R01-01: an OBX after the PID, before the visit and the order (PATIENT_OBSERVATION)."""
    records = decode(raw("ORU-R01-01"))
    (report,) = [r for r in records if isinstance(r, DiagnosticReport)]
    (loose,) = [r for r in records if isinstance(r, Observation)]
    assert loose.code[0].code == "8867-4" and loose.value_type == "RP"
    assert loose.patient is report.patient and loose.encounter is None
    assert loose.extra["hl7v2"]["carried"] is True
    assert [o.code[0].code for o in report.observations] == ["625-4"]  # the report's own stay its own
    (fhir_obs,) = [o for o in resources(bundle(records), "Observation") if o["code"]["coding"][0]["code"] == "8867-4"]
    assert "encounter" not in fhir_obs and "partOf" not in fhir_obs


def test_an_oru_without_obr_reads_its_obx_once() -> None:
    data = b"\r".join(line for line in raw("ORU-R01-RMGEAD").splitlines() if not line.startswith(b"OBR"))
    assert len([r for r in decode(data) if isinstance(r, Observation)]) == 1

"""Issue 13, fifth slice: MDM T01-T11, SIU S12-S26, BAR/DFT kept and routed, ORU^R01 out, and the
round-trip fidelity of every type documented as lossless, measured over the whole corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridge import (
    Appointment,
    ClinicalNote,
    Coding,
    DecodeError,
    DiagnosticReport,
    Encounter,
    HumanName,
    Identifier,
    Observation,
    Patient,
    Period,
    Quantity,
    ReferenceRange,
    Specimen,
    record_to_dict,
)
from bridge.core.config import Route
from bridge.core.router import Router, type_matches
from bridge.plugins.hl7v2 import adt
from bridge.plugins.hl7v2.codec import FORMAT, decode, encode
from bridge.plugins.hl7v2.reader import read_messages
from bridge.testing import assert_format_round_trip
from tests.hl7v2 import fidelity

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "sending_application": "TB"}
UCUM = "http://unitsofmeasure.org"


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def fields_of(raw: bytes, name: str) -> list[str]:
    message = read_messages(raw)[0]
    return next(s for s in message.segments if s.name == name).fields


# --- round-trip fidelity ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured() -> dict[str, fidelity.Tally]:
    return fidelity.measure(fidelity.corpus_files())


def test_every_lossless_message_code_keeps_99_percent_of_its_fields(measured) -> None:
    by_code: dict[str, fidelity.Tally] = {}
    for kind, tally in measured.items():
        by_code.setdefault(kind.split("^")[0], fidelity.Tally()).add(tally)
    assert set(by_code) == {"ADT", "SIU", "MDM", "RDE", "ORU", "BAR", "DFT"}
    for code, tally in by_code.items():
        assert tally.compared > 300, code
        assert tally.ratio >= 0.99, (code, round(100 * tally.ratio, 2), tally.losses)


def test_every_lossless_event_keeps_99_percent_of_its_fields(measured) -> None:
    """Per trigger too, EVN-2 included: the sender's recorded time goes back as sent even where it
    equals its MSH-7 (see docs/hl7v2.md, Round-trip fidelity)."""
    assert len(measured) >= 45
    for kind, tally in measured.items():
        assert tally.ratio >= 0.99, (kind, round(100 * tally.ratio, 2), tally.losses)
        assert "EVN-2" not in tally.losses and "EVN-1" not in tally.losses, kind


def adt_text(evn: str | None) -> bytes:
    lines = ["MSH|^~\\&|EHR|HOSP|TB|TB|20240501093000-0500||ADT^A08^ADT_A01|C1|P|2.5",
             *([evn] if evn is not None else []), "PID|1||M1^^^HOSP^MR||Doe^Ann", "PV1|1|O"]
    return "\r".join(lines).encode() + b"\r"


@pytest.mark.parametrize("evn", ["EVN|A08|20240501093000-0500", "EVN|A08|20240501091500-0500|||OP1",
                                 "EVN||20240501093000-0500", "EVN|A08", "EVN|A08||||OP1", None])
def test_evn_goes_back_as_the_sender_wrote_it(evn: str | None) -> None:
    """EVN-2 equal to MSH-7 is the sender's recorded time, not ours to restamp on a forward or a
    replay; an EVN without EVN-2, or no EVN at all, gets no time of ours either."""
    raw = adt_text(evn)
    records = decode(raw, {})
    out = encode(records, OPTS)
    assert fidelity.compare(read_messages(raw)[0], read_messages(out)[0]).losses == {}
    segments = {s.name: s for s in read_messages(out)[0].segments}
    assert ("EVN" in segments) == (evn is not None)
    if evn is not None:
        assert segments["EVN"].get(2) == read_messages(raw)[0].segment("EVN").get(2)
        assert segments["EVN"].get(1) == "A08"
    assert encode(records, {**OPTS, "message_datetime": "2025-01-01T00:00:00+00:00"}).split(b"\r")[1:] \
        == out.split(b"\r")[1:]  # a later replay: only MSH changes
    assert_format_round_trip(FORMAT, records, OPTS)


def test_the_measure_sees_a_changed_component_and_ignores_escaping() -> None:
    raw = corpus("ADT-A01-01.hl7")
    original = read_messages(raw)[0]
    same = read_messages(raw.replace(b"\n", b"\r"))[0]
    assert fidelity.compare(original, same).ratio == 1.0
    text = raw.decode("utf-8-sig").replace("\n", "\r")
    pid = next(line for line in text.split("\r") if line.startswith("PID"))
    parts = pid.split("|")
    parts[5] = parts[5] + "^X"  # one more name component
    changed = read_messages(text.replace(pid, "|".join(parts)))[0]
    tally = fidelity.compare(original, changed)
    assert tally.losses == {"PID-5": 1} and tally.unchanged == tally.compared - 1


def test_sender_wording_survives_and_a_changed_record_is_written_from_its_values() -> None:
    raw = corpus("ADT-A01-01.hl7")
    (enc, *_rest) = decode(raw, {})
    out = encode([enc, *_rest], OPTS)
    assert fields_of(out, "PID")[2:5] == fields_of(raw, "PID")[2:5]  # PID-2, PID-3, PID-4 as sent
    assert fields_of(out, "PID")[13] == fields_of(raw, "PID")[13]  # XTN components kept
    enc.patient.identifiers = [Identifier(value="NEW1", type="MR")]
    changed = encode([enc, *_rest], OPTS)
    assert fields_of(changed, "PID")[3] == "NEW1^^^^MR" and fields_of(changed, "PID")[2] == ""
    assert fields_of(changed, "PID")[5] == fields_of(raw, "PID")[5]  # the name did not change


# --- MDM T01-T11 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,event,kind", [
    ("MDM-T01-01.hl7", "T01", "original"), ("MDM-T02-01.hl7", "T02", "original"),
    ("MDM-T05-01.hl7", "T05", "addendum"), ("MDM-T06-01.hl7", "T06", "addendum"),
    ("MDM-T09-01.hl7", "T09", "replacement"), ("MDM-T10-01.hl7", "T10", "replacement"),
])
def test_mdm_trigger_says_what_happened_to_the_document(name: str, event: str, kind: str) -> None:
    note = decode(corpus(name), {})[0]  # then its orders, carried
    assert note.document_event == kind
    txa13 = fields_of(corpus(name), "TXA")[13] if len(fields_of(corpus(name), "TXA")) > 13 else ""
    assert (note.parent_document.value if note.parent_document else "") == txa13.split("^")[0]
    out = encode([note], OPTS)
    assert read_messages(out)[0].msh.get(9).split("^")[1] == event


def note(**changes) -> ClinicalNote:
    base = ClinicalNote(identifiers=[Identifier(value="DOC2")], status="final", text="Addendum line.",
                        content_type="text/plain", authored="2024-05-01T10:45:00-05:00",
                        patient=Patient(identifiers=[Identifier(value="MRN1", type="MR")]),
                        document_event="addendum", parent_document=Identifier(value="DOC1", assigner="HOSP"))
    return dataclasses.replace(base, **changes)


def test_mdm_encoder_picks_the_trigger_from_the_document_event() -> None:
    assert read_messages(encode([note()], OPTS))[0].msh.get(9) == "MDM^T06^MDM_T02"
    assert fields_of(encode([note()], OPTS), "TXA")[13] == "DOC1^HOSP"
    cancel = note(document_event="cancel", text=None, content_type=None)
    assert read_messages(encode([cancel], OPTS))[0].msh.get(9) == "MDM^T11^MDM_T01"
    edit_notice = note(document_event="edit", text=None, content_type=None)
    assert read_messages(encode([edit_notice], OPTS))[0].msh.get(9) == "MDM^T07^MDM_T01"
    for record in (note(), cancel, edit_notice):
        decoded, stamps, bare = fidelity.first_pass([record], OPTS)
        assert bare == [record] and stamps == ["20240501100000-0500"]
        assert_format_round_trip(FORMAT, decoded, OPTS)


# --- SIU S12-S26 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,status", [
    ("SIU-S12-01.hl7", "booked"), ("SIU-S13-01.hl7", "booked"), ("SIU-S14-01.hl7", "booked"),
    ("SIU-S15-01.hl7", "cancelled"), ("SIU-S16-01.hl7", "cancelled"), ("SIU-S17-01.hl7", "entered-in-error"),
    ("SIU-S26-01.hl7", "noshow"),
])
def test_siu_status_by_trigger(name: str, status: str) -> None:
    appt = decode(corpus(name), {})[0]
    assert appt.status == status


def test_siu_status_from_the_trigger_when_sch25_is_empty() -> None:
    raw = corpus("SIU-S26-01.hl7").decode("utf-8-sig").replace("\n", "\r")
    sch = next(line for line in raw.split("\r") if line.startswith("SCH"))
    parts = sch.split("|")
    parts[25] = ""
    appt = decode(raw.replace(sch, "|".join(parts)).encode(), {})[0]
    assert appt.status == "noshow"
    assert read_messages(encode([appt], OPTS))[0].msh.get(9).startswith("SIU^S26")


def test_siu_duration_and_tq1_timing_go_back_as_sent() -> None:
    raw = corpus("SIU-S12-01.hl7")
    appt = decode(raw, {})[0]
    out = encode([appt], OPTS)
    assert fields_of(out, "SCH")[9:12] == fields_of(raw, "SCH")[9:12]
    assert fields_of(out, "TQ1")[7:9] == fields_of(raw, "TQ1")[7:9]
    moved = dataclasses.replace(appt, start="2021-09-25T09:30:00+02:15", end="2021-09-25T10:20:00+02:15")
    again = encode([moved], OPTS)
    assert fields_of(again, "TQ1")[7] == "20210925093000+0215"
    assert decode(again, {})[0].start == "2021-09-25T09:30:00+02:15"


def test_new_appointment_statuses_pick_their_trigger() -> None:
    appt = Appointment(identifiers=[Identifier(value="A1", type="PLAC")], status="noshow",
                       start="2024-05-01T10:00:00-05:00", patient=Patient(identifiers=[Identifier(value="M1")]))
    assert read_messages(encode([appt], OPTS))[0].msh.get(9).split("^")[1] == "S26"
    deleted = dataclasses.replace(appt, status="entered-in-error")
    assert read_messages(encode([deleted], OPTS))[0].msh.get(9).split("^")[1] == "S17"
    assert_format_round_trip(FORMAT, [appt], OPTS)


# --- BAR / DFT --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["BAR-P01-01.hl7", "BAR-P02-01.hl7", "BAR-P12-01.hl7", "DFT-P03-01.hl7",
                                  "DFT-P11-01.hl7"])
def test_financial_messages_are_kept_and_go_back_unchanged(name: str) -> None:
    raw = corpus(name)
    records = decode(raw, {})
    assert isinstance(records[0], (Encounter, Patient))
    # PR1 procedures, the PID-18 account, the PV1-54 episode, the FT1 charges, further patients and visits,
    # and the patient's diagnoses, insurance, relatives, guarantors, observations and billed orders are
    # records of their own, carried: their segments and fields stay in the first record's.
    assert all(r.kind in ("Procedure", "Account", "EpisodeOfCare", "ChargeItem", "Patient", "Encounter", "Condition",
                          "Coverage", "RelatedPerson", "Observation", "AllergyIntolerance", "ServiceRequest")
               and r.extra["hl7v2"]["carried"]
               for r in records[1:])
    kept = records[0].extra["hl7v2"]
    original = read_messages(raw)[0]
    assert kept["message_type"] == original.msh.get(9)
    unmapped = {s.name for s in original.segments} - {"MSH", "EVN", "PID", "PV1", "PV2"}
    assert unmapped and {k["segment"][:3] for k in kept["segments"]} >= unmapped  # FT1, GT1, IN1, DG1, PR1…
    out = encode(records, OPTS)
    tally = fidelity.compare(original, read_messages(out)[0])
    assert tally.ratio == 1.0, tally.losses
    assert_format_round_trip(FORMAT, records, OPTS)


def test_a_financial_message_without_pid_is_not_refused() -> None:
    raw = corpus("DFT-P03-01.hl7").decode("utf-8-sig").replace("\n", "\r")
    without = "\r".join(line for line in raw.split("\r") if not line.startswith("PID"))
    (record,) = decode(without.encode(), {})
    assert "no PID" in record.extra["hl7v2"]["warnings"][0]
    assert b"\rPID|" not in encode([record], OPTS)


def test_routes_match_on_the_inbound_message_type() -> None:
    assert type_matches(("BAR",), "BAR^P01^BAR_P01") and type_matches(("DFT^P03",), "DFT^P03")
    assert not type_matches(("DFT^P03",), "DFT^P11^DFT_P11") and not type_matches(("BAR",), "BARX^P01")
    assert not type_matches(("BAR",), None)
    router = Router([Route(to=("billing",), message_types=("BAR", "DFT^P03")),
                     Route(to=("ehr",), records=("Encounter",))])
    assert router.needs_message_type
    enc = decode(corpus("DFT-P03-01.hl7"), {})[0]
    assert set(router.route([enc], "DFT^P03^DFT_P03")) == {"billing", "ehr"}
    assert set(router.route([enc], "DFT^P11^DFT_P11")) == {"ehr"}
    assert not Router([Route(to=("ehr",))]).needs_message_type


def test_config_reads_and_checks_message_type() -> None:
    from bridge.core.config import _message_types, _Problems
    problems = _Problems()
    assert _message_types(["bar", "DFT^P03"], "r", problems) == ("BAR", "DFT^P03")
    assert _message_types("ADT^A08", "r", problems) == ("ADT^A08",)
    assert not problems.items
    _message_types(7, "channels.x.routes[0].when.message_type", problems)
    assert "expected a message type" in str(problems.items)


# --- ORU^R01 out ------------------------------------------------------------------------------------


def report() -> DiagnosticReport:
    mg = Coding(code="mg/dL", display="mg/dL", system=UCUM)
    glucose = Observation(
        identifiers=[], status="final", category="laboratory",
        code=[Coding(code="2345-7", display="Glucose", system="http://loinc.org")], value_type="NM",
        value_quantity=Quantity(value=182.0, unit="mg/dL", code="mg/dL", system=UCUM), units=mg,
        reference_range=ReferenceRange(text="70-99", low=Quantity(value=70.0, unit="mg/dL", code="mg/dL", system=UCUM),
                                       high=Quantity(value=99.0, unit="mg/dL", code="mg/dL", system=UCUM)),
        interpretation=[Coding(code="H", display="High",
                               system="http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation")],
        effective="2024-05-01T08:00:00-05:00", notes=["Fasting sample."])
    comment = Observation(status="preliminary", category="laboratory", code=[Coding(code="COMMENT")],
                          value_type="TX", value_text="line one\nline two", effective="2024-05-01T08:00:00-05:00")
    patient = Patient(identifiers=[Identifier(value="MRN1", type="MR")], name=HumanName(family="Doe", given=["Ann"]))
    return DiagnosticReport(
        identifiers=[Identifier(value="ORD1", type="PLAC"), Identifier(value="F1", type="FILL")], status="final",
        code=[Coding(code="24323-8", display="Metabolic panel", system="http://loinc.org")],
        effective="2024-05-01T08:00:00-05:00", issued="2024-05-01T09:00:00-05:00",
        observations=[glucose, comment],
        # OBR-7 is also the sample's collection time: read back, an ORU without SPM has that Specimen
        specimens=[Specimen(collected=Period(start="2024-05-01T08:00:00-05:00"), patient=patient)],
        patient=patient)


def test_oru_encode_writes_values_units_ranges_flags_and_status() -> None:
    out = encode([report()], OPTS)
    message = read_messages(out)[0]
    assert message.msh.get(9) == "ORU^R01^ORU_R01"
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBR", "OBX", "NTE", "OBX"]
    obr = fields_of(out, "OBR")
    assert obr[2] == "ORD1" and obr[3] == "F1" and obr[4] == "24323-8^Metabolic panel^LN" and obr[25] == "F"
    obx = fields_of(out, "OBX")
    assert obx[2:9] == ["NM", "2345-7^Glucose^LN", "", "182", "mg/dL^mg/dL^UCUM", "70-99", "H"]
    assert obx[11] == "F" and obx[14] == "20240501080000-0500"
    second = [s for s in message.segments if s.name == "OBX"][1].fields
    assert second[2] == "TX" and second[5] == "line one~line two" and second[11] == "P"
    assert_format_round_trip(FORMAT, [report()], OPTS)
    assert decode(out, {"strict": True})  # hl7apy: a conforming v2.5 ORU_R01


def test_a_structured_numeric_and_a_range_value_go_out_as_sn() -> None:
    raw = ("MSH|^~\\&|LAB|C|TB|TB|20240501||ORU^R01^ORU_R01|1|P|2.5.1\rPID|1||M1^^^C^MR\r"
           "OBR|1|O1||TEST^Test\rOBX|1|SN|A^a||<^5|mg\rOBX|2|SN|B^b||^1^-^3\rOBX|3|SN|C^c||^1^:^40\r").encode()
    records = decode(raw, {})
    assert records[0].observations[0].value_quantity.comparator == "<"
    out = encode(records, OPTS)
    assert [s.fields[5] for s in read_messages(out)[0].segments if s.name == "OBX"] == ["<^5", "^1^-^3", "^1^:^40"]
    fresh = [dataclasses.replace(o, extra={}) for o in records[0].observations]
    bare = dataclasses.replace(records[0], observations=fresh, extra={})
    assert decode(encode([bare], OPTS), {})[0].observations == fresh


def test_every_decoded_corpus_oru_encodes_to_its_own_records() -> None:
    checked = 0
    for path in sorted(CORPUS.parent.rglob("*.hl7")):
        text = path.read_bytes()[:300].decode("utf-8", "replace")
        if "ORU^R01" not in text:
            continue
        try:
            records = decode(path.read_bytes(), {})
        except DecodeError:
            continue  # refused with its reason (ORU without OBR and OBX): nothing to send back
        again = decode(encode(records, OPTS), {})
        assert [record_to_dict(r) for r in again] == [record_to_dict(r) for r in records], path.name
        checked += 1
    assert checked >= 12


# --- every ADT event out ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", [f"A{n:02d}" for n in range(1, 63)])
def test_every_adt_event_encodes_back_as_itself(event: str) -> None:
    patient = Patient(identifiers=[Identifier(value="MRN1", type="MR")])
    visit = Encounter(identifiers=[Identifier(value="V1", type="VN")], encounter_class="AMB", patient=patient,
                      extra={"hl7v2": {"event": event}})
    records = decode(encode([visit], OPTS), {})
    message = read_messages(encode(records, OPTS))[0]
    assert message.msh.get(9) == f"ADT^{event}^{adt.STRUCTURES.get(event, 'ADT_A01')}"
    assert fields_of(encode(records, OPTS), "EVN")[1] == event


def test_a_merge_goes_back_with_its_mrg() -> None:
    raw = corpus("ADT-A40-01.hl7")
    records = decode(raw, {})
    out = encode(records, OPTS)
    assert fields_of(out, "MRG")[1:2] == fields_of(raw, "MRG")[1:2]


def test_document_events_reach_fhir_as_relations_and_status() -> None:
    import json

    import bridge.plugins.fhir as fhir_plugin
    from bridge.testing import plugin_manager
    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")

    entries: dict[str, dict] = {}

    def document(record: ClinicalNote) -> dict:
        bundle = json.loads(fhir.encode([record], {}))
        entries.update({e["fullUrl"]: e["resource"] for e in bundle["entry"]})
        return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")

    addendum = document(note())
    assert addendum["status"] == "current"
    target = addendum["relatesTo"][0]["target"]["identifier"]
    assert addendum["relatesTo"][0]["code"] == "appends"
    assert (target["value"], target["assigner"]["display"]) == ("DOC1", "HOSP")
    assert entries[target["assigner"]["reference"]]["name"] == "HOSP"  # the assigning authority's entry
    assert document(note(document_event="replacement"))["relatesTo"][0]["code"] == "replaces"
    assert document(note(document_event="cancel", text=None))["status"] == "entered-in-error"
    back = next(r for r in fhir.decode(fhir.encode([note()], {}), {}) if isinstance(r, ClinicalNote))
    assert back.document_event == "addendum" and back.parent_document.value == "DOC1"


def test_a_channel_routes_charges_to_billing_by_message_type_and_sends_them_unchanged(tmp_path, scripted) -> None:
    from bridge.testing import engine_from_dict, plugin_manager
    plugins = plugin_manager(("scripted", scripted.plugin()), disabled=("telehealth_policy",))
    hl7_dest = {"format": "hl7v2", "retry": {"max_attempts": 1, "initial_seconds": 0}}
    config = {
        "channels": {"feed": {"source": "file://inbox", "format": "hl7v2", "routes": [
            {"when": {"message_type": ["BAR", "DFT"]}, "to": ["billing"]},
            {"when": {"record": "Encounter", "message_type": "ADT"}, "to": ["ehr"]},
        ]}},
        "destinations": {"billing": {"url": "script://billing", **hl7_dest},
                         "ehr": {"url": "script://ehr", **hl7_dest}},
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_destinations()
    charge = corpus("DFT-P03-01.hl7")
    engine.submit("feed", charge, {"file": "dft.hl7"})
    engine.submit("feed", corpus("ADT-A01-01.hl7"), {"file": "adt.hl7"})
    engine.drain()
    assert len(scripted.sent["billing"]) == 1 and len(scripted.sent["ehr"]) == 1
    sent = read_messages(scripted.sent["billing"][0].payload)[0]
    assert sent.msh.get(9) == "DFT^P03^DFT_P03"
    assert fidelity.compare(read_messages(charge)[0], sent).ratio == 1.0
    assert read_messages(scripted.sent["ehr"][0].payload)[0].msh.get(9).startswith("ADT^A01")

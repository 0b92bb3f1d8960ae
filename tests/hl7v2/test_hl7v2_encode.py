"""Encoding records to HL7v2: round trips, structure validation with hl7apy, kept segments."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import bridge.plugins.hl7v2 as hl7v2_plugin
from bridge import (
    Address,
    Appointment,
    ClinicalNote,
    Coding,
    ContactPoint,
    DecodeError,
    EncodeError,
    Encounter,
    HumanName,
    Identifier,
    Medication,
    Patient,
    PatientLocation,
    Period,
    Practitioner,
    Prescription,
    Quantity,
    record_to_dict,
)
from bridge.plugins.hl7v2.codec import FORMAT, decode, encode
from bridge.plugins.hl7v2.validate import problems
from bridge.testing import assert_format_round_trip, plugin_manager
from tests.hl7v2 import fidelity

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "sending_application": "TB", "sending_facility": "TELE"}
ENCODABLE = (*(f"ADT^A{n:02d}" for n in range(1, 63)), *(f"SIU^S{n}" for n in range(12, 27)),
             "RDE^O11", *(f"MDM^T{n:02d}" for n in range(1, 12)), "ORU^R01")


def patient() -> Patient:
    return Patient(
        identifiers=[Identifier(value="MRN123", type="MR", assigner="HOSP", system="urn:oid:2.16.840.1.113883.19.5"),
                     Identifier(value="123-45-6789", system="http://hl7.org/fhir/sid/us-ssn", type="SS")],
        name=HumanName(family="O'Brien&Sons", given=["Ann", "Marie"], prefix="Dr", use="official"),
        birth_date="1980-02", gender="female",
        addresses=[Address(lines=["1 Main St", "Apt 2"], city="Austin", state="TX", postal_code="78701",
                           country="US", use="home")],
        telecom=[ContactPoint(value="5125550100", system="phone", use="home"),
                 ContactPoint(value="ann@example.org", system="email", use="work")])


def doctor() -> Practitioner:
    return Practitioner(npi="1234567893", name=HumanName(family="Lee", given=["Sam"]))


def encounter() -> Encounter:
    return Encounter(
        identifiers=[Identifier(value="V100", type="VN", assigner="HOSP")], status="in-progress", modality="video",
        encounter_class="AMB", period=Period(start="2024-05-01T10:00-05:00"), patient=patient(), practitioner=doctor(),
        patient_location=PatientLocation(country="US", state="TX", at_home=True, source="patient-reported"),
        practitioner_state="CA", consent_captured=True,
        reason=[Coding(code="J06.9", display="URI", system="http://hl7.org/fhir/sid/icd-10")])


def appointment() -> Appointment:
    return Appointment(
        identifiers=[Identifier(value="A1", type="PLAC", assigner="TB")], status="booked",
        start="2024-05-02T09:00:00-05:00", end="2024-05-02T09:30:00-05:00", duration_minutes=30, modality="audio_only",
        reason=[Coding(code="FU", display="Follow up")],
        appointment_type=Coding(code="ROUTINE", display="Routine", system="HL70276"), patient=patient(),
        practitioner=doctor())


def prescription(number: str = "ORD1") -> Prescription:
    return Prescription(
        prescriber_order_number=number, identifiers=[Identifier(value=number, type="PLAC", assigner="TB")],
        status="active", intent="filler-order",
        medication=Medication(description="Amoxicillin 500 MG Oral Capsule", rxnorm="308191", codings=[
            Coding(code="308191", display="Amoxicillin 500 MG Oral Capsule",
                   system="http://www.nlm.nih.gov/research/umls/rxnorm")]),
        quantity=Quantity(value=30.0, unit="capsule", code="C48480", system="NCI"), refills=1,
        sig="Take 1 capsule\nby mouth 3 times daily", substitution_allowed=False,
        written_date="2024-05-01T10:20:00-05:00", patient=patient(), prescriber=doctor(),
        encounter=Encounter(identifiers=[Identifier(value="V100", type="VN")], status="in-progress",
                            encounter_class="AMB", modality="video",
                            patient_location=PatientLocation(state="TX", country="US")))


def note() -> ClinicalNote:
    return ClinicalNote(
        identifiers=[Identifier(value="DOC1")], status="final", note_type=Coding(code="CN", system="HL70270"),
        text="Visit by video.\nPatient | stable ^ improving & eating \\ well.", content_type="text/plain",
        authored="2024-05-01T10:45:00-05:00", author=doctor(), patient=patient(), document_event="original",
        encounter=Encounter(identifiers=[Identifier(value="V100", type="VN")], status="in-progress",
                            encounter_class="AMB", modality="video"))


def addendum() -> ClinicalNote:
    return dataclasses.replace(note(), document_event="addendum", identifiers=[Identifier(value="DOC2")],
                               parent_document=Identifier(value="DOC1", assigner="HOSP"))


def cancelled_note() -> ClinicalNote:
    return dataclasses.replace(note(), document_event="cancel", text=None, content_type=None)


def finished() -> Encounter:
    return dataclasses.replace(encounter(), status="finished",
                               period=Period(start="2024-05-01T10:00-05:00", end="2024-05-01T10:30-05:00"))


def cancelled() -> Encounter:
    return dataclasses.replace(encounter(), status="cancelled")


BUILDERS = [encounter, finished, cancelled, appointment, prescription, note, addendum, cancelled_note]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_records_round_trip(build) -> None:
    records = [build()]
    decoded, stamps, bare = fidelity.first_pass(records, OPTS)
    assert [record_to_dict(r) for r in bare] == [record_to_dict(r) for r in records]
    assert set(stamps) <= {"20240501100000-0500"}  # EVN-2 of ADT/MDM: the time the message was written
    assert_format_round_trip(FORMAT, decoded, OPTS)


@pytest.mark.parametrize(("build", "header"), [
    (encounter, "ADT^A04^ADT_A01"), (finished, "ADT^A03^ADT_A03"), (cancelled, "ADT^A11^ADT_A09"),
    (appointment, "SIU^S12^SIU_S12"), (prescription, "RDE^O11^RDE_O11"), (note, "MDM^T02^MDM_T02"),
])
def test_encoded_messages_conform_to_their_structure(build, header: str) -> None:
    raw = encode([build()], OPTS)
    assert raw.decode().split("\r")[0].split("|")[8] == header
    assert problems(raw) == []


def test_a08_update_is_kept_and_conforms() -> None:
    record = dataclasses.replace(encounter(), extra={"hl7v2": {"event": "A08"}})
    raw = encode([record], OPTS)
    assert "ADT^A08^ADT_A01" in raw.decode() and problems(raw) == []
    assert encode([encounter()], {**OPTS, "adt_event": "A08"}).decode().split("\r")[1] == "EVN|A08|20240501100000-0500"


def test_rde_validation_is_real_not_a_rubber_stamp() -> None:
    """Our own RDE grouping still lets hl7apy catch a broken order (here: no RXE)."""
    text = encode([prescription()], OPTS).decode()
    broken = "\r".join(s for s in text.split("\r") if not s.startswith("RXE"))
    assert any("RDE_O11" in p for p in problems(broken))


def test_two_orders_of_one_patient_share_one_rde() -> None:
    raw = encode([prescription("ORD1"), prescription("ORD2")], OPTS)
    text = raw.decode()
    assert text.count("MSH|") == 1 and text.count("\rORC|") == 2
    assert problems(raw) == []
    assert_format_round_trip(FORMAT, [prescription("ORD1"), prescription("ORD2")], OPTS)


def test_control_id_comes_from_options_else_a_stable_digest() -> None:
    first = encode([encounter()], OPTS).decode().split("|")
    assert first[9].startswith("TB") and first[9] == encode([encounter()], OPTS).decode().split("|")[9]
    other = encode([appointment()], OPTS).decode().split("|")
    assert other[9] != first[9]
    given = encode([encounter()], {**OPTS, "message_control_id": "X|42"}).decode()
    assert given.split("\r")[0].split("|")[9] == "X\\F\\42"
    with pytest.raises(EncodeError, match="2 messages"):
        encode([encounter(), note()], {**OPTS, "message_control_id": "X1"})


def test_msh_carries_the_sender_options() -> None:
    msh = encode([encounter()], OPTS).decode().split("\r")[0].split("|")
    assert msh[2:7] == ["TB", "TELE", "", "", "20240501100000-0500"] and msh[10:12] == ["P", "2.5"]


def test_unencodable_records_are_refused() -> None:
    with pytest.raises(EncodeError, match="Patient"):
        encode([patient()], OPTS)
    with pytest.raises(EncodeError, match="no records"):
        encode([], OPTS)


def test_z_and_unknown_segments_survive_a_round_trip() -> None:
    raw = (b"MSH|^~\\&|EHR|C|TB|TB|20240501||ADT^A04^ADT_A01|C1|P|2.5\r"
           b"EVN|A04|20240501\rPID|1||M1^^^C^MR||DOE^JO\rZPI|1|loyalty^gold\r"
           b"PV1|1|O|||||||||||||||||V1\rXYZ|unknown segment\rZVN|1|x\\F\\y\r")
    (enc,) = decode(raw, {})
    assert [s["segment"] for s in enc.extra["hl7v2"]["segments"]] == [
        "ZPI|1|loyalty^gold", "XYZ|unknown segment", "ZVN|1|x\\F\\y"]
    out = encode([enc], OPTS).decode().split("\r")
    names = [s[:3] for s in out if s]
    assert names == ["MSH", "EVN", "PID", "ZPI", "PV1", "XYZ", "ZVN"]
    assert_format_round_trip(FORMAT, [enc], OPTS)


def test_kept_segments_of_a_custom_separator_message_are_rewritten_safely() -> None:
    raw = (b"MSH$%~\\&$EHR$C$TB$TB$20240501$$ADT%A04$C1$P$2.5\r"
           b"EVN$A04\rPID$1$$M1%%%C%MR$$DOE%JO\rZPI$a|b%c\r")
    (enc,) = decode(raw, {})
    assert enc.extra["hl7v2"]["segments"][0]["segment"] == "ZPI|a\\F\\b^c"


def _corpus_messages() -> list[Path]:
    out = []
    for path in sorted(CORPUS.rglob("*.hl7")):
        head = path.read_bytes()[:400].decode("utf-8", "replace").replace("\n", "\r")
        fields = head.lstrip("\ufeff").split("\r", 1)[0].split("|")
        if len(fields) > 8 and "^".join(fields[8].split("^")[:2]) in ENCODABLE:
            out.append(path)
    return out


def test_decoded_corpus_messages_round_trip() -> None:
    """encode → decode gives our records back, and a second encode is byte-identical."""
    checked = 0
    for path in _corpus_messages():
        try:
            records = decode(path.read_bytes(), {})
        except DecodeError:
            continue
        for record in records:  # a malformed inbound MSH-7 is kept for inspection, not re-sent
            record.extra.get("hl7v2", {}).get("fields", {}).pop("MSH-7", None)
        first = encode(records, OPTS)
        again = decode(first, {})
        assert [record_to_dict(r) for r in again] == [record_to_dict(r) for r in records], path.name
        assert encode(again, OPTS) == first, path.name
        checked += 1
    assert checked >= 200


def test_plugin_registers_the_format() -> None:
    manager = plugin_manager(("hl7v2", hl7v2_plugin))
    spec = manager.format("hl7v2")
    assert spec.media_type == "x-application/hl7-v2+er7" and spec.file_extension == "hl7"
    assert spec.peek(encode([encounter()], OPTS)).sending_application == "TB"
    assert spec.decode(encode([encounter()], OPTS), {})[0].patient.name.family == "O'Brien&Sons"


def test_strict_mode_refuses_what_hl7apy_rejects_and_passes_the_rest() -> None:
    good = encode([encounter()], OPTS)
    assert decode(good, {"strict": True}) == decode(good, {})
    kitchen_sink = (CORPUS / "fhir-converter-input" / "RDE-O11-01.hl7").read_bytes()
    assert decode(kitchen_sink, {})  # lenient by default
    with pytest.raises(DecodeError, match="strict validation failed: RDE_O11 does not conform"):
        decode(kitchen_sink, {"strict": True})

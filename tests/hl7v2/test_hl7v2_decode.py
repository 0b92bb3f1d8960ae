"""Decoding each supported message type into records, and the telehealth convention both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import ConfigError, Encounter, PatientLocation
from bridge.plugins.hl7v2.codec import FORMAT, decode, encode
from bridge.testing import assert_format_round_trip
from tests.hl7v2 import fidelity

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00"}


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_adt_a01_kitchen_sink_maps_patient_and_encounter() -> None:
    encounter, *background = decode(corpus("fhir-converter-input/ADT-A01-01.hl7"), {})
    assert [r.kind for r in background] == ["AllergyIntolerance", "Condition", "Procedure", "Coverage", "Account",
                                            "EpisodeOfCare", "RelatedPerson", "RelatedPerson",
                                            "Observation", "Condition", "Procedure", "Procedure",
                                            "Observation", "Observation", "Observation",
                                            "ServiceRequest"]  # PID-21, NK1, OBX, PDA (cause, certification,
    # autopsy), PDA/ACC
    # flags (test_death_accident_observations.py), RF1
    # GT1-11 SEL: the patient guarantees the bill, no RelatedPerson. PDA-1: the cause of death.
    death = background[-7]
    certification = background[-6]  # PDA-3 Y: signed PDA-4, by PDA-5 (VRDR's Death Certification)
    assert (certification.code.code, certification.performed) == ("308646001", "2021-11-02T12:30:00+01:15")
    assert certification.performers[0].practitioner.name.family == "DeathCert"
    autopsy = background[-5]  # PDA-6 Y: performed over PDA-7 (start ^ end), by PDA-8
    assert (autopsy.code.code, autopsy.code.system, autopsy.status) == ("29240004", "http://snomed.info/sct", "completed")
    assert (autopsy.performed, autopsy.performed_end) == ("2021-11-02T10:30:00+01:15", "2021-11-02T11:30:00+01:15")
    assert autopsy.performers[0].practitioner.name.family == "Autopsy" and autopsy.performers[0].function is None
    assert autopsy.patient is encounter.patient and autopsy.extra["hl7v2"]["carried"]
    assert (death.code.code, death.code.display) == ("I21", "Acute myocardial infarction")
    assert death.recorded == "2021-11-02T12:30:00+01:15" and death.asserter.name.family == "DeathCert"  # PDA-4, -5
    referral = background[-1]  # RF1-1 P (pending): on hold; RF1-3 EXTERNAL is its kind
    assert (referral.category, referral.status, referral.intent) == ("referral", "on-hold", "order")
    assert referral.referral_type.code == "EXTERNAL" and referral.extra["hl7v2"]["carried"]
    patient = encounter.patient
    assert patient.name.family == "EVERYMAN" and patient.name.given == ["ADAM", "A"]
    assert patient.name.prefix == "Dr." and patient.name.suffix == "III" and patient.name.use == "usual"
    assert patient.birth_date == "1988-08-18T11:26+02:15"  # minute precision and offset as sent
    assert patient.gender == "male"
    assert patient.identifiers[1].value == "PATID1234" and patient.identifiers[1].type == "MR"
    assert patient.identifiers[1].assigner == "test1" and patient.identifiers[1].system == "2.16.1"
    assert patient.identifiers[-1].system == "http://hl7.org/fhir/sid/us-ssn"
    assert patient.addresses[0].lines == ["1000 Hospital Lane", "Ste. 123"]
    assert (patient.addresses[0].city, patient.addresses[0].state) == ("Ann Arbor ", "MI")
    assert [c.value for c in patient.telecom] == ["78788788", "12121212", "7777", "1111"]
    assert encounter.status == "in-progress" and encounter.encounter_class == "PRENC"
    assert encounter.period.start == "2015-02-08T11:34:19+01:10"
    assert encounter.identifiers[0].value == "40007716" and encounter.identifiers[0].type == "VN"
    assert encounter.practitioner.name.family == "Alaz"
    assert encounter.reason[0].code == "140004" and encounter.reason[0].system == "http://snomed.info/sct"
    kept = encounter.extra["hl7v2"]
    assert kept["event"] == "A01"
    assert kept["fields"]["PV1-3"].startswith("HUH AE OMU")
    assert {s["segment"][:3] for s in kept["segments"]} >= {"SFT", "NK1", "OBX", "GT1", "IN1", "PDA"}
    assert patient.extra["hl7v2"]["fields"]["PID-10"] == "2106-3^White^HL70005~2028-9^Asian^HL70005"


@pytest.mark.parametrize(("name", "status"), [
    ("ADT-A03-01.hl7", "finished"), ("ADT-A11-01.hl7", "cancelled"), ("ADT-A04-01.hl7", "in-progress"),
    ("ADT-A08-01.hl7", "finished"), ("ADT-A08-02.hl7", "planned"),
])
def test_adt_events_set_the_encounter_status(name: str, status: str) -> None:
    assert decode(corpus(f"fhir-converter-input/{name}"), {})[0].status == status


def test_siu_appointment() -> None:
    appt, *companions = decode(corpus("fhir-converter-input/SIU-S12-01.hl7"), {})
    assert all(r.extra["hl7v2"]["carried"] for r in companions)  # AIS's service, PID-21's mother
    assert [(i.value, i.type) for i in appt.identifiers] == [("12345", "PLAC"), ("36996", "FILL")]
    assert appt.status == "booked"
    # TQ1-7/8 (the v2.5+ place) wins over the deprecated SCH-11.4/5, as in Microsoft's expected output
    assert (appt.start, appt.end) == ("2021-09-24T09:30:00+02:15", "2021-09-24T10:20:00+02:15")
    without_tq1 = b"\r".join(line for line in corpus("fhir-converter-input/SIU-S12-01.hl7").replace(b"\n", b"\r")
                              .split(b"\r") if not line.startswith(b"TQ1"))
    fallback = decode(without_tq1, {})[0]
    assert (fallback.start, fallback.end) == ("2020-10-01T11:26+02:15", "2020-10-09T11:26+02:15")
    assert appt.reason[0].code == "EMERGENCY" and appt.appointment_type.code == "Normal"
    assert appt.practitioner.name.family == "GE"
    assert decode(corpus("fhir-converter-input/SIU-S15-01.hl7"), {})[0].status == "cancelled"


def test_rde_orders_become_prescriptions() -> None:
    first, second, *companions = decode(corpus("fhir-converter-input/RDE-O11-02.hl7"), {})
    assert all(r.extra["hl7v2"]["carried"] for r in companions)  # next of kin, insurance, mother
    assert first.prescriber_order_number == "1163422591" and second.prescriber_order_number == "1422591"
    assert first.status == "active" and first.intent == "filler-order"
    assert first.medication.ndc == "0143963401"
    assert first.medication.codings[0].system == "http://hl7.org/fhir/sid/ndc"
    assert (first.quantity.value, first.quantity.unit, first.quantity.code) == (3.0, "Bag", "BG")
    assert first.refills == 12
    assert first.written_date == "2019-11-04T06:27:26+02:15"
    assert first.sig.splitlines()[0] == "Titrate to BP less than 180"
    assert first.patient is second.patient
    # the TQ1/RXR after RXE are the encoded order's; the RXO group before it is kept whole
    assert first.extra["hl7v2"]["fields"]["RXR-1"] == "IV^Intravenous"
    assert [s["segment"][:3] for s in first.extra["hl7v2"]["segments"]][:3] == ["TQ1", "RXO", "RXR"]


def test_omp_order_becomes_a_prescription() -> None:
    (rx,) = decode(corpus("lfh-hl7v2-fhir-converter/Hl7OMPMessageTest/"
                          "testOMPO09MinimumPatientAndMinimumOrderGroups_0.hl7"), {})
    assert rx.intent == "original-order"
    assert rx.medication.description == "hydrALAZINE HCl 25 MG Oral Tablet"
    assert rx.medication.ndc == "50111032701"


def test_mdm_note_text_and_author() -> None:
    note, *companions = decode(corpus("fhir-converter-input/MDM-T02-02.hl7"), {})
    # its ORC/OBR, then PID-18's account, carried
    assert [r.kind for r in companions] == ["ServiceRequest", "ServiceRequest", "Account"]
    assert note.status == "final" and note.note_type.code == "DI"
    assert note.text.startswith("Toilet cylinder crackers") and "\n" in note.text
    assert note.authored == "2008-01-31T15:55+02:15"
    assert note.patient is not None


# --- telehealth -------------------------------------------------------------------------------------

BASE = (
    "MSH|^~\\&|EHR|CLINIC|TB|TB|20240501101500-0500||ADT^A04^ADT_A01|C1|P|2.5\r"
    "EVN|A04|20240501101500-0500\r"
    "PID|1||MRN1^^^CLINIC^MR||DOE^JO||19800215|F|||1 Main St^^Austin^TX^78701^US^H\r"
    "PV1|1|O||||||||{pv1_10}||||||||{pv1_18}|V1^^^^VN\r"
)


def adt(pv1_10: str = "", pv1_18: str = "", z: str = "") -> bytes:
    return (BASE.format(pv1_10=pv1_10, pv1_18=pv1_18) + z).encode()


def test_default_convention_reads_the_zth_segment() -> None:
    (enc,) = decode(adt(z="ZTH|1|AUDIO|NM|US|N|CA|Y|patient-reported\r"), {})
    assert enc.modality == "audio_only"
    assert enc.patient_location == PatientLocation(country="US", state="NM", at_home=False, source="patient-reported")
    assert enc.practitioner_state == "CA" and enc.consent_captured is True
    assert "segments" not in enc.extra.get("hl7v2", {})  # ZTH is consumed, not kept as unknown


def test_no_marker_means_no_modality() -> None:
    (enc,) = decode(adt(), {})
    assert enc.modality is None and enc.patient_location is None


def test_pv1_18_convention_with_site_codes() -> None:
    options = {"telehealth": {"modality_field": "PV1-18", "codes": {"TV": "video", "TA": "audio_only"},
                              "location_state_field": "ZTH-3"}}
    (enc,) = decode(adt(pv1_18="TV"), options)
    assert enc.modality == "video"
    out = encode([enc], {**options, **OPTS}).decode()
    pv1 = next(s for s in out.split("\r") if s.startswith("PV1"))
    assert pv1.split("|")[18] == "TV"
    assert_format_round_trip(FORMAT, [enc], {**options, **OPTS})


def test_pv1_10_service_code_convention() -> None:
    options = {"telehealth": {"modality_field": "PV1-10", "codes": {"TELEVID": "video", "TELEAUD": "audio_only"}}}
    assert decode(adt(pv1_10="TELEAUD"), options)[0].modality == "audio_only"
    (enc,) = decode(adt(pv1_10="CARD"), options)  # not a telehealth code: kept as it was
    assert enc.modality is None and enc.extra["hl7v2"]["fields"]["PV1-10"] == "CARD"
    assert decode(encode([enc], {**options, **OPTS}), options)[0].extra["hl7v2"]["fields"]["PV1-10"] == "CARD"


def test_home_address_fallback_is_flagged() -> None:
    options = {"telehealth": {"home_address_fallback": True}}
    (enc,) = decode(adt(z="ZTH|1|VIDEO\r"), options)
    assert enc.patient_location == PatientLocation(state="TX", source="home-address-fallback")
    assert decode(adt(z="ZTH|1|VIDEO\r"), {})[0].patient_location is None  # off by default
    assert decode(adt(z="ZTH|1|INPERSON\r"), options)[0].patient_location is None  # only for virtual visits
    # the guess is not written out as if reported: it is derived again on decode
    out = encode([enc], {**options, **OPTS}).decode()
    assert "ZTH|1|VIDEO\r" in out
    assert_format_round_trip(FORMAT, [enc], {**options, **OPTS})


def test_encode_writes_the_convention() -> None:
    enc = Encounter(status="in-progress", modality="async", encounter_class="AMB",
                    patient_location=PatientLocation(state="WA", country="US", at_home=True))
    assert "\rZTH|1|ASYNC|WA|US|Y\r" in encode([enc], OPTS).decode()
    decoded, stamps, bare = fidelity.first_pass([enc], OPTS)  # EVN-2: the recorded time, kept
    assert bare == [enc] and stamps == ["20240501100000-0500"]
    assert_format_round_trip(FORMAT, decoded, OPTS)


@pytest.mark.parametrize(("options", "key"), [
    ({"telehealth": {"modality_field": "PV1"}}, "modality_field"),
    ({"telehealth": {"codes": {"X": "hologram"}}}, "codes"),
    ({"telehealth": {"colour": "blue"}}, "colour"),
    ({"telehealth": "ZTH"}, "telehealth"),
])
def test_bad_convention_is_a_config_error(options: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode(adt(), options)
    assert key in str(info.value)


def test_disabled_convention_keeps_zth_as_unknown_segment() -> None:
    (enc,) = decode(adt(z="ZTH|1|VIDEO\r"), {"telehealth": False})
    assert enc.modality is None
    assert enc.extra["hl7v2"]["segments"][-1]["segment"] == "ZTH|1|VIDEO"


@pytest.mark.parametrize("control, status", [("CA", "cancelled"), ("DC", "stopped"), ("HD", "on-hold"),
                                             ("NW", "active")])
def test_order_control_becomes_an_r4_medication_request_status(control: str, status: str) -> None:
    """ORC-1 as FHIR R4 MedicationRequest.status codes (R4 has no "revoked"), and back to ORC-1."""
    raw = corpus("fhir-converter-input/RDE-O11-02.hl7").replace(b"ORC|NW|", f"ORC|{control}|".encode(), 1)
    first = decode(raw, {})[0]
    assert first.status == status
    assert f"\rORC|{control}|".encode() in encode([first], {"message_control_id": "TB1"})

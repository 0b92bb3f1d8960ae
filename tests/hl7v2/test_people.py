"""The people a message names (issue 13): PV1/PV2/PD1 providers, ROL, PRT and PRD roles, result
interpreters and observers, document authenticators, as Participants of the records decoded from
Microsoft's FHIR-Converter samples (tests/fixtures/hl7v2/corpus, see NOTICE). They are derived from
fields the decoder keeps as read, so the HL7v2 round trip stays byte-exact."""

from __future__ import annotations

from bridge import (
    ClinicalNote,
    DiagnosticReport,
    Encounter,
    HumanName,
    Identifier,
    Immunization,
    Participant,
    Practitioner,
    PractitionerRole,
    ServiceRequest,
)
from bridge.plugins.hl7v2.codec import decode, encode

from .test_orders import INPUT


def sample(name: str) -> list:
    return decode((INPUT / f"{name}.hl7").read_bytes(), {})


def person(part: Participant) -> Practitioner | None:
    return part.role.practitioner if part.role is not None else part.practitioner


def family(part: Participant) -> str | None:
    found = person(part)
    return found.name.family if found is not None and found.name is not None else None


def codes(part: Participant) -> list[str]:
    return [c.code for c in part.role.code] if part.role is not None else []


def test_a_visits_providers_are_participants_with_what_they_did() -> None:
    encounter = sample("ADT-A01-01")[0]
    assert isinstance(encounter, Encounter)
    assert encounter.practitioner is not None and encounter.practitioner.name.family == "Alaz"  # PV1-7
    plain = [(p.function, family(p) or person(p).identifiers[0].value) for p in encounter.participants
             if p.role is None]
    assert plain == [("REF", "Woolfson"), ("CON", "Condoc"), ("ADM", "DISNEY"), ("PART", "Othhel"),
                     ("REF", "Hippocrates")]  # PV1-8, PV1-9, PV1-17, PV1-52, PV2-13
    (rol,) = [p for p in encounter.participants if p.role is not None]  # the ROL after PV2
    assert (rol.function, family(rol), codes(rol)) == ("PART", "Smith", ["PP"])
    assert [c.code for c in rol.role.specialty] == ["408443003"]
    assert [(t.system, t.value) for t in rol.role.telecom] == [("email", "fred@nnnn.com")]
    (place,) = rol.role.locations
    assert place.physical_type == "bd" and place.name == "Bed 03" and place.part_of.name == "OMU B"


def test_the_patients_primary_care_providers_come_from_pd1_4_and_a_pp_rol() -> None:
    patient = sample("ADT-A01-01")[0].patient
    found = [(p.function, family(p), codes(p)) for p in patient.general_practitioners]
    assert found == [("PART", "Hippo", ["PP"]), ("PART", "Smith", ["PP"])]
    assert patient.general_practitioners[0].role.code[0].system == "HL70443"


def test_pv1_37_is_where_the_patient_went() -> None:
    place = sample("ADT-A01-01")[0].destination
    assert (place.name, place.mode, [(i.value, i.system) for i in place.identifiers]) == \
        ("Homes", "kind", [("22", "FDK")])


def test_a_reports_interpreters_technician_and_prt_roles_with_their_places() -> None:
    (report,) = [r for r in sample("ORU-R01-01") if isinstance(r, DiagnosticReport)]
    found = [(p.function, codes(p), [place.name for place in p.role.locations]) for p in report.participants]
    # its PRT names only a place: a role at that place that no one in particular holds
    assert found == [("RESP", ["PI"], ["Bed3"]), ("PRF", ["TN"], ["Bed2"]), ("ADM", ["AD"], ["B"])]
    assert report.participants[2].role.practitioner is None and report.participants[2].practitioner is None
    interpreter = report.participants[0].role
    assert family(report.participants[0]) == "Raud" and interpreter.practitioner.identifiers[0].value == "Harry"
    chain, place = [], interpreter.locations[0]
    while place is not None:
        chain.append((place.physical_type, place.name))
        place = place.part_of
    assert chain == [("bd", "Bed3"), ("ro", "Room-4"), (None, "Poc-32"), ("lvl", "FL-2"), ("bu", "Building-4"),
                     ("si", "Facility-3")]  # OBR-32's NDL place, read as a PL


def test_a_results_medical_director_is_a_role_beside_its_observer() -> None:
    (report,) = [r for r in sample("ORU-R01-01") if isinstance(r, DiagnosticReport)]
    observation = report.observations[0]
    assert observation.performer.name.family == "Aly"  # OBX-16, the record's own field
    lab = observation.performing_organization  # OBX-23
    found = [(p.function, family(p), codes(p), p.role.organization) for p in observation.participants][:2]
    assert found == [("RESP", "Aly", ["RO"], lab),  # OBX-16: the observer of the lab OBX-23 names
                     ("RESP", "Atchinson", ["MDIR"], lab)]  # OBX-25: its medical director
    assert lab is not None and lab.name


def test_an_observer_without_a_named_lab_has_no_role_of_their_own() -> None:
    """Without OBX-23 the RO role would say only what Observation.performer says."""
    raw = (b"MSH|^~\\&|LAB|F|EHR|F|20240101120000||ORU^R01|M1|P|2.5.1\r"
           b"PID|1||123^^^H^MR||DOE^JANE\r"
           b"OBR|1|PL1|FL1|1234-5^TEST^LN\r"
           b"OBX|1|NM|1234-5^TEST^LN||7|mg|||||F|||20240101||123^OBSERVER^OLGA\r")
    (report,) = [r for r in decode(raw, {}) if isinstance(r, DiagnosticReport)]
    observation = report.observations[0]
    assert observation.performer.name.family == "OBSERVER"
    assert observation.participants == []


def test_a_referrals_providers_are_in_their_prd_roles_at_their_places() -> None:
    (request,) = [r for r in sample("REF-I12-01") if isinstance(r, ServiceRequest)]
    found = [(p.function, codes(p), family(p), [place.name for place in p.role.locations])
             for p in request.participants]
    assert found == [("REF", ["RP"], "POWELL", ["GENERAL FACILITY"]),
                     ("CON", ["RT"], "McWILLIAMS", ["GI FACILITY"])]
    assert person(request.participants[0]) == request.requester
    assert [person(request.participants[1])] == request.performers


def test_a_documents_authenticator_and_a_vaccines_orderer() -> None:
    (note,) = [r for r in sample("MDM-T02-01") if isinstance(r, ClinicalNote)]
    assert [(p.function, family(p)) for p in note.participants] == [("AUTHEN", "Doctorovich")]  # TXA-22
    (shot,) = [r for r in sample("VXU-V04-01") if isinstance(r, Immunization)]
    # ORC-12, then the ORC's PRT: a place (Street-5) and no person
    assert [(p.function, codes(p)) for p in shot.participants] == [("AUT", ["OP"]), ("ADM", ["AD"])]
    assert shot.participants[1].role.practitioner is None and shot.participants[1].role.locations[0].name == "B"


def test_a_deleted_role_names_nobody() -> None:
    raw = (INPUT / "ADT-A01-01.hl7").read_bytes().replace(b"ROL|1|AD|PP^Primary Care Provider^HL70443|12377H87",
                                                          b"ROL|1|DE|PP^Primary Care Provider^HL70443|12377H87")
    encounter = decode(raw, {})[0]
    assert [p for p in encounter.participants if p.role is not None] == []
    assert [family(p) for p in encounter.patient.general_practitioners] == ["Hippo"]


def test_people_leave_the_hl7v2_round_trip_unchanged() -> None:
    for name in ("ADT-A01-01", "ORU-R01-01", "MDM-T02-01"):
        records = sample(name)
        again = decode(encode(records, {}), {})
        assert [r.participants for r in again if hasattr(r, "participants")] == \
            [r.participants for r in records if hasattr(r, "participants")], name


def test_a_visits_providers_from_another_format_are_written_to_pv1() -> None:
    referring = Practitioner(npi="1234567893", name=HumanName(family="Example", given=["Morgan"]))
    consulting = Practitioner(identifiers=[Identifier(value="C-77", type="DN")], name=HumanName(family="Sample"))
    encounter = Encounter(status="in-progress", encounter_class="AMB", participants=[
        Participant(function="REF", practitioner=referring), Participant(function="CON", practitioner=consulting),
        Participant(function="PART", role=PractitionerRole(practitioner=consulting))])  # a role has no PV1 field
    raw = encode([encounter], {"message_datetime": "2026-11-20T10:00:00-06:00"})
    pv1 = next(line for line in raw.decode().split("\r") if line.startswith("PV1|")).split("|")
    assert pv1[8].startswith("1234567893^Example^Morgan") and pv1[9].startswith("C-77^Sample")
    again = decode(raw, {})[0]
    assert [(p.function, family(p)) for p in again.participants] == [("REF", "Example"), ("CON", "Sample")]


def test_an_appointments_contacts_and_who_booked_it() -> None:
    appointment = sample("SIU-S12-01")[0]  # then its companions, carried (tests/hl7v2/test_carried_orders.py)
    found = [(p.function, [(c.code, c.display) for c in p.role.code], family(p),
              [place.name for place in p.role.locations], [t.value for t in p.role.telecom])
             for p in appointment.participants]
    assert found == [
        ("CALLBCK", [("", "Placer contact person")], "Smith", ["FLOOR2"], ["(608)271-9000"]),  # SCH-12/13/15
        ("CALLBCK", [("", "Filler contact person")], "Smith", ["FLOOR2"], ["(608)271-9000"]),  # SCH-16/17/19
        ("ENT", [("EP", "Entering Provider")], "DENT", ["FLOOR1"], ["(610)271-9000"])]  # SCH-20/21/22


def test_a_prt_that_names_a_person_gives_the_role_that_person() -> None:
    raw = (INPUT / "ORU-R01-01.hl7").read_bytes()
    assert b"PRT||AD||AD||PPT|||Order room 136" in raw  # PRT-5 empty: only PRT-9, a place
    with_person = raw.replace(b"PRT||AD||AD||PPT|||Order room 136", b"PRT||AD||AD|77^Placeholder|PPT|||Order room 136")
    (report,) = [r for r in decode(with_person, {}) if isinstance(r, DiagnosticReport)]
    assert [(family(p), codes(p), [place.name for place in p.role.locations]) for p in report.participants][-1] == \
        ("Placeholder", ["AD"], ["B"])

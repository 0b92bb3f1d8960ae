"""People in FHIR (issue 13): each Participant where FHIR R4 has an element for it, PractitionerRole
for a stated role, Practitioner and PractitionerRole once per Bundle with stable keys, read back to
the same records. Messages: Microsoft's FHIR-Converter samples (tests/fixtures/hl7v2/corpus)."""

from __future__ import annotations

import json
from typing import Any

from bridge import (
    Appointment,
    Coding,
    DiagnosticReport,
    Encounter,
    Participant,
    Practitioner,
    PractitionerRole,
    Prescription,
    ServiceRequest,
    localize_records,
    record_to_dict,
)
from bridge.plugins.fhir.constants import PARTICIPATION_TYPE
from bridge.plugins.fhir.people import SID_PRACTITIONER_KEY, SID_ROLE_KEY
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2
from tests.hl7v2.test_orders import INPUT

from .test_adt_background import check_valid, of_type, system_problems


def records_of(name: str) -> list[Any]:
    records = HL7V2.decode((INPUT / f"{name}.hl7").read_bytes(), {})
    localize_records(records, "America/Chicago")
    return records


def bundle_of(fhir_format: Any, name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    bundle = json.loads(fhir_format.encode(records_of(name), {}))
    check_valid(bundle)
    assert system_problems(bundle) == []
    return bundle, {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def first(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    return of_type(bundle, rtype)[0]["resource"]


def role_code(role: dict[str, Any]) -> str:
    return role["code"][0]["coding"][0]["code"]


def test_a_visits_participants_carry_their_participation_type(fhir_format) -> None:
    bundle, urls = bundle_of(fhir_format, "ADT-A01-01")
    encounter = first(bundle, "Encounter")
    found = []
    for part in encounter["participant"]:
        coding = part["type"][0]["coding"][0]
        assert coding["system"] == PARTICIPATION_TYPE
        target = urls[part["individual"]["reference"]]
        found.append((coding["code"], target["resourceType"]))
    assert found == [("PPRF", "Practitioner"), ("REF", "Practitioner"), ("CON", "Practitioner"),
                     ("ADM", "Practitioner"), ("PART", "Practitioner"), ("REF", "Practitioner"),
                     ("PART", "PractitionerRole")]
    role = urls[encounter["participant"][-1]["individual"]["reference"]]
    assert role_code(role) == "PP" and role["code"][0]["coding"][0]["system"].endswith("/v2-0443")
    assert urls[role["practitioner"]["reference"]]["name"][0]["family"] == "Smith"
    assert [urls[r["reference"]]["name"] for r in role["location"]] == ["Bed 03"]
    assert role["specialty"][0]["coding"][0] == {"system": "http://snomed.info/sct", "code": "408443003",
                                                 "display": "General practice"}


def test_general_practitioners_and_the_discharge_destination(fhir_format) -> None:
    bundle, urls = bundle_of(fhir_format, "ADT-A01-01")
    patient = first(bundle, "Patient")
    roles = [urls[r["reference"]] for r in patient["generalPractitioner"]]
    roles = [r for r in roles if r["resourceType"] != "Organization"]  # PD1-3, the primary facility
    assert [(r["resourceType"], role_code(r)) for r in roles] == [("PractitionerRole", "PP")] * 2
    assert [urls[r["practitioner"]["reference"]]["name"][0]["family"] for r in roles] == ["Hippo", "Smith"]
    place = urls[first(bundle, "Encounter")["hospitalization"]["destination"]["reference"]]
    assert (place["name"], place["mode"], place["identifier"][0]["value"]) == ("Homes", "kind", "22")


def test_each_person_and_role_is_one_conditional_create_with_a_stable_key(fhir_format) -> None:
    bundle, _ = bundle_of(fhir_format, "ADT-A01-01")
    for rtype, key_system in (("Practitioner", SID_PRACTITIONER_KEY), ("PractitionerRole", SID_ROLE_KEY)):
        entries = of_type(bundle, rtype)
        bodies = [json.dumps(e["resource"], sort_keys=True) for e in entries]
        assert len(bodies) == len(set(bodies)), f"a {rtype} is written twice"
        for entry in entries:
            assert entry["request"]["method"] == "POST" and "ifNoneExist" in entry["request"]
        if rtype == "PractitionerRole":
            assert all(e["request"]["ifNoneExist"].startswith(f"identifier={key_system}|") for e in entries)
    keyed = [e for e in of_type(bundle, "Practitioner") if SID_PRACTITIONER_KEY in e["request"]["ifNoneExist"]]
    assert keyed  # PV1-17 "37^DISNEY^WALT^^^^^^AccMgr" names no system a server could match
    assert fhir_format.encode(records_of("ADT-A01-01"), {}) == fhir_format.encode(records_of("ADT-A01-01"), {})


def test_a_reports_interpreter_technician_and_a_results_medical_director(fhir_format) -> None:
    bundle, urls = bundle_of(fhir_format, "ORU-R01-01")
    report = first(bundle, "DiagnosticReport")
    (interpreter,) = [urls[r["reference"]] for r in report["resultsInterpreter"]]
    assert role_code(interpreter) == "PI" and urls[interpreter["location"][0]["reference"]]["name"] == "Bed3"
    performers = [urls[r["reference"]] for r in report["performer"]]
    assert [role_code(p) for p in performers] == ["TN", "AD"]  # AD: the OBR's PRT, a place and no person
    assert "practitioner" not in performers[1] and urls[performers[1]["location"][0]["reference"]]["name"] == "B"
    observation = next(e["resource"] for e in of_type(bundle, "Observation")
                       if any(role_code(urls[r["reference"]]) == "MDIR" for r in e["resource"].get("performer", [])
                              if urls[r["reference"]]["resourceType"] == "PractitionerRole"))
    performers = [urls[r["reference"]] for r in observation["performer"]]
    # OBX-16's observer in role RO for the OBX-23 lab stands in for the plain performer (named once)
    roles = [p for p in performers if p["resourceType"] == "PractitionerRole"]
    observer, director = performers[0], next(p for p in roles if role_code(p) == "MDIR")
    assert role_code(observer) == "RO" and observer["organization"] == director["organization"]
    people = [p["practitioner"]["reference"] for p in roles if "practitioner" in p]
    plain = [r["reference"] for r in observation["performer"] if urls[r["reference"]]["resourceType"] == "Practitioner"]
    assert observer["practitioner"]["reference"] not in plain and len(set(people)) == len(people)


def test_a_referral_requester_and_performer_are_their_prd_roles(fhir_format) -> None:
    bundle, urls = bundle_of(fhir_format, "REF-I12-01")
    request = first(bundle, "ServiceRequest")
    assert role_code(urls[request["requester"]["reference"]]) == "RP"
    performers = [urls[r["reference"]] for r in request["performer"]]
    assert [role_code(r) for r in performers if r["resourceType"] == "PractitionerRole"] == ["RT"]
    assert [r["resourceType"] for r in performers if r["resourceType"] != "PractitionerRole"] == ["Organization"]
    assert "supportingInfo" not in request


def _who(part: dict[str, Any]) -> tuple[Any, ...]:
    holder = part.get("role") or {}
    person = holder.get("practitioner") or part.get("practitioner") or {}
    return (part.get("function"), [c["code"] for c in holder.get("code", [])],
            (person.get("name") or {}).get("family"), [i["value"] for i in person.get("identifiers", [])],
            [place.get("name") for place in holder.get("locations", [])])


def _people(records: list[Any]) -> list[Any]:
    """Who took part in what, as (function, role codes, family, identifier values, places)."""
    out = []
    for record in records:
        holders = [record, getattr(record, "patient", None), getattr(record, "encounter", None),
                   *getattr(record, "observations", [])]
        for holder in (record_to_dict(h) for h in holders if h is not None):
            for name in ("participants", "general_practitioners"):
                out.append([_who(p) for p in holder.get(name, [])])
            for name in ("performer", "requester", "prescriber", "author", "practitioner"):  # their own field
                out.append(_who({"practitioner": holder[name]}) if holder.get(name) else None)
    return out


def test_participants_survive_a_fhir_round_trip(fhir_format) -> None:
    for name in ("ADT-A01-01", "ORU-R01-01", "REF-I12-01", "MDM-T02-01", "VXU-V04-01", "SIU-S12-01"):
        records = records_of(name)
        kinds = (Encounter, DiagnosticReport, ServiceRequest, Appointment)
        first_pass = fhir_format.encode(records, {})
        decoded = fhir_format.decode(first_pass, {})
        mine = [r for r in records if isinstance(r, kinds) or r.kind in ("ClinicalNote", "Immunization")]
        theirs = [r for r in decoded if type(r) in {type(m) for m in mine}]
        assert any(_people(mine)) and _people(theirs) == _people(mine), name
        assert fhir_format.encode(decoded, {}) == first_pass, name  # read back, written the same


def test_an_ehrs_practitioner_role_requester_names_the_prescriber(fhir_format) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:rx", "resource": {
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "308191"}]},
            "subject": {"reference": "urn:uuid:pat"}, "requester": {"reference": "urn:uuid:role"}}},
        {"fullUrl": "urn:uuid:pat", "resource": {"resourceType": "Patient", "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.3.999.2", "value": "MRN00012345"}]}},
        {"fullUrl": "urn:uuid:role", "resource": {
            "resourceType": "PractitionerRole", "practitioner": {"reference": "urn:uuid:doc"},
            "code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "OP"}]}]}},
        {"fullUrl": "urn:uuid:doc", "resource": {
            "resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi",
                                                            "value": "1234567893"}]}}]}
    (rx,) = [r for r in fhir_format.decode(json.dumps(bundle).encode(), {}) if isinstance(r, Prescription)]
    assert isinstance(rx.prescriber, Practitioner) and rx.prescriber.npi == "1234567893"
    (part,) = rx.participants
    assert isinstance(part.role, PractitionerRole) and part.function == "AUT"
    assert part.role.practitioner is rx.prescriber
    rx.extra = {}  # as our own record (an EHR's elements kept as sent would be written back as sent)
    again = json.loads(fhir_format.encode([rx], {}))
    (request,) = [e["resource"] for e in again["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    urls = {e["fullUrl"]: e["resource"] for e in again["entry"]}
    assert urls[request["requester"]["reference"]]["resourceType"] == "PractitionerRole"  # one reference, not two



def test_an_appointments_contacts_are_supporting_information(fhir_format) -> None:
    bundle, urls = bundle_of(fhir_format, "SIU-S12-01")
    appointment = first(bundle, "Appointment")
    roles = [urls[r["reference"]] for r in appointment["supportingInformation"]]
    assert [r["code"][0] for r in roles] == [
        {"text": "Placer contact person"}, {"text": "Filler contact person"},
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "EP",
                     "display": "Entering Provider"}]}]
    assert all(r["resourceType"] == "PractitionerRole" and r["telecom"] for r in roles)


def test_a_second_requester_goes_to_supporting_information(fhir_format) -> None:
    records = records_of("ORM-O01-01")
    (request,) = [r for r in records if isinstance(r, ServiceRequest)][:1]
    other = Practitioner(identifiers=[], name=None, npi="1234567893")
    request.participants.append(Participant(function="REF", role=PractitionerRole(
        practitioner=other, code=[Coding(code="RP", system="HL70443")])))
    bundle = json.loads(fhir_format.encode([request], {}))
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    (resource,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
                   and "code" in e["resource"]]  # not the OBR-29 parent named by number
    assert urls[resource["requester"]["reference"]]["resourceType"] == "Practitioner"  # ORC-12, the record's own
    assert [role_code(urls[r["reference"]]) for r in resource["supportingInfo"]][-1] == "RP"
    (again,) = [r for r in fhir_format.decode(json.dumps(bundle).encode(), {}) if isinstance(r, ServiceRequest)]
    assert again.participants[-1].function == "REF" and again.participants[-1].role.practitioner.npi == "1234567893"

"""Location and Organization in FHIR (issue 13): an HL7v2 visit's places become a chain of Location
resources (bed partOf room partOf ward … partOf site) that Encounter.location references, its
servicing facility the Encounter's serviceProvider; conditional keys make re-delivery idempotent."""

from __future__ import annotations

import json
import re

from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import (
    Encounter,
    EncounterLocation,
    Identifier,
    Location,
    Organization,
    Patient,
    Pharmacy,
)
from bridge.plugins.fhir import constants as C
from bridge.plugins.fhir.bindings import bundle_violations
from bridge.plugins.hl7v2.codec import decode as hl7_decode

OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00"}
PATIENT = Patient(identifiers=[Identifier(value="M1", system="urn:oid:2.16.840.1.113883.3.999.2", type="MR")])
PID = "PID|1||MRN00012345^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR||Testpatient^Alex^J||19800412|F"


def adt(pv1_3: str, pv1_6: str = "", pv1_39: str = "", control: str = "1") -> bytes:
    fields = ["1", "I", pv1_3, "", "", pv1_6] + [""] * 12 + ["V20261120-0042^^^RIVERBEND^VN"] + [""] * 19 + [pv1_39]
    return "\r".join([f"MSH|^~\\&|EHR|RIVERBEND|TB|TB|20261120104500||ADT^A01|CTL{control}|P|2.5", PID,
                      "|".join(["PV1", *fields])]).encode() + b"\r"


def bundle_of(fhir_format, raw: bytes) -> dict:
    return json.loads(fhir_format.encode(hl7_decode(raw, OPTS), {}))


def by_url(bundle: dict) -> dict[str, dict]:
    return {e["fullUrl"]: e for e in bundle["entry"]}


def test_pv1_3_becomes_a_chain_of_locations_the_encounter_points_at(fhir_format) -> None:
    bundle = bundle_of(fhir_format, adt("4W^412^A^RIVERBEND", pv1_39="RB01^Riverbend Hospital"))
    entries = by_url(bundle)
    encounter = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    (part,) = encounter["location"]
    assert part["status"] == "active"
    names, types = [], []
    ref = part["location"]["reference"]
    while ref:
        location = entries[ref]["resource"]
        assert location["resourceType"] == "Location" and location["mode"] == "instance"
        names.append(location["name"])
        types.append(((location.get("physicalType") or {}).get("coding") or [{}])[0].get("code"))
        ref = (location.get("partOf") or {}).get("reference")
    assert names == ["A", "412", "4W", "RIVERBEND"] and types == ["bd", "ro", None, "si"]
    provider = entries[encounter["serviceProvider"]["reference"]]["resource"]
    assert provider["resourceType"] == "Organization" and provider["name"] == "Riverbend Hospital"
    assert bundle_violations(bundle) == []
    R4BBundle.model_validate(bundle)


def authorities(bundle: dict) -> set[str]:
    """fullUrls that some identifier's assigner references."""
    return set(re.findall(r'"assigner": \{"reference": "([^"]+)"', json.dumps(bundle)))


def test_locations_and_organizations_are_conditional_creates_on_a_derived_key(fhir_format) -> None:
    bundle = bundle_of(fhir_format, adt("4W^412^A^RIVERBEND", pv1_39="RB01"))
    for entry in bundle["entry"]:
        rtype = entry["resource"]["resourceType"]
        if rtype in ("Location", "Organization"):
            system = C.SID_LOCATION_KEY if rtype == "Location" else C.SID_ORGANIZATION_KEY
            # an identifier's assigner is keyed by its OID when the sender gave one
            keys = (system, "urn:ietf:rfc:3986") if entry["fullUrl"] in authorities(bundle) else (system,)
            assert entry["request"]["method"] == "POST"
            assert entry["request"]["ifNoneExist"].startswith(tuple(f"identifier={k}|" for k in keys))


def test_the_same_bed_is_one_resource_and_another_bed_another(fhir_format) -> None:
    def keys(raw: bytes) -> dict[str, str]:
        return {e["resource"]["name"]: e["request"]["ifNoneExist"] for e in bundle_of(fhir_format, raw)["entry"]
                if e["resource"]["resourceType"] == "Location"}

    first, again = keys(adt("4W^412^A^RIVERBEND", control="1")), keys(adt("4W^412^A^RIVERBEND", control="2"))
    assert first == again
    other = keys(adt("4W^413^A^RIVERBEND"))
    assert other["RIVERBEND"] == first["RIVERBEND"] and other["4W"] == first["4W"]
    assert other["A"] != first["A"]  # bed A of room 413 is not bed A of room 412


def test_rooms_sharing_one_namespace_oid_are_still_two_places(fhir_format) -> None:
    """Senders reuse one HD universal id for a namespace of rooms (Microsoft's ADT-A06 samples)."""
    bundle = bundle_of(fhir_format, adt("SP^ROOM2&2.16.840.1.113883.4.642.1.1108&ISO^^FAC",
                                        pv1_6="WAIT^ROOM1&2.16.840.1.113883.4.642.1.1108&ISO^^FAC"))
    rooms = {e["resource"]["name"]: e for e in bundle["entry"]
             if e["resource"]["resourceType"] == "Location" and e["resource"]["name"].startswith("ROOM")}
    assert set(rooms) == {"ROOM1", "ROOM2"}
    assert rooms["ROOM1"]["request"]["ifNoneExist"] != rooms["ROOM2"]["request"]["ifNoneExist"]
    assert rooms["ROOM1"]["resource"]["identifier"][1] == {"system": "urn:ietf:rfc:3986",
                                                          "value": "urn:oid:2.16.840.1.113883.4.642.1.1108"}


def test_encounter_places_decode_back_to_the_same_records(fhir_format) -> None:
    records = hl7_decode(adt("4W^412^A^RIVERBEND", pv1_6="ER^2^^RIVERBEND", pv1_39="RB01^Riverbend Hospital"), OPTS)
    back = fhir_format.decode(fhir_format.encode(records, {}), {})
    assert back[0].locations == records[0].locations
    assert back[0].service_provider == records[0].service_provider


def test_an_ehrs_encounter_location_and_service_provider_decode(fhir_format) -> None:
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:enc", "resource": {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "location": [{"location": {"reference": "Location/bed"}, "status": "completed",
                          "period": {"start": "2026-11-20T08:00:00-06:00"}}],
            "serviceProvider": {"reference": "Organization/hosp"}}},
        {"resource": {"resourceType": "Location", "id": "bed", "name": "Bed 7", "status": "active",
                      "physicalType": {"coding": [{"system": C.LOCATION_PHYSICAL_TYPE, "code": "bd"}]},
                      "partOf": {"reference": "Location/ward"}}},
        {"resource": {"resourceType": "Location", "id": "ward", "name": "Ward 3",
                      "managingOrganization": {"reference": "Organization/hosp"}}},
        {"resource": {"resourceType": "Organization", "id": "hosp", "name": "General",
                      "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.999.5", "value": "GEN"}]}},
    ]}
    (encounter,) = fhir_format.decode(json.dumps(doc).encode(), {})
    (part,) = encounter.locations
    assert part.status == "completed" and part.period.start == "2026-11-20T08:00:00-06:00"
    assert part.location.name == "Bed 7" and part.location.physical_type == "bd" and part.location.status == "active"
    assert part.location.part_of.name == "Ward 3"
    assert isinstance(encounter.service_provider, Organization) and encounter.service_provider.name == "General"
    assert part.location.part_of.managing_organization == encounter.service_provider


def test_an_organization_no_reference_asks_for_stays_a_pharmacy(fhir_format) -> None:
    doc = {"resourceType": "Organization", "name": "Corner Pharmacy",
           "identifier": [{"system": C.NCPDP, "value": "9912345"}]}
    (record,) = fhir_format.decode(json.dumps(doc).encode(), {})
    assert isinstance(record, Pharmacy) and record.ncpdp_id == "9912345"


def test_a_location_record_of_its_own_round_trips(fhir_format) -> None:
    site = Location(name="RIVERBEND", mode="instance", physical_type="si",
                    managing_organization=Organization(name="Riverbend Hospital",
                                                       identifiers=[Identifier(value="RB01", type="FI")]))
    bed = Location(name="A", mode="instance", physical_type="bd", part_of=site)
    encounter = Encounter(identifiers=[Identifier(value="V1", system="urn:oid:2.16.840.1.113883.3.999.3", type="VN")],
                          status="in-progress",
                          patient=PATIENT,
                          locations=[EncounterLocation(location=bed, status="active", temporary=True)])
    raw = fhir_format.encode([bed, encounter], {})
    assert fhir_format.decode(raw, {}) == [bed, encounter]
    assert bundle_violations(json.loads(raw)) == []


def test_an_insurers_coverage_payor_is_an_organization_entry(fhir_format) -> None:
    """IN1-3/IN1-4 name the payer: Coverage.payor references a payer Organization (conditional create on
    the payer's identifier), and keeps the identifier and display it had."""
    from bridge import Coverage

    coverage = Coverage(status="active", payer_name="Prairie Health Insurance",
                        payer_identifiers=[Identifier(value="PHI-0001", system="urn:oid:2.16.840.1.113883.3.999.9")],
                        member_id="XJP123456789",
                        patient=PATIENT)
    raw = fhir_format.encode([coverage], {})
    bundle = json.loads(raw)
    entries = by_url(bundle)
    (payor,) = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Coverage")["payor"]
    assert payor["display"] == "Prairie Health Insurance" and payor["identifier"]["value"] == "PHI-0001"
    payer = entries[payor["reference"]]
    assert payer["resource"]["resourceType"] == "Organization"
    assert payer["resource"]["name"] == "Prairie Health Insurance"
    assert payer["resource"]["type"][0]["coding"][0]["code"] == "pay"
    assert payer["request"]["ifNoneExist"] == "identifier=urn:oid:2.16.840.1.113883.3.999.9|PHI-0001"
    assert fhir_format.decode(raw, {}) == [coverage]
    assert bundle_violations(bundle) == []


def test_a_payor_known_only_by_its_organization_gives_the_payer(fhir_format) -> None:
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": "Patient/p"},
                      "payor": [{"reference": "Organization/ins"}]}},
        {"resource": {"resourceType": "Patient", "id": "p"}},
        {"resource": {"resourceType": "Organization", "id": "ins", "name": "Prairie Health Insurance",
                      "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.999.9", "value": "PHI-0001"}]}},
    ]}
    records = fhir_format.decode(json.dumps(doc).encode(), {})
    assert [r.kind for r in records] == ["Coverage"]  # the payer is the coverage's, not a record of its own
    assert records[0].payer_name == "Prairie Health Insurance"
    assert [(i.value, i.system) for i in records[0].payer_identifiers] == [("PHI-0001",
                                                                            "urn:oid:2.16.840.1.113883.3.999.9")]


def test_an_appointments_places_are_location_participants(fhir_format) -> None:
    from bridge import Appointment

    site = Location(name="GHH Hospital", physical_type="si", mode="instance")
    appointment = Appointment(identifiers=[Identifier(value="APT-1", system="urn:oid:2.16.840.1.113883.3.999.4",
                                                      type="PLAC")],
                              status="booked", start="2026-11-27T09:00:00-06:00",
                              patient=PATIENT,
                              locations=[Location(name="Room 55", physical_type="ro", mode="instance", part_of=site)])
    raw = fhir_format.encode([appointment], {})
    bundle = json.loads(raw)
    entries = by_url(bundle)
    resource = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment")
    kinds = [entries[p["actor"]["reference"]]["resource"]["resourceType"] for p in resource["participant"]]
    assert kinds == ["Patient", "Location"]
    assert all(p["status"] == "accepted" for p in resource["participant"])
    assert fhir_format.decode(raw, {}) == [appointment]
    assert bundle_violations(bundle) == []


def test_a_place_code_outside_its_r4_value_set_is_refused_by_path(fhir_format) -> None:
    import pytest

    from bridge import DecodeError

    doc = {"resourceType": "Location", "name": "Bed 7", "status": "open"}
    with pytest.raises(DecodeError) as caught:
        fhir_format.decode(json.dumps(doc).encode(), {})
    assert "Location.status" in str(caught.value) and "active, suspended, inactive" in str(caught.value)
    assert "'open'" in str(caught.value) and "object at 0x" not in str(caught.value)
    encounter = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                      "location": [{"location": {"reference": "Location/b"}, "status": "here"}]}},
        {"resource": {"resourceType": "Location", "id": "b", "name": "Bed 7"}}]}
    with pytest.raises(DecodeError) as caught:
        fhir_format.decode(json.dumps(encounter).encode(), {})
    assert "location[0].status" in str(caught.value) and "planned, active, reserved, completed" in str(caught.value)

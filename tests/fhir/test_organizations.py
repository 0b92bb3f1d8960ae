"""Organizations a hospital's message names, in FHIR (issue 13), on Microsoft's samples: identifier
assigning authorities as Identifier.assigner, PD1-3 as Patient.generalPractitioner, IN1-11 as
Coverage.policyHolder, RXA-17 as Immunization.manufacturer; one entry per organization, stable ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import Coverage, Identifier, Patient
from bridge.plugins.fhir.assigners import URI_SYSTEM
from bridge.plugins.fhir.bindings import bundle_violations
from bridge.plugins.hl7v2.codec import decode as hl7_decode

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00"}


def bundle_of(fhir_format: Any, name: str) -> dict[str, Any]:
    return json.loads(fhir_format.encode(hl7_decode((SAMPLES / name).read_bytes(), OPTS), {}))


def by_url(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e for e in bundle["entry"]}


def first(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype)


def identifier(resource: dict[str, Any], value: str) -> dict[str, Any]:
    return next(i for i in resource["identifier"] if i.get("value") == value)


def test_each_assigning_authority_is_an_organization_the_identifier_references(fhir_format) -> None:
    # ADT-A01-01 PID-3: PATID1234^5^M11^test1&2.16.1&HCD^MR~123456789^^^USSSA^SS
    bundle = bundle_of(fhir_format, "ADT-A01-01.hl7")
    entries = by_url(bundle)
    patient = first(bundle, "Patient")
    mrn = identifier(patient, "PATID1234")
    assert mrn["system"] == "urn:oid:2.16.1" and mrn["assigner"]["display"] == "test1"
    authority = entries[mrn["assigner"]["reference"]]
    assert authority["resource"]["name"] == "test1"
    assert authority["resource"]["identifier"] == [{"system": URI_SYSTEM, "value": "urn:oid:2.16.1"}]
    assert authority["request"] == {"method": "POST", "url": "Organization",
                                    "ifNoneExist": "identifier=urn:ietf:rfc:3986|urn:oid:2.16.1"}
    ssn = entries[identifier(patient, "123456789")["assigner"]["reference"]]["resource"]
    assert ssn["name"] == "USSSA"  # no universal id: keyed by name (organization-key)
    visit = identifier(first(bundle, "Encounter"), "40007716")  # PV1-19 ^^^AccMng&1.2&HCD
    assert entries[visit["assigner"]["reference"]]["resource"]["identifier"][0]["value"] == "urn:oid:1.2"
    assert bundle_violations(bundle) == []
    R4BBundle.model_validate(bundle)


def test_an_authority_is_one_entry_however_many_identifiers_name_it(fhir_format) -> None:
    bundle = bundle_of(fhir_format, "ADT-A01-01.hl7")
    keys = [e["request"].get("ifNoneExist") for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization"]
    assert len(keys) == len(set(keys))
    # 1.3.6.1.4.1.44750.1.2.2 is the universal id of several namespaces in this message: one authority
    assert keys.count("identifier=urn:ietf:rfc:3986|urn:oid:1.3.6.1.4.1.44750.1.2.2") == 1
    referenced = {i["assigner"]["reference"] for e in bundle["entry"] for i in e["resource"].get("identifier", [])
                  if "assigner" in i}
    assert all(url in by_url(bundle) for url in referenced)


def test_the_same_message_gives_the_same_organizations(fhir_format) -> None:
    once, again = bundle_of(fhir_format, "ADT-A01-01.hl7"), bundle_of(fhir_format, "ADT-A01-01.hl7")
    assert once == again
    urls = [e["fullUrl"] for e in once["entry"] if e["resource"]["resourceType"] == "Organization"]
    assert len(urls) >= 10


def test_pd1_3_is_the_patients_general_practitioner_organization(fhir_format) -> None:
    # PD1|S^^ACR||LINDAS TEST ORGANIZATION^^SIISCLIENT818|...
    records = hl7_decode((SAMPLES / "ADT-A01-01.hl7").read_bytes(), OPTS)
    patient = next(r.patient for r in records if getattr(r, "patient", None) is not None)
    assert patient.primary_facility.name == "LINDAS TEST ORGANIZATION"
    assert patient.primary_facility.identifiers == [Identifier(value="SIISCLIENT818")]
    bundle = json.loads(fhir_format.encode(records, {}))
    (ref,) = [g for g in first(bundle, "Patient")["generalPractitioner"]
              if by_url(bundle)[g["reference"]]["resource"]["resourceType"] == "Organization"]
    org = by_url(bundle)[ref["reference"]]
    assert org["resource"]["name"] == "LINDAS TEST ORGANIZATION"
    assert org["request"]["ifNoneExist"].startswith("identifier=https://telemed-bridge.org/fhir/sid/organization-key|")


def test_in1_11_is_the_coverages_policy_holder_with_in1_44_its_address(fhir_format) -> None:
    # IN1-11 "Sam P. Hil", IN1-44 2000 MILKY WAY^^VERONA^WI^53593^US
    bundle = bundle_of(fhir_format, "ADT-A01-01.hl7")
    coverage = first(bundle, "Coverage")
    holder = by_url(bundle)[coverage["policyHolder"]["reference"]]["resource"]
    assert holder["resourceType"] == "Organization" and holder["name"] == "Sam P. Hil"
    assert holder["address"] == [{"line": ["2000 MILKY WAY"], "city": "VERONA", "state": "WI", "postalCode": "53593",
                                  "country": "US"}]
    assert coverage["payor"][0]["reference"] != coverage["policyHolder"]["reference"]


def test_an_in1_without_a_group_employer_has_no_policy_holder(fhir_format) -> None:
    # ADT01-23: two IN1 name "Cartoon Ducks Inc" in IN1-11, the third (SELF PAY) names none
    bundle = bundle_of(fhir_format, "ADT01-23.hl7")
    holders = {c["payor"][0]["display"]: c.get("policyHolder") for c in
               (e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Coverage")}
    assert holders["SELF PAY"] is None
    assert {by_url(bundle)[h["reference"]]["resource"]["name"] for p, h in holders.items() if p != "SELF PAY"} == \
        {"Cartoon Ducks Inc"}


def test_the_vaccine_maker_is_an_organization_keyed_by_its_mvx_code(fhir_format) -> None:
    bundle = bundle_of(fhir_format, "VXU-V04-01.hl7")
    immunization = first(bundle, "Immunization")
    maker = immunization["manufacturer"]
    org = by_url(bundle)[maker["reference"]]
    assert org["resource"]["identifier"] == [maker["identifier"]]
    assert org["resource"]["name"] == maker["display"]
    assert org["request"]["ifNoneExist"] == f"identifier={maker['identifier']['system']}|{maker['identifier']['value']}"


def test_organizations_come_back_as_the_records_fields_not_as_records(fhir_format) -> None:
    records = hl7_decode((SAMPLES / "ADT-A01-01.hl7").read_bytes(), OPTS)
    raw = fhir_format.encode(records, {})
    back = fhir_format.decode(raw, {})
    assert [r.kind for r in back] == [r.kind for r in records]
    patient = next(r.patient for r in back if getattr(r, "patient", None) is not None)
    assert isinstance(patient, Patient) and patient.primary_facility.name == "LINDAS TEST ORGANIZATION"
    coverage = next(r for r in back if isinstance(r, Coverage))
    assert coverage.policy_holder.name == "Sam P. Hil"
    assert fhir_format.encode(back, {}) == raw
    # a Bundle without our record marks: the authorities and facilities are not records of their own
    unmarked = json.loads(raw)
    for entry in unmarked["entry"]:
        entry.pop("extension", None)
    kinds = {r.kind for r in fhir_format.decode(json.dumps(unmarked).encode(), {})}
    assert "Pharmacy" not in kinds and "Organization" not in kinds


def test_every_sample_with_organizations_is_valid(fhir_format) -> None:
    for name in ("ADT-A01-01.hl7", "ADT01-23.hl7", "VXU-V04-01.hl7", "ORU-R01-01.hl7", "RDE-O11-01.hl7"):
        bundle = bundle_of(fhir_format, name)
        assert bundle_violations(bundle) == [], name
        R4BBundle.model_validate(bundle)


def test_a_referrals_authorized_provider_rf1_19_is_a_performer_of_the_request(fhir_format) -> None:
    bundle = bundle_of(fhir_format, "REF-I12-01.hl7")
    request = first(bundle, "ServiceRequest")
    targets = [by_url(bundle)[p["reference"]]["resource"] for p in request["performer"]]
    kinds = [(t["resourceType"], t.get("name")) for t in targets]
    assert ("Organization", "Radiant Health Hospital") in kinds
    assert kinds[0][0] == "PractitionerRole"  # the referred-to provider (PRD RT, in its role) stays first
    back = [r for r in fhir_format.decode(json.dumps(bundle).encode(), {}) if r.kind == "ServiceRequest"]
    assert back[0].performing_organization.name == "Radiant Health Hospital"
    assert len(back[0].performers) == 1


def test_identifiers_kept_from_someone_elses_fhir_leave_no_unreferenced_authority(fhir_format) -> None:
    # the official Patient example: identifier assigner {"display": "Acme Healthcare"} comes back as it was
    examples = Path(__file__).resolve().parents[1] / "fixtures" / "fhir" / "r4-examples"
    raw = (examples / "patient-example.json").read_bytes()
    bundle = json.loads(fhir_format.encode(fhir_format.decode(raw, {}), {}))
    assert first(bundle, "Patient")["identifier"] == json.loads(raw)["identifier"]
    assert [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization"
            and e["resource"].get("name") == "Acme Healthcare"] == []


def test_an_adt_referrals_authorized_professional_rf1_20_is_a_performer_beside_rf1_19(fhir_format) -> None:
    """RF1-20 (XCN, v2.7+) names who the referral authorizes: ServiceRequest.performer, beside the
    authorized provider organization RF1-19. A REF's PRD of role RT would take precedence."""
    bundle = bundle_of(fhir_format, "ADT-A01-01.hl7")
    request = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
                   and any(c.get("code") == "3457005" for cat in e["resource"].get("category", [])
                           for c in cat.get("coding", [])))  # SNOMED CT "Patient referral"
    targets = [by_url(bundle)[p["reference"]]["resource"] for p in request["performer"]]
    people = [t["name"][0] for t in targets if t["resourceType"] == "Practitioner"]
    assert [(n["family"], n["given"][0]) for n in people] == [("Beverly", "Crusher")]
    assert [t["resourceType"] for t in targets].count("Organization") == 1  # RF1-19
    back = [r for r in fhir_format.decode(json.dumps(bundle).encode(), {})
            if r.kind == "ServiceRequest" and r.category == "referral"]
    assert [p.name.family for p in back[0].performers] == ["Beverly"]

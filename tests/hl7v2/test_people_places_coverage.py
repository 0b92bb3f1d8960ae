"""Issue 13, people slice: the visits, places, people and organizations a message names that used
to stay kept only as segments (an RDS's visit, a procedure's performers and place, a role's
organization) now reach FHIR as the resources they are, while the HL7v2 round trip stays lossless."""

from __future__ import annotations

import json
from pathlib import Path

import bridge.plugins.fhir as fhir_plugin
from bridge import Prescription
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages
from bridge.testing import plugin_manager
from tests.hl7v2 import fidelity

INPUT = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "sending_application": "TB"}


def sample(name: str) -> bytes:
    return (INPUT / f"{name}.hl7").read_bytes()


def bundle_of(records: list) -> list[dict]:
    fhir = plugin_manager(("fhir", fhir_plugin)).format("fhir")
    return [e for e in json.loads(fhir.encode(records, {}))["entry"]]


def lossless(name: str, records: list) -> bool:
    out = encode(records, OPTS)
    return fidelity.compare(read_messages(sample(name))[0], read_messages(out)[0]).ratio == 1.0


def test_a_dispensed_order_names_the_visit_of_the_rds() -> None:
    records = decode(sample("RDS-O13-02"), {})
    orders = [r for r in records if isinstance(r, Prescription)]
    assert len(orders) == 2 and orders[0].encounter is not None and orders[0].encounter is orders[1].encounter
    visit = orders[0].encounter
    assert visit.encounter_class == "IMP" and visit.status == "in-progress"  # PV1-2 I, no discharge
    assert [i.value for i in visit.identifiers if i.type == "VN"] == ["40007716"]  # PV1-19
    assert visit.locations and visit.practitioner.name.family == "Alaz"  # PV1-3, PV1-7
    entries = bundle_of(records)
    (encounter,) = [e for e in entries if e["resource"]["resourceType"] == "Encounter"]
    requests = [e["resource"] for e in entries if e["resource"]["resourceType"] == "MedicationRequest"]
    assert [r["encounter"]["reference"] for r in requests] == [encounter["fullUrl"]] * 2
    assert lossless("RDS-O13-02", records)


def test_a_procedure_names_where_it_was_done_and_who_else_took_part() -> None:
    from bridge import Procedure
    for name in ("BAR-P12-01", "DFT-P03-01"):  # PR1 read by the financial decoder too
        records = decode(sample(name), {})
        procs = [r for r in records if isinstance(r, Procedure)]
        assert procs and all(p.location is None or p.location.name for p in procs), name
        assert lossless(name, records)
    (adt,) = [r for r in decode(sample("ADT-A01-01"), {}) if isinstance(r, Procedure)
              and r.status == "unknown"]  # the PR1's, not the PDA's autopsy
    assert adt.location.part_of.name == "OT" and len(adt.participants) == 1


def test_a_procedure_from_another_format_writes_its_place_to_pr1_23() -> None:
    from bridge import Encounter, Identifier, Location, Patient, Procedure, Coding
    patient = Patient(identifiers=[Identifier(value="MRN1", type="MR")])
    visit = Encounter(identifiers=[Identifier(value="V1", type="VN")], status="finished", patient=patient)
    room = Location(name="201", physical_type="ro", part_of=Location(name="OT"))
    proc = Procedure(status="unknown", code=Coding(code="64483", system="http://www.ama-assn.org/go/cpt"),
                     location=room, patient=patient, encounter=visit)
    out = encode([visit, proc], OPTS)
    pr1 = next(s for s in read_messages(out)[0].segments if s.name == "PR1")
    assert pr1.get(23) == "OT^201"
    (back,) = [r for r in decode(out, {}) if isinstance(r, Procedure)]
    assert (back.location.name, back.location.part_of.name) == ("201", "OT")


def test_a_role_names_the_organization_it_is_held_for() -> None:
    from bridge import Encounter, Procedure
    records = decode(sample("ADT-A01-01"), {})
    visit = records[0]
    assert isinstance(visit, Encounter)
    (rol,) = [p for p in visit.participants if p.role is not None]  # ROL after PV2, ROL-14
    assert rol.role.organization.name == "Good Health Hospital"
    (proc,) = [r for r in records if isinstance(r, Procedure) and r.status == "unknown"]  # not the autopsy
    assert proc.participants[0].role.organization.name == "L Multispeciality Hospital"  # ROL-14 after PR1
    order = next(r for r in decode(sample("RDS-O13-01"), {}) if isinstance(r, Prescription))
    prt = [p.role for p in order.participants if p.role is not None]
    assert "N Memorial" in [r.organization.name for r in prt if r.organization]  # PRT-8 after the ORC
    entries = bundle_of(records)
    urls = {e["fullUrl"]: e["resource"] for e in entries}
    roles = [r for r in urls.values() if r["resourceType"] == "PractitionerRole" and "organization" in r]
    names = {urls[r["organization"]["reference"]]["name"] for r in roles}
    assert names >= {"Good Health Hospital", "L Multispeciality Hospital"}
    assert lossless("ADT-A01-01", records)


def test_a_medical_director_and_a_referral_provider_act_for_their_organizations() -> None:
    from bridge import DiagnosticReport, ServiceRequest
    (report,) = [r for r in decode(sample("ORU-R01-01"), {}) if isinstance(r, DiagnosticReport)]
    obs = report.observations[0]
    (director,) = [p.role for p in obs.participants if p.role and p.role.code[0].code == "MDIR"]
    assert director.organization == obs.performing_organization  # OBX-25 directs the OBX-23 lab
    (referral,) = [r for r in decode(sample("REF-I12-01"), {}) if isinstance(r, ServiceRequest)]
    orgs = {p.role.code[0].code: p.role.organization.name for p in referral.participants if p.role}
    assert orgs == {"RP": "GOOD HEALTH HOSPITAL", "RT": "RADIANT HEALTH HOSPITAL"}  # PRD-10


def test_the_ordering_provider_is_a_role_only_where_the_ordering_facility_says_more() -> None:
    from bridge import ServiceRequest
    records = decode(sample("ORM-O01-05"), {})
    (order,) = [r for r in records if isinstance(r, ServiceRequest)]
    (op,) = [p.role for p in order.participants if p.role and p.role.code[0].code == "OP"]
    assert op.organization.name == "Good Health Hospital" and op.practitioner == order.requester  # ORC-21, ORC-12
    entries = bundle_of(records)
    urls = {e["fullUrl"]: e["resource"] for e in entries}
    request = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "ServiceRequest"
                   and "ifNoneExist" not in e["request"])  # the order, not the OBR-29 parent it names by number
    role = urls[request["requester"]["reference"]]  # one reference: the role, naming the orderer
    assert role["resourceType"] == "PractitionerRole" and urls[role["organization"]["reference"]]["name"] == \
        "Good Health Hospital"
    assert lossless("ORM-O01-05", records)
    (plain,) = [r for r in decode(sample("ORM-O01-01"), {}) if isinstance(r, ServiceRequest)]
    assert plain.requester is not None and not [p for p in plain.participants if p.function == "AUT"]  # no ORC-21


def test_a_bars_further_patients_and_visits_are_records_of_their_own() -> None:
    from bridge import Account, Encounter, Patient
    records = decode(sample("BAR-P02-02"), {})  # purge: two PATIENT groups
    assert isinstance(records[0], Encounter)
    further = [r for r in records[1:] if isinstance(r, (Encounter, Patient))]
    (second,) = further
    assert isinstance(second, Encounter) and second.patient.identifiers[0].value == "PAT234"
    assert second.extra == {"hl7v2": {"carried": True}}
    accounts = [r for r in records if isinstance(r, Account)]
    assert len(accounts) == 2 and accounts[1].patient is second.patient and accounts[1].status == "inactive"
    visits = [r for r in decode(sample("BAR-P01-02"), {}) if isinstance(r, Encounter)]
    assert [v.encounter_class for v in visits] == ["PRENC", "AMB"]  # PV1-2 P, then the second VISIT's O
    assert visits[0].patient is visits[1].patient
    assert lossless("BAR-P02-02", records) and lossless("BAR-P01-02", decode(sample("BAR-P01-02"), {}))


def test_an_a45_moves_each_visit_it_names() -> None:
    from bridge import Encounter
    records = decode(sample("ADT-A45-02"), {})  # two MRG/PV1 pairs: visits 5001 and 5010
    visits = [r for r in records if isinstance(r, Encounter)]
    assert [[i.value for i in v.identifiers if i.type == "VN"] for v in visits] == [["5001"], ["5010"]]
    assert visits[1].patient is visits[0].patient and visits[1].extra == {"hl7v2": {"carried": True}}
    assert lossless("ADT-A45-02", records)

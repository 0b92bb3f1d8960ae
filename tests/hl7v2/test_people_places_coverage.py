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
    (adt,) = [r for r in decode(sample("ADT-A01-01"), {}) if isinstance(r, Procedure)]
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

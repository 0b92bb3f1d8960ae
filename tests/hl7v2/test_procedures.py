"""PR1 segments as Procedure records (ADT, BAR, DFT) and back, on Microsoft's corpus samples."""

from __future__ import annotations

import json
from pathlib import Path

from bridge import Encounter, Patient, Procedure, Record, localize_records, record_from_dict
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import read_messages

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
AUTOPSY = "29240004"
DEATH_CERTIFICATION = "308646001"
OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00", "sending_application": "TB"}


def _pr1(record: object) -> bool:
    """A PR1's procedure, not the autopsy or death certification a PDA states (SNOMED CT 29240004,
    308646001, tests/hl7v2/test_clinical_gaps.py)."""
    return isinstance(record, Procedure) and not (record.code and record.code.code in (AUTOPSY, DEATH_CERTIFICATION))


def _procedures(name: str) -> list[Procedure]:
    return [r for r in decode((CORPUS / name).read_bytes(), {}) if _pr1(r)]


def test_adt_pr1_gives_a_procedure_with_its_roles_reason_and_parent() -> None:
    (proc,) = _procedures("ADT-A01-01.hl7")
    assert proc.status == "unknown"  # PR1 states none: no guessed "completed"
    assert (proc.code.code, proc.code.system) == ("76164006", "http://snomed.info/sct")
    assert proc.description == "Biopsy of colon, which was part of colonoscopy"
    assert (proc.category.code, proc.category.system) == ("D", "HL70230")
    assert proc.performed == "2005-01-25T11:40+01:00"
    roles = [(p.practitioner.name.family, p.function.display if p.function else None) for p in proc.performers]
    assert roles == [("ANES", "Anesthesiologist"), ("Patrick", "Surgeon"), ("Everyman2", None)]
    assert [c.code for c in proc.reason] == ["799008"]
    assert [i.value for i in proc.identifiers] == ["PR1006"] and proc.part_of.value == "PR1001"
    assert proc.patient.identifiers[0].value == "1234567" and proc.encounter is not None
    assert proc.extra["hl7v2"]["carried"] is True  # the PR1 travels whole in the Encounter's kept segments
    assert (proc.location.name, proc.location.physical_type, proc.location.part_of.name) == ("201", "ro", "OT")
    (rol,) = proc.participants  # the ROL after the PR1: a role of the procedure, with its place and email
    assert (rol.role.practitioner.name.family, rol.role.code[0].code) == ("Phoeb", "PP")
    assert rol.role.locations[0].name == "InternalMedicine" and rol.role.telecom[0].value == "Pheob@nnnn.com"


def test_bar_and_dft_give_their_procedures_for_the_visit() -> None:
    for name in ("BAR-P12-01.hl7", "DFT-P03-01.hl7"):
        records = decode((CORPUS / name).read_bytes(), {})
        first, procs = records[0], [r for r in records if _pr1(r)]
        assert isinstance(first, Encounter) and procs, name
        assert all(p.encounter is first and p.patient is first.patient for p in procs)
    (dft,) = _procedures("DFT-P03-01.hl7")
    assert (dft.code.code, dft.code.system, dft.performed) == ("71045", "C4", "2019-11-22")


def test_a_decoded_adt_with_procedures_goes_back_unchanged() -> None:
    raw = (CORPUS / "ADT-A01-01.hl7").read_bytes()
    out = encode(decode(raw, {}), OPTS)
    pr1 = [s for s in read_messages(out)[0].segments if s.name == "PR1"]
    assert len(pr1) == 1 and pr1[0].get(19) == "PR1006"  # written once, from the kept segment


def test_fhir_procedure_is_deterministic_valid_and_reads_back() -> None:
    first, second = FHIR.encode(_localized(), {}), FHIR.encode(_localized(), {})
    assert first == second  # same message, same fullUrls and conditional keys
    bundle = json.loads(first)
    (entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Procedure"
                and "code" in e["resource"]
                and e["resource"]["code"]["coding"][0]["code"] not in (AUTOPSY, DEATH_CERTIFICATION)]
    resource = entry["resource"]
    assert entry["request"]["method"] == "PUT" and "procedure-key" in entry["request"]["url"]
    # PR1-25: the parent, named by its id alone, is created only if absent (never overwrites a full one)
    (part_of,) = resource["partOf"]
    parent = next(e for e in bundle["entry"] if e["fullUrl"] == part_of["reference"])
    assert parent["request"]["method"] == "POST" and parent["request"]["ifNoneExist"].startswith(
        "identifier=https://telemed-bridge.org/fhir/sid/procedure-key|")
    assert parent["resource"]["identifier"][1:] == [{"value": "PR1001"}] and parent["resource"]["status"] == "unknown"
    assert parent["resource"]["subject"] == resource["subject"] and set(parent["resource"]) == {
        "resourceType", "identifier", "status", "subject"}
    assert resource["category"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0230"
    assert [p.get("function", {}).get("coding", [{}])[0].get("code") for p in resource["performer"]] == \
        ["88189002", "304292004", None, None]  # PR1-8, PR1-11, PR1-12, then the ROL after the PR1
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    role = urls[resource["performer"][3]["actor"]["reference"]]
    assert role["resourceType"] == "PractitionerRole" and role["code"][0]["coding"][0]["code"] == "PP"
    assert urls[resource["location"]["reference"]]["name"] == "201"  # PR1-23 OT^201: the room, part of OT
    (back,) = [r for r in FHIR.decode(first, {}) if _pr1(r)]
    assert back.code.code == "76164006" and back.part_of.value == "PR1001" and back.status == "unknown"
    assert [p.function.code if p.function else None for p in back.performers] == ["88189002", "304292004", None]
    assert [p.role.practitioner.name.family for p in back.participants] == ["Phoeb"]  # not a fourth performer
    assert (back.location.name, back.location.part_of.name) == ("201", "OT")


def _localized() -> list[Record]:
    """ADT-A01-01 decoded afresh, its local times in a channel zone (FHIR needs offsets)."""
    records = decode((CORPUS / "ADT-A01-01.hl7").read_bytes(), {})
    localize_records(records, "America/Chicago")
    return records


def test_a_procedure_built_elsewhere_becomes_a_pr1_after_its_visit() -> None:
    doc = json.loads((ROOT / "examples" / "messages" / "procedure.json").read_text(encoding="utf-8"))
    proc = record_from_dict(doc["records"][0])
    encounter = Encounter(identifiers=proc.encounter.identifiers, status="finished", patient=proc.patient)
    proc.patient = encounter.patient
    out = encode([encounter, proc], OPTS)
    records = decode(out, {})
    (back,) = [r for r in records if _pr1(r)]
    assert (back.code.code, back.performed, back.reason[0].code) == ("64483", "2026-11-20T09:30:00-06:00", "M54.16")
    assert back.performers[0].function.code == "304292004" and back.performers[0].practitioner.name.family == \
        "Example"
    assert back.identifiers[0].value == "PR20261120-7"
    assert isinstance(back.patient, Patient)


def test_a_parent_with_a_system_is_keyed_by_it_and_a_logical_part_of_still_reads() -> None:
    records = _localized()
    (proc,) = [r for r in records if _pr1(r)]
    proc.part_of.system = "urn:oid:2.16.840.1.113883.3.999.40"
    bundle = json.loads(FHIR.encode(records, {}))
    (parent,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Procedure" and "code" not in e["resource"]]
    assert parent["request"] == {"method": "POST", "url": "Procedure",
                                 "ifNoneExist": "identifier=urn:oid:2.16.840.1.113883.3.999.40|PR1001"}
    for entry in bundle["entry"]:  # a sender's logical reference, as we used to write it
        if entry["resource"]["resourceType"] == "Procedure" and entry["resource"].get("partOf"):
            entry["resource"]["partOf"] = [{"identifier": {"system": "urn:oid:2.16.840.1.113883.3.999.40",
                                                           "value": "PR1001"}}]
    bundle["entry"].remove(parent)
    (back,) = [r for r in FHIR.decode(json.dumps(bundle).encode(), {}) if _pr1(r)]
    assert (back.part_of.value, back.part_of.system) == ("PR1001", "urn:oid:2.16.840.1.113883.3.999.40")

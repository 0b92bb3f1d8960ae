"""docs/maps.md's cookbook, each recipe run through the engine on the shipped example config
(examples/maps): messages are committed, processed by the worker, encoded and delivered to files.

The recipes' map files are the ones the cookbook shows (test_cookbook_text checks the page quotes
them), so a recipe that stops working fails here, not at a hospital.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.testing import plugin_manager
from bridge.plugins.fhir.codec import check_bindings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "maps"
DOCS = ROOT / "docs" / "maps.md"
RECIPES = ("outpatient-only", "local-dx-to-snomed", "registry-mrn-authority", "credentialed-prescribers",
           "bedboard-locations", "lab-facility-msh4")


def adt(control: str, patient_class: str, dx: str = "LBP01", dx_text: str = "Low back pain") -> bytes:
    return ("MSH|^~\\&|TELEVISIT|RIVERBEND|EHR|RIVERBEND|20261127092500||ADT^A04^ADT_A01|" + control + "|P|2.5\r"
            "EVN|A04|20261127092500\r"
            "PID|1||MRN00012345^^^RIVERBEND^MR||Testpatient^Alex^J||19800412|F\r"
            "PV1|1|" + patient_class + "|CLINIC2^^^RIVERBEND||||||||||||||||V-" + control + "^^^RIVERBEND^VN"
            "|||||||||||||||||||||||||20261127090000\r"
            "DG1|1||" + dx + "^" + dx_text + "^LOCALDX||20261127|F\r").encode()


def prescription(number: str, npi: str | None) -> bytes:
    sample = EXAMPLE / "maps" / "credentialed-prescribers" / "tests" / "credentialed.in.json"
    doc = json.loads(sample.read_text())
    record = doc["records"][0]
    record["prescriber_order_number"] = number
    if npi is None:
        record["prescriber"].pop("npi")
    else:
        record["prescriber"]["npi"] = npi
    return json.dumps(doc).encode()


@pytest.fixture
def engine(tmp_path):
    site = tmp_path / "examples" / "maps"
    shutil.copytree(EXAMPLE, site)
    plugins = plugin_manager()
    engine = Engine(load_config(site / "bridge.yaml", plugins), plugins)
    engine.open_destinations()
    engine.outbox = tmp_path / "var" / "maps-example" / "outbox"  # type: ignore[attr-defined]
    yield engine
    engine.store.close()


def check_valid(bundle: dict) -> None:
    """Valid in fhir.resources, bundle and each resource, and no code outside a required binding."""
    R4BBundle.model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        module = importlib.import_module(f"fhir.resources.R4B.{resource['resourceType'].lower()}")
        getattr(module, resource["resourceType"]).model_validate(resource)
    check_bindings(bundle)


def bundles(engine) -> list[dict]:
    """The FHIR Bundles delivered, each checked valid (fhir.resources) with its required bindings."""
    found = [json.loads(p.read_text()) for p in sorted((engine.outbox / "ehr-fhir").glob("*.json"))]
    for bundle in found:
        check_valid(bundle)
    return found


def resources(engine, kind: str) -> list[dict]:
    return [e["resource"] for b in bundles(engine) for e in b["entry"] if e["resource"]["resourceType"] == kind]


def hl7_files(engine, destination: str = "registry-hl7") -> list[str]:
    return [p.read_bytes().decode() for p in sorted((engine.outbox / destination).glob("*"))]


def events(engine, message_id: int) -> dict[str, list]:
    out: dict[str, list] = {}
    for event in engine.store.events(message_id):
        out.setdefault(event.kind, []).append(event.detail)
    return out


def test_recipe_keep_only_outpatient_visits(engine):
    outpatient = engine.submit("adt-in", adt("OUT-1", "O")).message_id
    inpatient = engine.submit("adt-in", adt("IN-1", "I")).message_id
    emergency = engine.submit("adt-in", adt("ER-1", "E")).message_id
    engine.drain()

    assert engine.store.get_message(outpatient).status == "delivered"
    for dropped in (inpatient, emergency):
        message = engine.store.get_message(dropped)
        assert message.status == "filtered"
        assert events(engine, dropped)["filtered"] == [{"reason": "the channel's maps dropped every record"}]
    assert [e["class"]["code"] for e in resources(engine, "Encounter")] == ["AMB"]
    assert len(hl7_files(engine)) == 1
    mapped = events(engine, inpatient)["mapped"][0]
    assert mapped["map"] == "outpatient-only" and len(mapped["version"]) == 12
    assert [(s["id"], s["changed"]) for s in mapped["steps"]] == [("drop-other-visits", 1),
                                                                   ("drop-their-diagnoses", 1)]


def test_recipe_local_diagnosis_codes_become_snomed_through_the_csv(engine):
    known = engine.submit("adt-in", adt("DX-1", "O", "HTN01", "High blood pressure")).message_id
    unlisted = engine.submit("adt-in", adt("DX-2", "O", "ZZZ99", "Something local")).message_id
    engine.drain()

    assert engine.store.get_message(known).status == "delivered"
    (condition,) = resources(engine, "Condition")
    assert condition["code"]["coding"] == [{"system": "http://snomed.info/sct", "code": "38341003",
                                            "display": "Hypertensive disorder"}]
    (registry,) = hl7_files(engine)  # the HL7v2 destinations get the mapped code too, in the sender's DG1
    assert "\rDG1|1||38341003^Hypertensive disorder^SCT||20261127|F\r" in registry
    assert engine.store.get_message(unlisted).status == "held"
    (hold,) = engine.store.holds()
    assert hold.message_id == unlisted
    assert [(r["policy"], r["id"], r["reason"]) for r in hold.reasons] == [
        ("map:local-dx-to-snomed", "dx-to-snomed", "a diagnosis code is not in the local-to-SNOMED CT table")]
    assert "ZZZ99" not in json.dumps([e.detail for e in engine.store.events(unlisted)])  # no values in the timeline

    engine.store.resolve_hold(unlisted, "release", reason="code reviewed; sent as is", actor="test")
    engine.drain()
    assert engine.store.get_message(unlisted).status == "delivered"  # released like a policy hold


def test_recipe_the_mrn_assigning_authority_changes_for_one_destination_only(engine):
    message_id = engine.submit("adt-in", adt("REG-1", "O")).message_id
    engine.drain()

    assert engine.store.get_message(message_id).status == "delivered"
    (registry,) = hl7_files(engine)
    assert "PID|1||MRN00012345^^^STATEREG^MR|" in registry
    (patient,) = resources(engine, "Patient")
    assert "RIVERBEND" in json.dumps(patient["identifier"]) and "STATEREG" not in json.dumps(patient)
    stored = json.dumps(engine.store.get_message(message_id).records)
    assert "STATEREG" not in stored  # the message's own records are unchanged: only that destination's copy
    stages = [(e["map"], e["stage"]) for e in events(engine, message_id)["mapped"]]
    assert ("registry-mrn-authority", "destination:registry-hl7") in stages


def test_recipe_an_old_lab_system_gets_hl7_2_3_with_the_facility_in_msh_4(engine):
    """"Send HL7 2.3 to an old lab system with the facility in MSH-4": the version option and the
    destination's field steps together (the steps run on the message the version has shaped)."""
    message_id = engine.submit("adt-in", adt("LAB-1", "O", "HTN01", "High blood pressure")).message_id
    engine.drain()

    assert engine.store.get_message(message_id).status == "delivered"
    (lab,) = hl7_files(engine, "lab-hl7")
    msh = lab.split("\r")[0].split("|")
    assert (msh[8], msh[11]) == ("ADT^A04", "2.3")  # v2.3: MSH-12 2.3 and no MSH-9.3 structure
    assert msh[3] == "RIVERBEND^2.999.1.7^ISO"  # MSH-4 from the visit's facility, by lab-facility-msh4
    assert "\rDG1|1||38341003^Hypertensive disorder^SCT||20261127|F\r" in lab  # the channel's map reached it
    (registry,) = hl7_files(engine)
    assert registry.split("\r")[0].endswith("|2.5")  # the other HL7v2 destination keeps the default


def test_recipe_hold_prescriptions_of_prescribers_not_credentialed(engine):
    credentialed = engine.submit("rx-in", prescription("RX-C-1", "1234567893")).message_id
    stranger = engine.submit("rx-in", prescription("RX-C-2", "1999999992")).message_id
    anonymous = engine.submit("rx-in", prescription("RX-C-3", None)).message_id
    engine.drain()

    assert engine.store.get_message(credentialed).status == "delivered"
    (request,) = resources(engine, "MedicationRequest")
    assert "RX-C-1" in json.dumps(request["identifier"])
    reasons = {h.message_id: [(r["id"], r["reason"]) for r in h.reasons] for h in engine.store.holds()}
    assert reasons == {
        stranger: [("prescriber-credentialed", "the prescriber is not in the credentialed prescribers list")],
        anonymous: [("prescriber-named", "the prescription names no prescriber NPI")],
    }
    assert "1999999992" not in json.dumps([e.detail for e in engine.store.events(stranger)])


def outbox_files(engine, destination: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((engine.outbox / destination).glob("*"))]


def segments(payload: bytes) -> list[str]:
    return payload.decode().split("\r")


def test_recipe_pass_adt_through_to_a_second_system_unchanged_except_pv1_3(engine, caplog):
    sample = EXAMPLE / "maps" / "bedboard-locations" / "tests" / "clinic2.in.hl7"
    sent = sample.read_bytes()
    with caplog.at_level(logging.DEBUG):
        message_id = engine.submit("adt-in", sent).message_id
        engine.drain()
    assert not any(value in caplog.text for value in ("CLINIC2", "OP-2", "MRN00012345", "Testpatient"))

    assert engine.store.get_message(message_id).status == "delivered"
    (passed,) = outbox_files(engine, "bedboard-hl7")
    original, out = segments(sent), segments(passed)
    assert len(out) == len(original)
    changed = [(a, b) for a, b in zip(original, out) if a != b]
    # Only PV1-3 (the map's step) and MSH-10 (the engine's stable id of the message) differ: the sender's
    # MSH-7 without seconds, its 2.5.1, PID-13's formatting and the Z-segment go out as sent.
    assert changed == [
        (original[0], original[0].replace("|ADM-7|", f"|TB{message_id}|")),
        (original[3], original[3].replace("|CLINIC2^204^B^RIVERBEND|", "|OP-2^204^B^RB-MAIN|")),
    ]
    assert "|202611270925||ADT^A01^ADT_A01|" in out[0] and out[0].endswith("|P|2.5.1")
    assert "(515)555-0142^PRN^PH~^NET^Internet^alex@example.org" in out[2] and out[4] == "ZTB|night shift note"
    (registry,) = hl7_files(engine)  # an encoding destination of the same message writes its own header
    assert registry.splitlines()[0].endswith("|P|2.5") and "|202611270925||" not in registry.splitlines()[0]
    mapped = [e for e in events(engine, message_id)["mapped"] if e["stage"] == "destination:bedboard-hl7"]
    assert mapped == [{"map": "bedboard-locations", "version": mapped[0]["version"],
                       "stage": "destination:bedboard-hl7",
                       "steps": [{"id": "unit-code", "action": "lookup", "applied": 1, "changed": 2,
                                  "paths": ["PV1-3.1", "PV1-3.4"]}]}]
    assert "OP-2" not in json.dumps([e.detail for e in engine.store.events(message_id)])  # no values

    first_row = next(r for r in engine.store.outbox_rows(message_id) if r.destination == "bedboard-hl7")
    replay = engine.store.replay(message_id, reason="bed board asked for a resend", actor="test",
                                 destinations=["bedboard-hl7"])
    engine.drain()
    again = next(r for r in engine.store.outbox_rows(replay) if r.destination == "bedboard-hl7")
    assert first_row.control_id == again.control_id == f"TB{message_id}"  # the same identity as the first send
    assert all(f"|TB{message_id}|" in p.decode() for p in outbox_files(engine, "bedboard-hl7"))


def test_recipe_pass_through_fails_only_that_destination_for_a_unit_the_table_lacks(engine):
    sample = EXAMPLE / "maps" / "bedboard-locations" / "tests" / "unknown-unit.in.hl7"
    message_id = engine.submit("adt-in", sample.read_bytes()).message_id
    engine.drain()

    rows = {r.destination: r for r in engine.store.outbox_rows(message_id)}
    assert rows["bedboard-hl7"].status == "dead"
    assert rows["bedboard-hl7"].last_error == ("map bedboard-locations step unit-code: table units has no row "
                                               "for the code at PV1-3.1")
    assert {rows[d].status for d in ("ehr-fhir", "registry-hl7", "lab-hl7")} == {"delivered"}
    assert not outbox_files(engine, "bedboard-hl7")


def test_recipe_the_facility_in_msh_4(engine):
    message_id = engine.submit("adt-in", adt("LAB-1", "O")).message_id
    engine.drain()

    assert engine.store.get_message(message_id).status == "delivered"
    (lab,) = outbox_files(engine, "lab-hl7")
    msh = segments(lab)[0].split("|")
    assert msh[3] == "RIVERBEND^2.999.1.7^ISO"  # MSH-4: the visit's facility (PV1-3.4) and its OID
    assert msh[9] == f"TB{message_id}"  # the encoder's identity, unchanged by the steps
    (registry,) = hl7_files(engine)
    assert registry.split("|")[3] == ""  # the other HL7v2 destination's MSH-4 is untouched
    (mapped,) = [e for e in events(engine, message_id)["mapped"] if e["stage"] == "destination:lab-hl7"]
    assert [(s["id"], s["changed"]) for s in mapped["steps"]] == [("facility-in-msh4", 1), ("facility-oid", 2)]


def test_cookbook_text_shows_the_tested_maps():
    """Every recipe in docs/maps.md quotes its map.yaml exactly as the tests above run it."""
    text = DOCS.read_text(encoding="utf-8")
    for name in RECIPES:
        body = (EXAMPLE / "maps" / name / "map.yaml").read_text(encoding="utf-8")
        assert body.strip() in text, f"docs/maps.md does not quote examples/maps/maps/{name}/map.yaml"

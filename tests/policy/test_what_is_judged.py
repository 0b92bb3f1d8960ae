"""Issue 11 §2: the gate judges telehealth and outpatient prescriptions, not inpatient orders.

An order dispensed for immediate administration to an inpatient or emergency patient is not a
prescription (21 CFR 1300.01(b)): R28 lets it through unjudged. Every row of the decision table in
docs/policy.md is a case here, then the "Seen" reports of the issue are replayed over MLLP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bridge.plugins.telehealth_policy as p
from bridge.plugins.hl7v2.ack import ack_code_of
from bridge.plugins.hl7v2.mllp import MLLPClient
from bridge.testing import listening_engine, plugin_manager

from .builders import make

ROOT = Path(__file__).resolve().parents[2]
MORPHINE_RDE = (ROOT / "examples" / "messages" / "rde-o11-inpatient-morphine.hl7").read_bytes()

# The baseline video oxycodone, unsigned: BLOCK (R10) whenever the gate judges it.
UNSIGNED_IN_HOSPITAL = {"signature": None, "encounter.modality": None, "encounter.patient_location": None,
                        "pharmacy": None}
RETAIL = {"id": "ph-1", "ncpdp_id": "9900001", "epcs_capable": True}

# (row, category, encounter class, modality, pharmacy, judged)
DECISION_TABLE = [
    ("inpatient stay, order not marked", None, "IMP", None, None, False),
    ("emergency visit, order not marked", None, "EMER", None, None, False),
    ("acute stay", None, "ACUTE", None, None, False),
    ("observation stay", None, "OBSENC", None, None, False),
    ("order marked inpatient, no class", "inpatient", None, None, None, False),
    ("order marked inpatient in a stay", "inpatient", "IMP", None, None, False),
    ("explicit in-person modality in a stay", None, "IMP", "in_person", None, False),
    ("discharge prescription from an inpatient stay", "discharge", "IMP", None, None, True),
    ("outpatient prescription from a stay", "outpatient", "IMP", None, None, True),
    ("community prescription from the ED", "community", "EMER", None, None, True),
    ("telehealth visit in a stay (tele-consult)", None, "IMP", "video", None, True),
    ("stay order sent to a retail pharmacy", None, "IMP", None, RETAIL, True),
    ("marked inpatient but an ambulatory visit", "inpatient", "AMB", None, None, True),
    ("ambulatory visit", None, "AMB", None, None, True),
    ("nothing says where", None, None, None, None, True),
]


@pytest.mark.parametrize("row,category,klass,modality,pharmacy,judged", DECISION_TABLE,
                         ids=[r[0] for r in DECISION_TABLE])
def test_decision_table_row(row, category, klass, modality, pharmacy, judged):
    rx = make({**UNSIGNED_IN_HOSPITAL, "category": category, "encounter.encounter_class": klass,
               "encounter.modality": modality, "pharmacy": pharmacy})
    decision = p.decide([rx], p.ruleset_for(None))
    ids = [r.id for r in decision.rules]
    if judged:
        assert decision.outcome == "BLOCK" and "R10" in ids and "R28" not in ids, decision.rules
    else:
        assert decision.outcome == "ALLOW" and ids == ["R28"], decision.rules
        assert "21 CFR 1300.01" in decision.rules[0].basis


def test_discharge_prescription_from_an_inpatient_stay_is_judged_in_person_at_the_facility():
    """Judged in full: in person (class IMP, no telehealth marker), located at the facility's state."""
    rx = make({"category": "discharge", "encounter.encounter_class": "IMP", "encounter.modality": None,
               "encounter.patient_location": None})
    trail = p.evaluate_prescription(rx, p.ruleset_for(None), facility_state="IA")
    checks = {c.id: c for c in trail.checks}
    assert trail.outcome == "ALLOW" and "R28" not in checks
    assert checks["R2"].status == "passed" and "facility" in checks["R2"].reason
    assert checks["R7"].status == "passed" and "in-person" in checks["R7"].reason
    assert checks["R10"].status == "passed" and checks["R3"].status == "passed"
    unsigned = make({"category": "discharge", "encounter.encounter_class": "IMP", "signature": None})
    assert p.decide([unsigned], p.ruleset_for(None), facility_state="IA").outcome == "BLOCK"


def test_r28_is_dated_data(tmp_path):
    """Out of force, inpatient orders are judged again: the rule is in rules.yaml like every other."""
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(p.load_ruleset().source_dir, rules)
    text = (rules / "rules.yaml").read_text()
    head, tail = text.split("  R28:", 1)
    (rules / "rules.yaml").write_text(head + "  R28:" + tail.replace("effective: {from: null, to: null}",
                                                                     "effective: {from: null, to: \"2026-01-01\"}", 1))
    rx = make({**UNSIGNED_IN_HOSPITAL, "encounter.encounter_class": "IMP"})
    assert p.decide([rx], p.load_ruleset(rules)).outcome == "BLOCK"


# --- the signals reach the records: HL7v2 ORC-29 / PV1-2 / PV1-36 and FHIR category ----------------


def _rde(pv1_class="I", orc29="I", pv1_36=""):
    text = MORPHINE_RDE.decode()
    orc_end = "|" * 17
    text = text.replace("PV1|1|I|", f"PV1|1|{pv1_class}|").replace(f"{orc_end}I\r", f"{orc_end}{orc29}\r")
    if pv1_36:
        fields = text.split("\r")[2].split("|")
        fields[36] = pv1_36
        text = text.replace(text.split("\r")[2], "|".join(fields))
    return text.encode()


@pytest.mark.parametrize("pv1_class,orc29,pv1_36,category", [
    ("I", "I", "", "inpatient"),
    ("I", "O", "", "discharge"),      # an outpatient order from a stay goes home with the patient
    ("E", "O", "", "discharge"),
    ("O", "O", "", "outpatient"),
    ("I", "", "01", "discharge"),     # PV1-36 discharge disposition: discharged home
    ("I", "", "", None),              # not marked: the gate reads the class (IMP)
])
def test_hl7v2_order_type_and_discharge_disposition_give_the_category(pv1_class, orc29, pv1_36, category):
    hl7 = plugin_manager().format("hl7v2")
    (rx,) = hl7.decode(_rde(pv1_class, orc29, pv1_36), {})
    assert rx.category == category
    again = hl7.decode(hl7.encode([rx], {"message_control_id": "X"}), {})[0]
    assert again.category == category


def test_fhir_medication_request_category_and_ingredients_are_read_and_written():
    from bridge import Coding

    fhir = plugin_manager().format("fhir")
    rx = make({"category": "discharge"})
    rx.medication.ingredients = [Coding("7804", "http://www.nlm.nih.gov/research/umls/rxnorm", "oxycodone")]
    bundle = fhir.encode([rx], {})
    assert b"medicationrequest-category" in bundle and b'"ingredient"' in bundle
    (back,) = [r for r in fhir.decode(bundle, {}) if r.kind == "Prescription"]
    assert back.category == "discharge" and [c.code for c in back.medication.ingredients] == ["7804"]


# --- the "Seen" reports, over MLLP -----------------------------------------------------------


@pytest.fixture
def mllp_engine(tmp_path):
    config = {
        "channels": {"pharmacy-orders": {"source": "mllp://127.0.0.1:0", "format": "hl7v2",
                                         "routes": [{"to": ["out"]}]}},
        "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
    }
    with listening_engine(config, tmp_path, plugin_manager()) as engine:
        yield engine


def _inpatient_order(drug: str) -> bytes:
    """The example inpatient RDE, without the ORC-29 marker (as in the report: PV1-2 = I only)."""
    return _rde("I", "").replace(b"7052^morphine^RXNORM", drug.encode())


@pytest.mark.parametrize("drug", ["29046^lisinopril^RXNORM", "7804^oxycodone^RXNORM", "7052^morphine^RXNORM"])
def test_seen_inpatient_order_is_acknowledged_and_routed_without_a_hold(mllp_engine, drug):
    """Seen: lisinopril held (R2), oxycodone refused with AR (R10, R11), morphine unknown (R24)."""
    port = mllp_engine.sources[0].port
    client = MLLPClient("127.0.0.1", port, ack_timeout=10)
    try:
        code, _, text = ack_code_of(client.exchange(_inpatient_order(drug)))
    finally:
        client.close()
    assert code == "AA", text
    mllp_engine.drain()
    (stored,) = mllp_engine.store.search(channel="pharmacy-orders")
    message = mllp_engine.store.get_message(stored.id)
    policy = next(e.detail for e in mllp_engine.store.events(stored.id) if e.kind == "policy")
    assert message.status in ("routed", "delivered") and message.status != "held"
    assert [r["id"] for r in policy["rules"]] == ["R28"] and policy["outcome"] == "ALLOW"


def test_morphine_is_in_the_schedule_table_when_it_is_judged():
    """Seen: morphine was an unknown drug (R24). A discharge morphine prescription is judged as CII."""
    rx = make({"medication": {"description": "morphine sulfate 15 MG Oral Tablet", "rxnorm": "7052",
                              "strength": "15 mg", "form": "tablet"}})
    trail = p.evaluate_prescription(rx, p.ruleset_for(None))
    checks = {c.id: c for c in trail.checks}
    assert "R24" not in checks and "CII" in checks["R1"].reason and trail.outcome == "ALLOW"


# --- an in-person visit's location from the FHIR Encounter.location ------------------------------------


def _bundle_with_location(klass: str, modality_ext: str | None) -> bytes:
    fhir = plugin_manager().format("fhir")
    rx = make({"category": "discharge", "encounter.encounter_class": klass, "encounter.modality": None,
               "encounter.patient_location": None, "encounter.id": "enc-1"})
    doc = json.loads(fhir.encode([rx], {}))
    encounter = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Encounter")
    if modality_ext is None:
        encounter["extension"] = [x for x in encounter.get("extension", []) if "modality" not in x["url"]]
    encounter["location"] = [{"location": {"reference": "Location/ward-4w"}}]
    doc["entry"].append({"fullUrl": "Location/ward-4w", "resource": {
        "resourceType": "Location", "id": "ward-4w", "name": "4 West",
        "address": {"city": "Pella", "state": "IA", "country": "US"}}})
    return json.dumps(doc).encode()


def test_fhir_encounter_location_gives_an_in_person_patient_state():
    records = plugin_manager().format("fhir").decode(_bundle_with_location("IMP", None), {})
    (rx,) = [r for r in records if r.kind == "Prescription"]
    location = rx.encounter.patient_location
    assert (location.state, location.at_home, location.source) == ("IA", False, "encounter-location")
    trail = p.evaluate_prescription(rx, p.ruleset_for(None))
    assert next(c for c in trail.checks if c.id == "R2").status == "passed"


def test_fhir_encounter_location_is_not_a_location_for_a_possibly_virtual_visit():
    records = plugin_manager().format("fhir").decode(_bundle_with_location("AMB", None), {})
    (rx,) = [r for r in records if r.kind == "Prescription"]
    assert rx.encounter.patient_location is None

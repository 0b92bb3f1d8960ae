"""Issue 11 §2: the schedule table covers the marketed CII-V human drugs, by ingredient and RxNorm
code, and a product is matched by the codes it carries (its own, its ingredients', NCI schedule
codes) before any description text."""

from __future__ import annotations

from pathlib import Path

import pytest

import bridge.plugins.telehealth_policy as p
from bridge import Coding, Medication
from bridge.plugins.telehealth_policy.schedules import classify, find_row
from bridge.testing import plugin_manager

ROOT = Path(__file__).resolve().parents[2]
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NCI = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"


@pytest.fixture(scope="module")
def rs():
    return p.ruleset_for(None)


NAMED_IN_THE_ISSUE = {
    "morphine": "CII", "hydromorphone": "CII", "fentanyl": "CII", "methadone": "CII", "oxymorphone": "CII",
    "tapentadol": "CII", "codeine": "CII", "codeine-acetaminophen": "CIII", "dihydrocodeine-combination": "CIII",
    "testosterone": "CIII", "nandrolone": "CIII", "ketamine": "CIII", "phenobarbital": "CIV", "pregabalin": "CV",
    "lacosamide": "CV", "cenobamate": "CV",
}


def test_the_drugs_the_issue_names_are_in_the_table_with_their_schedule(rs):
    table = {row.key: row.schedule for row in rs.drugs}
    assert {key: table.get(key) for key in NAMED_IN_THE_ISSUE} == NAMED_IN_THE_ISSUE


def test_every_row_names_its_source_and_unverified_codes_are_marked(rs):
    text = (ROOT / "config" / "policy" / "schedules.yaml").read_text()
    assert "Controlled Substances - Alphabetical Order" in text and "compiled 2026-12-05" in text
    for row in rs.drugs:
        assert row.source.strip(), row.key
        if not (row.rxnorm or row.ingredient_rxnorm):
            assert "not verified" in row.source, f"{row.key}: a row without codes must say so"


@pytest.mark.parametrize("medication,key,how", [
    (Medication(rxnorm="7052", description="lisinopril 10 MG"), "morphine", "RxNorm 7052"),  # codes beat text
    (Medication(description="Tylenol with Codeine #3",
                ingredients=[Coding("2670", RXNORM, "codeine"), Coding("161", RXNORM, "acetaminophen")]),
     "codeine-acetaminophen", "RxNorm ingredients 2670, 161"),
    (Medication(description="Percocet 5/325",
                ingredients=[Coding("7804", RXNORM, "oxycodone"), Coding("161", RXNORM, "acetaminophen")]),
     "oxycodone", "RxNorm 7804"),
    (Medication(description="cough syrup", ingredients=[Coding("2670", RXNORM, "codeine"),
                                                         Coding("x-1", "urn:local", "guaifenesin")]),
     "codeine-cough-preparation", "ingredient names (medication.ingredients)"),
    (Medication(description="Xcopri 100 mg", ingredients=[Coding("c-1", "urn:local", "Cenobamate")]),
     "cenobamate", "ingredient names (medication.ingredients)"),
    (Medication(description="buprenorphine and naloxone",
                ingredients=[Coding("1819", RXNORM), Coding("7242", RXNORM)]), "buprenorphine-naloxone",
     "RxNorm ingredients 1819, 7242"),
])
def test_products_are_matched_by_their_codes_before_their_description(rs, medication, key, how):
    row, matched_by = find_row(rs, medication)
    assert (row.key if row else None, matched_by) == (key, how)


def test_an_nci_schedule_coding_on_the_record_is_used(rs):
    """C48675 is Schedule II: an unlisted drug carrying it is controlled, not unknown (R24)."""
    facts = classify(rs, Medication(description="investigational opioid", codings=[Coding("C48675", NCI)]), "IA")
    assert (facts.row, facts.carried, facts.schedule) == (None, "CII", "CII")
    stricter = classify(rs, Medication(rxnorm="7052", dea_schedule="CIV", codings=[Coding("C48675", NCI)]), "IA")
    assert stricter.carried == "CII" and not stricter.mismatch


def test_hl7v2_rxe2_alternate_rxnorm_code_is_matched():
    """RXE-2 with a local code first and the RxNorm code as the alternate identifier."""
    raw = (ROOT / "examples" / "messages" / "rde-o11-inpatient-morphine.hl7").read_bytes()
    raw = raw.replace(b"7052^morphine^RXNORM", b"MOR2INJ^MORPHINE 2MG/ML INJ^L^7052^morphine^RXNORM")
    (rx,) = plugin_manager().format("hl7v2").decode(raw, {})
    row, how = find_row(p.ruleset_for(None), rx.medication)
    assert row.key == "morphine" and how == "RxNorm 7052"


def test_fhir_medication_ingredient_codings_reach_the_gate():
    fhir = plugin_manager().format("fhir")
    from .builders import make

    rx = make({"medication": {"description": "Tylenol with Codeine #3", "strength": "300 mg/30 mg",
                              "form": "tablet", "ingredients": [
                                  {"code": "2670", "system": RXNORM, "display": "codeine"},
                                  {"code": "161", "system": RXNORM, "display": "acetaminophen"}]}})
    (back,) = [r for r in fhir.decode(fhir.encode([rx], {}), {}) if r.kind == "Prescription"]
    trail = p.evaluate_prescription(back, p.ruleset_for(None))
    r1 = next(c for c in trail.checks if c.id == "R1")
    assert "CIII" in r1.reason

"""FHIR MedicationRequest → NCPDP NewRx, over every official R4 example (tests/fixtures/fhir/r4-examples):
only an active order becomes a NewRx, and the quantity's unit goes out as an NCI Thesaurus code.

The examples reference their patient, prescriber and pharmacy outside the file, so the test supplies
those parties (as a platform would); everything else is the example's own."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from bridge import EncodeError, HumanName, Patient, Pharmacy, Practitioner, Quantity
from bridge.plugins.ncpdp.codes import UNIT_BY_NCI
from bridge.testing import plugin_manager

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "fhir" / "r4-examples")
                  .glob("medicationrequest*.json"))
# The units these examples use, and what SCRIPT calls them (NCI Thesaurus); RECSUPP (rectal
# suppository) has no code in the list we ship, so such an order is refused rather than guessed.
EXPECTED_UNIT = {"TAB": "C48542", "Tab": "C48542", "g": "C48155", "mL": "C28254", "ml": "C28254",
                 "patch": "C48524", "RECSUPP": None, None: None}


@pytest.fixture(scope="module")
def formats():
    found = plugin_manager().formats()
    return found["fhir"], found["ncpdp"]


def with_parties(rx):
    return replace(
        rx, patient=Patient(name=HumanName(family="Vale", given=["Ira"]), birth_date="1970-01-02", gender="male"),
        prescriber=Practitioner(npi="1578000014", name=HumanName(family="Okafor", given=["Lena"])),
        pharmacy=Pharmacy(ncpdp_id="9912345"), written_date=rx.written_date or "2024-05-01",
        refills=0 if rx.refills is None else rx.refills, substitution_allowed=bool(rx.substitution_allowed))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_only_active_orders_become_a_newrx_and_units_are_nci_codes(formats, path):
    fhir, ncpdp = formats
    original = json.loads(path.read_text())
    (rx,) = fhir.decode(path.read_bytes(), {})
    quantity = original.get("dispenseRequest", {}).get("quantity")
    unit = (quantity or {}).get("code") or (quantity or {}).get("unit")
    options = {"message_control_id": f"TB-{path.stem}", "from_id": "TBCLINIC01"}
    try:
        out = ncpdp.encode([with_parties(rx)], options)
    except EncodeError as refused:
        reason = str(refused)
        if original["status"] != "active":
            assert f"the order's status is {original['status']!r}: only an active order becomes a NewRx" in reason
        elif quantity and unit is None:
            assert "the quantity has no unit: SCRIPT needs one as an NCI code" in reason
        elif quantity and EXPECTED_UNIT[unit] is None:
            assert "has no NCI code for SCRIPT" in reason and repr(unit) in reason
        else:  # anything else must be a reason the example itself gives (a schedule I drug, say)
            assert "status" not in reason and "NCI code" not in reason, reason
        return
    assert original["status"] == "active", "a non-active order went out as a NewRx"
    codes = unit_codes(out)
    if quantity:
        assert codes == [EXPECTED_UNIT[unit]] and codes[0] in UNIT_BY_NCI


def unit_codes(out: bytes) -> list[str | None]:
    return [code.text for unit in ET.fromstring(out).iter() if unit.tag.endswith("QuantityUnitOfMeasure")
            for code in unit if code.tag.endswith("Code")]


def test_the_examples_include_every_case(formats):
    """The examples exercise each branch above: active and not, mappable units and one that is not."""
    statuses = {json.loads(p.read_text())["status"] for p in EXAMPLES}
    units = {((json.loads(p.read_text()).get("dispenseRequest") or {}).get("quantity") or {}).get("code")
             for p in EXAMPLES}
    assert {"active", "on-hold", "completed"} <= statuses and "RECSUPP" in units and "TAB" in units


@pytest.mark.parametrize("unit, code, expected", [
    ("tablet", None, "C48542"), ("TAB", "TAB", "C48542"), ("mL", "mL", "C28254"), ("g", "g", "C48155"),
    ("capsules", None, "C48480"), ("each", "C64933", "C64933"), (None, "{tbl}", "C48542"),
])
def test_a_unit_goes_out_as_its_nci_code(formats, unit, code, expected):
    from tests.ncpdp.test_format import handmade

    _, ncpdp = formats
    rx = replace(handmade(), quantity=Quantity(value=30, unit=unit, code=code))
    out = ncpdp.encode([rx], {"message_control_id": "TB1", "from_id": "TBCLINIC01"})
    assert unit_codes(out) == [expected]


def test_an_unknown_unit_is_refused_with_what_to_send_instead(formats):
    from tests.ncpdp.test_format import handmade

    _, ncpdp = formats
    rx = replace(handmade(), quantity=Quantity(value=12, unit="puffs", code="{puff}"))
    with pytest.raises(EncodeError) as refused:
        ncpdp.encode([rx], {"message_control_id": "TB1", "from_id": "TBCLINIC01"})
    assert "the quantity's unit ('puffs' / '{puff}') has no NCI code for SCRIPT" in str(refused.value)
    assert "tablet" in str(refused.value) and "object at" not in str(refused.value)


# --- a controlled drug is recognised from the schedule table when the order carries no schedule -----


def test_oxycodone_and_alprazolam_without_a_stated_schedule_are_refused_unsigned(formats):
    """The issue's two drugs, as a FHIR MedicationRequest usually has them (coded, no schedule): the
    table makes them CII and CIV, so an unsigned NewRx without the prescriber's DEA number is refused."""
    from bridge import Medication
    from tests.ncpdp.test_format import DIRECTORY, handmade

    _, ncpdp = formats
    for medication, schedule in ((Medication(description="Oxycodone Hydrochloride 5 MG Oral Tablet"), "CII"),
                                 (Medication(description="Alprazolam 0.5 MG Oral Tablet", rxnorm="596"), "CIV")):
        with pytest.raises(EncodeError) as refused:
            ncpdp.encode([replace(handmade(), medication=medication)],
                         {"message_control_id": "TB1", "from_id": "TBCLINIC01", "directory": DIRECTORY})
        assert f"schedule {schedule} prescription has no signature evidence" in str(refused.value)
        assert f"DEANumber is missing (required on a schedule {schedule} prescription)" in str(refused.value)


def test_a_signed_order_without_a_schedule_goes_out_with_the_tables_schedule(formats):
    """Signed by the prescriber's system with no schedule stated: the NewRx carries the table's schedule
    code, and the signature is still checked against the record as it was received (not "altered")."""
    import bridge
    from tests.ncpdp.test_format import DIRECTORY, raw

    _, ncpdp = formats
    (rx,) = ncpdp.decode(raw("newrx-controlled-signed.xml"), {})
    assert rx.medication.dea_schedule == "CIV"
    bare = replace(rx.medication, dea_schedule=None,
                   codings=[c for c in rx.medication.codings if c.code not in bridge.NCI_SCHEDULES])
    unstated = replace(rx, medication=bare)
    unstated = replace(unstated, signature=replace(rx.signature, digest=bridge.signed_digest(unstated)))
    out = ncpdp.encode([unstated], {"message_control_id": "TB2", "from_id": "TBCLINIC01", "directory": DIRECTORY})
    (again,) = ncpdp.decode(out, {})
    assert again.medication.dea_schedule == "CIV" and b"C48677" in out


def test_the_schedule_table_is_public_api_and_a_bad_override_is_named(tmp_path):
    from bridge import ConfigError, Medication, load_drug_table

    table = load_drug_table()
    row, how = table.find(Medication(rxnorm="7804"))
    assert (row.key, row.schedule, how) == ("oxycodone", "CII", "RxNorm 7804")
    assert table.find(Medication(description="Lisinopril 10 MG Oral Tablet"))[0].schedule == "none"
    assert table.find(Medication(description="Unobtainium 1 MG")) == (None, "")
    site = tmp_path / "site.yaml"
    site.write_text("drugs:\n  lisinopril:\n    ingredients: [lisinopril]\n    schedule: CV\n")
    assert load_drug_table(overrides=site).find(Medication(description="Lisinopril 10 MG"))[0].schedule == "CV"
    site.write_text("drugs:\n  lisinopril:\n    schedule: C7\n")
    with pytest.raises(ConfigError) as bad:
        load_drug_table(overrides=site)
    assert bad.value.problems == [(f"{site}: drugs.lisinopril.schedule",
                                   "expected one of CI, CII, CIII, CIV, CV, none, got 'C7'")]

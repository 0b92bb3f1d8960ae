"""Issue 13, the remaining resource-type gaps: accounts in every message type, the responsible
organizations of MSH-22/MSH-23, ... Each bundle is checked valid in fhir.resources and against the
required bindings, and stable across a second encode."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle as R4BBundle

from bridge import Account, localize_envelope, localize_records
from bridge.core.model.times import load_zone
from bridge.plugins.fhir.bindings import violations
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import FORMAT as HL7V2

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
ZONE = "America/Chicago"


def raw_of(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def bundle_of(raw: bytes) -> dict[str, Any]:
    """HL7v2 → FHIR as the engine does it, with the message's envelope."""
    records = HL7V2.decode(raw, {})
    localize_records(records, ZONE)
    envelope = HL7V2.envelope(raw)
    options = {"source_envelope": localize_envelope(envelope, load_zone(ZONE))} if envelope else {}
    return json.loads(FHIR.encode(records, options))


def check_valid(bundle: dict[str, Any]) -> None:
    R4BBundle.model_validate(bundle)
    index = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        module = importlib.import_module(f"fhir.resources.R4B.{resource['resourceType'].lower()}")
        getattr(module, resource["resourceType"]).model_validate(resource)
        assert violations(resource, index) == []


def of_type(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def by_url(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


# --- PID-18 in every message type -----------------------------------------------------------------


def test_a_scheduling_message_names_the_patients_account() -> None:
    records = HL7V2.decode(raw_of("SIU-S12-01.hl7"), {})
    (account,) = [r for r in records if isinstance(r, Account)]
    assert records[0].kind == "Appointment"  # the message's own record stays first
    assert account.patient is records[0].patient and account.status == "active"
    assert (account.identifiers[0].value, account.identifiers[0].assigner) == ("4000776", "AccMgr")
    bundle = bundle_of(raw_of("SIU-S12-01.hl7"))
    check_valid(bundle)
    (fhir_account,) = of_type(bundle, "Account")
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert fhir_account["subject"] == [{"reference": patient_url}]


def test_the_account_travels_in_the_kept_pid_so_a_round_trip_is_unchanged() -> None:
    raw = raw_of("SIU-S12-01.hl7")
    records = HL7V2.decode(raw, {})
    again = HL7V2.decode(HL7V2.encode(records, {}), {})
    assert [r.kind for r in again] == [r.kind for r in records]
    assert [i.value for i in again[-1].identifiers] == [i.value for i in records[-1].identifiers]


def test_a_message_without_pid_18_has_no_account() -> None:
    text = raw_of("SIU-S12-01.hl7").decode("utf-8-sig").replace("\n", "\r")
    pid = next(line for line in text.split("\r") if line.startswith("PID"))
    parts = pid.split("|")
    parts[18] = ""
    records = HL7V2.decode(text.replace(pid, "|".join(parts)).encode(), {})
    assert not [r for r in records if isinstance(r, Account)]


# --- MSH-22 / MSH-23 ------------------------------------------------------------------------------


def test_the_envelope_reads_the_responsible_organizations() -> None:
    env = HL7V2.envelope(raw_of("ADT-A01-02.hl7"))
    assert env.sending_organization.name == "22 GHH Inc."
    assert env.receiving_organization.name == "23 GHH Inc."
    assert HL7V2.envelope(raw_of("ADT-A40-01.hl7")).sending_organization is None  # no MSH-22


def test_message_header_names_the_responsible_organization_and_facilities_are_parts_of_them() -> None:
    bundle = bundle_of(raw_of("ADT-A01-02.hl7"))
    check_valid(bundle)
    urls = by_url(bundle)
    (header,) = of_type(bundle, "MessageHeader")
    responsible = urls[header["responsible"]["reference"]]
    assert responsible["resourceType"] == "Organization" and responsible["name"] == "22 GHH Inc."
    sender = urls[header["sender"]["reference"]]
    assert sender["name"] == "GHHSFacility" and sender["partOf"] == header["responsible"]
    receiver = urls[header["destination"][0]["receiver"]["reference"]]
    assert urls[receiver["partOf"]["reference"]]["name"] == "23 GHH Inc."
    assert bundle_of(raw_of("ADT-A01-02.hl7")) == bundle  # the same ids on redelivery


def test_without_a_facility_the_responsible_organization_is_the_sender() -> None:
    text = raw_of("ADT-A01-02.hl7").decode("utf-8-sig").replace("\n", "\r")
    msh = text.split("\r")[0]
    parts = msh.split("|")
    parts[3] = ""  # MSH-4 (fields counted after MSH-1, the separator itself)
    bundle = bundle_of(text.replace(msh, "|".join(parts)).encode())
    (header,) = of_type(bundle, "MessageHeader")
    assert header["sender"] == header["responsible"]
    assert "partOf" not in by_url(bundle)[header["sender"]["reference"]]


# --- PV1-5 / PV1-50 ---------------------------------------------------------------------------------


def test_preadmit_and_alternate_visit_numbers_are_identifiers_with_their_authorities() -> None:
    (encounter,) = [r for r in HL7V2.decode(raw_of("ADT-A01-02.hl7"), {}) if r.kind == "Encounter"]
    assert [(i.value, i.type, i.assigner) for i in encounter.identifiers] == [
        ("40007716", "VN", "AccMng"), ("1234567", "ANON", "t"), ("50", "MR", "T123")]
    bundle = bundle_of(raw_of("ADT-A01-02.hl7"))
    check_valid(bundle)
    (fhir_encounter,) = of_type(bundle, "Encounter")
    urls = by_url(bundle)
    authorities = [urls[i["assigner"]["reference"]]["name"] for i in fhir_encounter["identifier"] if "assigner" in i]
    assert authorities == ["AccMng", "t", "T123"]


def test_the_visit_numbers_go_back_as_sent_and_from_another_format_as_pv1_50() -> None:
    from bridge import Encounter, Identifier, Patient
    from bridge.plugins.hl7v2.reader import read_messages

    raw = raw_of("ADT-A01-02.hl7")
    records = HL7V2.decode(raw, {})
    pv1 = read_messages(HL7V2.encode(records, {}))[0].segment("PV1")
    original = read_messages(raw)[0].segment("PV1")
    assert (pv1.get(5), pv1.get(50)) == (original.get(5), original.get(50))
    built = Encounter(identifiers=[Identifier("V1", type="VN"), Identifier("ALT-9", assigner="BILLING")],
                      status="in-progress", encounter_class="AMB", patient=Patient(identifiers=[Identifier("M1")]))
    pv1 = read_messages(HL7V2.encode([built], {}))[0].segment("PV1")
    assert pv1.get(19).startswith("V1") and pv1.get(50).split("^")[0] == "ALT-9" and not pv1.get(5)
    (again,) = [r for r in HL7V2.decode(HL7V2.encode([built], {}), {}) if r.kind == "Encounter"]
    assert [i.value for i in again.identifiers] == ["V1", "ALT-9"]


def test_without_a_visit_number_pv1_5_is_not_read() -> None:
    text = raw_of("ADT-A01-02.hl7").decode("utf-8-sig").replace("\n", "\r")
    pv1 = next(line for line in text.split("\r") if line.startswith("PV1"))
    parts = pv1.split("|")
    parts[19] = ""
    records = HL7V2.decode(text.replace(pv1, "|".join(parts)).encode(), {})
    (encounter,) = [r for r in records if r.kind == "Encounter"]
    assert encounter.identifiers == []


# --- FT1 → ChargeItem -----------------------------------------------------------------------------


def test_ft1_charges_are_charge_items_with_their_account_and_organizations() -> None:
    from bridge import ChargeItem

    records = HL7V2.decode(raw_of("DFT-P03-01.hl7"), {})
    first, second = [r for r in records if isinstance(r, ChargeItem)]
    assert (first.code.code, first.quantity, first.amount, first.currency) == ("71045", 2.0, 100.0, "USD")
    assert (first.status, first.occurred, first.identifiers[0].value) == ("billable", "2019-11-22", "12345")
    assert [c.code for c in first.reason] == ["29857009", "68235000"]
    assert (first.cost_center.name, first.cost_center.identifiers[0].value) == ("Radiology Deptt", "RAD-1")
    assert first.performing_organization.name == "Good Health Hospital" and first.product.code == "0182-1061-05"
    assert first.account is next(r for r in records if isinstance(r, Account))
    assert first.performer.name.family == "Smith" and first.enterer.name.family == "Mellie"
    assert (second.code.code, second.amount, second.cost_center) == ("626.2", 120.0, None)
    assert all(c.extra["hl7v2"]["carried"] for c in (first, second))


def test_charge_items_in_fhir_are_valid_reference_the_account_and_read_back() -> None:
    from bridge import ChargeItem

    bundle = bundle_of(raw_of("DFT-P03-01.hl7"))
    check_valid(bundle)
    urls = by_url(bundle)
    items = of_type(bundle, "ChargeItem")
    assert len(items) == 2 and all(i["status"] == "billable" for i in items)
    first = next(i for i in items if i["code"]["coding"][0]["code"] == "71045")
    assert urls[first["account"][0]["reference"]]["resourceType"] == "Account"
    assert urls[first["costCenter"]["reference"]]["name"] == "Radiology Deptt"
    assert first["priceOverride"] == {"value": 100.0, "currency": "USD"} and first["quantity"] == {"value": 2.0}
    assert bundle_of(raw_of("DFT-P03-01.hl7")) == bundle  # same ids on redelivery
    back = [r for r in FHIR.decode(json.dumps(bundle).encode(), {}) if isinstance(r, ChargeItem)]
    assert sorted((c.code.code, c.amount) for c in back) == [("626.2", 120.0), ("71045", 100.0)]
    item = next(c for c in back if c.code.code == "71045")
    assert item.cost_center.name == "Radiology Deptt" and item.account is not None and item.patient is not None


def test_payments_and_adjustments_are_not_charge_items() -> None:
    text = raw_of("DFT-P03-01.hl7").decode("utf-8-sig").replace("\n", "\r")
    text = text.replace("|20191122|20191122|CG|", "|20191122|20191122|PY|", 1)
    kinds = [r.kind for r in HL7V2.decode(text.encode(), {})]
    assert kinds.count("ChargeItem") == 1  # the second FT1 is still a charge


# --- BLG-3 ----------------------------------------------------------------------------------------


def test_the_accounts_an_order_bills_to_are_accounts_of_the_patient() -> None:
    records = HL7V2.decode(raw_of("ORM-O01-03.hl7"), {})
    accounts = [r for r in records if isinstance(r, Account)]
    assert [(a.identifiers[0].value, a.identifiers[0].type) for a in accounts] == [
        ("4000776", "VN"), ("AI167", "MR"), ("AI168", "MR")]  # PID-18, then each BLG-3 once
    assert all(a.patient is accounts[0].patient and a.extra["hl7v2"]["carried"] for a in accounts)
    check_valid(bundle_of(raw_of("ORM-O01-03.hl7")))
    text = raw_of("ORM-O01-03.hl7").decode("utf-8-sig").replace("AI168", "AI167")
    assert len([r for r in HL7V2.decode(text.encode(), {}) if isinstance(r, Account)]) == 2  # one account, once


def test_a_charge_names_the_procedure_it_is_for() -> None:
    from bridge import ChargeItem, Procedure

    records = HL7V2.decode(raw_of("DFT-P03-01.hl7"), {})
    pr1 = next(r for r in records if isinstance(r, Procedure))
    first, second = [r for r in records if isinstance(r, ChargeItem)]
    assert first.service is pr1  # FT1-25 71045 is the PR1's procedure: one procedure, charged
    assert (second.service.code.code, second.service.status, second.service.performed) == ("99011", "unknown",
                                                                                           "2019-11-22")
    bundle = bundle_of(raw_of("DFT-P03-01.hl7"))
    check_valid(bundle)
    urls = by_url(bundle)
    services = {urls[i["service"][0]["reference"]]["code"]["coding"][0]["code"] for i in of_type(bundle, "ChargeItem")}
    assert services == {"71045", "99011"} and len(of_type(bundle, "Procedure")) == 2
    back = [r for r in FHIR.decode(json.dumps(bundle).encode(), {}) if isinstance(r, ChargeItem)]
    assert sorted(c.service.code.code for c in back) == ["71045", "99011"]


# --- Linkage --------------------------------------------------------------------------------------


def test_a_merge_gives_a_linkage_of_the_survivor_and_the_retired_record() -> None:
    bundle = bundle_of(raw_of("ADT-A40-01.hl7"))
    check_valid(bundle)
    (linkage,) = of_type(bundle, "Linkage")
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    source, historical = linkage["item"]
    assert source == {"type": "source", "resource": {"reference": patient_url}}
    assert historical["type"] == "historical" and historical["resource"]["identifier"]["value"] == "56789"
    entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Linkage")
    assert entry["request"] == {"method": "PUT", "url": f"Linkage/{linkage['id']}"}
    assert bundle_of(raw_of("ADT-A40-01.hl7")) == bundle  # the same id on redelivery
    records = HL7V2.decode(raw_of("ADT-A40-01.hl7"), {})
    assert not of_type(json.loads(FHIR.encode(records, {"linkage": False})), "Linkage")
    back = FHIR.decode(json.dumps(bundle).encode(), {})
    assert "Linkage" not in {r.kind for r in back}  # read back, the Patient's own links say it


def test_a_patient_without_links_has_no_linkage() -> None:
    assert not of_type(bundle_of(raw_of("ADT-A01-02.hl7")), "Linkage")

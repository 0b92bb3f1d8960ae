"""The ``ncpdp`` format: decode, encode, validation, signatures, XML hardening."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

import bridge
import bridge.plugins.ncpdp as p
from bridge import (
    DecodeError,
    EncodeError,
    HumanName,
    Medication,
    Patient,
    Pharmacy,
    Practitioner,
    Prescription,
    PrescriptionEvent,
    Quantity,
    record_to_dict,
)
from bridge.plugins.ncpdp.codes import dea_problem, normalize_ndc, npi_is_valid
from bridge.testing import assert_decode_error_is_clear, assert_format_round_trip, plugin_manager

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ncpdp"
DIRECTORY = str(FIXTURES / "pharmacies.csv")
OWN_FIXTURES = sorted(FIXTURES.glob("*.xml"))


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def spec():
    pm = plugin_manager(("ncpdp", p))
    return pm.format("ncpdp")


def test_registered_format_and_transports():
    pm = plugin_manager(("ncpdp", p))
    fmt = pm.format("ncpdp")
    assert (fmt.media_type, fmt.file_extension) == ("application/xml", "xml")
    assert {"ncpdp+https", "ncpdp+http"} <= set(pm.transports())


# --- decode ---------------------------------------------------------------------------------------


def test_public_mitre_newrx_decodes(spec):
    (rx,) = spec.decode(raw("mitre-pims/newrx.xml"), {})
    assert isinstance(rx, Prescription)
    assert rx.medication.description == "Isotretinoin 20 MG Oral Capsule"
    assert rx.medication.ndc == "00245057101"  # 4-4-2 hyphenated NDC padded to 11 digits
    assert (rx.quantity.value, rx.quantity.code, rx.quantity.unit) == (90.0, "C48480", "capsule")
    assert (rx.refills, rx.substitution_allowed, rx.written_date) == (3, True, "2020-07-11")
    assert rx.prescriber.npi == "1122334455" and rx.patient.gender == "male"
    assert rx.extra["ncpdp"]["message_id"] == "1675932112456"
    kept = {item["xml"] for item in rx.extra["ncpdp"]["unknown"]}
    assert "<PrescriberCheckedREMS>B</PrescriberCheckedREMS>" in kept and "<Country>US</Country>" in kept


def test_own_newrx_maps_every_field(spec):
    (rx,) = spec.decode(raw("newrx.xml"), {})
    assert rx.prescriber_order_number == "TB-ORD-1001"
    assert rx.patient.name == HumanName(family="Quill", given=["Rowan", "Tess"])
    assert rx.patient.identifiers[0].value == "MRN-000417" and rx.patient.birth_date == "1988-11-23"
    assert (rx.pharmacy.ncpdp_id, rx.pharmacy.npi, rx.pharmacy.name) == ("9912345", "1962000018", "Maple Street Pharmacy")
    assert rx.prescriber.licenses[0].number == "IL-036-118822"
    med = rx.medication
    assert (med.rxnorm, med.ndc, med.dea_schedule, med.strength) == ("308191", "00093310905", "none", "500")
    assert (rx.days_supply, rx.refills, rx.substitution_allowed) == (7, 0, True)
    assert rx.sig.startswith("Take 1 capsule") and rx.note == "Seen by video visit."
    assert rx.diagnosis[0].code == "J01.90" and rx.diagnosis[0].system.endswith("icd-10-cm")
    assert rx.signature is None and rx.status is None
    assert rx.extra["ncpdp"]["from"] == {"id": "TBCLINIC01", "qualifier": "D"}


def test_controlled_signed_newrx_keeps_the_exact_signature(spec):
    text = raw("newrx-controlled-signed.xml").decode()
    (rx,) = spec.decode(text.encode(), {})
    assert rx.medication.dea_schedule == "CIV"
    assert rx.prescriber.dea_registrations[0].number == "BD7654329"
    start = text.index("<DigitalSignature")
    end = text.index("</DigitalSignature>") + len("</DigitalSignature>")
    assert rx.signature.value == text[start:end]
    assert rx.signature.kind == "ncpdp-digital-signature"
    assert rx.signature.digest == bridge.signed_digest(rx)  # the one digest every plugin checks


@pytest.mark.parametrize("name, event_type, code, relates_to", [
    ("status.xml", "Status", "000", "NEWRX-0001"),
    ("error.xml", "Error", "900", "NEWRX-0001"),
    ("verify.xml", "Verify", "010", "NEWRX-0001"),
    ("cancelrxresponse.xml", "CancelRxResponse", "Approved", "CANCEL-0001"),
    ("rxrenewalrequest.xml", "RxRenewalRequest", None, None),
    ("rxrenewalresponse.xml", "RxRenewalResponse", "Denied", "PH-RNR-81"),
    ("rxchangerequest.xml", "RxChangeRequest", "G", None),
    ("rxchangeresponse.xml", "RxChangeResponse", "Approved", "PH-CHG-82"),
    ("rxfill.xml", "RxFill", None, "NEWRX-0001"),
])
def test_inbound_transactions_become_correlatable_events(spec, name, event_type, code, relates_to):
    (event,) = spec.decode(raw(name), {})
    assert isinstance(event, PrescriptionEvent)
    assert (event.event_type, event.code, event.relates_to_message_id) == (event_type, code, relates_to)
    assert event.message_id and event.occurred_at == "2024-03-04T15:20:11Z"
    if name not in ("status.xml", "error.xml", "verify.xml"):
        assert event.prescriber_order_number == "TB-ORD-1001"
        assert event.patient.name.family == "Quill" and event.pharmacy.ncpdp_id == "9912345"


def test_rxfill_statuses_and_details(spec):
    text = raw("rxfill.xml").decode()
    for status in ("Dispensed", "PartiallyDispensed", "NotDispensed", "Transferred"):
        (event,) = spec.decode(text.replace("Dispensed>", f"{status}>").encode(), {})
        assert event.fill_status == status
    (event,) = spec.decode(raw("rxfill.xml"), {})
    assert event.description == "Picked up" and event.medication.rxnorm == "308191"
    assert event.extra["ncpdp"]["prescription"]["days_supply"] == 7
    assert event.extra["ncpdp"]["prescriber"]["npi"] == "1578000014"


def test_error_keeps_description_codes_and_renewal_denial_reason(spec):
    (error,) = spec.decode(raw("error.xml"), {})
    assert error.extra["ncpdp"]["description_codes"] == ["1000"]
    assert "pharmacy not found" in error.description
    (denied,) = spec.decode(raw("rxrenewalresponse.xml"), {})
    assert denied.extra["ncpdp"]["reason_codes"] == ["AA"]
    assert denied.extra["ncpdp"]["denial_reason"].startswith("Patient must be seen")


def test_cancelrx_is_a_prescription_with_cancel_requested(spec):
    (rx,) = spec.decode(raw("cancelrx.xml"), {})
    assert rx.status == "cancel-requested" and rx.extra["ncpdp"]["relates_to_message_id"] == "NEWRX-0001"


def test_double_wrapped_script_is_unwrapped(spec):
    inner = raw("status.xml").decode()
    wrapped = f"<GatewayEnvelope><Route>x</Route><Payload>{escape(inner)}</Payload></GatewayEnvelope>".encode()
    (event,) = spec.decode(wrapped, {})
    assert (event.event_type, event.message_id) == ("Status", "SW-STATUS-77")
    assert spec.peek(wrapped).dedupe_key == "ncpdp:SW-STATUS-77"


# --- refusals ---------------------------------------------------------------------------------------


def test_malformed_public_file_is_refused_with_position(spec):
    error = assert_decode_error_is_clear(spec, raw("mitre-pims/data-MALFORMED-xmlspy-sample.xml"))
    assert "not well-formed XML at line" in str(error)


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Message><Header><MessageID>&xxe;</MessageID></Header><Body><Status><Code>000</Code></Status></Body></Message>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<Message><Header><MessageID>&lol4;</MessageID></Header><Body/></Message>"""


@pytest.mark.parametrize("payload", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
def test_entity_attacks_are_refused(spec, payload):
    error = assert_decode_error_is_clear(spec, payload)
    assert "DTD or entities" in str(error) and "XXE" in str(error)
    assert spec.peek(payload).dedupe_key is None


def test_escaped_attack_inside_a_wrapper_is_refused_too(spec):
    wrapped = b"<Envelope><Payload>" + escape(XXE.decode()).encode() + b"</Payload></Envelope>"
    assert "DTD or entities" in str(assert_decode_error_is_clear(spec, wrapped))


def test_size_limit(spec):
    with pytest.raises(DecodeError, match="over the limit of 1000"):
        spec.decode(raw("newrx.xml"), {"max_xml_bytes": 1000})


def test_every_problem_is_listed_by_path(spec):
    text = raw("newrx.xml").decode()
    text = text.replace("<Value>21</Value>", "")
    text = text.replace("<NPI>1578000014</NPI>", "<NPI>1578000015</NPI>")
    text = text.replace("<NCPDPID>9912345</NCPDPID>", "<NCPDPID>99123</NCPDPID>")
    text = text.replace("<Code>00093310905</Code>", "<Code>12345</Code>")
    text = text.replace("<Date>1988-11-23</Date>", "<Date>1988-02-30</Date>")
    with pytest.raises(DecodeError) as info:
        spec.decode(text.encode(), {})
    message = str(info.value)
    assert "Body/NewRx/MedicationPrescribed/Quantity/Value is missing" in message
    assert "Body/NewRx/Prescriber/NonVeterinarian/Identification/NPI '1578000015' is not a valid NPI" in message
    assert "Pharmacy/Identification/NCPDPID '99123' is not an NCPDPID (7 digits)" in message
    assert "ProductCode/Code '12345' is not an NDC" in message
    assert "DateOfBirth/Date is not a date" in message and "1988-02-30" not in message  # no PHI echoed
    assert "(5 problem(s))" in message


def test_controlled_prescription_needs_a_valid_dea_number(spec):
    text = raw("newrx-controlled-signed.xml").decode()
    with pytest.raises(DecodeError, match="'BD7654321' has a wrong DEA check digit"):
        spec.decode(text.replace("BD7654329", "BD7654321").encode(), {})
    with pytest.raises(DecodeError, match="DEANumber is missing \\(required on a schedule CIV"):
        spec.decode(text.replace("<DEANumber>BD7654329</DEANumber>", "").encode(), {})


def test_other_versions_are_refused_clearly(spec):
    text = raw("status.xml").decode().replace('TransactionVersion="20170715"', 'TransactionVersion="20230115"')
    with pytest.raises(DecodeError, match="TransactionVersion '20230115' is not supported"):
        spec.decode(text.encode(), {})
    legacy = b'<Message xmlns="http://www.ncpdp.org/schema/SCRIPT" version="010" release="006"><Header/></Message>'
    with pytest.raises(DecodeError, match="10.6"):
        spec.decode(legacy, {})
    with pytest.raises(EncodeError, match="'2023011' is not supported"):
        spec.encode(spec.decode(raw("newrx.xml"), {}), {"version": "2023011"})


def test_peek_never_fails(spec):
    assert spec.peek(b"\xff\xfe garbage").dedupe_key is None
    assert spec.peek(b"") == type(spec.peek(b""))()
    header = spec.peek(raw("rxfill.xml"))
    assert (header.control_id, header.message_type, header.dedupe_key) == ("PH-FILL-83", "RxFill", "ncpdp:PH-FILL-83")


# --- encode ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", OWN_FIXTURES, ids=lambda path: path.name)
def test_round_trip_of_every_transaction(spec, path):
    records = spec.decode(path.read_bytes(), {})
    assert_format_round_trip(spec, records, {"directory": DIRECTORY})


def handmade() -> Prescription:
    return Prescription(
        prescriber_order_number="ORD-77",
        medication=Medication(description="Lisinopril 10 MG Oral Tablet", rxnorm="314076", ndc="68180-0514-01"),
        quantity=Quantity(value=30, unit="tablet"), days_supply=30, refills=2, sig="Take 1 tablet daily",
        substitution_allowed=False, written_date="2024-05-01",
        patient=Patient(name=HumanName(family="Vale", given=["Ira"]), birth_date="1970-01-02", gender="male"),
        prescriber=Practitioner(npi="1578000014", name=HumanName(family="Okafor", given=["Lena"])),
        pharmacy=Pharmacy(ncpdp_id="9912345"),
    )


def test_newrx_from_a_platform_prescription(spec):
    options = {"message_control_id": "TB9", "from_id": "TBCLINIC01", "directory": DIRECTORY}
    out = spec.encode([handmade()], options)
    header = spec.peek(out)
    assert (header.control_id, header.message_type) == ("TB9-NewRx", "NewRx")
    assert spec.encode([handmade()], options).split(b"<SentTime>")[0] == out.split(b"<SentTime>")[0]
    (rx,) = spec.decode(out, {})
    assert rx.medication.ndc == "68180051401" and rx.substitution_allowed is False
    assert rx.quantity.code == "C48542" and rx.pharmacy.name == "Maple Street Pharmacy"  # from the directory
    assert b"<SenderSoftwareDeveloper>Telemed Bridge</SenderSoftwareDeveloper>" in out


def test_cancelrx_from_a_cancel_requested_prescription(spec):
    rx = replace(handmade(), status="cancel-requested")
    out = spec.encode([rx], {"message_control_id": "TB10", "from_id": "TBCLINIC01"})
    assert spec.peek(out).control_id == "TB10-CancelRx"
    assert spec.decode(out, {})[0].status == "cancel-requested"
    with pytest.raises(EncodeError, match="encoded from a Prescription"):
        spec.encode([PrescriptionEvent(event_type="CancelRx")], {})


@pytest.mark.parametrize("kind", ["Approved", "ApprovedWithChanges", "Denied", "Replace"])
def test_renewal_responses(spec, kind):
    (request,) = spec.decode(raw("rxrenewalrequest.xml"), {})
    response = PrescriptionEvent(event_type="RxRenewalResponse", code=kind, relates_to_message_id=request.message_id,
                                 prescriber_order_number=request.prescriber_order_number, patient=request.patient,
                                 pharmacy=request.pharmacy, medication=request.medication, quantity=request.quantity,
                                 description="checked by the prescriber",
                                 extra={"ncpdp": {"prescriber": request.extra["ncpdp"]["prescriber"]}})
    out = spec.encode([response], {"message_control_id": "TB11", "from_id": "TBCLINIC01"})
    (back,) = spec.decode(out, {})
    assert (back.code, back.relates_to_message_id, back.message_id) == (kind, "PH-RNR-81", "TB11-RxRenewalResponse")
    assert b'<To Qualifier="P">9912345</To>' in out


@pytest.mark.parametrize("kind", ["Approved", "ApprovedWithChanges", "Denied", "Validated"])
def test_change_responses_take_the_prescriber_from_a_prescription(spec, kind):
    rx = handmade()
    response = PrescriptionEvent(event_type="RxChangeResponse", code=kind, relates_to_message_id="PH-CHG-82",
                                 patient=rx.patient, pharmacy=rx.pharmacy)
    out = spec.encode([response, rx], {"message_control_id": "TB12", "from_id": "TBCLINIC01"})
    (back,) = spec.decode(out, {})
    assert back.code == kind and back.extra["ncpdp"]["prescriber"]["npi"] == "1578000014"
    assert back.prescriber_order_number == "ORD-77" and back.medication.rxnorm == "314076"


def test_responses_need_relates_to(spec):
    response = PrescriptionEvent(event_type="RxChangeResponse", code="Approved", patient=handmade().patient)
    with pytest.raises(EncodeError) as info:
        spec.encode([response, handmade()], {"from_id": "X"})
    assert "Header/RelatesToMessageID is missing (required on RxChangeResponse)" in str(info.value)


def test_encode_lists_every_missing_element(spec):
    bare = Prescription(medication=Medication(description="Something"), pharmacy=Pharmacy(ncpdp_id="9912345"))
    with pytest.raises(EncodeError) as info:
        spec.encode([bare], {})
    message = str(info.value)
    for path in ("Header/From is missing", "Body/NewRx/Patient/HumanPatient/Name/LastName is missing",
                 "Body/NewRx/MedicationPrescribed/Quantity/Value is missing",
                 "Body/NewRx/Prescriber/NonVeterinarian/Identification/NPI is missing"):
        assert path in message


def test_encode_refuses_ambiguous_input(spec):
    with pytest.raises(EncodeError, match="one SCRIPT message carries one transaction"):
        spec.encode([handmade(), handmade()], {})
    with pytest.raises(EncodeError, match="nothing to encode"):
        spec.encode([Patient()], {})


# --- controlled substances --------------------------------------------------------------------------


def controlled(spec) -> Prescription:
    return spec.decode(raw("newrx-controlled-signed.xml"), {})[0]


def test_signed_controlled_prescription_is_sent_unchanged(spec):
    rx = controlled(spec)
    out = spec.encode([rx], {"directory": DIRECTORY, "from_id": "TBCLINIC01", "message_control_id": "TB13"})
    assert rx.signature.value.encode() in out


@pytest.mark.parametrize("change", [
    lambda rx: setattr(rx.quantity, "value", 90.0),
    lambda rx: setattr(rx, "sig", "Take 2 tablets"),
    lambda rx: setattr(rx.medication, "ndc", "00024542199"),
    lambda rx: setattr(rx.patient.name, "family", "Other"),
    lambda rx: setattr(rx.prescriber.dea_registrations[0], "number", "AB1234563"),
    lambda rx: setattr(rx, "written_date", "2024-03-05"),
], ids=["quantity", "sig", "drug", "patient", "dea", "written-date"])
def test_altering_a_signed_prescription_is_refused(spec, change):
    rx = copy.deepcopy(controlled(spec))
    change(rx)
    with pytest.raises(EncodeError, match="altered after signing"):
        spec.encode([rx], {"directory": DIRECTORY})


def test_controlled_prescription_without_signature_is_refused(spec):
    rx = replace(controlled(spec), signature=None)
    with pytest.raises(EncodeError, match="schedule CIV prescription has no signature evidence"):
        spec.encode([rx], {"directory": DIRECTORY})


def test_controlled_prescription_to_a_non_epcs_pharmacy_is_refused(spec):
    rx = controlled(spec)
    rx = replace(rx, pharmacy=Pharmacy(ncpdp_id="9954321"))
    with pytest.raises(EncodeError, match=r"pharmacy Corner Apothecary .* \(NCPDPID 9954321\) cannot receive EPCS"):
        spec.encode([rx], {"directory": DIRECTORY})
    unknown = replace(rx, pharmacy=Pharmacy(ncpdp_id="9900093"))
    with pytest.raises(EncodeError, match="NCPDPID 9900093.*not in the pharmacy directory"):
        spec.encode([unknown], {"directory": DIRECTORY})


def test_bad_directory_rows_are_reported_with_line_numbers(spec, tmp_path):
    bad = tmp_path / "dir.csv"
    bad.write_text("ncpdp_id,name,npi,epcs_capable\n123,Short,1962000018,yes\n9912345,Ok,1111111111,maybe\n")
    with pytest.raises(EncodeError) as info:
        spec.encode([handmade()], {"directory": str(bad), "from_id": "X"})
    message = str(info.value)
    assert "line 2: ncpdp_id '123' is not 7 digits" in message
    assert "line 3: npi '1111111111' is not a valid NPI" in message and "epcs_capable 'maybe'" in message


def test_identifier_checks():
    assert npi_is_valid("1234567893") and not npi_is_valid("1234567890")
    assert dea_problem("AB1234563") is None and "check digit" in dea_problem("AB1234564")
    assert "not a DEA number" in dea_problem("A11234563")
    assert normalize_ndc("0093-3109-05") == "00093310905" and normalize_ndc("12345-678-90") == "12345067890"
    assert normalize_ndc("12345-6789-1") == "12345678901" and normalize_ndc("1234567890") is None


def test_unknown_elements_survive_a_round_trip(spec):
    (rx,) = spec.decode(raw("mitre-pims/newrx.xml"), {})
    rx.pharmacy = Pharmacy(ncpdp_id="9912345")
    out = spec.encode([rx], {"from_id": "TBCLINIC01"})
    assert b"<PrescriberCheckedREMS>B</PrescriberCheckedREMS>" in out and out.count(b"<Country>US</Country>") == 2
    (again,) = spec.decode(out, {})
    assert record_to_dict(again)["extra"]["ncpdp"]["unknown"] == rx.extra["ncpdp"]["unknown"]

"""Issue 13, RDE^O11 out: RXE-2 (give code) and RXE-7 (provider's administration instructions) are
written from the Prescription, and checked by decoding what we encode. A sender's own wording (a
CWE's original text, instructions as repetitions of the identifier) goes back as sent while the
record still says the same thing; a changed record is written from its values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bridge import Coding, Medication, Patient, Prescription, Quantity, record_to_dict
from bridge.plugins.hl7v2.codec import decode, encode
from bridge.plugins.hl7v2.reader import Message, read_messages
from tests.hl7v2 import fidelity

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
OPTS = {"message_datetime": "2024-05-01T10:00:00-05:00", "sending_application": "TB"}
NDC = "http://hl7.org/fhir/sid/ndc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def rxe_fields(raw: bytes) -> list[list[str]]:
    message: Message = read_messages(raw)[0]
    return [s.fields for s in message.segments if s.name == "RXE"]


def order(**changes) -> Prescription:
    base = Prescription(
        prescriber_order_number="O1", status="active", intent="filler-order",
        medication=Medication(description="Ibuprofen 400 MG Oral Tablet", codings=[
            Coding(code="197806", display="Ibuprofen 400 MG Oral Tablet", system=RXNORM),
            Coding(code="0904-5853-61", display="Ibuprofen 400mg tab", system=NDC),
            Coding(code="LOCAL7", display="Ibu 400", system="urn:oid:2.16.840.1.113883.3.1")]),
        quantity=Quantity(value=20.0, unit="tablet"), sig="1 tablet every 8 hours\nwith food",
        patient=Patient(name=None))
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("name", ["RDE-O11-01.hl7", "RDE-O11-02.hl7"])
def test_a_senders_give_code_and_instructions_go_back_as_sent(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    records = decode(raw, {})
    out = encode(records, OPTS)
    for sent, ours in zip(rxe_fields(raw), rxe_fields(out), strict=True):
        assert ours[2] == sent[2] and ours[7] == sent[7]
    assert "^^^^^^" in rxe_fields(out)[0][2]  # CWE.9 original text survived
    again = decode(out, {})
    assert [record_to_dict(r) for r in again] == [record_to_dict(r) for r in records]
    assert fidelity.compare(read_messages(raw)[0], read_messages(out)[0]).ratio == 1.0


def test_a_changed_medication_and_sig_are_written_from_the_record() -> None:
    raw = (CORPUS / "RDE-O11-01.hl7").read_bytes()
    records = decode(raw, {})
    rx = next(r for r in records if isinstance(r, Prescription))
    changed = dataclasses.replace(rx, medication=order().medication, sig="Stop after 3 days")
    out = encode([changed if r is rx else r for r in records], OPTS)
    rxe = rxe_fields(out)[0]
    assert rxe[2] == "197806^Ibuprofen 400 MG Oral Tablet^RXNORM^0904-5853-61^Ibuprofen 400mg tab^NDC"
    assert rxe[7] == "^Stop after 3 days"
    back = next(r for r in decode(out, {}) if isinstance(r, Prescription))
    assert [c.code for c in back.medication.codings] == ["197806", "0904-5853-61"]
    assert back.sig == "Stop after 3 days"


def test_a_built_order_writes_two_give_triplets_and_its_sig_lines() -> None:
    out = encode([order()], OPTS)
    rxe = rxe_fields(out)[0]
    assert rxe[2].split("^") == ["197806", "Ibuprofen 400 MG Oral Tablet", "RXNORM",
                                 "0904-5853-61", "Ibuprofen 400mg tab", "NDC"]  # CWE: two triplets
    assert rxe[7] == "^1 tablet every 8 hours\\.br\\with food"
    (back,) = decode(out, {})
    assert back.sig == order().sig
    assert back.medication.codings == order().medication.codings[:2]
    assert back.medication.rxnorm == "197806" and back.medication.ndc == "0904-5853-61"


def test_a_medication_without_codings_goes_out_as_its_ndc_or_rxnorm() -> None:
    by_ndc = order(medication=Medication(description="Ibuprofen 400 MG", ndc="0904-5853-61", rxnorm="197806"))
    assert rxe_fields(encode([by_ndc], OPTS))[0][2] == "0904-5853-61^Ibuprofen 400 MG^NDC"
    by_rxnorm = order(medication=Medication(description="Ibuprofen 400 MG", rxnorm="197806"), sig=None)
    rxe = rxe_fields(encode([by_rxnorm], OPTS))[0]
    assert rxe[2] == "197806^Ibuprofen 400 MG^RXNORM" and (len(rxe) <= 7 or rxe[7] == "")
    (back,) = decode(encode([by_rxnorm], OPTS), {})
    assert back.medication.rxnorm == "197806" and back.sig is None


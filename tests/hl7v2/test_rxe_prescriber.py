"""RXE-13, the ordering provider's DEA number: the prescriber of a pharmacy order whose ORC-12 is empty.

Microsoft's RDE^O11/O25 and RDS^O13 samples name the prescriber only there; before, the order
reached FHIR with no requester and the telehealth gate saw no prescriber at all.
"""

from __future__ import annotations

import json

from bridge import Prescription
from bridge.plugins.fhir.codec import FORMAT as FHIR
from bridge.plugins.hl7v2.codec import decode, encode

RDE = (b"MSH|^~\\&|PHARM|HOSP|RX|HOSP|20240101120000-0600||RDE^O11|M1|P|2.5.1\r"
       b"PID|1||123^^^HOSP^MR||DOE^JANE||19700101|F\r"
       b"ORC|NW|PL1^EPC|||||||20240101120000-0600||||||||||||LAKE FOREST HOSPITAL\r"
       b"RXE||00093015001^OXYCODONE 5 MG TAB^NDC|5||mg|||||30|TAB||AB1234563^ONE^TEST^K\r")


def prescription(raw: bytes) -> Prescription:
    return next(r for r in decode(raw, {}) if isinstance(r, Prescription))


def test_rxe13_names_the_prescriber_with_their_dea_registration() -> None:
    rx = prescription(RDE)
    assert rx.prescriber is not None and rx.prescriber.name.family == "ONE"
    assert [d.number for d in rx.prescriber.dea_registrations] == ["AB1234563"]
    assert rx.prescriber.identifiers == []  # the number is a DEA registration, not a bare id


def test_orc12_goes_back_empty_and_rxe13_as_sent() -> None:
    out = encode(decode(RDE, {}), {})
    text = out.decode() if isinstance(out, bytes) else out
    segments = {s.split("|")[0]: s.split("|") for s in text.replace("\n", "\r").split("\r") if s}
    assert segments["ORC"][12] == ""
    assert segments["RXE"][13] == "AB1234563^ONE^TEST^K"


def test_orc12_wins_over_rxe13() -> None:
    raw = RDE.replace(b"20240101120000-0600||||||||", b"20240101120000-0600|||555^SMITH^ANN|||||", 1)
    rx = prescription(raw)
    assert rx.prescriber.name.family == "SMITH" and rx.prescriber.dea_registrations == []


def test_fhir_requester_is_the_ordering_provider_of_the_named_facility() -> None:
    bundle = json.loads(FHIR.encode(decode(RDE, {}), {}))
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    request = next(r for r in urls.values() if r["resourceType"] == "MedicationRequest")
    role = urls[request["requester"]["reference"]]
    assert role["resourceType"] == "PractitionerRole" and role["code"][0]["coding"][0]["code"] == "OP"
    assert urls[role["organization"]["reference"]]["name"] == "LAKE FOREST HOSPITAL"
    person = urls[role["practitioner"]["reference"]]
    assert person["name"][0]["family"] == "ONE"
    people = [r for r in urls.values() if r["resourceType"] == "Practitioner"]
    assert len(people) == 1  # the prescriber once, not once per element
    decoded = next(r for r in FHIR.decode(json.dumps(bundle).encode(), {}) if isinstance(r, Prescription))
    assert decoded.prescriber is not None and decoded.prescriber.name.family == "ONE"
    assert [d.number for d in decoded.prescriber.dea_registrations] == ["AB1234563"]

"""Places and roles the first places/people slices left out (issue 13, H8): PV2-1 prior pending
location, PRT segments that name a place but no person. All derived from fields the HL7v2 encoder
keeps as read, so round trips are unchanged. Messages are the project's own, fictional people and places."""

from __future__ import annotations

import json
from typing import Any

from bridge import Encounter, Location
from bridge.plugins.hl7v2.codec import decode, encode

from .test_adt_background import check_valid, of_type, system_problems

OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00"}
MSH = "MSH|^~\\&|EHR|RIVERBEND|TB|TB|20261120104500||ADT^{event}|CTL{event}|P|2.8"
PID = "PID|1||MRN00012345^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR||Testpatient^Alex^J||19800412|F"
PV1 = "PV1|1|I|4W^412^A^RIVERBEND||||||||||||||||V20261120-0042^^^RIVERBEND^VN"
PV2 = "PV2|5E^501^B^RIVERBEND^^^NORTH^5"


def raw(event: str, *segments: str) -> bytes:
    return "\r".join([MSH.format(event=event), PID, *segments]).encode() + b"\r"


def names(place: Location | None) -> list[tuple[str | None, str | None]]:
    out = []
    while place is not None:
        out.append((place.physical_type, place.name))
        place = place.part_of
    return out


def bundle_of(fhir_format: Any, records: list[Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    bundle = json.loads(fhir_format.encode(records, {}))
    check_valid(bundle)
    assert system_problems(bundle) == []
    return bundle, {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


# --- PV2-1 prior pending location -----------------------------------------------------------------


def test_pv2_1_is_a_planned_place_that_is_not_temporary() -> None:
    encounter = decode(raw("A27", PV1, PV2), OPTS)[0]
    assert isinstance(encounter, Encounter)
    assigned, pending = encounter.locations
    assert (assigned.status, assigned.temporary) == ("active", None)
    assert (pending.status, pending.temporary) == ("planned", False)
    assert names(pending.location) == [("bd", "B"), ("ro", "501"), (None, "5E"), ("lvl", "5"), ("bu", "NORTH"),
                                       ("si", "RIVERBEND")]


def test_a_visit_without_pv2_1_has_no_pending_place() -> None:
    encounter = decode(raw("A01", PV1, "PV2|||CHEST PAIN"), OPTS)[0]
    assert [p.status for p in encounter.locations] == ["active"]


def test_pv2_1_round_trips_unchanged_and_is_not_written_as_pv1_42() -> None:
    message = raw("A27", PV1, PV2)
    records = decode(message, OPTS)
    out = encode(records, {}).decode().split("\r")
    assert next(s for s in out if s.startswith("PV1")) == PV1
    assert next(s for s in out if s.startswith("PV2")) == PV2
    assert decode(encode(records, {}), OPTS)[0].locations == records[0].locations


def test_pv2_1_reaches_fhir_as_a_planned_location_and_reads_back(fhir_format) -> None:
    records = decode(raw("A27", PV1, PV2), OPTS)
    bundle, by_url = bundle_of(fhir_format, records)
    encounter = of_type(bundle, "Encounter")[0]["resource"]
    planned = [part for part in encounter["location"] if part["status"] == "planned"]
    assert len(planned) == 1 and planned[0]["extension"][0]["valueBoolean"] is False
    assert by_url[planned[0]["location"]["reference"]]["name"] == "B"
    back = next(r for r in fhir_format.decode(json.dumps(bundle).encode(), {}) if isinstance(r, Encounter))
    assert back.locations[1].status == "planned" and back.locations[1].temporary is False
    assert names(back.locations[1].location) == names(records[0].locations[1].location)


# --- PRT naming a place and no person -----------------------------------------------------------

PRT_PLACE = "PRT|1|AD||AD^Admitting Provider^HL70912|||||ER^2^^RIVERBEND||||||^WPN^PH^^^608^5550100"


def test_a_prt_with_a_place_and_no_person_is_a_role_at_that_place() -> None:
    encounter = decode(raw("A01", PV1, PRT_PLACE), OPTS)[0]
    (part,) = encounter.participants
    assert part.function == "ADM" and part.practitioner is None and part.role.practitioner is None
    assert [c.code for c in part.role.code] == ["AD"] and part.role.telecom[0].value == "6085550100"
    assert names(part.role.locations[0]) == [("ro", "2"), (None, "ER"), ("si", "RIVERBEND")]


def test_a_prt_with_neither_person_nor_place_gives_nothing_and_a_deleted_one_nothing() -> None:
    org_only = "PRT|1|AD||AD^Admitting Provider^HL70912|||Riverbend Org"
    assert decode(raw("A01", PV1, org_only), OPTS)[0].participants == []
    deleted = PRT_PLACE.replace("PRT|1|AD|", "PRT|1|DE|")
    assert decode(raw("A01", PV1, deleted), OPTS)[0].participants == []


def test_the_place_only_prt_round_trips_unchanged() -> None:
    message = raw("A01", PV1, PRT_PLACE)
    records = decode(message, OPTS)
    out = encode(records, {}).decode().split("\r")
    assert [s for s in out if s.startswith(("PV1", "PRT"))] == [PV1, PRT_PLACE]


def test_the_place_only_role_reaches_fhir_without_a_practitioner_and_reads_back(fhir_format) -> None:
    records = decode(raw("A01", PV1, PRT_PLACE), OPTS)
    bundle, by_url = bundle_of(fhir_format, records)
    (role,) = [e["resource"] for e in of_type(bundle, "PractitionerRole")]
    assert "practitioner" not in role and by_url[role["location"][0]["reference"]]["name"] == "2"
    encounter = of_type(bundle, "Encounter")[0]["resource"]
    assert [p["type"][0]["coding"][0]["code"] for p in encounter["participant"]] == ["ADM"]
    again, _ = bundle_of(fhir_format, records)
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in bundle["entry"]]  # stable ids
    back = next(r for r in fhir_format.decode(json.dumps(bundle).encode(), {}) if isinstance(r, Encounter))
    (part,) = back.participants
    assert part.function == "ADM" and part.role.practitioner is None
    assert names(part.role.locations[0]) == names(records[0].participants[0].role.locations[0])


RDE = ("MSH|^~\\&|EHR|RIVERBEND|RX|RIVERBEND|20261120104500||RDE^O11^RDE_O11|CTLRX1|P|2.8",
       PID, "ORC|NW|ORD7001^EHR|||||||20261120103000",
       "RXO|00047040230^Ampicillin 250 mg caps^NDC|2||caps^capsule",
       "PRT||AD||CP|58^Jackson|||Eastside|CLINIC^7^^RIVERBEND",
       "RXE||00047040230^Ampicillin 250 mg caps^NDC|2||caps^capsule",
       "PRT||AD||AD||||General|PHARM^^^RIVERBEND")


def test_an_rde_reads_the_prt_of_its_rxo_and_of_its_rxe() -> None:
    from bridge import Prescription

    (rx,) = [r for r in decode("\r".join(RDE).encode() + b"\r", OPTS) if isinstance(r, Prescription)]
    found = [([c.code for c in p.role.code], p.role.practitioner.name.family if p.role.practitioner else None,
              p.role.locations[0].name) for p in rx.participants]
    assert found == [(["CP"], "Jackson", "7"), (["AD"], None, "PHARM")]


# --- EVN-7 event facility -------------------------------------------------------------------------


def test_evn_7_is_the_event_provenances_site(fhir_format) -> None:
    from .test_envelope import _bundle, _of, _raw
    from bridge.plugins.hl7v2.codec import FORMAT as HL7V2

    raw_message = _raw()  # Microsoft's ADT-A01-01: EVN-7 Cona_Health^1.3.6.1.4.1.44750.1.4^ISO
    facility = HL7V2.envelope(raw_message).event_facility
    assert (facility.name, facility.universal_id, facility.universal_id_type) == \
        ("Cona_Health", "1.3.6.1.4.1.44750.1.4", "ISO")
    bundle = _bundle(raw_message)
    check_valid(bundle)
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    message, event = [e["resource"] for e in _of(bundle, "Provenance")]
    assert "location" not in message
    site = by_url[event["location"]["reference"]]
    assert (site["resourceType"], site["name"], site["physicalType"]["coding"][0]["code"]) == \
        ("Location", "Cona_Health", "si")
    assert {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.3.6.1.4.1.44750.1.4"} in site["identifier"]
    assert _bundle(raw_message) == bundle  # stable ids


def test_an_event_without_evn_7_has_no_location() -> None:
    from .test_envelope import _bundle, _of, _raw

    raw_message = _raw().replace(b"|Cona_Health^1.3.6.1.4.1.44750.1.4^ISO", b"|")
    (_, event) = [e["resource"] for e in _of(_bundle(raw_message), "Provenance")]
    assert "location" not in event


# --- VXU: the PRT segments of the ORC and of the RXA ------------------------------------------------


def test_a_vaccinations_prt_after_its_rxa_and_rxr_is_a_performer(fhir_format) -> None:
    from pathlib import Path

    from bridge import Immunization

    corpus = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
    original = (corpus / "VXU-V04-01.hl7").read_bytes()
    rxr = next(line for line in original.splitlines() if line.startswith(b"RXR|"))
    nurse = b"PRT||AD||AP^Administering Provider^HL70912|77^Nurse^Nina|||||CLINIC^3^^RIVERBEND"
    (shot,) = [r for r in decode(original.replace(rxr, rxr + b"\r" + nurse), {}) if isinstance(r, Immunization)]
    found = [([c.code for c in p.role.code], p.role.practitioner.name.family if p.role.practitioner else None)
             for p in shot.participants]
    assert found == [(["OP"], "Thomas"), (["AD"], None), (["AP"], "Nurse")]
    bundle, by_url = bundle_of(fhir_format, [shot])
    roles = [by_url[p["actor"]["reference"]] for p in of_type(bundle, "Immunization")[0]["resource"]["performer"]]
    assert [r["resourceType"] for r in roles] == ["Practitioner", "PractitionerRole", "PractitionerRole",
                                                  "PractitionerRole"]

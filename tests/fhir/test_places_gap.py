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

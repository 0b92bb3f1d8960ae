"""A visit's places (PV1-3/6/11/42/43) as Location chains and its servicing facility (PV1-39) as an
Organization (issue 13): derived from fields the HL7v2 encoder keeps as read, so round trips are
unchanged. The messages are the project's own, with fictional people and places."""

from __future__ import annotations

from bridge import Encounter, Location
from bridge.plugins.hl7v2.codec import decode, encode

OPTS = {"message_datetime": "2026-11-20T10:00:00-06:00"}
MSH = "MSH|^~\\&|EHR|RIVERBEND|TB|TB|20261120104500||ADT^{event}|CTL{event}|P|2.5"
PID = "PID|1||MRN00012345^^^RIVERBEND&2.16.840.1.113883.3.999.2&ISO^MR||Testpatient^Alex^J||19800412|F"
ASSIGNED = "4W^412^A^RIVERBEND&2.16.840.1.113883.3.999.1&ISO^^^NORTH^4^Bed A by the window"


def seg(name: str, fields: dict[int, str]) -> str:
    values = [""] * (max(fields) + 1)
    for number, value in fields.items():
        values[number] = value
    return "|".join([name, *values[1:]])


def message(event: str, pv1: dict[int, str], *rest: str) -> bytes:
    fields = {1: "1", 2: "I", 19: "V20261120-0042^^^RIVERBEND^VN", **pv1}
    return "\r".join([MSH.format(event=event), PID, seg("PV1", fields), *rest]).encode() + b"\r"


def chain(place: Location | None) -> list[tuple[str | None, str | None]]:
    out = []
    while place is not None:
        out.append((place.physical_type, place.name))
        place = place.part_of
    return out


def visit(raw: bytes) -> Encounter:
    first = decode(raw, OPTS)[0]
    assert isinstance(first, Encounter)
    return first


def test_assigned_location_is_a_bed_in_its_room_ward_floor_building_and_site() -> None:
    encounter = visit(message("A01", {3: ASSIGNED}))
    (part,) = encounter.locations
    assert part.status == "active" and part.temporary is None and part.period is None
    assert chain(part.location) == [("bd", "A"), ("ro", "412"), (None, "4W"), ("lvl", "4"), ("bu", "NORTH"),
                                    ("si", "RIVERBEND")]
    assert part.location.description == "Bed A by the window"
    site = part.location
    while site.part_of is not None:
        site = site.part_of
    assert [(i.value, i.system) for i in site.identifiers] == [("urn:oid:2.16.840.1.113883.3.999.1",
                                                                 "urn:ietf:rfc:3986")]
    assert all(p.mode == "instance" for p in _places(part.location))


def _places(place: Location | None) -> list[Location]:
    out = []
    while place is not None:
        out.append(place)
        place = place.part_of
    return out


def test_prior_temporary_and_pending_places_take_their_tense() -> None:
    encounter = visit(message("A02", {3: "4W^412^A^RIVERBEND", 6: "ER^2^^RIVERBEND", 11: "XRAY^^^RIVERBEND",
                                      42: "5E^501^^RIVERBEND", 43: "CT^^^RIVERBEND"}))
    got = [(p.location.name, p.status, p.temporary) for p in encounter.locations]
    assert got == [("A", "active", None), ("2", "completed", None), ("XRAY", "active", True),
                   ("501", "planned", None), ("CT", "completed", True)]


def test_a_finished_visits_assigned_place_is_completed_and_a_planned_ones_planned() -> None:
    assert visit(message("A03", {3: ASSIGNED, 45: "20261121090000"})).locations[0].status == "completed"
    assert visit(message("A05", {3: ASSIGNED})).locations[0].status == "planned"


def test_servicing_facility_is_the_visits_service_provider() -> None:
    provider = visit(message("A01", {3: ASSIGNED, 39: "RIVERBEND"})).service_provider
    assert provider is not None and provider.name == "RIVERBEND"
    assert [(i.value, i.type) for i in provider.identifiers] == [("RIVERBEND", "FI")]
    coded = visit(message("A01", {39: "RB01^Riverbend Hospital"})).service_provider
    assert coded is not None and coded.name == "Riverbend Hospital" and coded.identifiers[0].value == "RB01"


def test_a_visit_without_places_has_none() -> None:
    encounter = visit(message("A01", {7: "1234567893^Example^Dana"}))
    assert encounter.locations == [] and encounter.service_provider is None


def test_pv1_places_round_trip_unchanged() -> None:
    raw = message("A02", {3: ASSIGNED, 6: "ER^2^^RIVERBEND", 11: "XRAY^^^RIVERBEND", 39: "RB01^Riverbend Hospital",
                          42: "5E^501^^RIVERBEND", 43: "CT^^^RIVERBEND"})
    records = decode(raw, OPTS)
    out = encode(records, {}).decode()
    pv1_in = next(s for s in raw.decode().split("\r") if s.startswith("PV1"))
    pv1_out = next(s for s in out.split("\r") if s.startswith("PV1"))
    assert pv1_out == pv1_in
    assert decode(encode(records, {}), OPTS)[0].locations == records[0].locations


def test_a_result_whose_bare_pv1_names_only_a_place_still_has_no_visit() -> None:
    raw = "\r".join([
        "MSH|^~\\&|LAB|RIVERBEND|TB|TB|20261120104500||ORU^R01^ORU_R01|CTL1|P|2.5", PID,
        seg("PV1", {1: "1", 3: "4W^412^A^RIVERBEND"}),
        "OBR|1|ORD1|FIL1|2345-7^Glucose^LN|||20261120090000",
        "OBX|1|NM|2345-7^Glucose^LN||98|mg/dL|70-99|N|||F"]).encode() + b"\r"
    records = decode(raw, OPTS)
    assert not any(isinstance(r, Encounter) for r in records)
    assert all(getattr(r, "encounter", None) is None for r in records)
    pv1_out = next(s for s in encode(records, {}).decode().split("\r") if s.startswith("PV1"))
    assert pv1_out == "PV1|1|U|4W^412^A^RIVERBEND"  # as before places were read (PV1-2 is required: U)


def test_an_encounter_from_another_format_writes_its_places_into_pv1() -> None:
    """A FHIR Encounter has no kept PV1: its places and service provider are written from the records."""
    from bridge import EncounterLocation, Identifier, Organization, Patient

    site = Location(name="RIVERBEND", physical_type="si",
                    identifiers=[Identifier(value="urn:oid:2.16.840.1.113883.3.999.1", system="urn:ietf:rfc:3986")])
    bed = Location(name="A", physical_type="bd",
                   part_of=Location(name="412", physical_type="ro", part_of=Location(name="4W", part_of=site)))
    encounter = Encounter(status="in-progress", encounter_class="IMP",
                          identifiers=[Identifier(value="V1", type="VN")],
                          patient=Patient(identifiers=[Identifier(value="M1", type="MR")]),
                          locations=[EncounterLocation(location=bed, status="active"),
                                     EncounterLocation(location=Location(name="XRAY", part_of=site), status="active",
                                                       temporary=True)],
                          service_provider=Organization(name="Riverbend Hospital",
                                                        identifiers=[Identifier(value="RB01", type="FI")]))
    pv1 = next(s for s in encode([encounter], {}).decode().split("\r") if s.startswith("PV1")).split("|")
    assert pv1[3] == "4W^412^A^RIVERBEND&2.16.840.1.113883.3.999.1&ISO"
    assert pv1[11] == "XRAY^^^RIVERBEND&2.16.840.1.113883.3.999.1&ISO"
    assert pv1[39] == "RB01"
    back = decode(encode([encounter], {}), OPTS)[0]
    assert chain(back.locations[0].location) == [("bd", "A"), ("ro", "412"), (None, "4W"), ("si", "RIVERBEND")]
    assert back.locations[1].temporary is True


def test_siu_ail_gives_the_appointments_places_and_round_trips() -> None:
    from bridge import Appointment

    raw = "\r".join([
        "MSH|^~\\&|SCHED|RIVERBEND|TB|TB|20261120104500||SIU^S12^SIU_S12|CTL9|P|2.5",
        "SCH|APT-1|APT-1F|||||FU^Follow-up||||^^^20261127090000^20261127093000|||||||||||||||Booked",
        PID, "RGS|1", "AIL|1||OPD12^Room 55^^GHH Hospital", "AIL|2||LAB^Lab Room 01^^GHH Hospital"]).encode() + b"\r"
    records = decode(raw, OPTS)
    (appointment,) = records
    assert isinstance(appointment, Appointment)
    assert [chain(p) for p in appointment.locations] == [[("ro", "Room 55"), (None, "OPD12"), ("si", "GHH Hospital")],
                                                         [("ro", "Lab Room 01"), (None, "LAB"), ("si", "GHH Hospital")]]
    out = encode(records, {}).decode().split("\r")
    assert [s for s in out if s.startswith("AIL")] == ["AIL|1||OPD12^Room 55^^GHH Hospital",
                                                       "AIL|2||LAB^Lab Room 01^^GHH Hospital"]


def test_an_appointment_from_another_format_writes_its_places_as_ail() -> None:
    from bridge import Appointment, Identifier, Patient

    site = Location(name="GHH Hospital", physical_type="si")
    appointment = Appointment(identifiers=[Identifier(value="APT-1", type="PLAC")], status="booked",
                              start="2026-11-27T09:00:00-06:00", patient=Patient(identifiers=[Identifier(value="M1")]),
                              locations=[Location(name="Room 55", physical_type="ro", part_of=site)])
    out = encode([appointment], {}).decode().split("\r")
    assert [s for s in out if s.startswith("AIL")] == ["AIL|1||^Room 55^^GHH Hospital"]
    (back,) = decode("\r".join(out).encode(), OPTS)
    assert chain(back.locations[0]) == [("ro", "Room 55"), ("si", "GHH Hospital")]

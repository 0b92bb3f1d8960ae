"""The people an HL7v2 message names, as Participants of the records it decodes to.

A message names practitioners in many fields (XCN): the visit's attending, referring, consulting,
admitting and other providers (PV1-7/8/9/17/52, PV2-13), the patient's primary care provider
(PD1-4), a result's responsible observer and the lab's medical director (OBX-16/25), a report's
interpreters and technician (OBR-32/33/34), an order's orderer and enterer (ORC-12/10, OBR-16),
a document's authors and authenticators (TXA-5/9/10/22), an appointment's staff and contacts
(AIP-3, SCH-12/16/20), a referral's providers (PRD), and in segments made for it: ROL (role, person,
specialty, telecom, location) and PRT (the v2.7+ participation segment: role, person, location,
telecom). Each becomes a :class:`Participant` whose ``function`` (v3-ParticipationType) says what
the person did for the record; where the message states a role (ROL-3, PRT-4, PRD-1, or a field
whose role is fixed: OBX-16 "responsible observer", PD1-4 "primary care provider", a VXU's ORC-12
"ordering provider") the participant is a :class:`PractitionerRole` with that code of HL7 table
0443 and its places. A record's own field keeps its one main person (PV1-7's first, ORC-12, OBX-16's
first, TXA-9's first, AIP-3's first): those are not repeated here.

Everything here is derived: the fields and segments stay kept as read (they are not in the
decoder's mapped fields), so an HL7v2 round trip writes them back exactly and the records built
here are never written twice. A role's organization (ROL-14, PRT-8: for whom the person acts in
it, FHIR PractitionerRole.organization as the v2-to-FHIR IG maps PRT-8) is read with the role;
EVN-5 (the operator) belongs to provenance.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge import (
    ROLE_FUNCTIONS,
    Coding,
    ContactPoint,
    DEARegistration,
    Encounter,
    Organization,
    Participant,
    Practitioner,
    PractitionerRole,
)

from . import datatypes as dt
from . import places
from .organizations import first_organization
from .header import Separators
from .reader import NULL, Message, Segment, text

ROLE_TABLE = "HL70443"
"""Provider role codes (HL7 table 0443; PRT-4 uses table 0912, whose codes are the same)."""


ROLE_NAMES = {"RO": "Responsible Observer", "MDIR": "Medical Director", "OP": "Ordering Provider",
              "PP": "Primary Care Provider", "PI": "Primary Interpreter", "AI": "Assistant Interpreter",
              "TN": "Technician", "EP": "Entering Provider"}
"""Displays of the table 0443 codes a field implies (the sender writes no code for them)."""

PRIMARY_CARE = ("PP", "FHCP")
"""Roles that make someone the patient's general practitioner (FHIR Patient.generalPractitioner)."""

VISIT_FIELDS = (("PV1", 8, "REF"), ("PV1", 9, "CON"), ("PV1", 17, "ADM"), ("PV1", 52, "PART"),
                ("PV2", 13, "REF"))
"""Visit fields beyond the attending (PV1-7, the Encounter's ``practitioner``): referring,
consulting, admitting and other providers, and PV2-13 referral source."""

FOLLOWERS = ("ROL", "PRT")
PASSED = ("PV2", "PD1", "ARV", "NTE", "DB1")
"""A ROL or PRT belongs to the segment it follows; these segments may stand between them."""


def practitioners(seg: Segment | None, number: int, seps: Separators) -> list[Practitioner]:
    """Every repetition of an XCN field that names someone."""
    raw = seg.get(number) if seg is not None else ""
    if not raw or raw == NULL:
        return []
    found = (dt.read_practitioner(rep, seps) for rep in raw.split(seps.repetition) if rep and rep != NULL)
    return [p for p in found if p is not None]


def stated_role(code: str, practitioner: Practitioner | None, display: str | None = None,
                **parts: object) -> PractitionerRole:
    """A role the field itself implies (OBX-16 → RO…), coded in table 0443."""
    coding = Coding(code=code, system=ROLE_TABLE, display=display or ROLE_NAMES.get(code))
    return PractitionerRole(practitioner=practitioner, code=[coding], **parts)  # type: ignore[arg-type]


def field_participants(seg: Segment | None, number: int, function: str, seps: Separators,
                       role: str | None = None, skip_first: bool = False,
                       organization: Organization | None = None) -> list[Participant]:
    """One participant per person an XCN field names; in ``role`` when the field implies one (held
    for ``organization`` when the message names it: ORC-21 for ORC-12, OBX-23 for OBX-25)."""
    people = practitioners(seg, number, seps)[1 if skip_first else 0:]
    if role is None:
        return [Participant(function=function, practitioner=p) for p in people]
    return [Participant(function=function, role=stated_role(role, p, organization=organization)) for p in people]


def _coding(raw: str, seps: Separators, default_system: str | None = None) -> Coding | None:
    coding = dt.read_coding(raw.split(seps.repetition)[0], seps) if raw and raw != NULL else None
    if coding is not None and not coding.system and default_system:
        coding.system = default_system
    return coding


def _telecom(raw: str, seps: Separators) -> list[ContactPoint]:
    reps = raw.split(seps.repetition) if raw and raw != NULL else []
    return [c for c in (dt.read_telecom(r, seps) for r in reps if r) if c is not None]


def _places(raw: str, seps: Separators) -> list:
    reps = raw.split(seps.repetition) if raw and raw != NULL else []
    return [p for p in (places.read_place(r, seps) for r in reps if r) if p is not None]


def _role_participant(code: Coding | None, people: list[Practitioner], **parts: object) -> list[Participant]:
    """The person in the stated role. A segment that names no person (a PRT naming only a location,
    an organization or a device) gives no PractitionerRole: a role nobody holds says nothing of a
    practitioner."""
    return [Participant(function=_function_of(code), role=PractitionerRole(
        practitioner=person, code=[code] if code is not None else [], **parts))  # type: ignore[arg-type]
        for person in people]


def _function_of(code: Coding | None) -> str:
    """The v3-ParticipationType a stated role implies (table 0443 AD → ADM…; another → PART)."""
    return ROLE_FUNCTIONS.get(code.code.upper(), "PART") if code is not None and code.code else "PART"


def _deleted(seg: Segment, seps: Separators) -> bool:
    """ROL-2 / PRT-2 action code ``DE``: the sender withdraws the role."""
    raw = seg.get(2)
    return bool(raw) and text(raw.split(seps.component)[0], seps).upper() == "DE"


def read_rol(seg: Segment, seps: Separators) -> list[Participant]:
    """ROL: role (3) of the person (4), provider type (9) as specialty, phone (12), location (13),
    organization (14, XON, v2.7+).
    ROL-5/6 (when the person held the role for this patient) are not the role's own period
    (PractitionerRole.period is the practitioner's authorization): they stay kept as read. A ROL
    that deletes its role (ROL-2 ``DE``) names nobody now."""
    if _deleted(seg, seps):
        return []
    return _role_participant(
        _coding(seg.get(3), seps, ROLE_TABLE), practitioners(seg, 4, seps)[:1],
        specialty=[c for c in [_coding(seg.get(9), seps)] if c], telecom=_telecom(seg.get(12), seps),
        locations=_places(seg.get(13), seps), organization=first_organization(seg, 14, seps))


def read_prt(seg: Segment, seps: Separators) -> list[Participant]:
    """PRT: participation (4, table 0912) of the person (5) for the organization (8) at the
    location (9), telecom (15);
    PRT-11/12 (when, for this record) stay kept as read, as ROL-5/6 do. PRT-2 ``DE`` deletes the
    participation. A PRT naming a place but no person (the v2.7+ way to say where an admission or
    an order took place) is a role nobody in particular holds: a PractitionerRole with the
    participation and its places but no practitioner, which FHIR allows; one naming neither (only
    an organization or a device) is left to those mappings."""
    if _deleted(seg, seps):
        return []
    code = _coding(seg.get(4), seps, ROLE_TABLE)
    where = _places(seg.get(9), seps)
    people = practitioners(seg, 5, seps)[:1]
    organization = first_organization(seg, 8, seps)
    if not people and where:
        return _place_participant(code, where, _telecom(seg.get(15), seps), organization)
    return _role_participant(code, people, locations=where, telecom=_telecom(seg.get(15), seps),
                             organization=organization)


def _place_participant(code: Coding | None, where: list, telecom: list[ContactPoint],
                       organization: Organization | None = None) -> list[Participant]:
    """A participation at a place with no person named (see :func:`read_prt`)."""
    role = PractitionerRole(code=[code] if code is not None else [], locations=where, telecom=telecom,
                            organization=organization)
    return [Participant(function=_function_of(code), role=role)]


def followers(message: Message, anchor: Segment | None) -> list[Segment]:
    """The ROL and PRT segments that follow ``anchor`` (PV2, PD1, ARV, NTE may stand between)."""
    if anchor is None:
        return []
    segs = message.segments
    at = _index(segs, anchor)
    out: list[Segment] = []
    for seg in segs[at + 1:] if at is not None else []:
        if seg.name in FOLLOWERS:
            out.append(seg)
        elif seg.name not in PASSED:
            break
    return out


def _index(segs: list[Segment], anchor: Segment) -> int | None:
    """Where ``anchor`` stands: its position as read (a scan only for a segment built otherwise)."""
    at = anchor.position
    if 0 <= at < len(segs) and segs[at] is anchor:
        return at
    return next((i for i, s in enumerate(segs) if s is anchor), None)


def segment_participants(segments: Iterable[Segment], seps: Separators) -> list[Participant]:
    out: list[Participant] = []
    for seg in segments:
        out += read_rol(seg, seps) if seg.name == "ROL" else read_prt(seg, seps)
    return out


# --- writing: a visit from another format (FHIR) whose PV1 was not kept -------------------------

WRITTEN_FIELDS = {"REF": 8, "CON": 9, "ADM": 17, "PART": 52}
"""A plain participant's function → the PV1 field it is written to (PV1-8/9/17/52)."""
SOURCE_FIELDS = ("PV1-7", "PV1-8", "PV1-9", "PV1-17", "PV1-52", "PV2-13")


def visit_written(encounter: Encounter) -> dict[int, str]:
    """PV1-8/9/17/52 of a visit's plain participants (referring, consulting, admitting, other), each
    person a repetition. A participant in a role has no PV1 field (a ROL segment would carry it)."""
    found: dict[int, list[str]] = {}
    for part in encounter.participants:
        number = WRITTEN_FIELDS.get(part.function or "")
        if number is not None and part.role is None and part.practitioner is not None:
            found.setdefault(number, []).append(dt.write_practitioner(part.practitioner))
    return {number: "~".join(reps) for number, reps in found.items()}


def kept_as_read(kept: Iterable[str]) -> bool:
    """Whether the visit's provider fields came from an HL7v2 PV1 (then they are written as read)."""
    return any(key in SOURCE_FIELDS for key in kept)


# --- per record --------------------------------------------------------------------------------


def visit(message: Message, pv1: Segment | None, pv2: Segment | None, seps: Separators) -> list[Participant]:
    """The visit's providers beyond the first attending (PV1-7 further repetitions, PV1-8/9/17/52,
    PV2-13) and the ROL/PRT segments of the visit."""
    out = field_participants(pv1, 7, "ATND", seps, skip_first=True)
    segments = {"PV1": pv1, "PV2": pv2}
    for name, number, function in VISIT_FIELDS:
        out += field_participants(segments[name], number, function, seps)
    return out + segment_participants(followers(message, pv1), seps)


def general_practitioners(message: Message, pid: Segment | None, seps: Separators) -> list[Participant]:
    """PD1-4 (patient primary care provider, XCN from v2.7; a name in v2.3-2.6 XCN too) and a
    patient-level ROL/PRT whose role is primary care (table 0443 PP or FHCP)."""
    pd1 = _pd1(message, pid)
    out = field_participants(pd1, 4, "PART", seps, role="PP")
    for part in segment_participants(followers(message, pid), seps):
        codes = [c.code.upper() for c in part.role.code] if part.role else []
        if any(c in PRIMARY_CARE for c in codes):
            out.append(part)
    return out


def _pd1(message: Message, pid: Segment | None) -> Segment | None:
    """The PD1 of a PID (in v2.8 ARV, ROL, PRT or NTE segments may stand between them)."""
    segs = message.segments
    at = _index(segs, pid) if pid is not None else None
    for seg in segs[at + 1:] if at is not None else []:
        if seg.name == "PD1":
            return seg
        if seg.name not in ("ARV", "ROL", "PRT", "NTE"):
            break
    return None


def observation(message: Message, obx: Segment, seps: Separators) -> list[Participant]:
    """OBX-16 responsible observers in role RO, OBX-25 the medical director (role MDIR) of the
    performing organization (OBX-23 with its OBX-24 address, read as the Observation's own
    ``performing_organization``: one organization), and the OBX's PRT segments.

    The first observer is also the Observation's own ``performer``. As for the ordering provider
    and ORC-21 (:func:`ordering_provider`), a role for them says something the plain performer does
    not only when the message names the lab they observed for (OBX-23): then they are the RO of
    that lab, as the medical director is its MDIR, and in FHIR the role stands in for the plain
    reference (one performer, not two). Without OBX-23 the role would hold nothing but the person
    and the code the field already implies, so only the further observers get one."""
    lab = places.performing_organization(obx, seps)
    return (field_participants(obx, 16, "RESP", seps, role="RO", skip_first=lab is None, organization=lab)
            + field_participants(obx, 25, "RESP", seps, role="MDIR", organization=lab)
            + segment_participants(followers(message, obx), seps))


def read_ndl(value: str, seps: Separators) -> tuple[Practitioner | None, list]:
    """NDL (OBR-32/33/34/35): CNN name (id & family & given & middle & suffix & prefix & degree &
    source table & namespace & universal id & type) ^ start ^ end ^ point of care ^ room ^ bed ^
    facility ^ status ^ type ^ building ^ floor. The name reads as an XCN; the place as a PL."""
    parts = value.split(seps.component) + [""] * 11
    xcn = seps.component.join(parts[0].split(seps.subcomponent))
    person = dt.read_practitioner(xcn, seps)
    pl = seps.component.join([parts[3], parts[4], parts[5], parts[6], parts[7], parts[8], parts[9], parts[10]])
    where = places.read_place(pl, seps) if any(parts[3:11]) else None
    return person, [where] if where is not None else []


def report(message: Message, obr: Segment, seps: Separators) -> list[Participant]:
    """OBR-32 principal and OBR-33 assistant result interpreters (roles PI, AI), OBR-34 technicians
    (role TN), each with the place the NDL names, and the OBR's PRT segments."""
    out: list[Participant] = []
    for number, code, function in ((32, "PI", "RESP"), (33, "AI", "SPRF"), (34, "TN", "PRF")):
        raw = obr.get(number)
        for rep in raw.split(seps.repetition) if raw and raw != NULL else []:
            person, where = read_ndl(rep, seps)
            if person is not None:
                out.append(Participant(function=function, role=stated_role(code, person, locations=where)))
    return out + segment_participants(followers(message, obr), seps)


def ordering_provider(orc: Segment | None, obr: Segment | None, seps: Separators,
                      always: bool = False) -> list[Participant]:
    """The ordering provider (ORC-12, else OBR-16) in role OP held for the ordering facility
    (ORC-21), as HL7's v2-to-FHIR mapping writes ORC-12 and ORC-21 into the requester's
    PractitionerRole. The person is also the record's own requester or prescriber, and in FHIR the
    role stands for them (one reference, ``requester``); so without an ORC-21 the role says nothing
    the record's field does not (FHIR's requester *is* the orderer), and there is none unless
    ``always`` (a VXU, whose Immunization has no field of its own for the orderer)."""
    facility = first_organization(orc, 21, seps)
    if facility is None and not always:
        return []
    field = (orc, 12) if practitioners(orc, 12, seps) else (obr, 16)
    return field_participants(field[0], field[1], "AUT", seps, role="OP", organization=facility)[:1]


def order(message: Message, orc: Segment | None, obr: Segment | None, seps: Separators) -> list[Participant]:
    """The ordering provider in role OP for the ordering facility (see :func:`ordering_provider`),
    OBR-34 technicians who are to perform the order and the PRT segments of its ORC and OBR."""
    out = ordering_provider(orc, obr, seps)
    if obr is not None:
        out += [p for p in report(message, obr, seps) if p.function == "PRF"]
    return out + segment_participants([*followers(message, orc), *followers(message, obr)], seps)


def prescription(message: Message, orc: Segment | None, give: Segment | None,
                 seps: Separators) -> list[Participant]:
    """The prescriber (ORC-12, the Prescription's own field) in role OP for the ordering facility
    (ORC-21, when named), ORC-10, who entered the order (MedicationRequest.recorder), and the PRT
    segments of the ORC and of the order's RXO and RXE (both, in an RDE)."""
    anchors = [orc, *_order_parts(message, orc, ("RXO", "RXE"))]
    if give is not None and all(give is not a for a in anchors):
        anchors.append(give)
    prescriber = ordering_provider(orc, None, seps) if orc is not None else []
    if not prescriber and give is not None and give.name == "RXE" and not practitioners(orc, 12, seps):
        facility = first_organization(orc, 21, seps)
        person = dea_prescriber(give, seps)
        if facility is not None and person is not None:  # RXE-13's prescriber, as ORC-12's would be
            prescriber = [Participant(function="AUT", role=stated_role("OP", person, organization=facility))]
    return (prescriber + field_participants(orc, 10, "ENT", seps)[:1]
            + segment_participants([seg for a in anchors for seg in followers(message, a)], seps))


def dea_prescriber(rxe: Segment | None, seps: Separators) -> Practitioner | None:
    """RXE-13, the ordering provider's DEA number (XCN): the prescriber where ORC-12 names nobody.
    Its id is a DEA registration (the number the telehealth gate and NCPDP's DEANumber read), not a
    bare identifier, unless the XCN itself types it otherwise (XCN.13, e.g. NPI)."""
    found = practitioners(rxe, 13, seps)
    if not found:
        return None
    person = found[0]
    deas = [i for i in person.identifiers if (i.type or "DEA").upper() == "DEA" and i.system is None]
    person.identifiers = [i for i in person.identifiers if all(i is not d for d in deas)]
    person.dea_registrations = [DEARegistration(number=i.value) for i in deas if i.value]
    return person


def _order_parts(message: Message, orc: Segment | None, names: tuple[str, ...]) -> list[Segment]:
    """The segments named ``names`` of an ORC's order (up to the next ORC): an RDE's RXO (as the
    doctor ordered it) and RXE (as the pharmacy encoded it) each have their own PRT segments."""
    at = _index(message.segments, orc) if orc is not None else None
    out: list[Segment] = []
    for seg in message.segments[at + 1:] if at is not None else []:
        if seg.name == "ORC":
            break
        if seg.name in names:
            out.append(seg)
    return out


def referral(prd: Segment, provider: Practitioner, seps: Separators) -> list[Participant]:
    """A REF's PRD: the provider (PRD-2/7, read by the referral mapping) in the PRD-1 role (table
    0286: RP referring, RT referred to, PP primary care, CP consulting…), at the PRD-4 place, with
    the PRD-5 telecom, for the PRD-10 organization (v2.7+). The requester (RP) and performers (RT)
    stay the ServiceRequest's fields; the role names them in FHIR in place of the plain reference."""
    code = _coding(prd.get(1), seps, ROLE_TABLE)
    if code is None:
        return []
    return _role_participant(code, [provider], locations=_places(prd.get(4), seps), telecom=_telecom(prd.get(5), seps),
                             organization=first_organization(prd, 10, seps))


def document(txa: Segment, seps: Separators) -> list[Participant]:
    """TXA-5 primary activity provider and TXA-9 originators after the first (the note's
    ``author``) as authors; the authenticator: TXA-22 authentication person, else TXA-10 assigned
    authenticator (FHIR's DocumentReference names one). The authenticator comes first, as FHIR's
    DocumentReference.authenticator is read back before its authors, so a round trip keeps the order."""
    authenticator = (field_participants(txa, 22, "AUTHEN", seps) + field_participants(txa, 10, "AUTHEN", seps))[:1]
    return (authenticator + field_participants(txa, 5, "AUT", seps)
            + field_participants(txa, 9, "AUT", seps, skip_first=True))


def appointment(message: Message, seps: Separators) -> list[Participant]:
    """Every AIP's personnel (AIP-3) beyond the first person of the first AIP (the appointment's
    ``practitioner``), in the AIP-4 resource role when one is given, then SCH's contact persons and
    the person who entered it (see :func:`schedule_contacts`)."""
    sch = next((s for s in message.segments if s.name == "SCH"), None)
    out: list[Participant] = []
    first = True
    for seg in message.segments:
        if seg.name != "AIP":
            continue
        role = _coding(seg.get(4), seps)
        for person in practitioners(seg, 3, seps)[1 if first else 0:]:
            out.append(Participant(function="PART", role=PractitionerRole(practitioner=person, code=[role]))
                       if role else Participant(function="PART", practitioner=person))
        first = False
    return out + (schedule_contacts(sch, seps) if sch is not None else [])


SCHEDULE_CONTACTS = ((12, 13, 15, "CALLBCK", "Placer contact person"), (16, 17, 19, "CALLBCK", "Filler contact person"),
                     (20, 21, 22, "ENT", None))
"""SCH person, phone and location fields: placer contact (12/13/15), filler contact (16/17/19), entered
by (20/21/22, role EP of table 0443). Table 0443 has no code for a contact person: the role is named
in text."""


def schedule_contacts(sch: Segment, seps: Separators) -> list[Participant]:
    """Who to call about the appointment, and who booked it, each where they are and how to reach them."""
    out: list[Participant] = []
    for person_field, phone, place, function, label in SCHEDULE_CONTACTS:
        code = Coding(code="", display=label) if label else Coding(code="EP", system=ROLE_TABLE,
                                                                    display=ROLE_NAMES["EP"])
        for person in practitioners(sch, person_field, seps)[:1]:
            out.append(Participant(function=function, role=PractitionerRole(
                practitioner=person, code=[code], telecom=_telecom(sch.get(phone), seps),
                locations=_places(sch.get(place), seps))))
    return out


def immunization(orc: Segment | None, seps: Separators, message: Message | None = None,
                 rxa: Segment | None = None) -> list[Participant]:
    """ORC-12, who ordered the vaccine (Immunization.performer with function OP; role OP for the
    ORC-21 ordering facility), then the PRT
    segments of the ORC and of the RXA (its RXR may stand between): who else took part, and where."""
    ordered = ordering_provider(orc, None, seps, always=True) if orc is not None else []
    if message is None:
        return ordered
    return ordered + segment_participants([*followers(message, orc), *_after(message, rxa, ("RXR",))], seps)


def _after(message: Message, anchor: Segment | None, passed: tuple[str, ...]) -> list[Segment]:
    """The ROL/PRT segments after ``anchor``, passing over the ``passed`` segments first."""
    at = _index(message.segments, anchor) if anchor is not None else None
    out: list[Segment] = []
    for seg in message.segments[at + 1:] if at is not None else []:
        if seg.name in FOLLOWERS:
            out.append(seg)
        elif seg.name not in passed + PASSED:
            break
    return out

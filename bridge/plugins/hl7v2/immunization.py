"""HL7v2 VXU^V04 (vaccination record update) → Immunization, one per RXA.

RXA gives the vaccine (RXA-5, CVX or NDC), when (RXA-3), dose (RXA-6/7), lot (RXA-15), expiry
(RXA-16), manufacturer (RXA-17, MVX), refusal reason (RXA-18), completion status (RXA-20) and
action (RXA-21); the RXR after it gives route and site; the OBX of the order group that CDC's
immunization guide defines give the funding source (LOINC 30963-3) and the programme eligibility
(64994-7); its other OBX, and the patient's OBX before the first ORC, are Observations (the HL7
v2-to-FHIR IG's VXU^V04 map). Each NK1 of the patient (a child's parents, whom a registry contacts)
is a RelatedPerson (see :func:`.orders.background`). The whole message body (PD1, the VIS OBX…) is
kept in the first record.
"""

from __future__ import annotations

import logging

from typing import TYPE_CHECKING

from bridge import Coding, DecodeError, Encounter, Immunization, Observation, Patient, Record

from . import datatypes as dt
from . import people
from .orders import background, header, keep_message, order_groups, practitioner
from .pharmacy import DELETED, quantity, route_site
from .reader import Segment

if TYPE_CHECKING:
    from .decode import Decoder, Scope
    from .orders import OrderGroup

log = logging.getLogger(__name__)

VACCINE_SYSTEMS = {"CVX": "http://hl7.org/fhir/sid/cvx", "MVX": "http://hl7.org/fhir/sid/mvx"}
"""The CDC vaccine (CVX) and manufacturer (MVX) code systems by their HL7v2 names: their FHIR
canonical URLs. (Kept here, not in datatypes.CODE_SYSTEMS, so this slice does not change the
systems of other messages; to be folded into the shared table.)"""
COMPLETION = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done"}
"""RXA-20 completion status (table 0322) → FHIR immunization-status: a partial dose was still
given (completed); refused and not administered are not-done. RXA-21 D is entered-in-error."""
HISTORICAL_SOURCES = frozenset(f"0{n}" for n in range(1, 9))
"""RXA-9 information source (NIP001): 00 is a new record (primary source), 01-08 historical."""
FUNDING_SOURCE = "30963-3"
ELIGIBILITY = "64994-7"


def vaccine_coding(coding: Coding | None) -> Coding | None:
    if coding is not None and coding.system and coding.system.upper() in VACCINE_SYSTEMS:
        coding.system = VACCINE_SYSTEMS[coding.system.upper()]
    return coding


def observation_codes(dec: Decoder, group: OrderGroup, loinc: str) -> list[Coding]:
    """The coded values of the group's OBX whose OBX-3 is ``loinc``."""
    out: list[Coding] = []
    for obx in group.all("OBX"):
        if dec.t(obx, 3) == loinc:
            out += [c for rep in dec.reps(obx, 5) for c in dt.read_codings(rep, dec.seps)[:1]]
    return out


def status(dec: Decoder, rxa: Segment) -> str:
    if dec.t(rxa, 21).upper() == DELETED:
        return "entered-in-error"
    return COMPLETION.get(dec.t(rxa, 20).upper(), "completed")


def primary_source(dec: Decoder, rxa: Segment) -> bool | None:
    code = dec.t(rxa, 9)
    if code == "00":
        return True
    return False if code in HISTORICAL_SOURCES else None


def immunization(dec: Decoder, group: OrderGroup, rxa: Segment, patient: Patient | None,
                 encounter: Encounter | None, scope: Scope) -> Immunization:
    route, site = route_site(dec, group, rxa)
    reasons = dec.reps(rxa, 18)
    funding = observation_codes(dec, group, FUNDING_SOURCE)
    orc = group.first("ORC")
    return Immunization(
        identifiers=dec._order_ids(orc, 2, 3) if orc is not None else [],
        status=status(dec, rxa),
        status_reason=dt.read_coding(reasons[0], dec.seps) if reasons else None,
        vaccine=[vaccine_coding(c) for c in dt.read_codings(rxa.get(5), dec.seps)],  # type: ignore[misc]
        occurrence=dec.when(rxa, 3, scope),
        primary_source=primary_source(dec, rxa),
        lot_number=dec.t(rxa, 15) or None,
        expiration_date=dec.when(rxa, 16, scope),
        manufacturer=vaccine_coding(dt.read_coding(rxa.get(17), dec.seps)),
        dose=quantity(dec, rxa, 6, 7, scope),
        route=route, site=site,
        performer=practitioner(dec, rxa, 10),
        funding_source=funding[0] if funding else None,
        program_eligibility=observation_codes(dec, group, ELIGIBILITY),
        observations=observations(dec, group.segments, patient, encounter, folded=(FUNDING_SOURCE, ELIGIBILITY)),
        patient=patient, encounter=encounter,
        participants=people.immunization(orc, dec.seps, dec.message, rxa),  # derived: ORC-12, PRT stay kept
    )


def observations(dec: Decoder, segments: list[Segment], patient: Patient | None, encounter: Encounter | None,
                 folded: tuple[str, ...] = ()) -> list[Observation]:
    """Each OBX (with the NTE after it) as an Observation, as the v2-to-FHIR IG's VXU^V04 map gives
    them: the patient's (PERSON_OBSERVATION, before the first ORC) and the vaccination's (the order
    group's, ``Observation.partOf`` the Immunization in FHIR). An OBX whose code is in ``folded``
    (funding source, programme eligibility) is not one: it is read into the Immunization's own
    fields, as that map's note allows, and is not stated twice. Derived: the message stays kept whole."""
    found: list[Observation] = []
    last: Observation | None = None
    for seg in segments:
        if seg.name == "OBX":
            last = None
            if dec.t(seg, 3) in folded:
                continue
            last = dec._observation(seg, None, "", len(found) + 1)
            last.extra, last.patient, last.encounter = _warnings_only(last.extra), patient, encounter
            if last.category == "laboratory":  # no OBR section here: a VIS or a history is no lab result
                last.category = None
            found.append(last)
        elif seg.name == "NTE" and last is not None:
            dec._note(last, seg)
            last.extra = _warnings_only(last.extra)
        elif seg.name != "NTE":
            last = None
    return found


def _warnings_only(extra: dict) -> dict:
    """A derived record's extra: its decode warnings (an OBX-5 that repeats), not the wire fields
    kept for writing the segment back (the message is kept whole)."""
    warnings = extra.get("hl7v2", {}).get("warnings")
    return {"hl7v2": {"warnings": warnings}} if warnings else {}


NO_VACCINATION = "VXU^V04 without RXA: the patient's record decoded, no vaccination"


def decode_vxu(dec: Decoder) -> list[Record]:
    """VXU^V04: one Immunization per RXA. A VXU without RXA (real feeds send them to update a
    registry's demographics) is its patient, with a warning; without a patient either, refused."""
    segs = dec.message.segments
    if not any(s.name == "RXA" for s in segs):
        return _patient_only(dec, segs)
    first = next(i for i, s in enumerate(segs) if s.name in ("ORC", "RXA"))
    scope = dec.scope()
    patient, encounter = header(dec, segs[:first], scope)
    records: list[Record] = [immunization(dec, group, rxa, patient, encounter, scope)
                             for group in order_groups(segs[first:], starts=("RXA",))
                             for rxa in group.all("RXA")]
    records += background(dec, segs[:first], patient, encounter)
    records += observations(dec, segs[:first], patient, encounter)  # PERSON_OBSERVATION
    return keep_message(dec, records)


def _patient_only(dec: Decoder, segs: list[Segment]) -> list[Record]:
    patient, _ = header(dec, segs, dec.scope())
    if patient is None:
        raise DecodeError("VXU^V04 has no RXA segment and names no patient: no vaccination and no one to record",
                          "RXA")
    log.warning("hl7v2 decode: %s", NO_VACCINATION)
    patient.extra.setdefault("hl7v2", {})["warnings"] = [NO_VACCINATION]
    found = [patient, *background(dec, segs, patient, None), *observations(dec, segs, patient, None)]
    return keep_message(dec, found)

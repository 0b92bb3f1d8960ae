"""HL7v2 pharmacy dispense and administration: RDS^O13 → PrescriptionEvent (RxFill), RAS^O17 and
RGV^O15 → MedicationAdministration. (RDE^O25, a refill order, decodes as RDE^O11 does and is
kept whole, see decode.decode_message.)

A dispense is a :class:`~bridge.PrescriptionEvent` of event type ``RxFill`` with fill status
``Dispensed``, the record an NCPDP RxFill gives: both say the pharmacy handed the drug over, and
both become a FHIR MedicationDispense, so a route or a receiver needs to know only one shape. The
whole message body is kept in the first record (see :func:`.orders.keep_message`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import (
    Coding,
    DecodeError,
    Encounter,
    Location,
    MedicationAdministration,
    Patient,
    PrescriptionEvent,
    Quantity,
    Record,
)

from . import datatypes as dt
from . import places
from .companions import dispensed_orders
from .orders import background, header, keep_message, order_groups, practitioner
from .reader import NULL, Segment

if TYPE_CHECKING:
    from .decode import Decoder, Scope
    from .orders import OrderGroup

ADMINISTRATION_STATUS = {"CP": "completed", "PA": "stopped", "RE": "not-done", "NA": "not-done"}
"""RXA-20 completion status (table 0322) → FHIR medication-admin-status: a partial administration
was stopped; a refused or not administered dose is not-done. RXA-21 D (deleted) is entered-in-error."""
DELETED = "D"


def quantity(dec: Decoder, seg: Segment | None, amount: int, units: int, scope: Scope) -> Quantity | None:
    """An amount and its CE units; ``999`` (the HL7 placeholder for an unknown amount) gives none."""
    value = dec._number(seg, amount, scope)
    if value is None or value == 999:
        return None
    unit = dt.read_coding(seg.get(units), dec.seps) if seg is not None else None
    return Quantity(value=value, unit=(unit.display or unit.code) if unit else None,
                    code=unit.code or None if unit and unit.system else None,
                    system=unit.system if unit else None)


def _order_number(dec: Decoder, group: OrderGroup) -> str | None:
    return dec.t(group.first("ORC"), 2) or None


def dispense(dec: Decoder, group: OrderGroup, rxd: Segment, patient: Patient | None,
             scope: Scope) -> PrescriptionEvent:
    """RXD: what was dispensed (RXD-2), when (RXD-3), how much (RXD-4 with RXD-5 units), the
    pharmacy's special dispensing instructions (RXD-9, FHIR note), who dispensed (RXD-10, the first
    dispensing provider) and where it was sent (RXD-13, LA1: a PL's components first). The last
    two are derived: the message is kept whole, so an HL7v2 round trip is unchanged."""
    codes = dt.read_codings(rxd.get(2), dec.seps)
    notes = [c.display or c.code for c in (dt.read_coding(r, dec.seps) for r in dec.reps(rxd, 9)) if c]
    return PrescriptionEvent(
        event_type="RxFill",
        prescriber_order_number=_order_number(dec, group),
        occurred_at=dec.when(rxd, 3, scope),
        fill_status="Dispensed",
        description="\n".join(n for n in notes if n) or None,
        quantity=quantity(dec, rxd, 4, 5, scope),
        medication=dec._medication(codes) if codes else None,
        patient=patient,
        dispenser=practitioner(dec, rxd, 10),
        destination=_destination(dec, rxd),
    )


def _destination(dec: Decoder, rxd: Segment) -> Location | None:
    """RXD-13 dispense-to location (LA1, whose first eight components are a PL's)."""
    raw = rxd.get(13)
    if not raw or raw == NULL:
        return None
    return places.read_place(raw.split(dec.seps.repetition)[0], dec.seps)


def decode_dispense(dec: Decoder) -> list[Record]:
    """RDS^O13: one PrescriptionEvent per RXD, then the orders they fill (companions). The visit
    (PV1/PV2 before the first order) is the one those orders and the patient's background records
    were made in: a PrescriptionEvent has no visit of its own (NCPDP's RxFill names none)."""
    segs = dec.message.segments
    if not any(s.name == "RXD" for s in segs):
        raise DecodeError("RDS^O13 has no RXD segment: nothing says what was dispensed", "RXD")
    first = next(i for i, s in enumerate(segs) if s.name in ("ORC", "RXD"))
    scope = dec.scope()
    patient, encounter = header(dec, segs[:first], scope)
    records: list[Record] = [dispense(dec, group, rxd, patient, scope)
                             for group in order_groups(segs[first:], starts=("RXD",))
                             for rxd in group.all("RXD")]
    records = keep_message(dec, records + background(dec, segs[:first], patient, encounter))
    return records + dispensed_orders(dec, records, encounter)


def route_site(dec: Decoder, group: OrderGroup, after: Segment) -> tuple[Coding | None, Coding | None]:
    """The RXR right after ``after`` (RXA or RXG): route (RXR-1) and site (RXR-2)."""
    at = group.segments.index(after)
    rxr = next((s for s in group.segments[at + 1:at + 3] if s.name == "RXR"), None)
    if rxr is None:
        return None, None
    return dt.read_coding(rxr.get(1), dec.seps), dt.read_coding(rxr.get(2), dec.seps)


def administration_status(dec: Decoder, rxa: Segment) -> str:
    if dec.t(rxa, 21).upper() == DELETED:
        return "entered-in-error"
    return ADMINISTRATION_STATUS.get(dec.t(rxa, 20).upper(), "completed")


def administration(dec: Decoder, group: OrderGroup, rxa: Segment, patient: Patient | None,
                   encounter: Encounter | None, scope: Scope) -> MedicationAdministration:
    codes = dt.read_codings(rxa.get(5), dec.seps)
    route, site = route_site(dec, group, rxa)
    reasons = dec.reps(rxa, 18)
    return MedicationAdministration(
        status=administration_status(dec, rxa),
        medication=dec._medication(codes) if codes else None,
        dose=quantity(dec, rxa, 6, 7, scope),
        route=route, site=site,
        start=dec.when(rxa, 3, scope), end=dec.when(rxa, 4, scope),
        performer=practitioner(dec, rxa, 10),
        prescriber_order_number=_order_number(dec, group),
        status_reason=dt.read_coding(reasons[0], dec.seps) if reasons else None,
        patient=patient, encounter=encounter,
    )


def give(dec: Decoder, group: OrderGroup, rxg: Segment, patient: Patient | None,
         encounter: Encounter | None, scope: Scope) -> MedicationAdministration:
    """RXG: a give the pharmacy instructs, not yet done (in-progress), at TQ1-7 when timed."""
    codes = dt.read_codings(rxg.get(4), dec.seps)
    route, site = route_site(dec, group, rxg)
    tq1 = group.first("TQ1")
    return MedicationAdministration(
        status="in-progress",
        medication=dec._medication(codes) if codes else None,
        dose=quantity(dec, rxg, 5, 7, scope),
        route=route, site=site,
        start=dec.when(tq1, 7, scope) if tq1 is not None else None,
        prescriber_order_number=_order_number(dec, group),
        patient=patient, encounter=encounter,
    )


def decode_administration(dec: Decoder) -> list[Record]:
    """RAS^O17 (one record per RXA) and RGV^O15 (one per RXG)."""
    wanted = "RXA" if dec.type == "RAS" else "RXG"
    segs = dec.message.segments
    if not any(s.name == wanted for s in segs):
        raise DecodeError(f"{dec.type}^{dec.event} has no {wanted} segment: nothing says what was given", wanted)
    first = next(i for i, s in enumerate(segs) if s.name in ("ORC", wanted))
    scope = dec.scope()
    patient, encounter = header(dec, segs[:first], scope)
    build = administration if wanted == "RXA" else give
    records: list[Record] = [build(dec, group, seg, patient, encounter, scope)
                             for group in order_groups(segs[first:], starts=(wanted,))
                             for seg in group.all(wanted)]
    return keep_message(dec, records + background(dec, segs[:first], patient, encounter))

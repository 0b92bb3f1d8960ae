"""Companion records of the message types whose encoder writes their main records field by field
(SIU, MDM, ORU, OUL, RDE^O11): the orders behind them, the patient's mother and, for a pharmacy
order, the patient's background.

- ORU and OUL: an OBR with its ORC is the order its results fulfil. A FHIR server keeps that order
  as a ServiceRequest of its own (the report shares its order numbers), so one is made, read
  as an order message's OBR is read (orders.service_request: ORC status, OBR-4 code, OBR-16
  requester, OBR-31 reasons, the NTE right after the OBR), intent ``order`` as the IG's OBR map
  says, flagged as the filler's view so that FHIR keys it by the filler number.
- MDM: the ORC/OBR pairs before TXA name the orders the document answers (an echo, a culture):
  ServiceRequests as well. The text OBX are the document itself and make no Observations.
- SIU: each AIS is a service booked for the appointment (a CBC, a chest X-ray): a ServiceRequest
  the appointment serves, coded by AIS-3, starting at AIS-4, with the NTE that follows the AIS.
- OUL^R22/R23: the SPM before the OBR that tests it (no report's group holds it) as a Specimen.
- SIU: the patient group's OBX, NK1, AL1, DG1 and IN1 (Observation, RelatedPerson,
  AllergyIntolerance, Condition, Coverage), as an order message's.
- ORU and OUL: each TXA (a document the result announces) as a ClinicalNote without text.
- ORU: the OBX of the patient group, before the first order (PATIENT_OBSERVATION), as Observations
  of the patient, as the HL7 v2-to-FHIR IG's ORU^R01 map gives them.
- SIU, MDM, ORU, OUL and RDE^O11: PID-21 (the mother's identifier) as a RelatedPerson.
- RDE^O11: the NK1, AL1, DG1 and IN1 before the first ORC, as an RDE^O25 reads them.
- RDE^O11 and O25: the OBX of the order groups as Observations.

Every record made here is ``carried``: its segments stay where the decoder kept them (the main
record's kept segments, or the whole message for an OUL), so the HL7v2 encoder writes nothing
more, the round trip loses nothing, and routes that take the main record see it first as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Appointment, DiagnosticReport, Patient, Period, Record, ServiceRequest, record_to_dict

from . import adt, companions, orders, specimens
from . import datatypes as dt
from .reader import Segment

if TYPE_CHECKING:
    from .decode import Decoder

FILLER_STATUS = {"PENDING": "active", "WAITLIST": "active", "BOOKED": "active", "STARTED": "active",
                 "OVERBOOK": "active", "NOSHOW": "active", "BLOCKED": "active", "COMPLETE": "completed",
                 "CANCELLED": "revoked", "DC": "revoked", "DELETED": "entered-in-error"}
"""AIS-10 filler status (table 0278) → the status of the service booked: a cancelled or
discontinued booking withdraws it, a deleted one was never meant, a complete one delivered it. A
no-show leaves the service still to be done (the order stands; it is the slot that was missed),
as do pending, waitlisted and blocked bookings."""
FILLER = "filler-order"
"""The intent of the services a schedule (SIU) books: its sender, the scheduling system, is the
filler, and the slot it booked is the filler's own instance of the order (as Microsoft writes it)."""
BOOKED_STATUS = {"cancelled": "revoked", "entered-in-error": "entered-in-error", "fulfilled": "completed"}
"""Appointment.status → a service's status when AIS-10 is empty: the appointment's cancellation,
deletion or fulfilment is the service's; any other status leaves it to be done (``active``)."""


def _patient(records: list[Record]) -> Patient | None:
    return companions._patient_of(records)


def _carried(found: list[ServiceRequest], intent: str = "order", filler_view: bool | None = None) -> list[Record]:
    """The requests as carried records with the given intent. ``filler_view``: the sender is the
    order's filler (a lab's results, a schedule), so what it says of the order (its status, its filler
    number) is the filler's view, keyed by the filler number (fhir/orders.py, filler_order_key) so
    that it never overwrites the placer's own request on a server. That keying is not the intent."""
    for record in found:
        record.extra, record.intent, record.filler_view = {}, intent, filler_view
    return [adt.carried(r) for r in found]


def _ordered(group: list[Segment]) -> bool:
    """A result group whose OBR comes with its ORC: the order's own segment (ORC-1 control, ORC-5
    status, ORC-9 entered, ORC-12 orderer) says the message speaks of the order too. An OBR alone is
    the report's header: its order numbers are the DiagnosticReport's identifiers, by which a FHIR
    server finds the order, and a report we write (no ORC) decodes to itself alone."""
    names = {s.name for s in group}  # an ORU's ORC comes before its OBR, an OUL's after it
    return {"OBR", "ORC"} <= names


def _with_obr_numbers(dec: Decoder, request: ServiceRequest, group: list[Segment]) -> ServiceRequest:
    """The placer (OBR-2) and filler (OBR-3) numbers where the ORC left them empty, as the HL7
    v2-to-FHIR IG reads them ("OBR-2 if ORC-2 is not valued"): a result's ORC often names only one."""
    obr = next(s for s in group if s.name == "OBR")
    kinds = {i.type for i in request.identifiers}
    request.identifiers += [i for i in dec._order_ids(obr, 2, 3) if i.type not in kinds]
    return request


def result_orders(dec: Decoder, records: list[Record]) -> list[Record]:
    """ORU^R01 and OUL^R22-R24: the order each OBR with an ORC reports on, as a ServiceRequest of
    the patient and visit (read as orders.service_request reads an order's OBR), carried. Its intent
    is ``order``, as the v2-to-FHIR IG's OBR map writes it; it is the lab's view (``filler_view``)."""
    patient = _patient(records)
    segs = dec.message.segments
    first = next((i for i, s in enumerate(segs) if s.name in ("ORC", "OBR")), None)
    if patient is None or first is None:
        return []
    encounter = companions._encounter_of(records)
    scope = dec.scope()  # the segments are kept by the main records; nothing read here is kept twice
    found = [_with_obr_numbers(dec, orders.service_request(dec, orders.OrderGroup(segments=group), patient,
                                                           encounter, scope), group)
             for group in dec._report_groups(segs[first:]) if _ordered(group)]
    return _carried(found, "order", filler_view=True)


def result_documents(dec: Decoder, records: list[Record]) -> list[Record]:
    """ORU and OUL: each TXA (the document a result announces: a radiology report, a discharge
    summary) as a ClinicalNote of the patient and visit, read as an MDM's TXA is; the message carries
    no text for it, so the note has its type, status, time, author and number only."""
    patient = _patient(records)
    if patient is None:
        return []
    encounter = companions._encounter_of(records)
    found = [dec.txa_note(seg, [], patient, encounter, dec.scope()) for seg in dec.message.segments
             if seg.name == "TXA"]
    for note in found:
        note.extra = {}
    return [adt.carried(n) for n in found]


def document_orders(dec: Decoder, records: list[Record]) -> list[Record]:
    """MDM: the orders (ORC with its OBR) the document answers, before TXA, as ServiceRequests."""
    patient = _patient(records)
    if patient is None:
        return []
    segs = dec.message.segments
    end = next((i for i, s in enumerate(segs) if s.name == "TXA"), len(segs))
    start = next((i for i, s in enumerate(segs[:end]) if s.name in ("ORC", "OBR")), end)
    encounter = companions._encounter_of(records)
    scope = dec.scope()
    found = [_with_obr_numbers(dec, orders.service_request(dec, group, patient, encounter, scope), group.segments)
             for group in orders.order_groups(segs[start:end], starts=("OBR",)) if group.first("OBR") is not None]
    return _carried(found)


def booked_services(dec: Decoder, records: list[Record]) -> list[Record]:
    """SIU: each AIS (a service booked for the appointment) with a code, as a ServiceRequest of the
    appointment's patient: AIS-3 code, AIS-4 start, the NTE after it; status from AIS-10
    (FILLER_STATUS), else the appointment's (BOOKED_STATUS). AIS carries no order number, so the request has none."""
    appointment = records[0] if records and isinstance(records[0], Appointment) else None
    if appointment is None or appointment.patient is None:
        return []
    segs = dec.message.segments
    fallback = BOOKED_STATUS.get(appointment.status or "", "active")
    found: list[ServiceRequest] = []
    scope = dec.scope()
    for at, seg in enumerate(segs):
        if seg.name != "AIS":
            continue
        code = dt.read_codings(seg.get(3), dec.seps)
        if not code:
            continue
        start = dec.when(seg, 4, scope)
        status = FILLER_STATUS.get(dec.t(seg, 10).upper(), fallback)
        found.append(ServiceRequest(status=status, intent=FILLER, code=code,
                                    occurrence=Period(start=start) if start else None,
                                    notes=orders.notes_following(dec, segs[at + 1:]), patient=appointment.patient))
    return _carried(found, FILLER, filler_view=True)


def loose_specimens(dec: Decoder, records: list[Record]) -> list[Record]:
    """OUL: each SPM no report holds (an OUL^R22/R23 names its specimen before the OBR that tests
    it, so no report's group reads it) as a Specimen of the patient, carried; an SPM after an OBR
    is that report's already (DiagnosticReport.specimens)."""
    patient = _patient(records)
    if patient is None:
        return []
    held = [record_to_dict(s) for r in records if isinstance(r, DiagnosticReport) for s in r.specimens]
    found = [specimens.read(seg, dec.seps, patient) for seg in dec.message.segments if seg.name == "SPM"]
    return [adt.carried(s) for s in found if record_to_dict(s) not in held]


def appointment_background(dec: Decoder, records: list[Record]) -> list[Record]:
    """SIU: the patient group before the first RGS — its OBX (a heart rate taken when booking) as
    Observations, its NK1, AL1, DG1 (the diagnosis the appointment is for) and IN1 as an order
    message reads them (orders.background) — carried."""
    patient = _patient(records)
    if patient is None:
        return []
    segs = dec.message.segments
    start = next((i for i, s in enumerate(segs) if s.name == "PID"), len(segs))
    end = next((i for i, s in enumerate(segs) if s.name == "RGS" and i > start), len(segs))
    group = segs[start:end]
    observations = [adt.carried(o) for o in companions.observations(dec, group, patient, None)]
    return [*observations, *orders.background(dec, group, patient, None)]


def mother(dec: Decoder, records: list[Record]) -> list[Record]:
    """PID-21, the patient's mother, as companions.mother reads it; carried."""
    found = companions.mother(dec, dec.message.segment("PID"), _patient(records))
    return [adt.carried(found)] if found is not None else []


def order_background(dec: Decoder, records: list[Record]) -> list[Record]:
    """RDE^O11: next of kin, allergies, diagnoses and insurance before the first ORC (as RDE^O25)."""
    return companions.refill_background(dec, records)


def order_observations(dec: Decoder, records: list[Record]) -> list[Record]:
    """RDE^O11 and O25, RDS^O13: the OBX of the order groups (a heart rate or a weight the dose
    depends on) as Observations of the patient and visit, carried, as an order message's OBX are read."""
    segs = dec.message.segments
    first = next((i for i, s in enumerate(segs) if s.name == "ORC"), None)
    if first is None:
        return []
    found = companions.observations(dec, segs[first:], _patient(records), companions._encounter_of(records))
    return [adt.carried(o) for o in found]


def patient_observations(dec: Decoder, records: list[Record]) -> list[Record]:
    """ORU^R01: the OBX of the patient group (PATIENT_OBSERVATION: after the PID, before the visit and
    the first order), which the v2-to-FHIR IG's ORU^R01 map gives as Observations of the patient (no
    report, no visit), carried. An ORU without OBR reads every OBX already (decode.py)."""
    segs = dec.message.segments
    first = next((i for i, s in enumerate(segs) if s.name in ("ORC", "OBR")), None)
    if first is None or not any(isinstance(r, DiagnosticReport) for r in records):
        return []
    return [adt.carried(o) for o in companions.observations(dec, segs[:first], _patient(records), None)]


def for_message(dec: Decoder, kind: str, event: str, records: list[Record]) -> list[Record]:
    """The companion records of one decoded SIU, MDM, ORU, OUL or RDE message (else none)."""
    if kind == "SIU":
        return [*booked_services(dec, records), *appointment_background(dec, records), *mother(dec, records)]
    if kind == "MDM":
        return [*document_orders(dec, records), *mother(dec, records)]
    if kind == "ORU":
        return [*result_orders(dec, records), *result_documents(dec, records), *patient_observations(dec, records),
                *mother(dec, records)]
    if kind == "OUL":
        return [*result_orders(dec, records), *loose_specimens(dec, records), *result_documents(dec, records),
                *mother(dec, records)]
    if (kind, event) in (("RDE", "O11"), ("RDE", "O01")):  # O01: v2.3's name for O11
        return [*order_background(dec, records), *order_observations(dec, records), *mother(dec, records)]
    if (kind, event) in (("RDE", "O25"), ("RDS", "O13")):  # background, mother: companions.py (kept whole)
        return order_observations(dec, records)
    return []

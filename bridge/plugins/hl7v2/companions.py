"""Records a message carries beside its main one: the patient's next of kin (NK1), the mother a
newborn's PID names (PID-21, PID-6), the observations an ADT reports about the patient (OBX:
height, weight, a pain score taken at admission), a lab order's specimens (SPM), a referral's
results (OBR/OBX), the order a dispense fills (RDS's ORC/RXE) and a refill order's insurance.

A FHIR server keeps each of these as a resource of its own (RelatedPerson, Observation, Specimen,
DiagnosticReport, MedicationRequest, Coverage), so they become records; the segments themselves
stay kept, as read, in the message's first record, so the records built here are ``carried`` (the
HL7v2 encoder writes nothing for them, the round trip loses nothing, a vendor profile skips them).
Microsoft's converter and the HL7 v2-to-FHIR IG make the same resources from the same segments
(docs/hl7v2.md, "Companion records"). Messages whose encoder writes their records field by field
(SIU, MDM, ORU, OUL, RDE^O11) get theirs from carried_orders.py, after their main records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import Coding, Encounter, HumanName, Observation, Patient, Record, RelatedPerson, Specimen

from . import adt, deaths, guarantors, specimens
from . import datatypes as dt
from .orders import order_groups, prior_visit, referral, related_person
from .reader import Segment

if TYPE_CHECKING:
    from .decode import Decoder

ROLE_CODES = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
MOTHER = Coding(code="MTH", display="mother", system=ROLE_CODES)
"""PID-21 names the patient's mother: v3 RoleCode MTH, which R4's patient-contactrelationship and
RelatedPerson.relationship value sets (extensible) take."""


def mother(dec: Decoder, pid: Segment | None, patient: Patient | None) -> RelatedPerson | None:
    """PID-21 (mother's identifier, CX) with PID-6 (mother's maiden name) as her name: a newborn's
    record names its mother so the two charts can be linked. Without PID-21 nothing is made: a
    maiden name alone identifies no one."""
    if pid is None or patient is None:
        return None
    ids = [i for i in (dt.read_identifier(r, dec.seps) for r in dec.reps(pid, 21)) if i]
    if not ids:
        return None
    names = dec.reps(pid, 6)
    name = dt.read_name(names[0], dec.seps) if names else None
    if name is not None and name != HumanName():
        name.use = name.use or "maiden"
    return RelatedPerson(identifiers=ids, name=name if name != HumanName() else None,
                         relationship=[Coding(code=MOTHER.code, display=MOTHER.display, system=MOTHER.system)],
                         patient=patient)


def next_of_kin(dec: Decoder, segments: list[Segment], patient: Patient | None) -> list[Record]:
    """Each NK1 that names someone, as a RelatedPerson (read as orders.related_person reads it)."""
    if patient is None:
        return []
    people = (related_person(dec, s, patient) for s in segments if s.name == "NK1")
    return [p for p in people if p is not None]


def observations(dec: Decoder, segments: list[Segment], patient: Patient | None,
                 encounter: Encounter | None) -> list[Record]:
    """Each OBX of an ADT patient group (height, weight, a pain score at admission), as an
    Observation of the patient and the visit; effective at OBX-14 when the sender gave it."""
    out: list[Record] = []
    for seg in segments:
        if seg.name != "OBX":
            continue
        obs: Observation = dec._observation(seg, None, "")
        obs.patient, obs.encounter, obs.extra = patient, encounter, {}
        out.append(obs)
    return out


def referrals(dec: Decoder, segments: list[Segment], patient: Patient | None,
              encounter: Encounter | None) -> list[Record]:
    """Each RF1 of an ADT patient group (v2.8 puts the referral that led to the visit there), read as
    a REF's RF1 is (orders.referral): a referral ServiceRequest of the patient and visit."""
    if patient is None:
        return []
    return [referral(dec, seg, dec.scope(), patient, encounter) for seg in segments if seg.name == "RF1"]


def for_group(dec: Decoder, group: adt.Group, patient: Patient | None,
              encounter: Encounter | None) -> list[Record]:
    """The companion records of one ADT patient group (PID-21, NK1, GT1, OBX, PDA causes and
    autopsy, PDA and ACC flags, RF1), each carried."""
    found = [mother(dec, group.pid, patient), *next_of_kin(dec, group.segments, patient),
             *guarantors.guarantors(dec, group.segments, patient),
             *observations(dec, group.segments, patient, encounter),
             *deaths.causes_of_death(dec, group.segments, patient, encounter),
             *deaths.certifications(dec, group.segments, patient, encounter),
             *deaths.autopsies(dec, group.segments, patient, encounter),
             *deaths.flags(dec, group.segments, patient, encounter),
             *referrals(dec, group.segments, patient, encounter)]
    return [adt.carried(r) for r in found if r is not None]


def _patient_of(records: list[Record]) -> Patient | None:
    """The patient a message's records share (the first one named)."""
    return next((r if isinstance(r, Patient) else getattr(r, "patient", None) for r in records
                 if isinstance(r, Patient) or getattr(r, "patient", None) is not None), None)


def order_specimens(dec: Decoder, records: list[Record]) -> list[Record]:
    """Each SPM of a lab order (OML, OMG, ORM): the sample the order is for — its ids, type,
    collection method, site and time — as a Specimen of the patient, carried. The ServiceRequest
    still names the specimen types it needs (contained in FHIR); this is the sample itself, which a
    lab and a FHIR server track on their own."""
    patient = _patient_of(records)
    if patient is None:
        return []
    found = [adt.carried(specimens.read(seg, dec.seps, patient)) for seg in dec.message.segments if seg.name == "SPM"]
    if (dec.type, dec.event) in (("OML", "O21"), ("ORM", "O01")):  # ORM^O01: OML^O21's pre-v2.5 form
        found += [adt.carried(sample) for sample in obr_specimens(dec, patient)]
    return found


def obr_specimens(dec: Decoder, patient: Patient) -> list[Specimen]:
    """OML^O21 and ORM^O01: the sample of each order whose group has no SPM, from its OBR (the
    v2-to-FHIR IG's OML^O21 map applies *Segment OBR to Specimen* to each order's OBR; ORM^O01 is
    the same lab order before v2.5, which OML^O21 replaced, so the same rule applies where the OBR
    itself says a sample was taken: ORM^O01 also carries imaging orders). Not for an earlier result
    the order carries (PRIOR_RESULT: the IG maps none of it), an OBR whose section examines the
    patient, or a sample an SPM of the message names (same collection time)."""
    segs = dec.message.segments
    first = next((i for i, s in enumerate(segs) if s.name in ("ORC", "OBR", "RXO")), len(segs))
    groups = order_groups(segs[first:])
    out: list[Specimen] = []
    for previous, group in zip([None, *groups], groups):
        obr = group.first("OBR")
        if obr is None or group.first("SPM") is not None or prior_visit(previous):
            continue
        if specimens.names_no_sample(obr, dec.seps):
            continue
        if dec.type == "ORM" and not specimens.says_a_sample(obr, dec.seps):
            continue  # ORM^O01 also orders imaging (OMI^O23 replaced that use): OBR-7 is then the exam's time
        sample = specimens.from_obr(obr, dec.seps, patient)
        if sample is not None and not specimens.named_elsewhere(sample, segs, dec.seps):
            out.append(sample)
    return out


def message_mother(dec: Decoder, records: list[Record]) -> list[Record]:
    """For a message kept whole with its companion records (orders, referrals, dispenses,
    immunizations; an ADT reads PID-21 per patient group): the mother its first PID names, of the
    patient its records share, carried and placed last. Messages whose encoder writes their
    records field by field (SIU, MDM, ORU, RDE^O11) get it from carried_orders.mother."""
    if any(isinstance(r, RelatedPerson) and MOTHER.code in {c.code for c in r.relationship} for r in records):
        return []
    found = mother(dec, dec.message.segment("PID"), _patient_of(records))
    return [adt.carried(found)] if found is not None else []


def referral_results(dec: Decoder, records: list[Record]) -> list[Record]:
    """A referral's results (REF's OBR with its NTE and OBX: a positive H. pylori test, an image of
    a slide): what the referred-to clinician is sent to read, as DiagnosticReports with their
    Observations, read as an ORU's are, carried."""
    patient = _patient_of(records)
    if patient is None:
        return []
    encounter = next((r.encounter for r in records if getattr(r, "encounter", None) is not None), None)
    groups: list[list[Segment]] = []
    current: list[Segment] | None = None
    for seg in dec.message.segments:
        if seg.name == "OBR":
            current = [seg]
            groups.append(current)
        elif current is not None and seg.name in ("NTE", "OBX"):
            current.append(seg)
        else:
            current = None
    out: list[Record] = []
    for group in groups:
        report = dec._report(group, patient, encounter)
        report.extra = {}
        for obs in report.observations:
            obs.extra = {}
        out.append(adt.carried(report))
    return out


def _encounter_of(records: list[Record]) -> Encounter | None:
    return next((r.encounter for r in records if getattr(r, "encounter", None) is not None), None)


def refill_background(dec: Decoder, records: list[Record]) -> list[Record]:
    """RDE^O25 (a refill, kept whole): the patient's insurance, allergies, diagnoses and next of kin
    before the first ORC, read as an RDS or an order message reads them (orders.background)."""
    from .orders import background
    segs = dec.message.segments
    first = next((i for i, s in enumerate(segs) if s.name == "ORC"), len(segs))
    return [adt.carried(r) for r in background(dec, segs[:first], _patient_of(records), _encounter_of(records))]


def dispensed_orders(dec: Decoder, records: list[Record], encounter: Encounter | None = None) -> list[Record]:
    """RDS^O13: the order each dispense fills — the pharmacy's encoded order (RXE, read as an
    RDE's, a filler order), else the order as placed (RXO) — as a Prescription, so a FHIR server
    gets the MedicationRequest a MedicationDispense is authorised by, in the message's visit."""
    segs = dec.message.segments
    patient, encounter = _patient_of(records), encounter or _encounter_of(records)
    groups: list[list[Segment]] = []
    for seg in segs:
        if seg.name == "ORC":
            groups.append([])
        if groups:
            groups[-1].append(seg)
    out: list[Record] = []
    for group in groups:
        names = {s.name for s in group}
        if not names & {"RXE", "RXO"}:
            continue
        rx = dec._prescription(group, patient, encounter, encoded="RXE" in names)
        rx.extra = {}
        out.append(adt.carried(rx))
    return out

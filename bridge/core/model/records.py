"""Canonical records: the few typed shapes every format translates to and from.

N formats need 2N translators, not N x N, because each translates only to and from these records.
Records are plain dataclasses with a stable JSON form (see :mod:`bridge.core.model.codec` and
``docs/records.md``). Anything a format carries that has no field here goes into ``extra`` keyed
by the format's name (``extra["hl7v2"]``, ``extra["fhir"]``…), so a round trip loses nothing.

Dates and times are ISO 8601 strings that keep the precision and offset they arrived with
(``"2024"``, ``"2024-05-01"``, ``"2024-05-01T10:00:00-05:00"``): turning a month-precision birth
date into a midnight timestamp would invent data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

SCHEMA_VERSION = 1
"""Version of the record shapes. Bumped on an incompatible change; the JSON form carries it."""

MODALITIES = ("video", "audio_only", "async", "in_person")
REMOTE_MODALITIES = ("video", "audio_only", "async")
"""Modalities that make a visit telehealth (FHIR class VR; the prescribing rules' "telemedicine")."""
DEA_SCHEDULES = ("CI", "CII", "CIII", "CIV", "CV", "none")
DEA_SUB_SCHEDULES = ("CIIN", "CIIIN")
"""DEA registration schedules 2N and 3N: the non-narcotic drugs of Schedule II and III only."""
PRESCRIPTION_CATEGORIES = ("inpatient", "outpatient", "community", "discharge")
DOCUMENT_EVENTS = ("original", "status-change", "addendum", "edit", "replacement", "cancel")
"""What a message did to a document (HL7v2 MDM triggers T01-T11): a receiver that files notes must
know an addendum or a replacement from a new note, and a cancel from either."""
OBSERVATION_STATUSES = ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
                        "entered-in-error", "unknown")
"""FHIR R4 observation-status (a required binding): the record uses its codes so no encoder guesses."""
OBSERVATION_CATEGORIES = ("laboratory", "vital-signs", "survey", "imaging", "social-history", "exam",
                          "procedure", "therapy", "activity")
"""FHIR R4 observation-category codes: routes and registries pick results by them (a pain registry
wants ``survey``, a lab interface ``laboratory``)."""
REPORT_STATUSES = ("registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                   "cancelled", "entered-in-error", "unknown")
"""FHIR R4 diagnostic-report-status (a required binding)."""
COMPARATORS = ("<", "<=", ">=", ">")
"""Where a medication order is meant to be used (FHIR MedicationRequest.category): an ``inpatient``
order is given in the facility; the others leave with the patient and are prescriptions."""


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


DATETIME = {"format": "datetime"}


# --- value types -------------------------------------------------------------------------------


@dataclass
class Identifier:
    """A business identifier. ``type`` uses HL7 table 0203 codes (MR, NPI, VN, PLAC, FILL, DEA…)."""

    value: str
    system: str | None = None
    type: str | None = None
    assigner: str | None = None


@dataclass
class Coding:
    """A code from a code system (``system`` is a URI or an HL7 table name such as ``HL70004``)."""

    code: str
    system: str | None = None
    display: str | None = None


@dataclass
class HumanName:
    family: str | None = None
    given: list[str] = field(default_factory=list)
    prefix: str | None = None
    suffix: str | None = None
    use: str | None = None


@dataclass
class Address:
    lines: list[str] = field(default_factory=list)
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    use: str | None = None


@dataclass
class ContactPoint:
    value: str
    system: str | None = field(default=None, metadata=_choices("phone", "email", "fax", "url", "other"))
    use: str | None = None


@dataclass
class Period:
    start: str | None = field(default=None, metadata=DATETIME)
    end: str | None = field(default=None, metadata=DATETIME)


@dataclass
class Quantity:
    value: float
    unit: str | None = None
    code: str | None = None
    system: str | None = None
    comparator: str | None = field(default=None, metadata=_choices(*COMPARATORS))


@dataclass
class Range:
    """A result given as a range of values (HL7v2 SN ``^10^-^20``)."""

    low: Quantity | None = None
    high: Quantity | None = None


@dataclass
class Ratio:
    """A result given as a ratio (HL7v2 SN ``^1^:^128``, a titre)."""

    numerator: Quantity | None = None
    denominator: Quantity | None = None


@dataclass
class ReferenceRange:
    """The normal range a result is judged against: bounds when the sender's text reads as numbers,
    and always the text as sent, because ranges such as "negative" or "<5 in adults" are not numbers."""

    low: Quantity | None = None
    high: Quantity | None = None
    text: str | None = None


@dataclass
class DEARegistration:
    """One DEA registration: registrations are per state and list the schedules they cover."""

    number: str
    state: str | None = None
    schedules: list[str] = field(default_factory=list,
                                 metadata={"item_choices": (*DEA_SCHEDULES[:-1], *DEA_SUB_SCHEDULES)})
    expires: str | None = field(default=None, metadata=DATETIME)


@dataclass
class StateLicense:
    state: str
    number: str | None = None
    expires: str | None = field(default=None, metadata=DATETIME)


@dataclass
class PatientLocation:
    """Where the patient physically was during a visit: prescribing rules key on it."""

    country: str | None = None
    state: str | None = None
    at_home: bool | None = None
    source: str | None = None


@dataclass
class SignatureEvidence:
    """EPCS signature evidence from the certified signing application, carried unchanged."""

    value: str
    kind: str | None = None
    signed_at: str | None = field(default=None, metadata=DATETIME)
    digest: str | None = None


# --- records -----------------------------------------------------------------------------------


PATIENT_LINK_TYPES = ("replaces", "replaced-by", "refer", "seealso")
"""FHIR R4 link-type codes (a required binding): a merge's survivor ``replaces`` the merged record."""


@dataclass
class PatientLink:
    """Another record of the same person: after a merge (HL7v2 A40) the surviving patient
    ``replaces`` the record whose identifier was retired, so a receiver can redirect that id."""

    other: Identifier
    type: str = field(metadata=_choices(*PATIENT_LINK_TYPES))


# --- records -----------------------------------------------------------------------------------


@dataclass
class Record:
    """Base of every record. ``kind`` names the record in JSON and in routes (``when: {record: …}``)."""

    kind: ClassVar[str] = "Record"


@dataclass
class Patient(Record):
    kind: ClassVar[str] = "Patient"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    name: HumanName | None = None
    birth_date: str | None = field(default=None, metadata=DATETIME)
    gender: str | None = field(default=None, metadata=_choices("male", "female", "other", "unknown"))
    addresses: list[Address] = field(default_factory=list)
    telecom: list[ContactPoint] = field(default_factory=list)
    links: list[PatientLink] = field(default_factory=list)
    general_practitioners: list[Participant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    primary_facility: Organization | None = None  # HL7v2 PD1-3, FHIR Patient.generalPractitioner


@dataclass
class Practitioner(Record):
    kind: ClassVar[str] = "Practitioner"
    id: str | None = None
    npi: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    name: HumanName | None = None
    dea_registrations: list[DEARegistration] = field(default_factory=list)
    licenses: list[StateLicense] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    telecom: list[ContactPoint] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pharmacy(Record):
    kind: ClassVar[str] = "Pharmacy"
    id: str | None = None
    ncpdp_id: str | None = None
    npi: str | None = None
    name: str | None = None
    address: Address | None = None
    telecom: list[ContactPoint] = field(default_factory=list)
    epcs_capable: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Medication(Record):
    kind: ClassVar[str] = "Medication"
    description: str | None = None
    rxnorm: str | None = None
    ndc: str | None = None
    codings: list[Coding] = field(default_factory=list)
    ingredients: list[Coding] = field(default_factory=list)
    dea_schedule: str | None = field(default=None, metadata=_choices(*DEA_SCHEDULES))
    strength: str | None = None
    form: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- places and organizations (HL7v2 PV1-3/6/11/39/42/43, FHIR Location and Organization) ---------

LOCATION_STATUSES = ("active", "suspended", "inactive")
LOCATION_MODES = ("instance", "kind")
LOCATION_PHYSICAL_TYPES = ("si", "bu", "wi", "wa", "lvl", "co", "ro", "bd", "ve", "ho", "ca", "rd", "area", "jdn")
"""FHIR R4 location-status and location-mode (required bindings) and location-physical-type codes
(site, building, wing, ward, level, corridor, room, bed, vehicle, house, cabinet, road, area,
jurisdiction): a receiver builds its bed board from them, so the record takes only these."""
ENCOUNTER_LOCATION_STATUSES = ("planned", "active", "reserved", "completed")
"""FHIR R4 encounter-location-status (a required binding)."""


@dataclass
class Organization(Record):
    """An organization a message names: the facility that serves a visit (HL7v2 PV1-39), a site."""

    kind: ClassVar[str] = "Organization"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    name: str | None = None
    types: list[Coding] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    telecom: list[ContactPoint] = field(default_factory=list)
    part_of: Organization | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Location(Record):
    """A place: a bed in a room on a ward of a facility (HL7v2 PL, FHIR Location). The chain runs
    from the most specific place up through ``part_of``, so a bed names its room, ward and site."""

    kind: ClassVar[str] = "Location"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    name: str | None = None
    description: str | None = None
    status: str | None = field(default=None, metadata=_choices(*LOCATION_STATUSES))
    mode: str | None = field(default=None, metadata=_choices(*LOCATION_MODES))
    physical_type: str | None = field(default=None, metadata=_choices(*LOCATION_PHYSICAL_TYPES))
    address: Address | None = None
    part_of: Location | None = None
    managing_organization: Organization | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EncounterLocation:
    """A place the patient was, is, or will be during a visit (HL7v2 PV1-3 assigned, PV1-6 prior,
    PV1-11 temporary, PV1-42 pending, PV1-43 prior temporary)."""

    location: Location
    status: str | None = field(default=None, metadata=_choices(*ENCOUNTER_LOCATION_STATUSES))
    temporary: bool | None = None
    period: Period | None = None


@dataclass
class Encounter(Record):
    kind: ClassVar[str] = "Encounter"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(
        default=None,
        metadata=_choices("planned", "arrived", "in-progress", "finished", "cancelled", "entered-in-error", "unknown"),
    )
    modality: str | None = field(default=None, metadata=_choices(*MODALITIES))
    encounter_class: str | None = None
    period: Period | None = None
    patient: Patient | None = None
    practitioner: Practitioner | None = None
    patient_location: PatientLocation | None = None
    practitioner_state: str | None = None
    reason: list[Coding] = field(default_factory=list)
    types: list[Coding] = field(default_factory=list)
    appointment_id: str | None = None
    consent_captured: bool | None = None
    last_in_person_visit: str | None = field(default=None, metadata=DATETIME)
    locations: list[EncounterLocation] = field(default_factory=list)
    service_provider: Organization | None = None
    participants: list[Participant] = field(default_factory=list)
    destination: Location | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Appointment(Record):
    kind: ClassVar[str] = "Appointment"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = None
    start: str | None = field(default=None, metadata=DATETIME)
    end: str | None = field(default=None, metadata=DATETIME)
    duration_minutes: int | None = None
    modality: str | None = field(default=None, metadata=_choices(*MODALITIES))
    reason: list[Coding] = field(default_factory=list)
    appointment_type: Coding | None = None
    patient: Patient | None = None
    practitioner: Practitioner | None = None
    patient_location: PatientLocation | None = None
    locations: list[Location] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prescription(Record):
    kind: ClassVar[str] = "Prescription"
    id: str | None = None
    prescriber_order_number: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = None
    intent: str | None = None
    category: str | None = field(default=None, metadata=_choices(*PRESCRIPTION_CATEGORIES))
    medication: Medication | None = None
    quantity: Quantity | None = None
    days_supply: int | None = None
    refills: int | None = None
    sig: str | None = None
    substitution_allowed: bool | None = None
    written_date: str | None = field(default=None, metadata=DATETIME)
    patient: Patient | None = None
    prescriber: Practitioner | None = None
    pharmacy: Pharmacy | None = None
    encounter: Encounter | None = None
    diagnosis: list[Coding] = field(default_factory=list)
    note: str | None = None
    signature: SignatureEvidence | None = None
    pdmp_checks: list[dict[str, Any]] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrescriptionEvent(Record):
    """Something that happened to a prescription after it was sent (SCRIPT Status, Error, RxFill…)."""

    kind: ClassVar[str] = "PrescriptionEvent"
    event_type: str
    id: str | None = None
    message_id: str | None = None
    relates_to_message_id: str | None = None
    prescriber_order_number: str | None = None
    prescription_id: str | None = None
    code: str | None = None
    description: str | None = None
    occurred_at: str | None = field(default=None, metadata=DATETIME)
    fill_status: str | None = None
    quantity: Quantity | None = None
    medication: Medication | None = None
    patient: Patient | None = None
    pharmacy: Pharmacy | None = None
    dispenser: Practitioner | None = None
    """Who dispensed (HL7v2 RXD-10 dispensing provider): the pharmacist a pharmacy board or a
    controlled-substance audit asks for, beside the pharmacy."""
    destination: Location | None = None
    """Where the medication was sent (HL7v2 RXD-13 dispense-to location: a ward, a clinic)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClinicalNote(Record):
    kind: ClassVar[str] = "ClinicalNote"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = None
    note_type: Coding | None = None
    title: str | None = None
    text: str | None = None
    content_type: str | None = None
    authored: str | None = field(default=None, metadata=DATETIME)
    author: Practitioner | None = None
    patient: Patient | None = None
    encounter: Encounter | None = None
    document_event: str | None = field(default=None, metadata=_choices(*DOCUMENT_EVENTS))
    parent_document: Identifier | None = None
    participants: list[Participant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Observation(Record):
    """One result (an HL7v2 OBX, a FHIR Observation): a lab value, a vital sign, a pain score.

    A value arrives in one of several shapes; exactly one ``value_*`` field is set, so a receiver
    never has to parse text to learn a number."""

    kind: ClassVar[str] = "Observation"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*OBSERVATION_STATUSES))
    category: str | None = field(default=None, metadata=_choices(*OBSERVATION_CATEGORIES))
    code: list[Coding] = field(default_factory=list)
    value_type: str | None = None
    value_quantity: Quantity | None = None
    value_codings: list[Coding] = field(default_factory=list)
    value_text: str | None = None
    value_datetime: str | None = field(default=None, metadata=DATETIME)
    value_range: Range | None = None
    value_ratio: Ratio | None = None
    units: Coding | None = None
    reference_range: ReferenceRange | None = None
    interpretation: list[Coding] = field(default_factory=list)
    effective: str | None = field(default=None, metadata=DATETIME)
    performer: Practitioner | None = None
    performing_organization: Organization | None = None
    notes: list[str] = field(default_factory=list)
    patient: Patient | None = None
    encounter: Encounter | None = None
    participants: list[Participant] = field(default_factory=list)
    equipment: list[Identifier] = field(default_factory=list)  # HL7v2 OBX-18, FHIR Observation.device
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Specimen(Record):
    """A sample a result was measured on (HL7v2 SPM, FHIR Specimen): what it is, where on the body it
    came from and when, so a receiver can tell a fasting serum from a random urine."""

    kind: ClassVar[str] = "Specimen"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    specimen_type: Coding | None = None
    body_site: Coding | None = None
    collection_method: Coding | None = None
    collected: Period | None = None
    received: str | None = field(default=None, metadata=DATETIME)
    quantity: Quantity | None = None  # HL7v2 OBR-9 collection volume, FHIR Specimen.collection.quantity
    collector: Practitioner | None = None  # HL7v2 OBR-10, FHIR Specimen.collection.collector
    patient: Patient | None = None
    parents: list[Specimen] = field(default_factory=list)  # HL7v2 SPM-3, FHIR Specimen.parent
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiagnosticReport(Record):
    """A report (an HL7v2 OBR with its OBX, a FHIR DiagnosticReport) holding its results."""

    kind: ClassVar[str] = "DiagnosticReport"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*REPORT_STATUSES))
    category: Coding | None = None
    code: list[Coding] = field(default_factory=list)
    effective: str | None = field(default=None, metadata=DATETIME)
    issued: str | None = field(default=None, metadata=DATETIME)
    observations: list[Observation] = field(default_factory=list)
    specimens: list[Specimen] = field(default_factory=list)
    patient: Patient | None = None
    encounter: Encounter | None = None
    participants: list[Participant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# --- clinical background: allergies, diagnoses, coverage (HL7v2 AL1, DG1, IN1/IN2) -----------------

ALLERGY_CATEGORIES = ("food", "medication", "environment", "biologic")
ALLERGY_CLINICAL_STATUSES = ("active", "inactive", "resolved")
ALLERGY_VERIFICATION_STATUSES = ("unconfirmed", "confirmed", "refuted", "entered-in-error")
CONDITION_CATEGORIES = ("encounter-diagnosis", "problem-list-item")
CONDITION_CLINICAL_STATUSES = ("active", "recurrence", "relapse", "inactive", "remission", "resolved")
CONDITION_VERIFICATION_STATUSES = ("unconfirmed", "provisional", "differential", "confirmed", "refuted",
                                   "entered-in-error")
COVERAGE_STATUSES = ("active", "cancelled", "draft", "entered-in-error")
SUBSCRIBER_RELATIONSHIPS = ("child", "parent", "spouse", "common", "other", "self", "injured")
"""Code lists of FHIR R4 required bindings (and Coverage.relationship's subscriber-relationship
codes): the records accept only these, so an encoder never has to invent a mapping."""


@dataclass
class AllergyIntolerance(Record):
    """An allergy or intolerance the sender lists for the patient (HL7v2 AL1)."""

    kind: ClassVar[str] = "AllergyIntolerance"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    clinical_status: str | None = field(default=None, metadata=_choices(*ALLERGY_CLINICAL_STATUSES))
    verification_status: str | None = field(default=None, metadata=_choices(*ALLERGY_VERIFICATION_STATUSES))
    allergen_type: Coding | None = None
    category: str | None = field(default=None, metadata=_choices(*ALLERGY_CATEGORIES))
    code: Coding | None = None
    severity: str | None = field(default=None, metadata=_choices("mild", "moderate", "severe"))
    reactions: list[str] = field(default_factory=list)
    identified_at: str | None = field(default=None, metadata=DATETIME)
    reported_by: RelatedPerson | None = None
    """Who told the clinician of the allergy, when not the patient (HL7v2 IAM-14 name, IAM-15
    relationship; FHIR ``asserter``): a parent's report of a child's allergy weighs differently."""
    patient: Patient | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Condition(Record):
    """A diagnosis of a visit or a problem on the patient's list (HL7v2 DG1)."""

    kind: ClassVar[str] = "Condition"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    clinical_status: str | None = field(default=None, metadata=_choices(*CONDITION_CLINICAL_STATUSES))
    verification_status: str | None = field(default=None,
                                            metadata=_choices(*CONDITION_VERIFICATION_STATUSES))
    category: str | None = field(default=None, metadata=_choices(*CONDITION_CATEGORIES))
    diagnosis_type: Coding | None = None
    code: Coding | None = None
    description: str | None = None
    onset: str | None = field(default=None, metadata=DATETIME)
    recorded: str | None = field(default=None, metadata=DATETIME)
    asserter: Practitioner | None = None
    patient: Patient | None = None
    encounter: Encounter | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Coverage(Record):
    """A patient's insurance: payer, plan, member and group numbers, subscriber (HL7v2 IN1/IN2)."""

    kind: ClassVar[str] = "Coverage"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*COVERAGE_STATUSES))
    plan: Coding | None = None
    plan_type: Coding | None = None
    payer_name: str | None = None
    payer_identifiers: list[Identifier] = field(default_factory=list)
    member_id: str | None = None
    group_number: str | None = None
    group_name: str | None = None
    subscriber_id: str | None = None
    subscriber_name: HumanName | None = None
    relationship: str | None = field(default=None, metadata=_choices(*SUBSCRIBER_RELATIONSHIPS))
    period: Period | None = None
    patient: Patient | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    policy_holder: Organization | None = None  # HL7v2 IN1-11 (+IN1-44), FHIR Coverage.policyHolder
    subscriber: RelatedPerson | None = None
    """The insured when someone other than the patient (HL7v2 IN1-16/17/19/49): a person of their own,
    whom FHIR's Coverage.subscriber references; ``subscriber_name`` holds the same name."""


# --- orders, medication administration, immunization (HL7v2 ORM/OML/OMG/REF, RAS/RGV, VXU) -------

SERVICE_REQUEST_STATUSES = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
REQUEST_INTENTS = ("proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order",
                   "instance-order", "option")
REQUEST_PRIORITIES = ("routine", "urgent", "asap", "stat")
SERVICE_REQUEST_CATEGORIES = ("laboratory", "imaging", "referral")
"""What kind of order: routes pick orders by it (a lab interface wants ``laboratory``, a referral
manager ``referral``). Orders of any other service have no category rather than a wrong one."""
ADMINISTRATION_STATUSES = ("in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped",
                           "unknown")
IMMUNIZATION_STATUSES = ("completed", "entered-in-error", "not-done")
"""Code lists of FHIR R4 required bindings (request-status, request-intent, request-priority,
medication-admin-status, immunization-status): the records accept only these codes."""


@dataclass
class ServiceRequest(Record):
    """An order for a service: a lab test, an imaging study, a referral (HL7v2 ORC/OBR, RF1)."""

    kind: ClassVar[str] = "ServiceRequest"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*SERVICE_REQUEST_STATUSES))
    intent: str | None = field(default=None, metadata=_choices(*REQUEST_INTENTS))
    category: str | None = field(default=None, metadata=_choices(*SERVICE_REQUEST_CATEGORIES))
    priority: str | None = field(default=None, metadata=_choices(*REQUEST_PRIORITIES))
    code: list[Coding] = field(default_factory=list)
    referral_type: Coding | None = None
    occurrence: Period | None = None
    authored: str | None = field(default=None, metadata=DATETIME)
    requester: Practitioner | None = None
    performers: list[Practitioner] = field(default_factory=list)
    reason: list[Coding] = field(default_factory=list)
    specimen_types: list[Coding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    patient: Patient | None = None
    encounter: Encounter | None = None
    participants: list[Participant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    performing_organization: Organization | None = None  # HL7v2 RF1-19, FHIR a ServiceRequest.performer
    parent_order: list[Identifier] = field(default_factory=list)  # HL7v2 ORC-8, else OBR-29; FHIR basedOn
    filler_view: bool | None = None
    """True when the sender is the order's filler (a lab's results, a schedule's bookings): what it says
    of the order is the filler's view, which a FHIR server keeps apart from the placer's own request
    (keyed by the filler number), whatever the request's intent."""


@dataclass
class MedicationAdministration(Record):
    """A dose given (or not given) to a patient (HL7v2 RXA in RAS; RXG in RGV)."""

    kind: ClassVar[str] = "MedicationAdministration"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*ADMINISTRATION_STATUSES))
    medication: Medication | None = None
    dose: Quantity | None = None
    route: Coding | None = None
    site: Coding | None = None
    start: str | None = field(default=None, metadata=DATETIME)
    end: str | None = field(default=None, metadata=DATETIME)
    performer: Practitioner | None = None
    prescriber_order_number: str | None = None
    status_reason: Coding | None = None
    patient: Patient | None = None
    encounter: Encounter | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Immunization(Record):
    """A vaccine given, refused or recorded from history (HL7v2 RXA in VXU)."""

    kind: ClassVar[str] = "Immunization"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*IMMUNIZATION_STATUSES))
    status_reason: Coding | None = None
    vaccine: list[Coding] = field(default_factory=list)
    occurrence: str | None = field(default=None, metadata=DATETIME)
    primary_source: bool | None = None
    lot_number: str | None = None
    expiration_date: str | None = field(default=None, metadata=DATETIME)
    manufacturer: Coding | None = None
    dose: Quantity | None = None
    route: Coding | None = None
    site: Coding | None = None
    performer: Practitioner | None = None
    funding_source: Coding | None = None
    program_eligibility: list[Coding] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    """What the sender observed about this vaccination and no field above holds (HL7v2 OBX of the
    RXA's order group: the vaccine information statement given, its dates); FHIR Observations
    ``partOf`` the Immunization."""
    patient: Patient | None = None
    encounter: Encounter | None = None
    participants: list[Participant] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RelatedPerson(Record):
    """Someone close to the patient: next of kin, a parent, an emergency contact (HL7v2 NK1)."""

    kind: ClassVar[str] = "RelatedPerson"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    name: HumanName | None = None
    relationship: list[Coding] = field(default_factory=list)
    telecom: list[ContactPoint] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    patient: Patient | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- people in their roles (HL7v2 ROL, PRT, PD1-4, PV1-7/8/9/17/52, OBX-16/25, ORC-12, TXA…) ------

PARTICIPATION_TYPES = ("ATND", "REF", "CON", "ADM", "PART", "PPRF", "SPRF", "PRF", "RESP", "VRF", "AUT",
                       "ENT", "AUTHEN", "TRANS", "DIS", "CALLBCK")
"""v3-ParticipationType codes a Participant's ``function`` takes: what the person did for this
record (attender, referrer, consultant, admitter, participant, primary/secondary performer,
performer, responsible party, verifier, author, data enterer, authenticator, transcriptionist,
discharger, callback contact). The FHIR encoder picks the element for each (Encounter.participant.type,
DiagnosticReport.resultsInterpreter or performer…), so the code is checked here."""
ROLE_FUNCTIONS = {
    "AD": "ADM", "AT": "ATND", "CP": "CON", "RP": "REF", "RT": "CON", "PP": "PART", "FHCP": "PART",
    "OP": "AUT", "EP": "ENT", "IP": "PRF", "PH": "PRF", "TN": "PRF", "PI": "RESP", "RO": "RESP",
    "MDIR": "RESP", "VP": "VRF", "VPS": "VRF", "VTS": "VRF", "TR": "TRANS", "AI": "SPRF", "AUT": "AUT",
}
"""A stated provider role (HL7 table 0443, and 0912 which shares its codes) → the function it
implies: admitting, attending, consulting, referring, referred-to, primary care, ordering,
entering, intended performer, pharmacist, technician, primary interpreter, responsible observer,
medical director, verifying, transcriptionist, assistant interpreter, author. Any other role
is a plain participant (PART)."""


@dataclass
class PractitionerRole(Record):
    """A person in a role the message states (HL7v2 ROL-3, PRT-4, or a field whose role is fixed:
    PD1-4 primary care provider, OBX-16 responsible observer, ORC-12 ordering provider): the role
    code (v2-0443/v2-0912), where and for whom the person works in it, and how to reach them."""

    kind: ClassVar[str] = "PractitionerRole"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    practitioner: Practitioner | None = None
    organization: Organization | None = None
    code: list[Coding] = field(default_factory=list)
    specialty: list[Coding] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    telecom: list[ContactPoint] = field(default_factory=list)
    period: Period | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Participant:
    """Someone who took part in what a record describes: a practitioner, or a practitioner in a
    stated role, and what they did (``function``, a v3-ParticipationType code). Derived from fields
    the HL7v2 decoder keeps as read, so an HL7v2 round trip writes them back exactly."""

    function: str | None = field(default=None, metadata=_choices(*PARTICIPATION_TYPES))
    practitioner: Practitioner | None = None
    role: PractitionerRole | None = None


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls
    for cls in (
        Patient,
        Practitioner,
        Pharmacy,
        Medication,
        Encounter,
        Appointment,
        Prescription,
        PrescriptionEvent,
        ClinicalNote,
        Observation,
        DiagnosticReport,
        AllergyIntolerance,
        Condition,
        Coverage,
        ServiceRequest,
        MedicationAdministration,
        Immunization,
        RelatedPerson,
        Location,
        Organization,
        Specimen,
        PractitionerRole,
    )
}
"""Every record kind by name, as used in JSON ``kind`` fields and route filters."""


# --- procedures (HL7v2 PR1, FHIR Procedure) ------------------------------------------------------

PROCEDURE_STATUSES = ("preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                      "entered-in-error", "unknown")
"""FHIR R4 event-status (Procedure.status, a required binding). An HL7v2 PR1 states no status, so
its procedures are ``unknown`` rather than a guessed ``completed``."""


@dataclass
class ProcedurePerformer:
    """Who took part in a procedure, and as what (HL7v2 PR1-8 anesthesiologist, PR1-11 surgeon,
    PR1-12 procedure practitioner): a receiver's surgical log needs the role, not only the name."""

    practitioner: Practitioner
    function: Coding | None = None


@dataclass
class Procedure(Record):
    """A procedure done to the patient (HL7v2 PR1 in ADT, BAR and DFT): a pain service needs the
    nerve blocks and injections of a stay beside its diagnoses."""

    kind: ClassVar[str] = "Procedure"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*PROCEDURE_STATUSES))
    code: Coding | None = None
    description: str | None = None
    category: Coding | None = None
    performed: str | None = field(default=None, metadata=DATETIME)
    performed_end: str | None = field(default=None, metadata=DATETIME)
    """When it ended, where the sender says (HL7v2 PDA-7's autopsy end); PR1 states a start only."""
    performers: list[ProcedurePerformer] = field(default_factory=list)
    reason: list[Coding] = field(default_factory=list)
    part_of: Identifier | None = None
    location: Location | None = None
    participants: list[Participant] = field(default_factory=list)
    patient: Patient | None = None
    encounter: Encounter | None = None
    extra: dict[str, Any] = field(default_factory=dict)


RECORD_TYPES[Procedure.kind] = Procedure


# --- accounts and episodes of care (HL7v2 PID-18, PV1-54; FHIR Account, EpisodeOfCare) -------------

ACCOUNT_STATUSES = ("active", "inactive", "entered-in-error", "on-hold", "unknown")
EPISODE_STATUSES = ("planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error")
"""FHIR R4 account-status and episode-of-care-status (required bindings)."""


@dataclass
class Account(Record):
    """The billing account a patient's care is charged to (HL7v2 PID-18 patient account number): a
    billing system files a visit's charges under it, so it travels with the visit."""

    kind: ClassVar[str] = "Account"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*ACCOUNT_STATUSES))
    patient: Patient | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeOfCare(Record):
    """A run of care that spans visits (HL7v2 PV1-54 service episode identifier): a course of pain
    management, a pregnancy, a rehabilitation programme. It names its patient, not a visit: many
    visits belong to one episode (FHIR links them from the Encounter)."""

    kind: ClassVar[str] = "EpisodeOfCare"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*EPISODE_STATUSES))
    patient: Patient | None = None
    extra: dict[str, Any] = field(default_factory=dict)


RECORD_TYPES[Account.kind] = Account
RECORD_TYPES[EpisodeOfCare.kind] = EpisodeOfCare


# --- charges (HL7v2 FT1; FHIR ChargeItem) ---------------------------------------------------------

CHARGE_ITEM_STATUSES = ("planned", "billable", "not-billable", "aborted", "billed", "entered-in-error", "unknown")
"""FHIR R4 chargeitem-status (ChargeItem.status, a required binding). A charge an HL7v2 FT1 posts is
``billable``: posted to the account, not yet on an invoice."""


@dataclass
class ChargeItem(Record):
    """A billable service or product posted to a patient's account (HL7v2 FT1 financial transaction
    of type charge, in DFT and in orders): a billing system needs what was done, how many, for how
    much, by whom and for which diagnoses to build the claim."""

    kind: ClassVar[str] = "ChargeItem"
    id: str | None = None
    identifiers: list[Identifier] = field(default_factory=list)
    status: str | None = field(default=None, metadata=_choices(*CHARGE_ITEM_STATUSES))
    code: Coding | None = None
    quantity: float | None = None
    amount: float | None = None
    currency: str | None = None
    occurred: str | None = field(default=None, metadata=DATETIME)
    entered: str | None = field(default=None, metadata=DATETIME)
    reason: list[Coding] = field(default_factory=list)
    performer: Practitioner | None = None
    enterer: Practitioner | None = None
    cost_center: Organization | None = None
    performing_organization: Organization | None = None
    requesting_organization: Organization | None = None
    product: Coding | None = None
    service: Procedure | None = None
    account: Account | None = None
    patient: Patient | None = None
    encounter: Encounter | None = None
    extra: dict[str, Any] = field(default_factory=dict)


RECORD_TYPES[ChargeItem.kind] = ChargeItem

"""Code systems, identifier systems and extension URLs the ``fhir`` format reads and writes.

Public systems are HL7's or the code owners'; everything under ``telemed-bridge.org`` is ours and is
documented in ``docs/fhir.md`` (each URL, what it carries, its value type).
"""

from __future__ import annotations

# --- public systems ----------------------------------------------------------------------------
NPI = "http://hl7.org/fhir/sid/us-npi"
NCPDP = "http://terminology.hl7.org/NamingSystem/NCPDPProviderIdentificationNumber"
NDC = "http://hl7.org/fhir/sid/ndc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0004 = "http://terminology.hl7.org/CodeSystem/v2-0004"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
MEDREQ_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
MEDREQ_CATEGORIES = ("inpatient", "outpatient", "community", "discharge")
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
R5_VIRTUAL_SERVICE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.virtualService"
"""Read and kept (never generated): the R5 cross-version extension describes the platform
(channel type, meeting address), for which the canonical records have no field."""

ENCOUNTER_CLASS_CODES = frozenset(
    {"AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR"})
"""v3 ActCode encounter codes; any other ``encounter_class`` is written as a v2 table 0004 code."""

ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"
"""HL7 v2 tables as FHIR code systems: ``HL70127`` is ``…/v2-0127``."""

# --- our systems -------------------------------------------------------------------------------
BASE = "https://telemed-bridge.org/fhir"
SID_RECORD_ID = f"{BASE}/sid/record-id"
TAG_ENTRY_KEY = f"{BASE}/tag/entry-key"
"""``meta.tag`` system of the key an entry without a business identifier is created once by."""
SID_ORDER_NUMBER = f"{BASE}/sid/prescriber-order-number"
SID_NCPDP_MESSAGE_ID = f"{BASE}/sid/ncpdp-message-id"
SID_DEA = f"{BASE}/sid/dea-registration"
SID_STATE_LICENSE = f"{BASE}/sid/state-license"
SID_RESULT_KEY = f"{BASE}/sid/result-key"
"""A report's result without an identifier of its own: uuid5 of the report's identifier, the result's
code and its place among the report's results of that code (see ``results.py``)."""
SID_ALLERGY_KEY = f"{BASE}/sid/allergy-key"
SID_CONDITION_KEY = f"{BASE}/sid/condition-key"
CS_LOCAL = f"{BASE}/CodeSystem/v2-local/"
"""A sender's own coding system, named only by its HL7v2 name (``L``, ``99ZZZ``, ``ICDO``):
``…/v2-local/<name>``, so the system is an absolute URI and the name survives."""
CS_QUALIFICATION = f"{BASE}/CodeSystem/qualification"
CS_MODALITY = f"{BASE}/CodeSystem/modality"

_SD = f"{BASE}/StructureDefinition"
EXT_MODALITY = f"{_SD}/modality"
EXT_PATIENT_LOCATION = f"{_SD}/patient-location"
EXT_PRACTITIONER_STATE = f"{_SD}/practitioner-state"
EXT_SOURCE_CLASS = f"{_SD}/source-encounter-class"
EXT_CONSENT = f"{_SD}/telehealth-consent"
EXT_LAST_IN_PERSON = f"{_SD}/last-in-person-visit"
EXT_DEA_SCHEDULE = f"{_SD}/dea-schedule"
EXT_STRENGTH = f"{_SD}/medication-strength"
EXT_EPCS_CAPABLE = f"{_SD}/epcs-capable"
EXT_STATE = f"{_SD}/jurisdiction-state"
EXT_SIGNATURE = f"{_SD}/epcs-signature"
EXT_PDMP_CHECK = f"{_SD}/pdmp-check"
EXT_RELATES_TO = f"{_SD}/relates-to-message-id"
EXT_EVENT_CODE = f"{_SD}/event-code"
EXT_FILL_STATUS = f"{_SD}/fill-status"
EXT_NOTE_STATUS = f"{_SD}/note-status"
EXT_VALUE_TYPE = f"{_SD}/observation-value-type"
EXT_OBSERVATION_UNITS = f"{_SD}/observation-units"
EXT_ISSUED_DATE = f"{_SD}/report-issued-date"
EXT_ALLERGY_SEVERITY = f"{_SD}/allergy-severity"
EXT_ALLERGEN_TYPE = f"{_SD}/allergen-type"
EXT_DIAGNOSIS_TYPE = f"{_SD}/diagnosis-type"
EXT_RECORD_EXTRA = f"{_SD}/record-extra"
EXT_RECORD_INDEX = f"{_SD}/record-index"
EXT_FILLER_VIEW = f"{_SD}/filler-view"

OUR_EXTENSIONS = frozenset(
    value for name, value in dict(globals()).items() if name.startswith("EXT_"))
"""Extensions this format generates; any other extension is kept verbatim in ``extra["fhir"]``."""

# --- places and organizations (places.py) --------------------------------------------------------
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
SID_LOCATION_KEY = f"{BASE}/sid/location-key"
"""A Location without an identifier a server could match: uuid5 of its chain of places (type and
name of itself and of every ``partOf`` up to the site), so the same bed in the same room is one
resource however many visits name it."""
SID_ORGANIZATION_KEY = f"{BASE}/sid/organization-key"
"""An Organization without an identifier a server could match: uuid5 of its identifier values, or of
its name when it has none."""
EXT_TEMPORARY_LOCATION = f"{_SD}/temporary-location"
OUR_EXTENSIONS = OUR_EXTENSIONS | {EXT_TEMPORARY_LOCATION}
SID_SPECIMEN_KEY = f"{BASE}/sid/specimen-key"
"""A Specimen without an identifier a server could match: uuid5 of the patient's key, the sender's
specimen ids (values), the type and the collection start."""

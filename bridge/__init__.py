"""Telemed Bridge: an interface engine for telemedicine.

This module is the public API for plugins: ``hookimpl``, the canonical records, the registration
types and the error classes. Plugins import from here and never from ``bridge.core`` internals.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("bridge")
"""Decorator marking a plugin's implementation of a hook in :mod:`bridge.hookspecs`."""

from bridge.core.model import (  # noqa: E402 - after hookimpl so plugins importing bridge see it
    KEY_NAMES,
    RECORD_TYPES,
    SCHEMA_VERSION,
    Record,
    keys_of,
    record_from_dict,
    record_to_dict,
)
from bridge.core.model.drugs import (  # noqa: E402
    NCI_SCHEDULES,
    SCHEDULE_STRICTNESS,
    DrugRow,
    DrugTable,
    carried_schedule,
    default_schedule_file,
    load_drug_table,
    normalise_ndc,
    normalise_schedule,
    parse_drug_rows,
    stricter_schedule,
)
from bridge.core.model.signing import DIGEST_PREFIX as SIGNED_DIGEST_PREFIX  # noqa: E402
from bridge.core.model.signing import signed_digest, signed_fields  # noqa: E402
from bridge.core.model.times import ORIGINAL_TIMES, convert_times, localize_records  # noqa: E402
from bridge.core.model.records import (  # noqa: E402
    COMPARATORS,
    MODALITIES,
    OBSERVATION_CATEGORIES,
    OBSERVATION_STATUSES,
    REMOTE_MODALITIES,
    REPORT_STATUSES,
    Address,
    Appointment,
    ClinicalNote,
    Coding,
    ContactPoint,
    DEARegistration,
    DiagnosticReport,
    Encounter,
    HumanName,
    Identifier,
    Medication,
    Observation,
    Patient,
    PatientLocation,
    Period,
    Pharmacy,
    Practitioner,
    Prescription,
    PrescriptionEvent,
    Quantity,
    Range,
    Ratio,
    ReferenceRange,
    SignatureEvidence,
    StateLicense,
)
from bridge.core.model.records import (  # noqa: E402
    ALLERGY_CATEGORIES,
    ALLERGY_CLINICAL_STATUSES,
    ALLERGY_VERIFICATION_STATUSES,
    CONDITION_CATEGORIES,
    CONDITION_CLINICAL_STATUSES,
    CONDITION_VERIFICATION_STATUSES,
    COVERAGE_STATUSES,
    PATIENT_LINK_TYPES,
    SUBSCRIBER_RELATIONSHIPS,
    AllergyIntolerance,
    Condition,
    Coverage,
    PatientLink,
)
from bridge.core.model.records import (  # noqa: E402
    ADMINISTRATION_STATUSES,
    IMMUNIZATION_STATUSES,
    REQUEST_INTENTS,
    REQUEST_PRIORITIES,
    SERVICE_REQUEST_CATEGORIES,
    SERVICE_REQUEST_STATUSES,
    Immunization,
    MedicationAdministration,
    RelatedPerson,
    ServiceRequest,
)
from bridge.core.model.records import (  # noqa: E402
    ENCOUNTER_LOCATION_STATUSES,
    LOCATION_MODES,
    LOCATION_PHYSICAL_TYPES,
    LOCATION_STATUSES,
    EncounterLocation,
    Location,
    Organization,
    Specimen,
)
from bridge.core.model.records import (  # noqa: E402
    PARTICIPATION_TYPES,
    ROLE_FUNCTIONS,
    Participant,
    PractitionerRole,
)
from bridge.core.model.records import PROCEDURE_STATUSES, Procedure, ProcedurePerformer  # noqa: E402
from bridge.core.model.records import ACCOUNT_STATUSES, EPISODE_STATUSES, Account, EpisodeOfCare  # noqa: E402
from bridge.core.model.records import CHARGE_ITEM_STATUSES, ChargeItem  # noqa: E402
from bridge.core.model.envelope import Endpoint, MessageEnvelope, Software, localize_envelope  # noqa: E402
from bridge.errors import (  # noqa: E402
    BridgeError,
    ConfigError,
    DecodeError,
    DeliveryError,
    EncodeError,
    MessageTooLarge,
    PermanentDeliveryError,
    PluginError,
    StoreError,
    TransientDeliveryError,
)
from bridge.plugin_types import (  # noqa: E402
    OPTION_KINDS,
    CommandSpec,
    ConfigSection,
    Delivery,
    Destination,
    DestinationContext,
    DestinationProfile,
    FormatSpec,
    JobContext,
    JobType,
    MessageHeader,
    OptionSpec,
    PolicyDecision,
    PolicyRequest,
    PolicySpec,
    Receipt,
    RuleResult,
    SendResult,
    Source,
    SourceContext,
    TransportSpec,
    WebBlueprint,
)

__all__ = [name for name in dir() if not name.startswith("_") and name not in ("annotations", "pluggy")]

"""The Oracle Health documentation pages each request of this plugin follows (one place, cited by
the request builders, the simulator and ``docs/vendors.md``).

Two publications describe the same Millennium R4 API: Oracle's reference
(docs.oracle.com, "Millennium Platform APIs", FHIR R4 APIs, ``mfrap``) and the older fhir.cerner.com
pages. Where they differ the docs.oracle.com page is followed; both are listed so a reader can check.
"""

from __future__ import annotations

ORACLE = "https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfrap"
CERNER = "https://fhir.cerner.com/millennium/r4"

ENCOUNTER_CREATE = f"{ORACLE}/op-encounter-post.html"
ENCOUNTER_PATCH = f"{ORACLE}/op-encounter-id-patch.html"
ENCOUNTER_PAGE = f"{CERNER}/base/management/encounter/"
DOCUMENT_CREATE = f"{ORACLE}/op-documentreference-post.html"
DOCUMENT_PAGE = f"{CERNER}/foundation/documents/document-reference/"
MEDICATION_CREATE = f"{ORACLE}/op-medicationrequest-post.html"
MEDICATION_PAGE = f"{CERNER}/clinical/medications/medication-request/"
PATIENT_PAGE = f"{CERNER}/base/individuals/patient/"
CLIENT_ERRORS = f"{CERNER}/#client-errors"
OPERATION_OUTCOMES = f"{CERNER}/#operation-outcomes"
REQUIRED_FIELDS = f"{CERNER}/#handling-required-fields"

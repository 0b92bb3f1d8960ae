"""The FHIR plugin's network side, as registration data for the plugin's hooks.

``TRANSPORTS`` (``fhir+https`` and ``fhir+http``: REST destination and inbound endpoint) and
``JOB_TYPES`` (``fhir-poll``) are plain tuples so the plugin's ``bridge_transports`` and
``bridge_job_types`` hooks can return them, and tests can register them on their own.
"""

from __future__ import annotations

from bridge import JobType, TransportSpec

from .poller import FHIR_POLL
from .rest import FhirInbound, FhirRestDestination

TRANSPORTS: tuple[TransportSpec, ...] = (
    TransportSpec(scheme="fhir+https", source=FhirInbound, destination=FhirRestDestination,
                  description="FHIR R4 REST over TLS: transaction or search-before-create writes; "
                              "inbound POST endpoint (needs cert_file/key_file)"),
    TransportSpec(scheme="fhir+http", source=FhirInbound, destination=FhirRestDestination,
                  description="FHIR R4 REST without TLS (loopback and local test servers)"),
)

JOB_TYPES: tuple[JobType, ...] = (FHIR_POLL,)

__all__ = ["JOB_TYPES", "TRANSPORTS"]

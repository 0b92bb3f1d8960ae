"""The FHIR plugin's network side, as registration data for the plugin's hooks.

``TRANSPORTS`` (``fhir+https`` and ``fhir+http``: REST destination and inbound endpoint) and
``JOB_TYPES`` (``fhir-poll``) are plain tuples so the plugin's ``bridge_transports`` and
``bridge_job_types`` hooks can return them, and tests can register them on their own.
"""

from __future__ import annotations

from bridge import JobType, OptionSpec, TransportSpec

from .poller import FHIR_POLL
from .rest import FhirInbound, FhirRestDestination

SOURCE_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("token_env", "environment variable holding the bearer token senders must present", kind="string"),
    OptionSpec("allow_unauthenticated", "accept requests without a token (loopback addresses only)",
               kind="boolean", default=False),
    OptionSpec("policy_ack", "answer 422 with the reasons when a policy blocks the message", kind="boolean",
               default=True),
    OptionSpec("cert_file", "server certificate, PEM (fhir+https)", kind="string"),
    OptionSpec("key_file", "server private key, PEM (fhir+https)", kind="string"),
    OptionSpec("request_timeout", "seconds for one whole request (line, headers, body, answer)", kind="number",
               default=30.0),
)
DESTINATION_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("mode", "how resources are written", kind="string", default="transaction",
               choices=("transaction", "search-before-create")),
    OptionSpec("auth", "how to get a token: {type: none | bearer | client-secret-basic | smart-backend, …}",
               kind="mapping"),
    OptionSpec("ca_file", "CA bundle to verify the server with, PEM", kind="string"),
    OptionSpec("connect_timeout", "seconds to connect", kind="number", default=5.0),
    OptionSpec("timeout", "seconds for the whole request", kind="number", default=30.0),
    OptionSpec("max_response_bytes", "largest answer read", kind="integer"),
)

TRANSPORTS: tuple[TransportSpec, ...] = (
    TransportSpec(scheme="fhir+https", source=FhirInbound, destination=FhirRestDestination,
                  description="FHIR R4 REST over TLS: transaction or search-before-create writes; "
                              "inbound POST endpoint (needs cert_file/key_file)",
                  source_options=SOURCE_OPTIONS, destination_options=DESTINATION_OPTIONS),
    TransportSpec(scheme="fhir+http", source=FhirInbound, destination=FhirRestDestination,
                  description="FHIR R4 REST without TLS (loopback and local test servers)",
                  source_options=SOURCE_OPTIONS, destination_options=DESTINATION_OPTIONS),
)

JOB_TYPES: tuple[JobType, ...] = (FHIR_POLL,)

__all__ = ["JOB_TYPES", "TRANSPORTS"]

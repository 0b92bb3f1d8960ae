"""The FHIR test server now ships with the plugin test kit (``bridge.testing.fakes.fhir_server``).

This module keeps the names the FHIR network tests import.
"""

from bridge.testing.fakes.fhir_server import (  # noqa: F401 - re-exported for the tests here
    BASE_PATH,
    FakeFhirServer,
    FhirTestServer,
    Injection,
    Refused,
    ResettingServer,
    outcome,
    validate,
)

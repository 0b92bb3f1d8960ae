"""Fake peers on loopback for plugin tests: real servers on 127.0.0.1 with port 0, context managers.

- :class:`FakeFhirServer` — a FHIR R4 server (validation needs ``telemed-bridge[test]``);
- :class:`FakeMllpPeer` — an HL7v2 receiver over MLLP answering AA/AE/AR as scripted;
- :class:`FakeTokenEndpoint` — an OAuth2 token endpoint checking client assertions and client secrets;
- :class:`FakeHttpServer` — the base to build a vendor's REST API fake on;
- :class:`FaultyHttpFront` — a raw-socket front for any of them that hangs, drips, resets or drops answers.
"""

from .fhir_server import FakeFhirServer, ResettingServer
from .http import FakeHttpServer, Injection, SeenRequest
from .http_faults import FaultyHttpFront, FrontRequest
from .mllp_peer import FakeMllpPeer
from .token_endpoint import FakeTokenEndpoint

__all__ = ["FakeFhirServer", "FakeHttpServer", "FakeMllpPeer", "FakeTokenEndpoint", "FaultyHttpFront", "FrontRequest",
           "Injection", "ResettingServer", "SeenRequest"]

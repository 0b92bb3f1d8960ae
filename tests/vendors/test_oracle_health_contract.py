"""The kit's ProfileContract for ``oracle_health``, with the Oracle Health simulator as the peer.

What every destination must do (one effect per delivery, none doubled by a redelivery or a restart,
transient/permanent/timeout failures raised as such, no PHI in the errors), checked against a peer
that refuses whatever Millennium's documentation says it refuses.
"""

from __future__ import annotations

from typing import Any

import pytest

import bridge.plugins.oracle_health
from bridge import Encounter, Identifier, Period
from bridge.testing import FAKE_PHI, OracleHealthSimulator, ProfileContract, fake_patient

TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.9999.1"  # the system fake_patient() gives its MRN
VISIT_SYSTEM = "urn:oid:2.16.840.1.113883.3.13.6"


def visit(number: str) -> Encounter:
    return Encounter(patient=fake_patient(), identifiers=[Identifier(value=number, type="VN", system=VISIT_SYSTEM)],
                     status="in-progress", modality="video", period=Period(start="2026-03-01T10:00:00-05:00"))


class TestOracleHealthProfile(ProfileContract):
    plugin = bridge.plugins.oracle_health
    plugin_name = "oracle_health"
    profile_name = "oracle_health"
    sample_records = [[visit("V-CONTRACT-1")], [visit("V-CONTRACT-2")]]

    @pytest.fixture
    def peer(self, monkeypatch):
        monkeypatch.setenv("ORACLE_SECRET", "contract-secret")
        with OracleHealthSimulator(tenant=TENANT, client_id="tb-np", client_secret="contract-secret") as sim:
            sim.add_patient(MRN_SYSTEM, FAKE_PHI.mrn)
            yield sim

    def destination_options(self, peer: OracleHealthSimulator) -> dict[str, Any]:
        return {"tenant": TENANT, "base_url": peer.base, "token_url": peer.token_url,
                "client_ids": {"non-production": "tb-np"}, "auth_method": "client_secret_basic",
                "client_secret_env": "ORACLE_SECRET", "mrn_system": MRN_SYSTEM, "visit_number_system": VISIT_SYSTEM,
                "encounter_types": {"default": "309308"}, "service_provider": "675844", "timeout": 1,
                "connect_timeout": 1}

    def effects(self, peer: OracleHealthSimulator) -> int:
        return len(peer.all("Encounter"))

    def script_failure(self, peer: OracleHealthSimulator, kind: str) -> None:
        posting = lambda request: request.method == "POST" and "/r4/" in request.path  # noqa: E731
        if kind == "transient":
            peer.inject(status=503, text="service unavailable", when=posting)
        elif kind == "permanent":
            peer.inject(status=422, text="Body contained unsupported fields", when=posting)
        else:
            peer.inject(delay=1.5, passthrough=True, when=lambda r: "/r4/" in r.path)

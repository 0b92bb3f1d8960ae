"""The contract classes applied to real built-in plugins, exactly as a plugin author would use them.

If a contract were too strict for a correct plugin, these would fail; if the built-ins regress on
round trips, error classes, idempotency or PHI in errors, these catch it.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import bridge.plugins.bridge_format
import bridge.plugins.fhir
import bridge.plugins.file
import bridge.plugins.hl7v2
from bridge import ClinicalNote, Encounter, Identifier, Period
from bridge.testing import FakeMllpPeer, FormatContract, TransportContract, fake_patient

SB, EB = b"\x0b", b"\x1c\x0d"


def visit_records() -> list[Any]:
    patient = fake_patient()
    encounter = Encounter(id="ENC-1", status="finished", modality="video", patient=patient,
                          identifiers=[Identifier(value="V1001", type="VN")],
                          period=Period(start="2024-05-01T10:00:00-05:00", end="2024-05-01T10:20:00-05:00"))
    note = ClinicalNote(id="NOTE-1", title="Visit note", text="Ottoline Quillfeather reports a dry cough.",
                        patient=patient, encounter=Encounter(id="ENC-1"))
    return [encounter, note]


class TestBridgeFormat(FormatContract):
    plugin, plugin_name = bridge.plugins.bridge_format, "bridge_format"
    format_name = "bridge"
    sample_records = [visit_records(), [fake_patient(id="P-2")]]
    bad_inputs = [b"{", b'{"schema": "telemed-bridge/9", "records": []}', b'["not", "an", "object"]',
                  b'{"schema": "telemed-bridge/1", "records": [{"kind": "Patient", "name": "Quillfeather",'
                  b' "birth_date": "1937-04-23"}]}']


def adt_with_phi(control_id: str) -> bytes:
    """A synthetic ADT^A04 carrying the seeded fake PHI (no real person)."""
    segments = [f"MSH|^~\\&|SENDAPP|SENDFAC|BRIDGE|TB|20240102030405||ADT^A04^ADT_A01|{control_id}|P|2.5",
                "EVN|A04|20240102030405",
                "PID|1||MRN-7Q4Z19^^^TB^MR||Quillfeather^Ottoline||19370423|F|||17 Larkspur Close^^^OR^97201"
                "||202-555-0142"]
    return ("\r".join(segments) + "\r").encode()


class TestMllpTransport(TransportContract):
    plugin, plugin_name = bridge.plugins.hl7v2, "hl7v2"
    scheme = "mllp"
    format_name = "hl7v2"
    payloads = [adt_with_phi("CTRL0001"), adt_with_phi("CTRL0002")]
    source_payload = adt_with_phi("CTRL0100")
    timeout_budget_seconds = 5.0

    @pytest.fixture
    def peer(self):
        with FakeMllpPeer() as peer:
            yield peer

    def destination_url(self, peer: FakeMllpPeer) -> str:
        return peer.url

    def destination_options(self, peer: FakeMllpPeer) -> dict[str, Any]:
        return {"ack_timeout_seconds": 0.5, "connect_timeout_seconds": 1}

    def effects(self, peer: FakeMllpPeer) -> int:
        return peer.effects()

    def script_failure(self, peer: FakeMllpPeer, kind: str) -> None:
        peer.script({"transient": "AE", "permanent": "AR", "timeout": "silent"}[kind])

    def source_url(self, tmp_path: Path) -> str:
        return "mllp://127.0.0.1:0"

    def send_to_source(self, source: Any, url: str, raw: bytes) -> bool:
        with socket.create_connection(("127.0.0.1", source.port), timeout=5) as conn:
            conn.sendall(SB + raw + EB)
            answer = b""
            while EB not in answer:
                chunk = conn.recv(4096)
                if not chunk:
                    return False
                answer += chunk
        msa = next(s for s in answer.strip(SB + EB).split(b"\r") if s.startswith(b"MSA"))
        return msa.split(b"|")[1] in (b"AA", b"CA")


class TestFileTransport(TransportContract):
    """The file destination: re-delivery overwrites the same file, so the folder holds one effect."""

    plugin, plugin_name = bridge.plugins.file, "file"
    scheme = "file"
    format_name = "bridge"
    sample_records = [visit_records(), [fake_patient(id="P-2")]]

    @pytest.fixture
    def peer(self, tmp_path: Path) -> Path:
        outbox = tmp_path / "outbox"
        outbox.mkdir()
        return outbox

    def destination_url(self, peer: Path) -> str:
        return f"file://{peer}"

    def effects(self, peer: Path) -> int:
        return sum(1 for p in peer.iterdir() if not p.name.startswith("."))


def fhir_visit() -> list[Any]:
    """A visit whose patient and encounter carry identifier systems, so the FHIR writes are conditional."""
    patient = fake_patient()
    return [Encounter(id="ENC-7", status="finished", modality="video", patient=patient,
                      identifiers=[Identifier(value="V7", type="VN", system="urn:oid:2.16.840.1.113883.3.9999.2")])]


class TestFhirRestTransport(TransportContract):
    """The fhir+http destination against the kit's fake FHIR server (which validates every resource)."""

    plugin, plugin_name = bridge.plugins.fhir, "fhir"
    scheme = "fhir+http"
    format_name = "fhir"
    sample_records = [fhir_visit()]
    timeout_budget_seconds = 5.0

    @pytest.fixture
    def peer(self):
        from bridge.testing import FakeFhirServer

        with FakeFhirServer() as server:
            yield server

    def destination_url(self, peer: Any) -> str:
        return "fhir+" + peer.base

    def destination_options(self, peer: Any) -> dict[str, Any]:
        return {"timeout": 0.5, "connect_timeout": 0.5}

    def effects(self, peer: Any) -> int:
        return peer.count().get("Encounter", 0)

    def script_failure(self, peer: Any, kind: str) -> None:
        if kind == "transient":
            peer.inject(status=503, text="maintenance window")
        elif kind == "permanent":
            peer.inject(status=422, text="Encounter.status is not allowed here")
        else:
            peer.inject(delay=1.0, status=200)

"""Issue 13: ServiceRequest.status from ORC-5 (table 0038) and, when it is empty, ORC-1 (table 0119),
as the HL7 v2-to-FHIR IG's concept maps read them, except the placer's cancel (CA) and hold (HD)
requests, which end or pause the request at once (see docs/hl7v2.md, Orders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import ServiceRequest
from bridge.plugins.hl7v2.codec import FORMAT

INPUT = Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
MSH = "MSH|^~\\&|EHR|HOSP|LAB|LAB|20240501093000||ORM^O01^ORM_O01|C1|P|2.5.1"
PID = "PID|1||M1^^^HOSP^MR||Doe^Ann"


def order_status(orc1: str, orc5: str = "") -> str | None:
    raw = "\r".join([MSH, PID, f"ORC|{orc1}|P1^EHR|||{orc5}", "OBR|1|P1^EHR||24331-1^Lipid panel^LN"])
    (request,) = [r for r in FORMAT.decode(raw.encode() + b"\r", {}) if isinstance(r, ServiceRequest)]
    return request.status


@pytest.mark.parametrize("orc1, status", [
    ("NW", "active"), ("OK", "active"), ("RL", "active"), ("CA", "revoked"), ("CR", "revoked"),
    ("OC", "revoked"), ("DC", "revoked"), ("HD", "on-hold"), ("HR", "on-hold"), ("FU", "completed"),
    ("SC", "unknown"), ("XO", "unknown"),
])
def test_order_control_gives_the_status_when_orc5_is_empty(orc1: str, status: str) -> None:
    assert order_status(orc1) == status


@pytest.mark.parametrize("orc1, orc5, status", [
    ("SC", "CM", "completed"), ("SC", "IP", "active"), ("CA", "SC", "active"), ("NW", "HD", "on-hold"),
    ("SC", "RP", "revoked"), ("SC", "ER", "entered-in-error"), ("NW", "CA", "revoked"),
])
def test_order_status_wins_over_order_control(orc1: str, orc5: str, status: str) -> None:
    assert order_status(orc1, orc5) == status


@pytest.mark.parametrize("name", ["OMG-O19-02", "OML-O21-03"])
def test_a_placers_cancel_request_revokes_the_order(name: str) -> None:
    """The fifth ORC of these samples is CA with no ORC-5: Microsoft's converter also writes revoked;
    the other four (SC, ORC-5 CM) are completed."""
    requests = [r for r in FORMAT.decode((INPUT / f"{name}.hl7").read_bytes(), {}) if isinstance(r, ServiceRequest)]
    assert [r.status for r in requests] == ["completed"] * 4 + ["revoked"]

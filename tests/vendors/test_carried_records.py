"""A vendor profile skips the records the HL7v2 decoder carried beside a message's first record
(an ADT's next of kin, PID-21 mother, OBX…): their segments are in the first record, from which the
profile writes what it can. A record of a kind it cannot write that was routed on its own is still
a permanent failure naming the kinds it can."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import Encounter, Observation, PermanentDeliveryError
from bridge.plugin_types import Delivery
from bridge.plugins import bridge_format
from bridge.plugins.fhir import vendorkit as kit
from bridge.plugins.hl7v2.codec import decode

ADT = (Path(__file__).resolve().parents[1] / "fixtures" / "hl7v2" / "corpus" / "fhir-converter-input"
       / "ADT-A01-01.hl7")


def delivery(records: list) -> Delivery:
    return Delivery(outbox_id=1, message_id=1, destination="ehr", payload=bridge_format.encode(records, {}),
                    media_type=bridge_format.MEDIA_TYPE, file_extension="json", attempt=1)


def test_carried_records_are_skipped_and_named_in_the_outcome() -> None:
    records = decode(ADT.read_bytes(), {})
    written: list[str] = []
    outcome = kit.write_records(delivery(records), "epic",
                                [(Encounter, lambda r, out: (written.append(r.kind), out.add("visit written")))])
    assert written == ["Encounter"]
    assert "visit written" in outcome
    for kind in ("RelatedPerson", "Observation", "AllergyIntolerance", "Condition", "Coverage"):
        assert f"{kind} carried in its message: not written by the epic profile" in outcome


def test_a_record_routed_on_its_own_is_still_a_routing_mistake() -> None:
    alone = Observation(status="final", code=[], value_text="72")
    with pytest.raises(PermanentDeliveryError, match="does not write Observation records"):
        kit.write_records(delivery([alone]), "epic", [(Encounter, lambda r, out: None)])

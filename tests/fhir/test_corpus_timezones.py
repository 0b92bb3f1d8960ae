"""Issue 11 §3, Seen: corpus messages that reach FHIR failed for lack of a time zone.

Every public-corpus HL7v2 message that decodes is encoded to FHIR twice: as it decodes (the old
path: local times, no zone) and after the core localizes it in the channel's zone. Measured when
the issue was fixed: 157 messages reach FHIR; 71 failed for lack of a zone before, none after.
Since issue 13 the three ORU^R01 without OBR decode too (as Observations), and every ADT event
decodes: 219 messages reach FHIR, 85 of them fail without a zone, none with one. With orders,
referrals, dispenses, administrations, immunizations, OUL results, MDM T01-T11, SIU S16-S26 and BAR/DFT
(the other slices of issue 13): 310 reach FHIR, 108 fail without a zone, none with one. With problem lists
(PPR^PC1-PC3): 322 and 117; with the 52 VXU without RXA read as their patient's record: 374 and 117;
with PR1 procedures (a DFT whose only local time is its PR1-5): 374 and 118; with the orders an MDM
carries as ServiceRequests (three MDM whose only local time is ORC-9): 374 and 121.
"""

from __future__ import annotations

from bridge import EncodeError, localize_records
from bridge.plugins.fhir.codec import FORMAT as FHIR

from .corpus_fhir import decoded_corpus


def _fhir_failures(zone: str | None) -> tuple[int, int]:
    """(messages that reach FHIR, of those how many fail because a time has no zone)."""
    reached = no_zone = 0
    for _, records in decoded_corpus():
        reached += 1
        if zone:
            localize_records(records, zone)
        try:
            FHIR.encode(records, {})
        except EncodeError as exc:
            no_zone += "has no time zone" in str(exc)
    return reached, no_zone


def test_seen_corpus_messages_fail_at_fhir_without_a_zone_and_pass_with_one():
    reached, failed_before = _fhir_failures(None)
    assert reached == 374 and failed_before == 121  # issue 13's slices: orders, MDM, SIU, BAR/DFT, problems…
    assert _fhir_failures("America/Chicago") == (374, 0)

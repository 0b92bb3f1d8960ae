"""Review of issue 11: a channel's time zone must not break a signature. docs/policy.md says the
signed-content digest copies ``written_date`` "exactly as sent"; the engine localizes offset-less
times right after decode, before the gate (R21) and the NCPDP encoder recompute the digest."""

from __future__ import annotations

import bridge.plugins.telehealth_policy as p
from bridge import localize_records, signed_digest
from bridge.plugins.telehealth_policy.settings import ruleset_for

from .builders import make


def test_a_local_written_time_signed_as_sent_still_matches_after_the_channel_zone_is_applied():
    rx = make({"written_date": "2026-11-27T09:28:00", "patient.birth_date": "1980-04-12T00:00"})
    signed = rx.signature.digest
    localize_records([rx], "America/Chicago")
    assert rx.written_date == "2026-11-27T09:28:00-06:00"  # the exact time the gate judges by
    assert signed_digest(rx) == signed
    decision = p.decide([rx], ruleset_for({}))
    assert "R21" not in {r.id for r in decision.rules}, decision.rules
    assert decision.outcome == "ALLOW", decision.rules


def test_a_written_date_changed_after_signing_is_still_caught():
    rx = make({"written_date": "2026-11-27T09:28:00"})
    localize_records([rx], "America/Chicago")
    rx.written_date = "2026-11-20T09:28:00-06:00"
    assert signed_digest(rx) != rx.signature.digest

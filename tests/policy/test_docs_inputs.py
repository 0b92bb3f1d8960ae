"""Issue 11 §2: docs/policy.md documents, in JSON, every input the gate reads, and a prescription
built from the docs alone is judged as intended: the documented example ALLOWs, and its digest is
recomputed here from the documented rules only (not with bridge.signed_digest)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import bridge.plugins.telehealth_policy as p
from bridge import record_from_dict

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
EVALUATE = (ROOT / "bridge" / "plugins" / "telehealth_policy" / "evaluate.py").read_text(encoding="utf-8")


def documented_example() -> dict:
    block = DOC.split("<!-- policy-input-example -->", 1)[1]
    return json.loads(block.split("```json", 1)[1].split("```", 1)[0])


def digest_by_the_documented_rules(rx: dict) -> str:
    """Steps 1-5 of "Signature digest (R21)", written from the text."""
    patient, name = rx.get("patient") or {}, (rx.get("patient") or {}).get("name") or {}
    med, qty, prescriber = rx.get("medication") or {}, rx.get("quantity"), rx.get("prescriber") or {}
    value = qty.get("value") if qty else None
    fields = {
        "v": 1,
        "patient": {"family": name.get("family"), "given": list(name.get("given") or []),
                    "birth_date": patient.get("birth_date")},
        "prescriber_npi": prescriber.get("npi"),
        "prescriber_dea": sorted(r["number"] for r in prescriber.get("dea_registrations") or []),
        "medication": {k: med.get(k) for k in ("rxnorm", "ndc", "description", "strength", "form", "dea_schedule")},
        "quantity": {"value": int(value) if isinstance(value, float) and value.is_integer() else value,
                     "unit": qty.get("unit") if qty else None},
        **{k: rx.get(k) for k in ("days_supply", "refills", "sig", "substitution_allowed", "written_date")},
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_the_documented_example_is_judged_as_the_docs_say():
    doc = documented_example()
    decision = p.decide([record_from_dict(doc)], p.ruleset_for(None))
    assert decision.outcome == "ALLOW" and [r.id for r in decision.rules] == ["R5"], decision.rules


def test_the_documented_digest_rules_give_the_documented_digest():
    doc = documented_example()
    assert doc["signature"]["digest"] == digest_by_the_documented_rules(doc)
    assert f"and the digest is `{doc['signature']['digest']}`" in DOC


def test_a_change_after_signing_is_caught_with_the_documented_digest():
    doc = documented_example()
    doc["quantity"]["value"] = 40
    decision = p.decide([record_from_dict(doc)], p.ruleset_for(None))
    assert decision.outcome == "BLOCK" and "R21" in [r.id for r in decision.rules]


def test_every_extra_policy_key_the_gate_reads_is_documented_in_the_example_and_the_table():
    read = set(re.findall(r'flags\.get\("([a-z_]+)"', EVALUATE))
    assert read >= {"established_patient", "chronic_pain", "new_course", "oud_treatment"}
    example = documented_example()["extra"]["policy"]
    for key in read:
        assert key in example, f"extra.policy.{key} is missing from the JSON example"
        assert f"`extra.policy.{key}`" in DOC, f"extra.policy.{key} is missing from the input table"


def test_null_versus_empty_is_spelled_out_for_the_digest():
    section = DOC.split("## Signature digest (R21)", 1)[1].split("## ", 1)[0]
    assert "Null versus empty" in section and '`"sig": ""` and no sig differ' in section

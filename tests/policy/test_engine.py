"""End to end through a real Engine: SQLite store in tmp_path, file destination, drain()."""

from __future__ import annotations

import json

import bridge.plugins.telehealth_policy as p
from bridge import record_to_dict
from bridge.testing import engine_from_dict

from .builders import in_state, make, pdmp, policy_plugins


def _engine(tmp_path):
    plugins = policy_plugins()
    config = {
        "channels": {"rx": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["pharmacy"]}]}},
        "destinations": {"pharmacy": {"url": "file://outbox", "format": "bridge"}},
    }
    engine = engine_from_dict(config, tmp_path, plugins)
    engine.open_destinations()
    return engine


def _message(rx, message_id: str) -> bytes:
    return json.dumps({"schema": "telemed-bridge/1", "message_id": message_id,
                       "records": [record_to_dict(rx)]}).encode()


def _delivered(tmp_path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted((tmp_path / "outbox").glob("*.json"))]


def _policy_event(engine, message_id):
    return next(e.detail for e in engine.store.events(message_id) if e.kind == "policy")


def test_audio_only_oxycodone_is_rejected_with_rule_and_basis(tmp_path):
    engine = _engine(tmp_path)
    receipt = engine.submit("rx", _message(make({"encounter.modality": "audio_only"}), "m-1"))
    engine.drain()
    message = engine.store.get_message(receipt.message_id)
    assert message.status == "rejected" and "R6:" in message.error and "audio-only" in message.error
    event = _policy_event(engine, receipt.message_id)
    r6 = next(r for r in event["rules"] if r["id"] == "R6")
    assert event["outcome"] == "BLOCK" and r6["basis"].startswith("21 CFR 1307.41")
    assert r6["policy"] == p.POLICY_NAME and r6["ruleset"].startswith("telehealth-controlled-substances 2026.12.0")
    assert _delivered(tmp_path) == []


def test_video_buprenorphine_with_recent_ny_check_is_delivered(tmp_path):
    engine = _engine(tmp_path)
    rx = make(in_state("NY", pdmp_checks=[pdmp("NY", "2026-11-27T08:40:00-05:00")]), drug="buprenorphine")
    receipt = engine.submit("rx", _message(rx, "m-2"))
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "delivered"
    event = _policy_event(engine, receipt.message_id)
    assert event["outcome"] == "ALLOW" and [r["id"] for r in event["rules"]] == ["R5"]
    [sent] = _delivered(tmp_path)
    assert sent["records"][0]["signature"]["digest"] == rx.signature.digest, "the signed record is routed unchanged"


def test_missing_location_is_held_until_released(tmp_path):
    engine = _engine(tmp_path)
    receipt = engine.submit("rx", _message(make({"encounter.patient_location": None}), "m-3"))
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "held"
    [hold] = engine.store.holds()
    assert hold.message_id == receipt.message_id and "R2" in {r["id"] for r in hold.reasons}
    assert _delivered(tmp_path) == []

    engine.store.resolve_hold(receipt.message_id, "release", reason="location confirmed by phone: IA",
                              actor="operator:test")
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "delivered"
    assert len(_delivered(tmp_path)) == 1 and engine.store.holds() == []
    kinds = [e.kind for e in engine.store.events(receipt.message_id)]
    assert "released" in kinds and "policy_override" in kinds

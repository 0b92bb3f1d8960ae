"""The engine hands the `policy:` section to the gate: a site's own rule folder, relative to the config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bridge.testing import engine_from_dict, plugin_manager

ROOT = Path(__file__).resolve().parents[2]


def test_site_rules_folder_from_the_config_section_is_used(tmp_path):
    shutil.copytree(ROOT / "config" / "policy", tmp_path / "site-rules")
    rules = tmp_path / "site-rules" / "rules.yaml"
    text = rules.read_text()
    assert "version:" in text
    rules.write_text("\n".join(
        'version: "site-2026.11-test"' if line.startswith("version:") else line for line in text.splitlines()) + "\n")
    config = {
        "policy": {"rules_dir": "site-rules"},
        "channels": {"c": {"source": "file://in", "format": "bridge", "routes": [{"to": ["out"]}]}},
        "destinations": {"out": {"url": "file://out", "format": "bridge"}},
    }
    engine = engine_from_dict(config, tmp_path, plugin_manager())
    engine.open_destinations()
    raw = (ROOT / "examples" / "messages" / "prescription.json").read_bytes()
    receipt = engine.submit("c", raw)
    engine.drain()
    (policy,) = [e for e in engine.store.events(receipt.message_id) if e.kind == "policy"]
    assert any("site-2026.11-test" in (v or "") for v in policy.detail["rulesets"].values()), policy.detail
    assert json.dumps(policy.detail).count("site-2026.11-test") >= 1

"""Issue 5, done when: a prescription submitted as canonical JSON or FHIR becomes a valid NewRx at the
simulated switch; the switch's Status, then an RxFill callback, move it to dispensed; `bridge show`
tells that story in one timeline. Real engine threads, real HTTP on loopback, real SQLite."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import bridge.plugins.ncpdp as ncpdp
from bridge.cli import main
from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.core.plugin_manager import load_plugins
from tests.e2e.support import wait_for
from tests.ncpdp.switch_sim import SwitchSim

ROOT = Path(__file__).resolve().parents[2]
PRESCRIPTION = ROOT / "examples" / "messages" / "prescription.json"
FIXTURES = ROOT / "tests" / "fixtures" / "ncpdp"
AUTH = ("switch-user", "s3cret-for-tests")




@pytest.fixture
def journey(tmp_path, monkeypatch):
    monkeypatch.setenv("TB_E2E_SWITCH_PASSWORD", AUTH[1])
    with SwitchSim() as sim:
        config = tmp_path / "bridge.yaml"
        config.write_text(textwrap.dedent(f"""
            store: sqlite:///var/bridge.db
            engine: {{poll_seconds: 0.05}}
            channels:
              platform-json:
                source: file://inbox-json
                format: bridge
                routes: [{{when: {{record: Prescription}}, to: [switch]}}]
              platform-fhir:
                source: file://inbox-fhir
                format: fhir
                routes: [{{when: {{record: Prescription}}, to: [switch]}}]
              pharmacy-callbacks:
                source: ncpdp+http://127.0.0.1:0/script
                format: ncpdp
                options: {{username: {AUTH[0]}, password_env: TB_E2E_SWITCH_PASSWORD}}
            destinations:
              switch:
                url: {sim.url}
                format: ncpdp
                options: {{from_id: TBCLINIC01, directory: {FIXTURES / 'pharmacies.csv'}}}
        """))
        plugins = load_plugins(entry_points=False)
        engine = Engine(load_config(config, plugins), plugins)
        engine.start()
        try:
            yield engine, sim, config
        finally:
            engine.stop()


def as_fhir(raw: bytes) -> bytes:
    plugins = load_plugins(entry_points=False)
    records = plugins.format("bridge").decode(raw, {})
    return plugins.format("fhir").encode(records, {})


@pytest.mark.parametrize("channel", ["platform-json", "platform-fhir"])
def test_prescription_goes_out_as_newrx_and_comes_back_dispensed(journey, channel, capsys):
    engine, sim, config = journey
    raw = PRESCRIPTION.read_bytes()
    receipt = engine.submit(channel, raw if channel == "platform-json" else as_fhir(raw))

    newrx = wait_for(lambda: sim.received and sim.received[0])
    header = ncpdp.peek(newrx)
    assert header.message_type == "NewRx" and header.control_id == f"TB{receipt.message_id}-NewRx"
    assert ncpdp.decode(newrx, {})[0].medication.dea_schedule == "CIV"  # a valid NewRx: it decodes back
    number = json.loads(raw)["records"][0]["prescriber_order_number"]
    wait_for(lambda: (engine.store.prescription(number) or None) and engine.store.prescription(number).state == "accepted")

    callback = next(s for s in engine.sources if getattr(s, "port", None) and "callbacks" in s.ctx.channel)
    fill = (FIXTURES / "rxfill.xml").read_bytes().replace(b"NEWRX-0001", header.control_id.encode())
    fill = fill.replace(b"TB-ORD-1001", number.encode())
    answer = SwitchSim.post_callback(f"http://127.0.0.1:{callback.port}/script", fill, AUTH)
    assert answer.status_code == 200 and b"<Code>000</Code>" in answer.content
    wait_for(lambda: engine.store.prescription(number).state == "dispensed")

    assert main(["show", "-c", str(config), str(receipt.message_id)]) == 0
    story = capsys.readouterr().out
    assert f"prescription {number}: dispensed" in story
    steps = [line for line in story.splitlines() if " prescription " in line]
    assert [s.split("event_type=")[1].split(",")[0] for s in steps] == ["NewRx", "Status", "RxFill"], story
    assert "to=sent" in steps[0] and "to=accepted" in steps[1] and "to=dispensed" in steps[2]
    trace = engine.store.get_message(receipt.message_id).trace_id
    assert {m.channel for m in engine.store.search(keys={"trace_id": trace})} >= {channel, "pharmacy-callbacks",
                                                                                  "switch.replies"}

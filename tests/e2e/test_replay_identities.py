"""Issue 11 §1, done when: a replay of a delivered NewRx to the pharmacy destination carries the original
MessageID. The sample prescription (tramadol, CIV) is dropped in a file inbox; the running engine sends
it as an NCPDP NewRx, a FHIR Bundle and an HL7v2 RDE to three file outboxes; `bridge replay --force` sends
it again. Every receiver gets the same identities — and the same file, overwritten — so its own
duplicate check sees a resend. Real engine threads, a real SQLite file, the real CLI."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

import bridge.plugins.ncpdp as ncpdp
from bridge.cli import main
from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.core.plugin_manager import load_plugins
from tests.e2e.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
PRESCRIPTION = ROOT / "examples" / "messages" / "prescription.json"
PHARMACIES = ROOT / "tests" / "fixtures" / "ncpdp" / "pharmacies.csv"


@pytest.fixture
def running(tmp_path):
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        engine: {{poll_seconds: 0.05}}
        channels:
          platform:
            source: file://inbox
            format: bridge
            routes: [{{when: {{record: Prescription}}, to: [pharmacy, ehr-fhir, ehr-hl7]}}]
        destinations:
          pharmacy:
            url: file://to-pharmacy
            format: ncpdp
            options: {{from_id: TBCLINIC01, directory: {PHARMACIES}}}
          ehr-fhir: {{url: file://to-fhir, format: fhir}}
          ehr-hl7: {{url: file://to-hl7, format: hl7v2}}
    """))
    plugins = load_plugins(entry_points=False)
    engine = Engine(load_config(config, plugins), plugins)
    engine.start()
    try:
        yield engine, config, tmp_path
    finally:
        engine.stop()


def only_file(folder: Path) -> Path:
    (path,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return path


def msh10(payload: bytes) -> str:
    return payload.decode().split("\r")[0].split("|")[9]


def fhir_keys(payload: bytes) -> list[tuple[str, str, str | None]]:
    """What a FHIR server matches on: each entry's fullUrl, request URL and ifNoneExist."""
    return [(e["fullUrl"], e["request"]["url"], e["request"].get("ifNoneExist"))
            for e in json.loads(payload)["entry"]]


def all_delivered(engine, message_id: int) -> bool:
    rows = engine.store.outbox_rows(message_id=message_id)
    return len(rows) == 3 and all(r.status == "delivered" for r in rows)


def test_a_replayed_newrx_carries_the_original_message_id(running, capsys):
    engine, config, folder = running
    (folder / "inbox").mkdir(exist_ok=True)
    shutil.copy(PRESCRIPTION, folder / "inbox" / "rx.json")
    first = wait_for(lambda: engine.store.search(channel="platform"))[0].id
    wait_for(lambda: all_delivered(engine, first))
    sent = {name: only_file(folder / f"to-{name}") for name in ("pharmacy", "fhir", "hl7")}
    before = {name: path.read_bytes() for name, path in sent.items()}
    header = ncpdp.peek(before["pharmacy"])
    assert header.message_type == "NewRx" and header.control_id == f"TB{first}-NewRx"

    # Seen: replaying a delivered NewRx made TB12-NewRx where the original was TB3-NewRx
    assert main(["replay", "-c", str(config), str(first), "--reason", "pharmacy lost it"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["replay", "-c", str(config), str(first), "--force", "--reason", "pharmacy lost it"]) == 0
    replay = wait_for(lambda: [m for m in engine.store.search(channel="platform") if m.replay_of == first])[0].id
    wait_for(lambda: all_delivered(engine, replay))

    for name, path in sent.items():  # the same file name: the replay overwrote it, no second file
        assert only_file(folder / f"to-{name}") == path, name
    after = {name: path.read_bytes() for name, path in sent.items()}
    assert after["pharmacy"] != b"" and ncpdp.peek(after["pharmacy"]).control_id == f"TB{first}-NewRx"
    assert ncpdp.peek(after["pharmacy"]).message_type == "NewRx"
    assert msh10(after["hl7"]) == msh10(before["hl7"]) == f"TB{first}"
    assert fhir_keys(after["fhir"]) == fhir_keys(before["fhir"])
    assert any(none_exist for _, _, none_exist in fhir_keys(after["fhir"]))  # conditional creates are there
    rows = engine.store.outbox_rows(message_id=replay)
    assert {r.control_id for r in rows} >= {f"TB{first}-NewRx"}
    assert engine.store.prescription("PON-2026-000417").message_id == first

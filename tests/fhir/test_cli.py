"""`bridge translate` between the bridge format and fhir, through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

import bridge.cli
import bridge.plugins.fhir as fhir_plugin
from bridge import record_to_dict
from bridge.testing import plugin_manager

from . import records as R


@pytest.fixture
def cli_with_fhir(monkeypatch):
    """The CLI loads BUILTIN_PLUGINS; until fhir is one of them, hand it a manager that has it."""
    manager = plugin_manager(("fhir", fhir_plugin))
    monkeypatch.setattr(bridge.cli, "_plugins", lambda: manager)
    return manager


def test_translate_bridge_to_fhir_and_back(cli_with_fhir, tmp_path, capsysbinary):
    source = cli_with_fhir.format("bridge").encode([R.prescription(), R.clinical_note()], {})
    (tmp_path / "in.json").write_bytes(source)
    assert bridge.cli.main(["translate", "--from", "bridge", "--to", "fhir", str(tmp_path / "in.json")]) == 0
    fhir_bytes = capsysbinary.readouterr().out
    assert json.loads(fhir_bytes)["type"] == "transaction"
    (tmp_path / "out.json").write_bytes(fhir_bytes)
    assert bridge.cli.main(["translate", "--from", "fhir", "--to", "bridge", str(tmp_path / "out.json")]) == 0
    back = cli_with_fhir.format("bridge").decode(capsysbinary.readouterr().out, {})
    assert [record_to_dict(r) for r in back] == [record_to_dict(R.prescription()), record_to_dict(R.clinical_note())]


def test_translate_passes_options_and_reports_bad_input(cli_with_fhir, tmp_path, capsys):
    source = cli_with_fhir.format("bridge").encode([R.patient()], {})
    (tmp_path / "in.json").write_bytes(source)
    code = bridge.cli.main(["translate", "--from", "bridge", "--to", "fhir", "--option", "bundle_type=collection",
                            str(tmp_path / "in.json")])
    assert code == 0 and json.loads(capsys.readouterr().out)["type"] == "collection"
    (tmp_path / "bad.json").write_text('{"resourceType": "Patient", "gender": 1}')
    assert bridge.cli.main(["translate", "--from", "fhir", "--to", "bridge", str(tmp_path / "bad.json")]) == 2
    assert "Patient.gender: expected a string" in capsys.readouterr().err

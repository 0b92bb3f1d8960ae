"""``bridge policy explain`` through the real CLI parser, with the plugin registered."""

from __future__ import annotations

import io
import json
import sys

import pytest

import bridge.plugins.telehealth_policy as p
from bridge import record_to_dict
from bridge.cli import build_parser

from .builders import make, policy_plugins


def explain(argv: list[str], capsys, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, str, str]:
    parser = build_parser(policy_plugins())
    args = parser.parse_args(["policy", "explain", *argv])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def write(tmp_path, rx, envelope: bool = True):
    body = {"schema": "telemed-bridge/1", "records": [record_to_dict(rx)]} if envelope else \
        {"schema": "telemed-bridge/1", **record_to_dict(rx)}
    path = tmp_path / "rx.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_table_lists_every_rule_evaluated(tmp_path, capsys):
    code, out, _ = explain([write(tmp_path, make({"encounter.modality": "audio_only"}))], capsys)
    assert code == 0
    assert out.startswith("Decision:  BLOCK")
    assert "2026.12.0" in out and "judged on 2026-11-27 (written date)" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1] == "R"}
    assert "fired" in lines["R6"] and "BLOCK" in lines["R6"]
    assert "passed" in lines["R3"] and "passed" in lines["R21"] and "skipped" in lines["R14"]
    assert "basis: 21 CFR 1307.41" in out


def test_json_output_and_at_override(tmp_path, capsys):
    path = write(tmp_path, make(), envelope=False)
    code, out, _ = explain(["--json", path], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["outcome"] == "ALLOW"
    assert doc["rules"] == [{"id": "R5", "outcome": "ALLOW", "reason": doc["rules"][0]["reason"],
                             "basis": doc["rules"][0]["basis"]}]
    assert doc["ruleset"].startswith("telehealth-controlled-substances 2026.12.0")
    code, out, _ = explain(["--json", "--at", "2027-01-01", path], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["outcome"] == "BLOCK" and doc["judged_on"] == ["2027-01-01"]
    assert [r["id"] for r in doc["rules"]] == ["R7"]


def test_pathway_switch_and_rules_folder(tmp_path, capsys):
    rx = make({"written_date": "2027-01-01", "signature.signed_at": "2027-01-01T09:28:00-05:00",
               "encounter.modality": "audio_only",
               "medication": {"description": "buprenorphine 8 MG Sublingual Tablet", "rxnorm": "1819",
                              "dea_schedule": "CIII", "strength": "8 mg", "form": "tablet"},
               "extra": {"policy": {"buprenorphine_course_start": "2026-12-20"}},
               "pdmp_checks": [{"state": "IA", "checked_at": "2027-01-01T09:00:00-05:00", "outcome": "reviewed"}]})
    path = write(tmp_path, rx)
    assert json.loads(explain(["--json", path], capsys)[1])["outcome"] == "BLOCK"
    out = explain(["--json", "--pathway", "buprenorphine", "--rules", str(p.ruleset_for(None).source_dir), path],
                  capsys)[1]
    assert json.loads(out)["outcome"] == "ALLOW"


def test_reads_standard_input(capsys, monkeypatch):
    raw = json.dumps({"schema": "telemed-bridge/1", "records": [record_to_dict(make({"refills": 1}))]}).encode()
    code, out, _ = explain(["--json", "-"], capsys, stdin=raw, monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["outcome"] == "BLOCK"


def test_no_prescription_is_allow_with_no_rules(tmp_path, capsys):
    path = tmp_path / "enc.json"
    path.write_text(json.dumps({"schema": "telemed-bridge/1", "kind": "Encounter", "id": "e1"}))
    code, out, _ = explain(["--json", str(path)], capsys)
    assert code == 0 and json.loads(out)["outcome"] == "ALLOW" and json.loads(out)["rules"] == []


@pytest.mark.parametrize("content,argv,message", [
    (b"{not json", [], "invalid JSON at line 1 column 2"),
    (b'{"resourceType": "Bundle", "entry": []}', [], "Bundle.type: None is not supported"),  # read as FHIR
    (b'{"schema": "telemed-bridge/1", "records": [{"kind": "Prescription", "refills": "two"}]}', [],
     "records[0].refills: expected a whole number"),
    (b'{"schema": "telemed-bridge/9", "kind": "Prescription"}', [], "unsupported schema"),
    (b"\xff\xfe", [], "not UTF-8"),
    (b'{"schema": "telemed-bridge/1", "kind": "Prescription"}', ["--at", "01/01/2027"], "--at expects a date"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, content, argv, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, out, err = explain([*argv, str(path)], capsys)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_missing_file_and_bad_rules_folder_exit_2(tmp_path, capsys):
    code, _, err = explain([str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "cannot read" in err
    path = write(tmp_path, make())
    code, _, err = explain(["--rules", str(tmp_path / "no-rules"), path], capsys)
    assert code == 2 and "rule folder" in err


# --- issue 11: a FHIR Bundle directly, -c FILE for the config's policy: section --------------------


def _fhir_bundle(tmp_path, rx) -> str:
    path = tmp_path / "rx-bundle.json"
    path.write_bytes(policy_plugins().format("fhir").encode([rx], {}))
    return str(path)


def test_a_fhir_bundle_is_judged_directly(tmp_path, capsys):
    """Issue 6 asked for it: no translate step for FHIR input."""
    code, out, err = explain(["--json", _fhir_bundle(tmp_path, make({"encounter.modality": "audio_only"}))], capsys)
    doc = json.loads(out)
    assert code == 0 and err == "" and doc["outcome"] == "BLOCK" and "R6" in [r["id"] for r in doc["rules"]]


def test_from_reads_any_registered_format(tmp_path, capsys):
    rde = tmp_path / "rx.hl7"
    rde.write_bytes(policy_plugins().format("hl7v2").encode([make({"category": "discharge"})],
                                                            {"message_control_id": "X"}))
    code, out, _ = explain(["--json", "--from", "hl7v2", str(rde)], capsys)
    assert code == 0 and json.loads(out)["outcome"] in ("ALLOW", "REVIEW", "BLOCK")
    code, out, err = explain(["--from", "nosuch", str(rde)], capsys)
    assert code == 2 and "cannot read format 'nosuch'" in err


def test_config_policy_section_is_used(tmp_path, capsys):
    """-c FILE judges as the engine would with that config: here the buprenorphine pathway is on."""
    rx = make({"medication": {"description": "buprenorphine 8 MG Sublingual Tablet", "rxnorm": "1819",
                              "dea_schedule": "CIII", "strength": "8 mg", "form": "tablet"},
               "written_date": "2027-01-01", "signature.signed_at": "2027-01-01T09:28:00-05:00",
               "encounter.modality": "audio_only",
               "extra": {"policy": {"buprenorphine_course_start": "2026-12-15"}},
               "pdmp_checks": [{"state": "IA", "checked_at": "2027-01-01T08:00:00-05:00", "outcome": "reviewed"}]})
    path = write(tmp_path, rx)
    config = tmp_path / "bridge.yaml"
    config.write_text("policy:\n  pathways: {buprenorphine: true}\n")
    code, out, _ = explain(["--json", path], capsys)
    assert code == 0 and [r["id"] for r in json.loads(out)["rules"]] == ["R7"]  # pathway off by default
    code, out, _ = explain(["--json", "-c", str(config), path], capsys)
    assert code == 0 and json.loads(out)["outcome"] == "ALLOW"
    assert [r["id"] for r in json.loads(out)["rules"]] == ["R8"]


def test_config_with_a_bad_policy_section_exits_2_naming_the_key(tmp_path, capsys):
    config = tmp_path / "bridge.yaml"
    config.write_text("policy:\n  pathways: {buprenorfine: true}\n")
    code, out, err = explain(["-c", str(config), write(tmp_path, make())], capsys)
    assert code == 2 and out == ""
    assert f"{config}: policy.pathways.buprenorfine: unknown pathway" in err


def test_facility_state_locates_an_in_person_patient(tmp_path, capsys):
    path = write(tmp_path, make({"encounter.modality": "in_person", "encounter.patient_location": None}))
    code, out, _ = explain(["--json", path], capsys)
    assert json.loads(out)["outcome"] == "REVIEW"
    code, out, _ = explain(["--json", "--facility-state", "IA", path], capsys)
    assert code == 0 and json.loads(out)["outcome"] == "ALLOW"
    code, _, err = explain(["--facility-state", "Iowa", path], capsys)
    assert code == 2 and "--facility-state expects a two-letter state code" in err

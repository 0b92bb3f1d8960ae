"""The rule data: loading, validation errors, the config section, overrides and the digest."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import bridge.plugins.telehealth_policy as p
from bridge import ConfigError, PolicyRequest
from bridge.core.model.signing import canonical_bytes
from bridge.plugins.telehealth_policy.ruleset import RULES_DIR_ENV, default_rules_dir, load_ruleset
from bridge.testing import engine_from_dict

from .builders import make, policy_plugins

DATA = Path(__file__).parent / "data"


@pytest.fixture
def rules_copy(tmp_path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_shipped_rules_load_with_a_version_and_content_digest():
    ruleset = load_ruleset()
    assert ruleset.version == "2026.12.0" and len(ruleset.digest) == 64
    assert ruleset.label.startswith("telehealth-controlled-substances 2026.12.0 (sha256:")
    assert {"R1", "R8", "R21", "R22"} <= set(ruleset.rules)
    assert {r.state for r in ruleset.pdmp} == {"NY", "CA", "AZ"}
    assert {r.state for r in ruleset.restrictions} == {"TX", "IN"}
    assert not any(pw.enabled for pw in ruleset.pathways.values())


def test_window_end_is_data_not_code(rules_copy):
    rx = make({"written_date": "2027-01-01", "signature.signed_at": "2027-01-01T09:00:00-05:00"})
    assert p.decide([rx], load_ruleset(rules_copy)).outcome == "BLOCK"
    _edit(rules_copy / "federal.yaml", 'to: "2026-12-31"', 'to: "2027-06-30"')
    extended = load_ruleset(rules_copy)
    decision = p.decide([rx], extended)
    assert decision.outcome == "ALLOW" and [r.id for r in decision.rules] == ["R5"]
    assert extended.digest != load_ruleset().digest


def test_rule_outside_its_effective_range_is_not_applied(rules_copy):
    rx = make({"pharmacy.epcs_capable": False})
    _edit(rules_copy / "rules.yaml", "R19:\n    title: Target pharmacy cannot receive EPCS\n    outcome: BLOCK\n"
          "    basis: \"21 CFR 1311.170-1311.205 (pharmacy EPCS application)\"\n    effective: {from: null, to: null}",
          "R19:\n    title: Target pharmacy cannot receive EPCS\n    outcome: BLOCK\n"
          "    basis: \"21 CFR 1311.170-1311.205 (pharmacy EPCS application)\"\n    effective: {from: \"2027-01-01\", to: null}")
    assert p.decide([rx], load_ruleset(rules_copy)).outcome == "ALLOW"
    trail = p.evaluate_prescription(rx, load_ruleset(rules_copy))
    assert [c.status for c in trail.checks if c.id == "R19"] == ["not in force"]


def test_state_row_can_be_added_as_data(rules_copy):
    rx = make({"encounter.patient_location.state": "IA"})
    _edit(rules_copy / "states.yaml", "pdmp:\n", "pdmp:\n  - state: IA\n    program: Iowa PMP\n    basis: test\n"
          "    effective: {from: null, to: null}\n    schedules: [CII]\n    lookback_hours: 24\n")
    decision = p.decide([rx], load_ruleset(rules_copy))
    assert decision.outcome == "BLOCK" and "Iowa PMP" in decision.rules[-1].reason


@pytest.mark.parametrize("file,old,new,expect", [
    ("federal.yaml", 'to: "2026-12-31"', 'to: "end of 2026"', "federal.yaml: windows.telemedicine_flexibilities.to"),
    ("rules.yaml", "  R12:\n", "  R12x:\n", "rule R12 is missing"),
    ("states.yaml", "  - state: NY", "  - state: New York", "states.yaml: pdmp[0].state"),
    ("schedules.yaml", "schedule: CII\n", "schedule: C2\n", "schedules.yaml: drugs.oxycodone.schedule"),
    ("federal.yaml", "cii_max_refills: 0", "cii_max_refills: none", "federal.yaml: limits.cii_max_refills"),
    ("states.yaml", "kind: chronic_pain_recent_visit", "kind: chronic_pain", "states.yaml: restrictions[0].kind"),
    ("rules.yaml", "outcome: REVIEW", "outcome: HOLD", "rules.yaml: rules.R2.outcome"),
])
def test_bad_rule_data_names_file_and_key(rules_copy, file, old, new, expect):
    _edit(rules_copy / file, old, new)
    with pytest.raises(ConfigError) as info:
        load_ruleset(rules_copy)
    assert expect in str(info.value)


def test_invalid_yaml_names_line(rules_copy):
    (rules_copy / "states.yaml").write_text("pdmp: [\n  - state: NY\n")
    with pytest.raises(ConfigError, match=r"states.yaml.*invalid YAML at line \d+"):
        load_ruleset(rules_copy)


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_ruleset(tmp_path / "nowhere")


def test_config_section_validation(rules_copy):
    assert p.validate_settings({"rules_dir": str(rules_copy), "pathways": {"buprenorphine": True}}) == []
    problems = dict(p.validate_settings({"rule_dir": "x", "pathways": {"bup": True, "special_registration": "yes"},
                                         "schedule_overrides": "/no/such/file.yaml"}))
    assert "unknown key" in problems["rule_dir"]
    assert "unknown pathway" in problems["pathways.bup"]
    assert "true or false" in problems["pathways.special_registration"]
    assert "does not exist" in problems["schedule_overrides"]
    _edit(rules_copy / "federal.yaml", "ciii_civ_max_refills: 5", "ciii_civ_max_refills: -1")
    problems = p.validate_settings({"rules_dir": str(rules_copy)})
    assert any("limits.ciii_civ_max_refills" in m for _, m in problems)


def test_config_section_is_checked_by_the_real_config_parser(tmp_path):
    plugins = policy_plugins()
    with pytest.raises(ConfigError, match="policy.pathways.buprenorphin"):
        engine_from_dict({"channels": {}, "destinations": {}, "policy": {"pathways": {"buprenorphin": True}}},
                         tmp_path, plugins)
    engine = engine_from_dict({"channels": {}, "destinations": {}, "policy": {"pathways": {"buprenorphine": True}}},
                              tmp_path, plugins)
    assert engine.config.sections["policy"] == {"pathways": {"buprenorphine": True}}


def test_pathway_switch_in_settings_changes_the_outcome():
    rx = make({"written_date": "2027-01-01", "signature.signed_at": "2027-01-01T09:28:00-05:00",
               "medication": {"description": "buprenorphine 8 MG Sublingual Tablet", "rxnorm": "1819",
                              "dea_schedule": "CIII", "strength": "8 mg", "form": "tablet"},
               "extra": {"policy": {"buprenorphine_course_start": "2026-12-20"}},
               "pdmp_checks": [{"state": "IA", "checked_at": "2027-01-01T09:00:00-05:00", "outcome": "reviewed"}]})
    assert p.decide([rx], p.ruleset_for(None)).outcome == "BLOCK"
    assert p.decide([rx], p.ruleset_for({"pathways": {"buprenorphine": True}})).outcome == "ALLOW"


def test_registered_policy_reads_the_rules_dir_from_the_environment(rules_copy, monkeypatch):
    _edit(rules_copy / "rules.yaml", 'version: "2026.12.0"', 'version: "site-7"')
    monkeypatch.setenv(RULES_DIR_ENV, str(rules_copy))
    policy = policy_plugins().policies()[p.POLICY_NAME]
    decision = policy.evaluate(PolicyRequest(records=(make(),), channel="c"))
    assert decision.ruleset.startswith("telehealth-controlled-substances site-7 ")


def test_site_schedule_overrides_add_product_codes():
    rx = make({"medication": {"description": "a product", "ndc": "99999012301", "dea_schedule": "CIV",
                              "strength": "5 mg", "form": "tablet"}})
    plain = p.decide([rx], p.ruleset_for(None))
    assert plain.outcome == "ALLOW" and "R23" not in {r.id for r in plain.rules}
    site = p.decide([rx], p.ruleset_for({"schedule_overrides": str(DATA / "site-schedules.yaml")}))
    mismatch = [r for r in site.rules if r.id == "R23"]
    assert site.outcome == "REVIEW" and "CIV" in mismatch[0].reason and "CII" in mismatch[0].reason


def test_canonical_digest_form():
    rx = make()
    expected = {
        "v": 1,
        "patient": {"family": "Testpatient", "given": ["Alex"], "birth_date": "1980-04-12"},
        "prescriber_npi": "1234567893",
        "prescriber_dea": sorted(r.number for r in rx.prescriber.dea_registrations),
        "medication": {"rxnorm": "7804", "ndc": None, "description": "oxycodone hydrochloride 5 MG Oral Tablet",
                       "strength": "5 mg", "form": "tablet", "dea_schedule": "CII"},
        "quantity": {"value": 20, "unit": "tablet"},
        "days_supply": 5, "refills": 0, "sig": "Take 1 tablet by mouth every 6 hours as needed.",
        "substitution_allowed": None, "written_date": "2026-11-27",
    }
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_bytes(rx) == text.encode("utf-8")
    assert p.signed_digest(rx) == "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    rx.quantity.value = 20.0
    assert canonical_bytes(rx) == text.encode("utf-8"), "20.0 and 20 must digest alike"


def test_not_a_prescription_data_is_validated(rules_copy):
    _edit(rules_copy / "federal.yaml", "order_categories: [inpatient]", "order_categories: [inpatiant]")
    with pytest.raises(ConfigError) as error:
        load_ruleset(rules_copy)
    assert ("federal.yaml: not_a_prescription.order_categories[0]",
            "expected one of inpatient, outpatient, community, discharge, got 'inpatiant'") in error.value.problems


def test_registration_in_any_state_is_dated_data(rules_copy):
    """Ending the DEA-DC-018 window makes a registration in the patient's state necessary again."""
    rx = make({"encounter.patient_location.state": "NV", "encounter.practitioner_state": "NV",
               "prescriber.licenses": [{"state": "NV", "expires": "2027-12-31"}]})
    assert p.decide([rx], load_ruleset(rules_copy)).outcome == "ALLOW"
    _edit(rules_copy / "federal.yaml", 'to: "2026-12-31"     # follows', 'to: "2026-06-30"     # follows')
    decision = p.decide([rx], load_ruleset(rules_copy))
    assert decision.outcome == "BLOCK" and "R3" in [r.id for r in decision.rules]

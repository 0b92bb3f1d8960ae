"""Options no plugin reads are refused by `bridge check` and at start-up, with the key path and a hint.

Issue 11, "Seen": ``version: "2.3"``, ``mrn_assigner`` and ``value_map`` on an ``hl7v2`` destination
were accepted and silently ignored.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from bridge import FormatSpec, OptionSpec, hookimpl
from bridge.cli import main
from bridge.core.config import load_config, parse_config
from bridge.core.plugin_manager import load_plugins
from bridge.errors import ConfigError
from bridge.testing import plugin_manager

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(text))
    return path


HL7_DESTINATION = """
    store: sqlite:///var/bridge.db
    channels:
      adt-in:
        source: mllp://127.0.0.1:0
        format: hl7v2
        options: {strickt: true, ack_mode: original}
        routes: [{to: [ehr]}]
    destinations:
      ehr:
        url: mllp://127.0.0.1:2575
        format: hl7v2
        options: {version: "2.6", from_id: TB, mrn_assigner: HOSP, value_map: {M: male}, sending_aplication: TB,
                  sending_facility: CLINIC}
"""


def problems_of(path: Path, plugins) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, plugins)
    return dict(caught.value.problems)


def test_bridge_check_refuses_options_an_hl7v2_destination_does_not_read(tmp_path, capsys):
    path = write(tmp_path, HL7_DESTINATION)
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("from_id", "mrn_assigner", "value_map"):
        assert f"destinations.ehr.options.{key}: unknown option for transport 'mllp' and format 'hl7v2'" in err
    assert "'mrn_assigner' is an option of profile" in err and "'from_id' is an option of format 'ncpdp'" in err
    assert "destinations.ehr.options.version: expected one of 2.3, 2.4, 2.5, 2.5.1, 2.8, got '2.6'" in err
    assert "destinations.ehr.options.sending_facility:" not in err  # a real option is not refused


def test_unknown_options_get_a_did_you_mean(tmp_path, plugins):
    found = problems_of(write(tmp_path, HL7_DESTINATION), plugins)
    assert "did you mean 'strict'?" in found["channels.adt-in.options.strickt"]
    assert "did you mean 'sending_application'?" in found["destinations.ehr.options.sending_aplication"]
    assert "allowed: " in found["destinations.ehr.options.value_map"]  # nothing close: the list instead


def test_a_channel_setting_put_under_options_is_pointed_to_its_place(tmp_path, plugins):
    path = write(tmp_path, HL7_DESTINATION.replace("{strickt: true, ack_mode: original}",
                                                   "{timezone: America/Chicago, policies: []}"))
    found = problems_of(path, plugins)
    assert found["channels.adt-in.options.timezone"].endswith(
        "'timezone' is a channel setting: write it as channels.adt-in.timezone, beside options")
    assert "write it as channels.adt-in.policies" in found["channels.adt-in.options.policies"]


def test_start_up_refuses_the_same_options_before_listening(tmp_path):
    """`bridge run` as a process: exit 2 with the same lines, and no store is created."""
    path = write(tmp_path, HL7_DESTINATION)
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "run", "-c", str(path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "bridge: config: destinations.ehr.options.value_map: unknown option" in result.stderr
    assert "channels.adt-in.options.strickt: unknown option" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()


def test_option_values_are_checked_against_kind_and_choices(tmp_path, plugins):
    path = write(tmp_path, HL7_DESTINATION.replace("strickt: true, ack_mode: original",
                                                   "ack_mode: comit, max_connections: ten, strict: 'yes'"))
    found = problems_of(path, plugins)
    assert found["channels.adt-in.options.ack_mode"] == ("expected one of auto, original, commit, got 'comit' "
                                                         "(did you mean 'commit'?)")
    assert found["channels.adt-in.options.max_connections"] == "expected a whole number, got 'ten'"
    assert found["channels.adt-in.options.strict"] == "expected true or false, got 'yes'"


def test_options_the_engine_sets_are_refused_in_the_config(tmp_path, plugins):
    path = write(tmp_path, HL7_DESTINATION.replace('version: "2.6"', "message_control_id: X1"))
    assert "set by the engine" in problems_of(path, plugins)["destinations.ehr.options.message_control_id"]


def test_a_profile_accepts_its_own_options_and_requires_what_it_cannot_run_without(tmp_path, plugins):
    path = write(tmp_path, """
        channels: {}
        destinations:
          epic:
            profile: epic
            url: fhir+https://fhir.example.org/api/FHIR/R4
            options:
              client_ids: {non-production: abc}
              kid: k1
              key_file: keys/epic.pem
              mrn_assigner: HOSP
              indent: 0
              mrn_sytem: urn:oid:1.2.3
    """)
    found = problems_of(path, plugins)
    assert "did you mean 'mrn_system'?" in found["destinations.epic.options.mrn_sytem"]
    assert found["destinations.epic.options.mrn_system"].startswith("is required")
    assert found["destinations.epic.options.visit_number_system"].startswith("is required")
    assert not any(k.endswith((".mrn_assigner", ".indent", ".kid", ".key_file")) for k in found)


def test_policy_settings_get_a_did_you_mean(tmp_path, plugins):
    path = write(tmp_path, "channels: {}\npolicy: {rule_dir: /etc/bridge/policy}\n")
    assert problems_of(path, plugins)["policy.rule_dir"] == "unknown key (did you mean 'rules_dir'?)"


def _undeclared_plugin():
    class Legacy:  # an external plugin written before options were declared
        @hookimpl
        def bridge_formats(self):
            return [FormatSpec(name="legacy-json", media_type="application/json",
                               decode=lambda raw, options: [], encode=lambda records, options: b"{}")]
    return Legacy()


def test_a_plugin_that_declares_nothing_is_not_checked_but_named_in_a_warning(tmp_path, monkeypatch, capsys):
    manager = plugin_manager(("legacy", _undeclared_plugin()))
    monkeypatch.setattr("bridge.cli._plugins", lambda: manager)
    path = write(tmp_path, """
        channels:
          old:
            source: file://inbox
            format: legacy-json
            options: {anything_goes: 1, poll_seconds: fast}
    """)
    assert main(["check", "-c", str(path)]) == 2  # the declared file option is still type-checked
    assert "channels.old.options.poll_seconds: expected a number, got 'fast'" in capsys.readouterr().err
    path.write_text(path.read_text().replace("poll_seconds: fast", "poll_seconds: 2"))
    assert main(["check", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: format 'legacy-json' (decode options) declares no options" in err and "channels.old" in err


def test_built_in_plugins_all_declare_their_options(plugins):
    undeclared = [f"format {n}" for n, f in plugins.formats().items()
                  if f.decode_options is None or f.encode_options is None]
    undeclared += [f"transport {s}" for s, t in plugins.transports().items()
                   if (t.source and t.source_options is None) or (t.destination and t.destination_options is None)]
    undeclared += [f"profile {n}" for n, p in plugins.destination_profiles().items() if p.options is None]
    undeclared += [f"policy {n}" for n, p in plugins.policies().items() if p.options is None]
    assert not undeclared


def _doc_configs():
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S)):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and {"channels", "destinations"} & set(data):
                yield pytest.param(data, id=f"{doc.name}[{i}]")


@pytest.mark.parametrize("data", list(_doc_configs()))
def test_the_documented_examples_use_only_declared_options(data, plugins, tmp_path):
    try:
        parse_config(data, config_dir=str(tmp_path), plugins=plugins)
    except ConfigError as exc:
        option_problems = [p for p in exc.problems if ".options." in p[0]]
        assert not option_problems


@pytest.mark.parametrize("path", ["config/bridge.yaml", "examples/ncpdp/bridge-ncpdp.yaml"])
def test_the_shipped_configs_pass_bridge_check(path, capsys):
    assert main(["check", "-c", str(ROOT / path)]) == 0
    assert capsys.readouterr().err == ""


def test_docs_options_md_lists_exactly_what_the_plugins_declare(plugins):
    from bridge.core.options import REFERENCE_HEADER, reference

    expected = REFERENCE_HEADER + reference(plugins)
    actual = (ROOT / "docs" / "options.md").read_text()
    assert actual == expected, "docs/options.md is stale: python -m bridge.core.options > docs/options.md"


def test_a_policy_settings_section_is_checked_against_the_policy_s_declared_options(tmp_path):
    from bridge import ConfigSection, PolicyDecision, PolicySpec

    class WeekendRule:  # its section validator checks nothing: the declaration does
        @hookimpl
        def bridge_policies(self):
            return [PolicySpec(name="no-weekend-rx", evaluate=lambda request: PolicyDecision("ALLOW"),
                               options=(OptionSpec("threshold", kind="number"),))]

        @hookimpl
        def bridge_config_sections(self):
            return [ConfigSection(name="weekend", validate=lambda value: [])]

    manager = plugin_manager(("weekend", WeekendRule()))
    path = write(tmp_path, "channels: {}\nweekend: {treshold: 3}\n")
    assert problems_of(path, manager) == {"weekend.treshold": "unknown option (did you mean 'threshold'?)"}
    path.write_text("channels: {}\nweekend: {threshold: many}\n")
    assert problems_of(path, manager) == {"weekend.threshold": "expected a number, got 'many'"}
    path.write_text("channels: {}\nweekend: {threshold: 3}\n")
    assert load_config(path, manager).sections["weekend"] == {"threshold": 3}


def _doc_job_configs():
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S)):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and "jobs" in data:
                yield pytest.param(data, id=f"{doc.name}[{i}]")


@pytest.mark.parametrize("data", list(_doc_job_configs()))
def test_the_documented_job_examples_pass_bridge_check_but_for_the_channels_they_name(data, plugins, tmp_path):
    """Review of issue 11 (`bridge check` on every YAML in docs/): a fragment may name a channel it does
    not define, nothing else may be wrong (docs/vendors.md put the job settings beside `type:`)."""
    try:
        parse_config(data, config_dir=str(tmp_path), plugins=plugins)
    except ConfigError as exc:
        assert [p for p in exc.problems if not p[1].startswith("unknown channel")] == []

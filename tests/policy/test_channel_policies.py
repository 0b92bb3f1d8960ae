"""Issue 11 §2: which policies judge a channel is the channel's ``policies:`` list; ``bridge check``
names unknown ones; an in-person patient is where the channel's facility is (``facility_state``).
Real engines on a SQLite file in tmp_path, a file destination, drain()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bridge.plugins.telehealth_policy as p
from bridge import ConfigError, record_to_dict
from bridge.core.config import load_config
from bridge.core.engine import Engine
from bridge.testing import engine_from_dict, plugin_manager

from .builders import make

ROOT = Path(__file__).resolve().parents[2]


def _engine(tmp_path, channel_extra: dict, plugins=None):
    config = {
        "channels": {"rx": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["out"]}],
                            **channel_extra}},
        "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
    }
    engine = engine_from_dict(config, tmp_path, plugins or plugin_manager())
    engine.open_destinations()
    return engine


def _run(engine, rx, message_id="m-1"):
    raw = json.dumps({"schema": "telemed-bridge/1", "message_id": message_id, "records": [record_to_dict(rx)]})
    receipt = engine.submit("rx", raw.encode())
    engine.drain()
    message = engine.store.get_message(receipt.message_id)
    events = {e.kind: e.detail for e in engine.store.events(receipt.message_id)}
    return message, events


AUDIO_ONLY_OXYCODONE = {"encounter.modality": "audio_only"}  # R6: BLOCK wherever the gate runs


@pytest.mark.parametrize("extra,status", [
    ({}, "rejected"),                                            # no key: every registered policy (fail closed)
    ({"policies": [p.POLICY_NAME]}, "rejected"),
    ({"policies": []}, "delivered"),                              # the channel asks for no gate
])
def test_the_channel_policies_list_decides_which_gates_run(tmp_path, extra, status):
    message, events = _run(_engine(tmp_path, extra), make(AUDIO_ONLY_OXYCODONE))
    assert message.status == status
    assert ("policy" in events) is (status == "rejected")  # no gate, no policy event


def test_a_named_policy_that_is_not_loaded_holds_the_message(tmp_path):
    """bridge check rejects the name; if the plugin is disabled afterwards the engine holds, never allows."""
    checked = _engine(tmp_path, {"policies": [p.POLICY_NAME]})  # the config as `bridge check` passed it
    checked.store.close()
    engine = Engine(checked.config, plugin_manager(disabled=["telehealth_policy"]))  # restarted without it
    engine.open_destinations()
    message, events = _run(engine, make(AUDIO_ONLY_OXYCODONE))
    assert message.status == "held"
    assert [r["id"] for r in events["policy"]["rules"]] == ["policy-missing"]


def test_check_names_an_unknown_policy_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError) as error:
        _engine(tmp_path, {"policies": ["telehealth-controled-substances"]})
    assert error.value.problems == [("channels.rx.policies[0]", "unknown policy 'telehealth-controled-substances' "
                                     "(did you mean 'telehealth-controlled-substances'?)")]


@pytest.mark.parametrize("value,message", [
    ("telehealth-controlled-substances", "expected a list of policy names"),
    ([""], "expected a list of policy names"),
])
def test_check_rejects_a_policies_value_that_is_not_a_list_of_names(tmp_path, value, message):
    with pytest.raises(ConfigError) as error:
        _engine(tmp_path, {"policies": value})
    ((where, text),) = error.value.problems
    assert where == "channels.rx.policies" and text.startswith(message) and repr(value) in text


@pytest.mark.parametrize("value", ["Iowa", "ia", 19, "I1"])
def test_check_rejects_a_facility_state_that_is_not_a_state_code(tmp_path, value):
    with pytest.raises(ConfigError) as error:
        _engine(tmp_path, {"facility_state": value})
    assert error.value.problems == [("channels.rx.facility_state",
                                     f"expected a two-letter state code such as IA, got {value!r}")]


def test_the_default_config_states_policies_on_every_channel():
    config = load_config(ROOT / "config" / "bridge.yaml", plugin_manager())
    assert {name: ch.policies for name, ch in config.channels.items()} == {
        name: (p.POLICY_NAME,) for name in config.channels}


IN_PERSON_NO_LOCATION = {"encounter.modality": "in_person", "encounter.patient_location": None}


def test_in_person_visit_takes_the_channel_facility_state_not_r2(tmp_path):
    message, events = _run(_engine(tmp_path, {"facility_state": "IA"}), make(IN_PERSON_NO_LOCATION))
    assert message.status == "delivered", events.get("policy")
    assert "R2" not in {r["id"] for r in events["policy"]["rules"]}


def test_in_person_visit_without_a_facility_state_is_still_reviewed(tmp_path):
    message, events = _run(_engine(tmp_path, {}), make(IN_PERSON_NO_LOCATION))
    assert message.status == "held" and "R2" in {r["id"] for r in events["policy"]["rules"]}


def test_facility_state_is_not_used_for_a_telehealth_visit(tmp_path):
    """A video patient may be anywhere: only where the record says counts."""
    rx = make({"encounter.patient_location": None})
    message, events = _run(_engine(tmp_path, {"facility_state": "IA"}), rx)
    assert message.status == "held" and "R2" in {r["id"] for r in events["policy"]["rules"]}


def test_the_record_location_wins_over_the_facility_state(tmp_path):
    """A patient located in NY by the record is judged by NY rules (I-STOP) even at an Iowa channel."""
    rx = make({"encounter.modality": "in_person", "encounter.patient_location.state": "NY",
               "encounter.practitioner_state": "NY"})
    trail = p.evaluate_prescription(rx, p.ruleset_for(None), facility_state="IA")
    r2 = next(c for c in trail.checks if c.id == "R2")
    assert r2.reason == "patient located in NY"
    assert any(c.id == "R16" and c.status == "fired" for c in trail.checks)


def test_bridge_check_prints_the_unknown_policy_name(tmp_path, capsys):
    from bridge.cli import main

    text = (ROOT / "config" / "bridge.yaml").read_text().replace(
        "policies: [telehealth-controlled-substances]\n    facility_state",
        "policies: [telehealth-controled-substances]\n    facility_state")
    config = tmp_path / "bridge.yaml"
    config.write_text(text)
    assert main(["check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "channels.adt-mllp.policies[0]: unknown policy 'telehealth-controled-substances' " \
           "(did you mean 'telehealth-controlled-substances'?)" in err

"""Issue 11 §3: a channel names its sender's IANA zone; the engine and `bridge check` use it.

Seen in the issue, each reproduced here: local times fail at FHIR without a zone; a fixed offset
cannot tell two senders in different zones apart; the shipped default config stamped local times
as UTC. Config problems name their key path; a channel that needs a zone and has none is a warning.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import ORIGINAL_TIMES
from bridge.core.config import load_config
from bridge.core.plugin_manager import load_plugins
from bridge.errors import ConfigError
from bridge.testing import engine_from_dict

ROOT = Path(__file__).resolve().parents[2]
ADT = ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7"
DEFAULT_CONFIG = ROOT / "config" / "bridge.yaml"


def local_adt(start: str, control: str = "TZ-1") -> bytes:
    """The example telehealth ADT with a visit start (HL7 DTM) that carries no offset."""
    raw = ADT.read_bytes().replace(b"TV20261127-0001", control.encode())
    return raw.replace(b"20261127090000-0600|20261127092500-0600", start.encode() + b"|")


def fhir_encounter_start(outbox: Path) -> list[str]:
    starts = []
    for path in sorted(outbox.glob("*.json")):
        bundle = json.loads(path.read_text())
        starts += [e["resource"]["period"]["start"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Encounter"]
    return starts


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True, cwd=ROOT,
                          input=stdin, timeout=60)


# --- config and `bridge check` --------------------------------------------------------------------

CONFIG = """
store: sqlite:///var/test.db
channels:
  adt-in:
    source: file://inbox
    format: hl7v2
    {zone}
    routes:
      - to: [ehr-fhir, archive]
destinations:
  ehr-fhir:
    url: file://outbox
    format: fhir
    {fhir_options}
  archive:
    url: file://archive
    format: bridge
"""


def write(tmp_path: Path, zone: str = "timezone: America/Chicago", fhir_options: str = "") -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(CONFIG).format(zone=zone, fhir_options=fhir_options))
    return path


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        load_config(path, load_plugins(entry_points=False))
    return err.value.problems


def test_channel_zone_is_read_from_config(tmp_path):
    config = load_config(write(tmp_path), load_plugins(entry_points=False))
    assert config.channels["adt-in"].timezone == "America/Chicago"
    assert config.warnings == ()


@pytest.mark.parametrize(("zone", "message"), [
    ("America/Chicgo", "unknown time zone 'America/Chicgo' (use an IANA name such as America/Chicago or UTC)"),
    ("'-05:00'", "'-05:00' is a fixed offset, which is wrong for half the year where daylight saving applies; "
                 "use an IANA time zone name such as America/Chicago"),
    ("5", "expected an IANA time zone name such as America/Chicago, got 5"),
])
def test_bad_channel_zone_is_rejected_with_its_path(tmp_path, zone, message):
    assert problems(write(tmp_path, zone=f"timezone: {zone}")) == [("channels.adt-in.timezone", message)]


def test_bad_destination_time_options_are_rejected_at_start(tmp_path):
    found = problems(write(tmp_path, fhir_options='options: {default_timezone: "EST", timezone: Mars/Olympus}'))
    assert ("destinations.ehr-fhir.options.default_timezone",
            "expected a UTC offset such as -05:00, got 'EST'") in found
    assert ("destinations.ehr-fhir.options.timezone",
            "unknown time zone 'Mars/Olympus' (use an IANA name such as America/Chicago or UTC)") in found


def test_a_valid_fixed_offset_fallback_is_still_accepted(tmp_path):
    config = load_config(write(tmp_path, fhir_options='options: {default_timezone: "-05:00"}'),
                         load_plugins(entry_points=False))
    assert config.destinations["ehr-fhir"].options["default_timezone"] == "-05:00"


def test_check_rejects_an_unknown_zone_with_exit_2(tmp_path):
    result = run_cli("check", "-c", str(write(tmp_path, zone="timezone: Europe/Atlantis")))
    assert result.returncode == 2
    assert b"channels.adt-in.timezone: unknown time zone 'Europe/Atlantis'" in result.stderr


def test_check_warns_about_a_channel_without_zone_that_feeds_fhir_and_exits_0(tmp_path):
    result = run_cli("check", "-c", str(write(tmp_path, zone="")))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines == [f"{tmp_path / 'bridge.yaml'}: warning: channels.adt-in.timezone: not set, but the channel "
                     "feeds destination 'ehr-fhir' whose format fhir needs a time zone: times the sender writes "
                     "without an offset will fail there; set it to the sender's IANA zone (e.g. America/Chicago)"]


def test_check_is_silent_when_the_channel_names_its_zone(tmp_path):
    result = run_cli("check", "-c", str(write(tmp_path)))
    assert (result.returncode, result.stderr) == (0, b"")


def test_no_warning_for_a_channel_whose_destinations_need_no_zone(tmp_path):
    path = write(tmp_path, zone="")
    path.write_text(path.read_text().replace("to: [ehr-fhir, archive]", "to: [archive]"))
    assert load_config(path, load_plugins(entry_points=False)).warnings == ()


def test_the_warning_says_what_a_fixed_default_timezone_does_instead_of_failing(tmp_path):
    path = write(tmp_path, zone="")
    body = yaml.safe_load(path.read_text())
    body["destinations"]["ehr-fhir"]["options"] = {"default_timezone": "-05:00"}
    path.write_text(yaml.safe_dump(body))
    (warning,) = load_config(path, load_plugins(entry_points=False)).warnings
    assert warning[0] == "channels.adt-in.timezone"
    assert "get the fixed offset -05:00 there (destinations.ehr-fhir.options.default_timezone)" in warning[1]
    assert "will fail" not in warning[1]


def test_no_warning_for_a_fhir_channel_whose_times_always_carry_offsets(tmp_path):
    path = write(tmp_path, zone="")
    path.write_text(path.read_text().replace("format: hl7v2", "format: fhir"))
    assert load_config(path, load_plugins(entry_points=False)).warnings == ()


def test_bridge_run_prints_the_warnings_at_start(tmp_path):
    """An analyst who never runs `bridge check` still sees the warning, in the start-up output."""
    path = write(tmp_path, zone="")
    process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(path)], cwd=ROOT,
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        first_lines = [process.stderr.readline().decode() for _ in range(2)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert any("warning: channels.adt-in.timezone: not set" in line for line in first_lines), first_lines


def test_default_config_names_a_zone_on_every_channel_and_stamps_no_fixed_offset():
    config = load_config(DEFAULT_CONFIG, load_plugins(entry_points=False))
    assert {c.timezone for c in config.channels.values()} == {"America/Chicago"}
    assert all("default_timezone" not in d.options for d in config.destinations.values())
    assert config.warnings == ()


# --- the engine -----------------------------------------------------------------------------------


def _file_engine(tmp_path: Path, channels: dict[str, Any], fhir_options: dict[str, Any] | None = None):
    config = {
        "channels": channels,
        "destinations": {"ehr-fhir": {"url": "file://outbox", "format": "fhir", "options": fhir_options or {},
                                      "retry": {"max_attempts": 1}}},
    }
    engine = engine_from_dict(config, tmp_path)
    engine.open_destinations()
    return engine


def _channel(zone: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"source": "file://inbox", "format": "hl7v2", "routes": [{"to": ["ehr-fhir"]}]}
    return {**body, "timezone": zone} if zone else body


def test_seen_local_times_fail_at_fhir_without_a_zone(tmp_path):
    engine = _file_engine(tmp_path, {"adt": _channel(None)})
    receipt = engine.submit("adt", local_adt("20260115103000"))
    engine.drain()
    message = engine.store.get_message(receipt.message_id)
    assert message.status == "dead"  # the FHIR destination's row is a dead letter with the reason (issue 12)
    (row,) = engine.store.outbox_rows(message_id=receipt.message_id)
    assert row.destination == "ehr-fhir" and row.status == "dead" and row.attempts == 0
    assert "has no time zone; FHIR requires one (set timezone: on the channel" in row.last_error


def test_channel_zone_gives_fhir_the_offset_of_each_instant_and_keeps_the_original(tmp_path):
    engine = _file_engine(tmp_path, {"adt": _channel("America/Chicago")})
    january = engine.submit("adt", local_adt("20260115103000", "TZ-JAN"))
    july = engine.submit("adt", local_adt("20260715103000", "TZ-JUL"))
    engine.drain()
    for receipt in (january, july):
        assert engine.store.get_message(receipt.message_id).status == "delivered"
    assert sorted(fhir_encounter_start(tmp_path / "outbox")) == [
        "2026-01-15T10:30:00-06:00", "2026-07-15T10:30:00-05:00"]
    stored = engine.store.get_message(july.message_id).records[0]
    assert stored["period"]["start"] == "2026-07-15T10:30:00-05:00"
    assert stored["extra"][ORIGINAL_TIMES] == {"period.start": "2026-07-15T10:30:00"}
    assert stored["patient"]["birth_date"] == "1980-04-12"
    decoded = next(e for e in engine.store.events(july.message_id) if e.kind == "decoded")
    assert decoded.detail["timezone"] == "America/Chicago"


def test_seen_two_senders_in_different_zones_are_told_apart(tmp_path):
    # The fixed offset on the destination gave both the same -05:00; each channel's zone tells them apart.
    engine = _file_engine(tmp_path, {"chicago": _channel("America/Chicago"), "boston": _channel("America/New_York")},
                          fhir_options={"default_timezone": "-05:00"})
    engine.submit("chicago", local_adt("20260115103000", "TZ-CHI"))
    engine.submit("boston", local_adt("20260115103000", "TZ-BOS"))
    engine.drain()
    assert sorted(fhir_encounter_start(tmp_path / "outbox")) == [
        "2026-01-15T10:30:00-05:00", "2026-01-15T10:30:00-06:00"]


def test_an_offset_the_sender_wrote_wins_over_the_channel_zone(tmp_path):
    engine = _file_engine(tmp_path, {"adt": _channel("America/Los_Angeles")})
    engine.submit("adt", local_adt("20260115103000+0100"))
    engine.drain()
    assert fhir_encounter_start(tmp_path / "outbox") == ["2026-01-15T10:30:00+01:00"]


def test_seen_default_config_no_longer_stamps_local_times_as_utc(tmp_path):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["store"] = "sqlite:///bridge.db"
    data["destinations"]["ehr-fhir"]["url"] = "file://outbox"
    data["destinations"]["pharmacy-script"]["options"]["directory"] = str(
        ROOT / "examples" / "ncpdp" / "pharmacies.csv")
    engine = engine_from_dict(data, tmp_path)
    engine.open_destinations()
    receipt = engine.submit("adt-mllp", local_adt("20260115103000"))
    engine.drain()
    assert engine.store.get_message(receipt.message_id).status == "delivered"
    assert fhir_encounter_start(tmp_path / "outbox") == ["2026-01-15T10:30:00-06:00"]  # was ...+00:00


# --- bridge translate --timezone ------------------------------------------------------------------


def test_translate_with_timezone_does_what_a_channel_does():
    result = run_cli("translate", "--from", "hl7v2", "--to", "fhir", "--timezone", "America/Chicago",
                     stdin=local_adt("20260715103000"))
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)
    (encounter,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"]
    assert encounter["period"]["start"] == "2026-07-15T10:30:00-05:00"


def test_translate_without_timezone_says_what_to_set():
    result = run_cli("translate", "--from", "hl7v2", "--to", "fhir", stdin=local_adt("20260715103000"))
    assert result.returncode == 2
    assert b"has no time zone" in result.stderr and b"Traceback" not in result.stderr


def test_translate_rejects_an_unknown_zone_before_reading_input():
    result = run_cli("translate", "--from", "hl7v2", "--to", "fhir", "--timezone", "Central", stdin=b"")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "bridge: --timezone: unknown time zone 'Central' (use an IANA name such as America/Chicago or UTC)")


# --- policies judge exact times -------------------------------------------------------------------


def test_policies_see_the_localized_times_in_the_worker_and_at_the_listener(tmp_path):
    from bridge import PolicyDecision, PolicySpec, hookimpl
    from bridge.testing import plugin_manager

    seen: list[str] = []

    class Recorder:
        @hookimpl
        def bridge_policies(self):
            def evaluate(request):
                seen.extend(r.period.start for r in request.records if r.kind == "Encounter")
                return PolicyDecision("ALLOW")
            return [PolicySpec(name="recorder", evaluate=evaluate)]

    plugins = plugin_manager(("recorder", Recorder()), disabled=("telehealth_policy",))
    config = {"channels": {"adt": {**_channel("America/Chicago"), "routes": []}}, "destinations": {}}
    engine = engine_from_dict(config, tmp_path, plugins)
    raw = local_adt("20260715103000")
    assert engine.processor.verdict("adt", raw).outcome == "ALLOW"  # what an MLLP listener asks before its ACK
    engine.submit("adt", raw)
    engine.drain()
    assert seen == ["2026-07-15T10:30:00-05:00", "2026-07-15T10:30:00-05:00"]


def test_check_warns_about_a_channel_without_zone_that_feeds_an_epic_or_oracle_destination(tmp_path):
    """Review of issue 11: docs/configuration.md promises the warning for "a vendor profile built on"
    FHIR, but the Epic and Oracle Health profiles use the bridge format, so nothing was said until
    each visit dead-lettered at delivery ("has no time zone; FHIR requires one")."""
    path = write(tmp_path, zone="")
    vendors = """
  epic:
    profile: epic
    options: {client_ids: {non-production: x}, key_env: EPIC_KEY, kid: k, mrn_system: urn:mrn,
              visit_number_system: urn:vn, base_url: "https://epic.example/api/FHIR/R4"}
  millennium:
    profile: oracle_health
    options: {tenant: t, client_ids: {non-production: x}, key_env: OH_KEY, kid: k, mrn_system: urn:mrn,
              visit_number_system: urn:vn, encounter_types: {video: "2560523697"}}
"""
    path.write_text(path.read_text().replace("to: [ehr-fhir, archive]", "to: [epic, millennium, archive]")
                    + vendors)
    warnings = load_config(path, load_plugins(entry_points=False)).warnings
    assert [(where, message.split(":", 1)[0]) for where, message in warnings] == [
        ("channels.adt-in.timezone", "not set, but the channel feeds destination 'epic' whose profile epic needs a "
                                     "time zone"),
        ("channels.adt-in.timezone", "not set, but the channel feeds destination 'millennium' whose profile "
                                     "oracle_health needs a time zone")]

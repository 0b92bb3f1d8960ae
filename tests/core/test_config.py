"""Config loading and `bridge check`: every problem reported with its key path."""

from __future__ import annotations

import textwrap

import pytest

from bridge.core.config import RetryPolicy, load_config
from bridge.core.plugin_manager import load_plugins
from bridge.errors import ConfigError

GOOD = """
store: sqlite:///var/test.db
channels:
  intake-json:
    source: file://inbox
    format: bridge
    routes:
      - when: {record: Encounter}
        to: [ehr-files]
destinations:
  ehr-files:
    url: file:///tmp/outbox-abs
    format: bridge
    retry: {max_attempts: 4, backoff: fixed, initial_seconds: 2}
"""


def write(tmp_path, text):
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), load_plugins(entry_points=False))
    return err.value.problems


def test_good_config_loads_and_resolves_relative_paths(tmp_path):
    config = load_config(write(tmp_path, GOOD), load_plugins(entry_points=False))
    assert config.store_url == f"sqlite:///{tmp_path}/var/test.db"
    assert config.config_dir == str(tmp_path)
    channel = config.channels["intake-json"]
    assert channel.routes[0].records == ("Encounter",) and channel.routes[0].to == ("ehr-files",)
    assert channel.order_by == "patient" and channel.order_mode == "strict"
    assert config.destinations["ehr-files"].retry == RetryPolicy(max_attempts=4, backoff="fixed", initial_seconds=2)


def test_a_postgresql_store_url_is_accepted_and_a_bad_pool_size_named(tmp_path):
    url = "postgresql://bridge@db.example.org:5432/bridge?pool_size=4"
    config = load_config(write(tmp_path, GOOD.replace("sqlite:///var/test.db", url)),
                         load_plugins(entry_points=False))
    assert config.store_url == url
    found = dict(problems(tmp_path, GOOD.replace("sqlite:///var/test.db", "postgresql://u:pw@h/db?pool_size=0")))
    assert "pool_size must be a whole number >= 1, got '0'" in found["store"]
    assert "pw" not in found["store"]
    found = dict(problems(tmp_path, GOOD.replace("sqlite:///var/test.db", "mysql://h/db")))
    assert "postgresql://user@host:5432/bridge" in found["store"]


def test_typo_in_a_key_names_the_path_and_the_likely_key(tmp_path):
    found = problems(tmp_path, GOOD.replace("    routes:", "    rutes:"))
    assert ("channels.intake-json.rutes", "unknown key (did you mean 'routes'?)") in found


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.replace("format: bridge\n    routes", "format: hl8\n    routes").replace(
        "to: [ehr-files]", "to: [ehr-file]").replace("max_attempts: 4", "max_attempts: 0").replace(
        "record: Encounter", "record: Encountr")
    paths = dict(problems(tmp_path, text))
    assert "unknown format 'hl8'" in paths["channels.intake-json.format"]
    assert "did you mean 'ehr-files'" in paths["channels.intake-json.routes[0].to[0]"]
    assert "at least 1" in paths["destinations.ehr-files.retry.max_attempts"]
    assert "did you mean 'Encounter'" in paths["channels.intake-json.routes[0].when.record"]


def test_missing_required_keys_and_unknown_scheme(tmp_path):
    text = """
    channels:
      a: {format: bridge}
    destinations:
      d: {url: "gopher://x", format: bridge}
    """
    paths = dict(problems(tmp_path, text))
    assert paths["channels.a.source"] == "is required"
    assert "scheme 'gopher'" in paths["destinations.d.url"]


def test_invalid_yaml_names_line_and_column(tmp_path):
    (message,) = [m for _, m in problems(tmp_path, "channels:\n  a: [unclosed\n")]
    assert "invalid YAML at line" in message


def test_backoff_is_exponential_bounded_and_jittered():
    policy = RetryPolicy(initial_seconds=1, max_seconds=60, jitter=0.2)
    assert policy.delay(1, 0.5) == 1 and policy.delay(3, 0.5) == 4
    assert policy.delay(20, 0.5) == 60
    assert policy.delay(3, 0.0) == pytest.approx(3.2) and policy.delay(3, 0.999) == pytest.approx(4.8, rel=1e-3)

"""The ``alerts:`` section: what it accepts, and every mistake reported with its key path by
``bridge check`` (exit 2) — secrets only by environment variable name."""

from __future__ import annotations

import pytest
import yaml

from bridge.cli import main
from bridge.core.config import parse_config
from bridge.errors import ConfigError
from tests.ops.helpers import BASE, ScriptedJobs

GOOD = {
    "evaluate_seconds": 30,
    "repeat_minutes": 120,
    "notify": {
        "webhook": {"url": "https://hooks.hospital.example/bridge", "token_env": "BRIDGE_ALERT_TOKEN",
                    "timeout_seconds": 3, "retries": 1},
        "email": {"host": "smtp.hospital.example", "port": 587, "from": "bridge@hospital.example",
                  "to": ["integration-oncall@hospital.example"], "username_env": "BRIDGE_SMTP_USER",
                  "password_env": "BRIDGE_SMTP_PASSWORD"},
    },
    "rules": {
        "out-down": {"when": "destination_failing", "destination": "out", "minutes": 10},
        "errors": {"when": "channel_error_rate", "channel": "in", "percent": 20, "minutes": 30},
        "backlog": {"when": "backlog", "minutes": 15},
        "holds": {"when": "hold_waiting", "hours": 4, "notify": ["email"], "repeat_minutes": 240},
        "listeners": {"when": "listener_down"},
        "certs": {"when": "certificate_expiring", "days": 21},
        "jobs": {"when": "job_failing", "runs": 2, "enabled": False},
    },
}


def parse(tmp_path, alerts):
    return parse_config({**BASE, "alerts": alerts}, config_dir=str(tmp_path), plugins=ScriptedJobs().plugins())


def problems(tmp_path, alerts):
    with pytest.raises(ConfigError) as failed:
        parse(tmp_path, alerts)
    return dict(failed.value.problems)


def test_a_complete_section_is_read_with_defaults_filled_in(tmp_path):
    alerts = parse(tmp_path, GOOD).alerts
    assert alerts.evaluate_seconds == 30 and alerts.repeat_minutes == 120 and alerts.active
    assert alerts.rules["out-down"].params == {"destination": "out", "minutes": 10.0}
    assert alerts.rules["out-down"].notify == ("webhook", "email") and alerts.rules["out-down"].repeat_minutes == 120
    assert alerts.rules["holds"].notify == ("email",) and alerts.rules["holds"].repeat_minutes == 240
    assert alerts.rules["jobs"].enabled is False and alerts.rules["jobs"].params == {"runs": 2}
    assert alerts.webhook.token_env == "BRIDGE_ALERT_TOKEN" and alerts.email.to == ("integration-oncall@hospital.example",)
    assert parse(tmp_path, None).alerts.rules == {}


def test_mistakes_are_reported_with_their_key_paths(tmp_path):
    found = problems(tmp_path, {
        "evaluate_secs": 5,
        "notify": {"webhook": {"url": "https://user:pw@hooks.example/x"},
                   "email": {"host": "smtp.example", "from": "bridge", "to": "ops@example.org", "username_env": "U",
                             "retries": 50}},
        "rules": {
            "a": {"when": "destination_failng", "minutes": 5},
            "b": {"when": "destination_failing", "destination": "nowhere"},
            "c": {"when": "backlog", "minutes": "ten", "channel": "in", "destination": "out"},
            "d": {"when": "hold_waiting", "hours": 4, "notify": ["pager"]},
            "e": {"when": "job_failing", "job": "nightly", "runs": 1.5},
        },
    })
    assert found == {
        "alerts.evaluate_secs": "unknown key (did you mean 'evaluate_seconds'?)",
        "alerts.notify.webhook.url": "must not hold credentials: name an environment variable in token_env",
        "alerts.notify.email.from": "expected an email address, got 'bridge'",
        "alerts.notify.email": "username_env and password_env go together (or neither, for a relay without login)",
        "alerts.notify.email.retries": "at most 10 (a notice must not hold the alert loop), got 50",
        "alerts.rules.a.when": "unknown condition 'destination_failng' (did you mean 'destination_failing'?)",
        "alerts.rules.b.minutes": "is required for destination_failing",
        "alerts.rules.b.destination": "no destination named 'nowhere' in this config (destinations: out)",
        "alerts.rules.c.minutes": "expected a number, got 'ten'",
        "alerts.rules.c": "backlog watches a channel or a destination, not both (write two rules)",
        "alerts.rules.d.notify": "notifier 'pager' is not configured under alerts.notify",
        "alerts.rules.e.job": "no job named 'nightly' in this config (jobs: none)",
        "alerts.rules.e.runs": "expected a whole number, got 1.5",
    }


def test_rules_without_a_notifier_are_refused(tmp_path):
    assert problems(tmp_path, {"rules": {"x": {"when": "listener_down"}}}) == {
        "alerts.notify": "rules are defined but no notifier is: add webhook and/or email"}


def test_bridge_check_lists_alert_problems_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({**BASE, "alerts": {"notify": {"webhook": {"url": "ftp://hooks.example"}},
                                                      "rules": {"x": {"when": "backlog"}}}}))
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "alerts.notify.webhook.url: expected an http(s) URL, got 'ftp://hooks.example'" in err
    assert "alerts.rules.x.minutes: is required for backlog" in err
    path.write_text(yaml.safe_dump({**BASE, "alerts": GOOD}))
    assert main(["check", "-c", str(path)]) == 0

"""The ``jobs:`` section and the per-channel ``retention:`` key: every problem, with its path."""

from __future__ import annotations

import pytest

from bridge import ConfigError

from .helpers import BASE, ScriptedJobs, config


def problems(tmp_path, **data) -> list[str]:
    plugins = ScriptedJobs().plugins()
    with pytest.raises(ConfigError) as err:
        config(tmp_path, plugins, **data)
    return [f"{path}: {message}" for path, message in err.value.problems]


def test_a_good_jobs_section_becomes_job_configs(tmp_path):
    cfg = config(tmp_path, ScriptedJobs().plugins(), jobs={
        "poll": {"type": "scripted", "trigger": {"interval_seconds": 30}, "channel": "in",
                 "settings": {"x": 1}, "catch_up": "run_once", "retry": {"max_attempts": 5, "backoff_seconds": 2}},
        "nightly": {"type": "prune", "trigger": {"cron": "15 2 * * *", "timezone": "America/Chicago"}},
    })
    poll, nightly = cfg.jobs["poll"], cfg.jobs["nightly"]
    assert (poll.type, poll.interval_seconds, poll.cron, poll.channel) == ("scripted", 30, None, "in")
    assert (poll.catch_up, poll.max_attempts, poll.backoff_seconds, dict(poll.settings)) == ("run_once", 5, 2, {"x": 1})
    assert (nightly.cron, nightly.timezone, nightly.catch_up, nightly.max_attempts) == (
        "15 2 * * *", "America/Chicago", "skip", 3)


def test_every_job_problem_is_reported_with_its_path_and_a_hint(tmp_path):
    found = problems(tmp_path, jobs={
        "a": {"type": "scriptd", "trigger": {"interval_seconds": 0}, "chanel": "in"},
        "b": {"type": "scripted", "trigger": {"cron": "61 * * * *"}, "catch_up": "always", "channel": "inn"},
        "c": {"type": "scripted", "trigger": {"cron": "* * * * *", "interval_seconds": 5},
              "retry": {"max_attempts": 0, "backof_seconds": 1}},
        "d": {"trigger": {"interval_seconds": 5, "timezone": "Mars/Olympus"}},
        "e": {"type": "prune"},
    })
    expected = [
        "jobs.a.chanel: unknown key (did you mean 'channel'?)",
        "jobs.a.type: unknown job type 'scriptd' (did you mean 'scripted'?)",
        "jobs.a.trigger.interval_seconds: must be at least 1, got 0",
        "jobs.b.channel: unknown channel 'inn' (did you mean 'in'?)",
        "jobs.b.catch_up: expected one of skip, run_once, got 'always'",
        "jobs.c.trigger: give exactly one of cron or interval_seconds",
        "jobs.c.retry.backof_seconds: unknown key (did you mean 'backoff_seconds'?)",
        "jobs.c.retry.max_attempts: must be at least 1, got 0",
        "jobs.d.trigger.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as America/Chicago or UTC)",
        "jobs.e.trigger: is required: {cron: \"*/5 * * * *\"} or {interval_seconds: 30}",
    ]
    for line in expected:
        assert line in found, (line, found)
    assert any(p.startswith("jobs.b.trigger.cron: invalid crontab '61 * * * *'") for p in found), found
    (missing_type,) = [p for p in found if p.startswith("jobs.d.type: is required (known: ")]
    assert {"feeder", "fhir-poll", "prune", "scripted"} <= set(missing_type.split("known: ")[1].rstrip(")").split(", "))


def test_retention_is_validated_and_never_allows_waiting_or_held_statuses(tmp_path):
    channels = {
        "in": {**BASE["channels"]["in"], "retention": {"days": 30, "statuses": ["delivered", "held", "routd"]}},
        "b": {**BASE["channels"]["in"], "retention": {"dys": 3}},
    }
    found = problems(tmp_path, channels=channels)
    assert "channels.in.retention.statuses[1]: 'held' cannot be pruned (allowed: delivered, filtered, rejected, " \
           "dead, failed, resolved; waiting and held messages are never pruned)" in found
    assert any(p.startswith("channels.in.retention.statuses[2]: 'routd' cannot be pruned") for p in found)
    assert "channels.b.retention.dys: unknown key (did you mean 'days'?)" in found
    assert "channels.b.retention.days: is required (how many days to keep a message)" in found

    good = {"in": {**BASE["channels"]["in"], "retention": {"days": 7}}}
    cfg = config(tmp_path, ScriptedJobs().plugins(), channels=good)
    assert (cfg.channels["in"].retention.days, cfg.channels["in"].retention.statuses) == (7, ("delivered", "filtered"))

"""The scheduler against a real store: slots, manual runs, retries, catch-up, crash takeover, firing."""

from __future__ import annotations

import datetime
import time

import pytest

from bridge import BridgeError
from bridge.core.engine import Engine
from bridge.core.scheduler import JobRunner, Scheduler, latest_slot, run_now, slot_text
from bridge.core.store import open_store

from .helpers import ScriptedJobs, config

UTC = datetime.timezone.utc


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def setup(tmp_path, **job):
    jobs = ScriptedJobs()
    plugins = jobs.plugins()
    body = {"type": "scripted", "trigger": {"interval_seconds": 60}, "retry": {"max_attempts": 3,
                                                                               "backoff_seconds": 0.01}, **job}
    cfg = config(tmp_path, plugins, jobs={"poll": body, "feed": {"type": "feeder", "channel": "in",
                                                                 "trigger": {"interval_seconds": 1},
                                                                 "settings": {"payload": "{}"}}})
    return jobs, plugins, cfg, open_store(cfg.store_url)


def test_slots_are_the_same_in_every_process_whatever_its_start_time(tmp_path):
    _, _, cfg, _ = setup(tmp_path, trigger={"interval_seconds": 300})
    job = cfg.jobs["poll"]
    assert slot_text(latest_slot(job, at("2026-03-01T10:07:31.25"))) == "2026-03-01T10:05:00.000Z"
    assert latest_slot(job, at("2026-03-01T10:07:31"), after=at("2026-03-01T10:05:00")) is None
    _, _, cfg, _ = setup(tmp_path, trigger={"cron": "30 2 * * *"})
    cron = cfg.jobs["poll"]
    assert slot_text(latest_slot(cron, at("2026-03-04T01:00:00"), after=at("2026-03-01T00:00:00"))) == \
        "2026-03-03T02:30:00.000Z"


def test_run_now_runs_once_in_a_manual_slot_and_namespaces_watermarks(tmp_path):
    _, plugins, cfg, store = setup(tmp_path)
    first = run_now(store, cfg, plugins, "feed")
    second = run_now(store, cfg, plugins, "feed")
    assert first["status"] == second["status"] == "succeeded"
    assert first["slot"].startswith("manual-") and first["slot"] != second["slot"]
    assert store.get_watermark("job:feed:count") == "2" and store.get_watermark("count") is None
    messages = store.search(channel="in")
    assert len(messages) == 2 and messages[0].status == "received"  # queued for the engine's workers
    assert {m.origin["job"] for m in messages} == {"feed"}
    assert first["detail"]["result"] == {"message_id": messages[1].id}
    with pytest.raises(BridgeError, match="no job named 'fed' \\(did you mean 'feed'\\?\\)"):
        run_now(store, cfg, plugins, "fed")


def test_a_failing_run_is_retried_by_policy_and_a_hopeless_one_is_visible_without_phi(tmp_path):
    jobs, plugins, cfg, store = setup(tmp_path)
    runner = JobRunner(store, cfg, plugins, "me")
    jobs.answers = ["server down", "server down", "ok"]
    run = runner.run_slot(cfg.jobs["poll"], "2026-03-01T10:00:00.000Z")
    assert (run["status"], run["attempts"], run["detail"]["attempts"]) == ("succeeded", 3, 3)
    assert run["detail"]["result"] == {"calls": 3, "note": "fine"}

    jobs.answers = ["peer echoed PID|1||MRN-77821^^^H||Quillfeather^Zebulon||19610412"] * 3
    run = runner.run_slot(cfg.jobs["poll"], "2026-03-01T10:01:00.000Z")
    assert (run["status"], run["attempts"]) == ("failed", 3)
    assert run["detail"]["error"] == "RuntimeError (message withheld from logs: it may quote message content)"
    assert runner.run_slot(cfg.jobs["poll"], "2026-03-01T10:01:00.000Z") is None  # the slot is spent


def test_a_crashed_run_is_taken_over_after_its_lease_and_retried_or_failed_by_policy(tmp_path):
    jobs, plugins, cfg, store = setup(tmp_path)
    store.claim_job_slot("poll", "2026-03-01T10:00:00.000Z", "crashed", 0.01)
    time.sleep(0.05)
    JobRunner(store, cfg, plugins, "rescuer").recover(cfg.jobs["poll"])
    (run,) = store.job_run_history("poll")
    assert (run["status"], run["owner"].split(":")[0], run["attempts"]) == ("succeeded", "rescuer", 2)

    _, plugins, cfg, store = setup(tmp_path / "b", retry={"max_attempts": 1})
    store.claim_job_slot("poll", "2026-03-01T10:00:00.000Z", "crashed", 0.01)
    time.sleep(0.05)
    JobRunner(store, cfg, plugins, "rescuer").recover(cfg.jobs["poll"])
    (run,) = store.job_run_history("poll")
    assert run["status"] == "failed" and "lease expired" in run["detail"]["error"]


@pytest.mark.parametrize("policy", ["run_once", "skip"])
def test_catch_up_policy_at_start(tmp_path, policy):
    jobs, plugins, cfg, store = setup(tmp_path, trigger={"interval_seconds": 3600}, catch_up=policy)
    now = datetime.datetime.now(UTC)
    old = latest_slot(cfg.jobs["poll"], now - datetime.timedelta(hours=3))
    run = store.claim_job_slot("poll", slot_text(old), "earlier-process", 60)
    store.finish_job_slot(run["id"], "earlier-process", "succeeded", {})
    scheduler = Scheduler(store, cfg, plugins, "me")
    scheduler.start()
    try:
        deadline = time.monotonic() + 5
        while policy == "run_once" and len(store.job_run_history("poll")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        scheduler.stop()
    slots = [r["slot"] for r in store.job_run_history("poll")]
    if policy == "run_once":  # one run, for the newest missed slot (not one per missed hour)
        assert slots == [slot_text(latest_slot(cfg.jobs["poll"], now)), slot_text(old)]
        assert scheduler.catch_up(cfg.jobs["poll"]) is None  # nothing missed any more
    else:
        assert slots == [slot_text(old)]


def test_the_engine_fires_an_interval_job_once_per_aligned_slot(tmp_path):
    _, plugins, cfg, store = setup(tmp_path)
    engine = Engine(cfg, plugins, store)
    engine.start()
    try:
        time.sleep(2.6)
    finally:
        engine.stop()
    store = open_store(cfg.store_url)
    runs = store.job_run_history("feed", limit=10)
    assert 2 <= len(runs) <= 4 and {r["status"] for r in runs} == {"succeeded"}
    seconds = sorted(datetime.datetime.fromisoformat(r["slot"].replace("Z", "+00:00")).timestamp() for r in runs)
    assert all(s == int(s) for s in seconds) and all(b - a == 1 for a, b in zip(seconds, seconds[1:]))
    assert len(store.search(channel="in")) == len(runs)


def test_a_lapsed_run_retaken_by_the_same_process_cannot_write_over_the_new_one(tmp_path):
    """Owners are per claim: the first claim's late finish is fenced even within one process."""
    _, plugins, cfg, store = setup(tmp_path)
    runner = JobRunner(store, cfg, plugins, "proc-1")
    first_owner, second_owner = runner.claim_owner(), runner.claim_owner()
    assert first_owner != second_owner and first_owner.startswith("proc-1:")
    run = store.claim_job_slot("poll", "2026-03-01T11:00:00.000Z", first_owner, 0.01)
    time.sleep(0.05)
    assert store.claim_job_slot("poll", "2026-03-01T11:00:00.000Z", second_owner, 60)["id"] == run["id"]
    assert store.finish_job_slot(run["id"], first_owner, "succeeded", {}) is False
    assert store.finish_job_slot(run["id"], second_owner, "succeeded", {}) is True

"""Scheduled sync jobs: APScheduler fires, the store decides who runs.

APScheduler 3 (memory job store only: nothing is pickled) computes fire times from each job's
trigger. Everything that must survive a restart or be shared between processes lives in our store:

- **Slots.** A run belongs to a *slot*, the scheduled fire time as ISO text in UTC
  (``2026-03-01T10:05:00.000Z``). Interval triggers are anchored at the Unix epoch, so every process
  computes the same slots whatever time it started; cron slots are the same everywhere by nature.
- **Exactly once per slot.** Before running, a process inserts the ``job_runs`` row ``(job, slot)``
  (status ``running``, its owner id, a lease expiry). ``UNIQUE(job, slot)`` lets one insert win; the
  losers skip the slot. The winner renews the lease while it runs and finishes the row (fenced by
  owner) as ``succeeded`` or ``failed`` with a PHI-scrubbed error.
- **Crashes.** A runner that dies leaves a ``running`` row whose lease expires. The next fire of that
  job in any process takes the slot over (attempts + 1) and runs it again if the retry policy allows,
  or marks it failed.
- **Retries.** A failed attempt is retried in the same slot after ``backoff_seconds × 2^(n-1)``, up to
  ``max_attempts``; the row shows the attempts and the last error.
- **Catch-up.** Slots that passed while no engine ran are not in APScheduler's memory. At start,
  ``catch_up: run_once`` runs the most recent missed slot once (one run, however many were missed);
  ``skip`` (the default) waits for the next slot. A job that never ran has nothing to catch up.
- **Manual runs.** ``run_now`` (CLI ``bridge jobs run``, admin API) uses slot ``manual-<timestamp>``
  and makes one attempt.

Job types come from plugins (``JobType.run(JobContext)``), plus ``prune`` which the core provides
(:mod:`bridge.core.retention`). Watermarks are namespaced per job: a job's
``ctx.get_watermark("x")`` reads the store's watermark ``job:<job name>:x``.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bridge.core import redaction, retention
from bridge.core.config import CORE_JOB_TYPES, BridgeConfig, JobConfig
from bridge.errors import BridgeError, ConfigError
from bridge.plugin_types import JobContext, Receipt

if TYPE_CHECKING:
    from bridge.core.plugin_manager import PluginManager
    from bridge.core.store import Store

log = logging.getLogger(__name__)

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
MAX_CRON_STEPS = 100_000
Submit = Callable[[str, bytes, Mapping[str, Any]], Receipt]


# --- slots ---------------------------------------------------------------------------------------


def make_trigger(job: JobConfig) -> CronTrigger | IntervalTrigger:
    if job.cron:
        return CronTrigger.from_crontab(job.cron, timezone=job.timezone)
    return IntervalTrigger(seconds=job.interval_seconds, start_date=EPOCH, timezone=job.timezone)


def slot_text(when: datetime.datetime) -> str:
    """A slot's name: its fire time in UTC, fixed width so text order is time order."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def slot_time(slot: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(slot.replace("Z", "+00:00"))
    except ValueError:
        return None


def latest_slot(job: JobConfig, now: datetime.datetime, after: datetime.datetime | None = None
                ) -> datetime.datetime | None:
    """The newest fire time ≤ ``now`` (and > ``after``), or None."""
    if job.interval_seconds:
        step = datetime.timedelta(seconds=job.interval_seconds)
        latest = EPOCH + step * ((now - EPOCH) // step)
        return latest if after is None or latest > after else None
    trigger = make_trigger(job)
    start = max(after or now - datetime.timedelta(days=31), now - datetime.timedelta(days=31))
    found, cursor = None, trigger.get_next_fire_time(None, start + datetime.timedelta(microseconds=1))
    for _ in range(MAX_CRON_STEPS):
        if cursor is None or cursor > now:
            break
        found = cursor
        cursor = trigger.get_next_fire_time(cursor, cursor + datetime.timedelta(seconds=1))
    return found


def manual_slot() -> str:
    return "manual-" + slot_text(datetime.datetime.now(UTC))


def watermark_key(job: str, name: str) -> str:
    return f"job:{job}:{name}"


# --- running one slot ----------------------------------------------------------------------------


def _summary(result: Any) -> dict[str, Any]:
    """What a run returned, for its history row: numbers and flags, and short scrubbed text."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = dataclasses.asdict(result)
    if not isinstance(result, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, (bool, int, float)) or value is None:
            out[str(key)] = value
        elif isinstance(value, str):
            out[str(key)] = redaction.scrub(value)[:200]
    return out


class _Heartbeat:
    """Renews a run's lease every third of its length while the run works."""

    def __init__(self, store: Store, run_id: int, owner: str, lease_seconds: float) -> None:
        self.store, self.run_id, self.owner, self.lease = store, run_id, owner, lease_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"job-lease-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._done.wait(self.lease / 3):
            try:
                if not self.store.renew_job_slot(self.run_id, self.owner, self.lease):
                    log.warning("job run %s: lease lost to another process", self.run_id)
                    return
            except Exception as exc:
                log.warning("job run %s: lease renewal failed: %s", self.run_id, redaction.exception_text(exc))

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join(timeout=5)


class JobRunner:
    """Runs a job for one slot under the store's lease. Shared by the scheduler, ``run_now`` and the CLI."""

    def __init__(self, store: Store, config: BridgeConfig, plugins: PluginManager, owner: str,
                 submit: Submit | None = None, stop: threading.Event | None = None) -> None:
        self.store, self.config, self.plugins, self.owner = store, config, plugins, owner
        self.stop = stop or threading.Event()
        self._submit = submit or self._own_intake()

    def _own_intake(self) -> Submit:
        """Without an engine (CLI, admin API) a job still submits through a real intake."""
        from bridge.core.intake import Intake

        intake = Intake(self.store, self.plugins.formats())
        return lambda channel, raw, origin: intake.submit(self.config.channels[channel], raw, origin)

    def context(self, job: JobConfig) -> JobContext:
        def submit(channel: str, raw: bytes, origin: Mapping[str, Any] | None = None) -> Receipt:
            if channel not in self.config.channels or (job.channel and channel != job.channel):
                allowed = job.channel or ", ".join(sorted(self.config.channels))
                raise ConfigError([(f"jobs.{job.name}", f"cannot submit to channel {channel!r} (allowed: {allowed})")])
            return self._submit(channel, raw, {**dict(origin or {}), "job": job.name})

        settings = {**({"channel": job.channel} if job.channel else {}), **job.settings}
        return JobContext(name=job.name, settings=settings, submit=submit, config_dir=self.config.config_dir,
                          get_watermark=lambda name: self.store.get_watermark(watermark_key(job.name, name)),
                          set_watermark=lambda name, value: self.store.set_watermark(watermark_key(job.name, name),
                                                                                     value))

    def call(self, job: JobConfig) -> Any:
        if job.type in CORE_JOB_TYPES:
            return retention.run_prune_job(self.store, self.config, job)
        spec = self.plugins.job_types().get(job.type)
        if spec is None:
            raise ConfigError([(f"jobs.{job.name}.type", f"job type {job.type!r} is not registered by any plugin")])
        return spec.run(self.context(job))

    def run_slot(self, job: JobConfig, slot: str, *, max_attempts: int | None = None) -> dict[str, Any] | None:
        """Run ``job`` for ``slot`` if this process wins the slot; the finished run, or None if skipped."""
        owner = self.claim_owner()
        run = self.store.claim_job_slot(job.name, slot, owner, job.lease_seconds)
        if run is None:
            log.debug("job %s slot %s: another process has it", job.name, slot)
            return None
        return self.execute(job, run, max_attempts or job.max_attempts, owner)

    def claim_owner(self) -> str:
        """An owner id per claim, not per process: if a run's lease lapses and this same process takes
        the slot over, the first run's late writes are fenced off too."""
        return f"{self.owner}:{uuid.uuid4().hex[:8]}"

    def execute(self, job: JobConfig, run: dict[str, Any], max_attempts: int, owner: str) -> dict[str, Any] | None:
        attempts, run_id, slot = run["attempts"], run["id"], run["slot"]
        if attempts > max_attempts:
            self._finish(run_id, owner, "failed", {"attempts": attempts - 1, "error": "the previous runner stopped (lease "
                                             "expired) and no attempts are left"})
            return self.store.job_run(run_id)
        with _Heartbeat(self.store, run_id, owner, job.lease_seconds):
            while True:
                started = time.monotonic()
                try:
                    result = self.call(job)
                except Exception as exc:
                    error = redaction.safe_error(exc)
                    log.warning("job %s slot %s: attempt %d of %d failed: %s", job.name, slot, attempts,
                                max_attempts, redaction.exception_text(exc))
                    if attempts >= max_attempts or self.stop.is_set():
                        self._finish(run_id, owner, "failed", {"attempts": attempts, "error": error})
                        break
                    delay = job.backoff_seconds * 2 ** (attempts - 1)
                    self.store.renew_job_slot(run_id, owner, job.lease_seconds + delay, attempts=attempts + 1,
                                              detail={"attempts": attempts, "error": error, "retry_in": delay})
                    if self.stop.wait(delay):
                        self._finish(run_id, owner, "failed", {"attempts": attempts, "error": error,
                                                        "note": "engine stopped before the retry"})
                        break
                    attempts += 1
                    continue
                detail = {"attempts": attempts, "seconds": round(time.monotonic() - started, 3),
                          "result": _summary(result)}
                self._finish(run_id, owner, "succeeded", detail)
                log.info("job %s slot %s: succeeded (attempt %d)", job.name, slot, attempts)
                break
        return self.store.job_run(run_id)

    def _finish(self, run_id: int, owner: str, status: str, detail: Mapping[str, Any]) -> None:
        if not self.store.finish_job_slot(run_id, owner, status, detail):
            log.warning("job run %s: lease lost before its result was written; the new owner's result stands", run_id)

    def recover(self, job: JobConfig) -> None:
        """Take over runs of ``job`` whose runner died (lease expired) and finish them by the retry policy."""
        for stale in self.store.expired_job_runs(job.name):
            owner = self.claim_owner()
            run = self.store.claim_job_slot(job.name, stale["slot"], owner, job.lease_seconds)
            if run is not None:
                log.warning("job %s slot %s: took over from a runner whose lease expired", job.name, run["slot"])
                self.execute(job, run, job.max_attempts, owner)


# --- the scheduler -------------------------------------------------------------------------------


class _SlotExecutor(BaseExecutor):
    """An APScheduler executor that hands our runner the scheduled fire time (the slot).

    APScheduler 3 calls job functions without their fire time; ``_do_submit_job`` (the extension
    point for executors) receives it, so the slot comes from the scheduler itself, not the clock.
    """

    def __init__(self, fire: Callable[[str, datetime.datetime], None], max_workers: int) -> None:
        super().__init__()
        self._fire = fire
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")

    def _do_submit_job(self, job: Any, run_times: list[datetime.datetime]) -> None:
        future = self._pool.submit(self._fire, job.id, run_times[-1])  # coalesced: the newest time

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, [])

        future.add_done_callback(done)

    def submit_extra(self, fn: Callable[..., Any], *args: Any) -> None:
        self._pool.submit(fn, *args)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


class Scheduler:
    """Fires the config's enabled jobs in this process (``Engine.start`` starts it, ``stop`` stops it)."""

    def __init__(self, store: Store, config: BridgeConfig, plugins: PluginManager, owner: str,
                 submit: Submit | None = None) -> None:
        self.config = config
        self.jobs = {name: job for name, job in config.jobs.items() if job.enabled}
        self.stopping = threading.Event()
        self.runner = JobRunner(store, config, plugins, owner, submit, self.stopping)
        self._executor = _SlotExecutor(self._fire, max_workers=max(1, min(8, len(self.jobs))))
        self._aps = BackgroundScheduler(executors={"default": self._executor}, timezone=UTC,
                                        job_defaults={"coalesce": True, "max_instances": 1,
                                                      "misfire_grace_time": None})

    def start(self) -> None:
        for name, job in self.jobs.items():
            self._aps.add_job(_never_called, make_trigger(job), id=name, name=name)
        self._aps.start()
        for job in self.jobs.values():
            self._executor.submit_extra(self._at_start, job)
        log.info("scheduler started: %d job(s)", len(self.jobs))

    def _at_start(self, job: JobConfig) -> None:
        try:
            self.runner.recover(job)
            if job.catch_up == "run_once":
                self.catch_up(job)
        except Exception as exc:
            log.error("job %s: start-up catch-up failed: %s", job.name, redaction.exception_text(exc))

    def catch_up(self, job: JobConfig, now: datetime.datetime | None = None) -> dict[str, Any] | None:
        """Run the most recent missed slot once (``catch_up: run_once``); None when nothing was missed."""
        last = self.runner.store.last_scheduled_slot(job.name)
        last_time = slot_time(last) if last else None
        if last_time is None:
            return None
        missed = latest_slot(job, now or datetime.datetime.now(UTC), after=last_time)
        if missed is None:
            return None
        log.info("job %s: catching up missed slot %s", job.name, slot_text(missed))
        return self.runner.run_slot(job, slot_text(missed))

    def _fire(self, name: str, when: datetime.datetime) -> None:
        job = self.jobs[name]
        try:
            self.runner.recover(job)
            self.runner.run_slot(job, slot_text(when))
        except Exception as exc:  # a store outage must not kill the scheduler thread
            log.error("job %s slot %s: could not run: %s", name, slot_text(when), redaction.exception_text(exc))

    def stop(self) -> None:
        self.stopping.set()
        if self._aps.running:
            self._aps.shutdown(wait=True)


def _never_called() -> None:  # pragma: no cover - _SlotExecutor runs our own function instead
    raise RuntimeError("scheduled jobs run through _SlotExecutor")


# --- for the CLI and the admin API -----------------------------------------------------------------


def find_job(config: BridgeConfig, name: str) -> JobConfig:
    job = config.jobs.get(name)
    if job is None:
        hint = difflib.get_close_matches(name, sorted(config.jobs), n=1)
        known = ", ".join(sorted(config.jobs)) or "none"
        raise BridgeError(f"no job named {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else f" (jobs: {known})"))
    return job


def run_now(store: Store, config: BridgeConfig, plugins: PluginManager, name: str,
            submit: Submit | None = None) -> dict[str, Any]:
    """Run job ``name`` now, once, in slot ``manual-<timestamp>``; returns the finished run record."""
    job = find_job(config, name)
    owner = f"manual:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    runner = JobRunner(store, config, plugins, owner, submit)
    run = runner.run_slot(job, manual_slot(), max_attempts=1)
    if run is None:  # two manual runs in the same millisecond
        raise BridgeError(f"job {name!r} is already being run manually; try again")
    return run


def job_overview(store: Store, config: BridgeConfig, history: int = 1) -> list[dict[str, Any]]:
    """Every configured job with its trigger, policies and last runs (for ``bridge jobs`` and the API)."""
    out = []
    for name, job in sorted(config.jobs.items()):
        out.append({
            "name": name, "type": job.type, "enabled": job.enabled, "channel": job.channel,
            "trigger": {"cron": job.cron, "timezone": job.timezone} if job.cron else
                       {"interval_seconds": job.interval_seconds},
            "catch_up": job.catch_up, "retry": {"max_attempts": job.max_attempts,
                                                "backoff_seconds": job.backoff_seconds},
            "runs": store.job_run_history(name, limit=history),
        })
    return out

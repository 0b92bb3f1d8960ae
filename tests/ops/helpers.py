"""Shared helpers for the operations tests: a job-type plugin whose runs a test scripts, configs."""

from __future__ import annotations

import threading
from typing import Any

from bridge import JobContext, JobType, hookimpl
from bridge.core.config import parse_config
from bridge.testing import plugin_manager


class ScriptedJobs:
    """Job types ``scripted`` (answers from a script: "ok" or an error text to raise) and ``feeder``
    (submits ``settings.payload`` to its channel and moves a watermark)."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def scripted(self, ctx: JobContext) -> dict[str, Any]:
        with self.lock:
            self.calls.append(ctx.name)
            answer = self.answers.pop(0) if self.answers else "ok"
        if answer != "ok":
            raise RuntimeError(answer)
        return {"calls": len(self.calls), "note": "fine"}

    def feeder(self, ctx: JobContext) -> dict[str, Any]:
        seen = int(ctx.get_watermark("count") or 0)
        receipt = ctx.submit(ctx.settings["channel"], ctx.settings["payload"].encode(), {"n": seen})
        ctx.set_watermark("count", str(seen + 1))
        return {"message_id": receipt.message_id}

    @hookimpl
    def bridge_job_types(self) -> list[JobType]:
        return [JobType("scripted", self.scripted), JobType("feeder", self.feeder)]

    def plugins(self):
        return plugin_manager(("ops-test-jobs", self), disabled=("telehealth_policy",))


BASE = {
    "store": "sqlite:///bridge.db",
    "channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["out"]}]}},
    "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
}


def config(tmp_path, plugins, jobs: dict[str, Any] | None = None, **extra: Any):
    data = {**BASE, **extra}
    if jobs is not None:
        data["jobs"] = jobs
    return parse_config(data, config_dir=str(tmp_path), plugins=plugins)

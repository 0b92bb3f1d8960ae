"""Retention: prune old, finished messages per channel, as a job (``type: prune``) or ``bridge prune``.

Why the core and not a plugin: pruning deletes rows from the store and writes the audit log in the
same transaction, and plugins never reach the store (they only get a :class:`~bridge.JobContext`).
So ``prune`` is a job type the core provides itself, next to the job types plugins register; config
validation knows it (``bridge.core.config.CORE_JOB_TYPES``).

A channel opts in with ``retention: {days: 30, statuses: [delivered, filtered]}``. A message is
pruned when it was received more than ``days`` ago, its status is listed, no outbox row of it is
still pending, it has no open hold, and the prescription lifecycle does not point at it. Waiting
(received, processing, routed) and held messages are never pruned, whatever the config says. Its
events, outbox rows and resolved holds go with it; the audit log is never pruned, and every prune
run appends one ``retention.prune`` entry with the counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.core.config import BridgeConfig, JobConfig
    from bridge.core.store import Store

DAY = 86400.0
DEFAULT_MAX_MESSAGES = 10000
PRUNE_SETTINGS = ("max_messages", "channels")


def policies(config: BridgeConfig, now: float, channels: Iterable[str] | None = None
             ) -> dict[str, tuple[float, tuple[str, ...]]]:
    """``{channel: (cutoff timestamp, statuses)}`` for the channels that have a retention policy."""
    wanted = set(channels) if channels is not None else None
    if wanted is not None:
        unknown = sorted(wanted - set(config.channels))
        if unknown:
            raise ConfigError([("channels", f"unknown channel(s) {', '.join(unknown)}")])
    return {name: (now - ch.retention.days * DAY, tuple(ch.retention.statuses))
            for name, ch in config.channels.items()
            if ch.retention is not None and (wanted is None or name in wanted)}


def prune(store: Store, config: BridgeConfig, *, actor: str, dry_run: bool = False,
          limit: int = DEFAULT_MAX_MESSAGES, channels: Iterable[str] | None = None,
          now: float | None = None) -> dict[str, dict[str, int]]:
    """Prune every channel with a retention policy; returns counts per channel."""
    chosen = policies(config, time.time() if now is None else now, channels)
    if not chosen:
        return {}
    return store.prune_messages(chosen, actor=actor, limit=limit, dry_run=dry_run)


def run_prune_job(store: Store, config: BridgeConfig, job: JobConfig) -> dict[str, Any]:
    """The ``prune`` job: settings ``max_messages`` (per channel and run) and ``channels`` (default all)."""
    settings: Mapping[str, Any] = job.settings
    unknown = sorted(set(settings) - set(PRUNE_SETTINGS))
    if unknown:
        raise ConfigError([(f"jobs.{job.name}.settings.{unknown[0]}",
                            f"unknown prune setting (allowed: {', '.join(PRUNE_SETTINGS)})")])
    limit = settings.get("max_messages", DEFAULT_MAX_MESSAGES)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError([(f"jobs.{job.name}.settings.max_messages", f"expected a whole number ≥ 1, got {limit!r}")])
    channels = settings.get("channels")
    counts = prune(store, config, actor=f"job:{job.name}", limit=limit,
                   channels=[channels] if isinstance(channels, str) else channels)
    return {"messages": sum(c["messages"] for c in counts.values()), "channels": len(counts)}

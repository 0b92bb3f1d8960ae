"""Destination and listener state: what an operator (and /readyz, alerts, /metrics) needs at a glance.

Read-only: every number comes from the Store contract (``destination_outbox_activity``,
``destination_attempts``, ``paused_channels``), so every process sharing a store sees the same
state, and from the running engine's sources for whether a listener is up. The states are defined
in docs/operations.md ("Destination states"); :func:`classify` is that definition in code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bridge.core.config import BridgeConfig
from bridge.core.store import Store
from bridge.core.store.destination_reads import AttemptActivity, OutboxActivity
from bridge.errors import StoreError

STATES = ("flowing", "retrying", "failing", "paused")
FAILING_AFTER_SECONDS = 300.0
"""A run of failed sends becomes ``failing`` after this long without a success (sooner when a
delivery gave up for good): long enough to ride out a receiver's restart, short enough to page."""
WINDOW_SECONDS = 3600.0  # "attempts in the last hour"


@dataclass(frozen=True)
class DestinationHealth:
    name: str
    state: str
    backlog: int
    failing_rows: int
    oldest_waiting_at: float | None
    last_success_at: float | None
    last_failure_at: float | None
    failing_since: float | None
    attempts_last_hour: int
    failures_last_hour: int
    dead_letters: int
    last_error: str | None  # may quote a message: shown to analysts and above only
    feeding_channels: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ListenerHealth:
    channel: str
    enabled: bool
    paused: bool
    listener: str  # "up", "down", or "not_here" (disabled, or no source in this process)


def classify(outbox: OutboxActivity, attempts: AttemptActivity, paused: bool, now: float,
             failing_after: float = FAILING_AFTER_SECONDS) -> tuple[str, float | None]:
    """The destination's state and, when its sends are failing, since when (docs/operations.md)."""
    last_success = _newest(outbox.last_success_at, attempts.last_success_at)
    failed_last = attempts.last_failure_at is not None and (
        last_success is None or attempts.last_failure_at > last_success)
    if attempts.attempts == 0 and outbox.failing_rows > 0:
        failed_last = True  # no attempt in the window (a long backoff), but waiting rows have failed
    if failed_last:
        since = attempts.first_failure_after_success_at or outbox.oldest_failing_at
        if attempts.dead_since_success > 0 or since is None or now - since >= failing_after:
            return "failing", since
        return "retrying", since
    if outbox.failing_rows > 0:
        return "retrying", outbox.oldest_failing_at
    return ("paused" if paused else "flowing"), None


def feeding_channels(config: BridgeConfig) -> dict[str, tuple[str, ...]]:
    """Per destination, the enabled channels with a route to it."""
    out: dict[str, list[str]] = {name: [] for name in config.destinations}
    for channel in config.channels.values():
        if not channel.enabled:
            continue
        for name in sorted({d for route in channel.routes for d in route.to}):
            out.setdefault(name, []).append(channel.name)
    return {name: tuple(channels) for name, channels in out.items()}


def destinations(store: Store, config: BridgeConfig, *, now: float | None = None,
                 failing_after: float = FAILING_AFTER_SECONDS) -> list[DestinationHealth]:
    """Every configured destination (and any other the outbox names), sorted by name.

    ``paused``: every channel feeding the destination is paused, so nothing new reaches it (rows
    already in its outbox are still sent)."""
    now = time.time() if now is None else now
    outbox = store.destination_outbox_activity(config.destinations)
    attempts = store.destination_attempts(now - WINDOW_SECONDS)
    paused_channels = set(store.paused_channels())
    feeders = feeding_channels(config)
    out = []
    for name in sorted(set(config.destinations) | set(outbox)):
        held, tried, fed_by = outbox.get(name, OutboxActivity()), attempts.get(name, AttemptActivity()), \
            feeders.get(name, ())
        paused = bool(fed_by) and set(fed_by) <= paused_channels
        state, since = classify(held, tried, paused, now, failing_after)
        out.append(DestinationHealth(
            name=name, state=state, backlog=held.backlog, failing_rows=held.failing_rows,
            oldest_waiting_at=held.oldest_waiting_at,
            last_success_at=_newest(held.last_success_at, tried.last_success_at),
            last_failure_at=tried.last_failure_at, failing_since=since, attempts_last_hour=tried.attempts,
            failures_last_hour=tried.failures, dead_letters=held.dead, last_error=tried.last_error,
            feeding_channels=fed_by))
    return out


def listeners(config: BridgeConfig, paused_channels: Iterable[str], engine: Any = None) -> list[ListenerHealth]:
    """Per configured channel: enabled, paused (in the store), and whether its source listens here."""
    paused = set(paused_channels)
    running: Mapping[str, Any] = getattr(engine, "sources_by_channel", None) or {}
    out = []
    for name, channel in sorted(config.channels.items()):
        source = running.get(name)
        state = "not_here" if source is None or not channel.enabled else ("up" if source_up(source) else "down")
        out.append(ListenerHealth(name, channel.enabled, name in paused, state))
    return out


def source_up(source: Any) -> bool:
    """A source that says whether it listens (its ``listening`` property, which the listener_down
    alert reads too) is asked; any other source the engine started counts as up until it stops."""
    return bool(getattr(source, "listening", True))


def readiness(store: Store, config: BridgeConfig, engine: Any = None) -> tuple[bool, list[str]]:
    """Whether this process can take work: the store answers and every listener it started is up.
    The reasons name what is wrong (channel names and the store's error class, never message data)."""
    problems = []
    try:
        store.schema_version()
        paused = store.paused_channels()
    except StoreError as exc:
        return False, [f"store unreachable: {exc}"]
    for listener in listeners(config, paused, engine):
        if listener.listener == "down":
            problems.append(f"channel {listener.channel}: listener down")
    return not problems, problems


def _newest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None

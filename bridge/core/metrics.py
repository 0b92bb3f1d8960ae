"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Two sources, chosen per metric for what each can answer honestly:

- **The store** (every process sharing it sees the same numbers): messages per channel and status,
  queue depth per channel and per destination, job runs per job and status, and (with a config)
  each destination's state, open holds and paused channels (bridge.core.health). These are gauges —
  counts of rows that exist now — because retention pruning removes rows, and a counter must never
  go down.
- **The engine process** (bridge.core.telemetry): the ``_total`` counters and the ACK and
  intake-to-delivery latency histograms, counted at each event by this process and its worker
  processes; Prometheus sums the nodes. ``render(store)`` without an engine has none of them.

``render(store, engine=None, config=None)`` is what ``/metrics`` serves (docs/operations.md lists
every metric).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.core.telemetry import COUNTERS, HISTOGRAMS, EngineMetrics

if TYPE_CHECKING:
    from bridge.core.engine import Engine
    from bridge.core.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WAITING_STATUSES = ("received", "processing")


# --- the text format -----------------------------------------------------------------------------


def escape_label(value: str) -> str:
    """Label values escape backslash, double quote and line feed."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def sample(name: str, labels: Mapping[str, Any], value: float) -> str:
    if labels:
        inner = ",".join(f'{key}="{escape_label(str(val))}"' for key, val in labels.items())
        return f"{name}{{{inner}}} {format_value(value)}"
    return f"{name} {format_value(value)}"


class Family:
    """One metric family: its HELP and TYPE lines, then its samples."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.lines: list[str] = []

    def add(self, labels: Mapping[str, Any], value: float, suffix: str = "") -> None:
        self.lines.append(sample(self.name + suffix, labels, value))

    def text(self) -> str:
        head = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        return "\n".join(head + self.lines)


# --- rendering -----------------------------------------------------------------------------------


def _per_channel(counts: Mapping[str, Mapping[str, int]], statuses: Iterable[str] | None) -> dict[str, int]:
    return {ch: sum(n for st, n in per.items() if statuses is None or st in statuses) for ch, per in counts.items()}


def message_families(counts: Mapping[str, Mapping[str, int]], channels: Iterable[str]) -> list[Family]:
    names = sorted(set(counts) | set(channels))
    full = {ch: dict(counts.get(ch, {})) for ch in names}
    families = []
    by_status = Family("bridge_channel_messages", "gauge", "Messages in the store, by channel and status.")
    for ch in names:
        for status, n in sorted(full[ch].items()):
            by_status.add({"channel": ch, "status": status}, n)
    families.append(by_status)
    for suffix, statuses, help_text in (
        ("received", None, "Messages received on the channel and still in the store (any status)."),
        ("delivered", ("delivered",), "Messages of the channel delivered to every destination."),
        ("failed", ("failed",), "Messages of the channel that could not be decoded (replayable)."),
        ("dead_lettered", ("dead",),
         "Messages of the channel with at least one dead-lettered delivery (its send or its encode failed)."),
        ("held", ("held",), "Messages of the channel held by a policy for review."),
    ):
        family = Family(f"bridge_channel_messages_{suffix}", "gauge", help_text)
        for ch, n in sorted(_per_channel(full, statuses).items()):
            family.add({"channel": ch}, n)
        families.append(family)
    depth = Family("bridge_channel_queue_depth", "gauge",
                   "Messages of the channel waiting for a worker (received or processing).")
    for ch, n in sorted(_per_channel(full, WAITING_STATUSES).items()):
        depth.add({"channel": ch}, n)
    families.append(depth)
    return families


def outbox_families(outbox: Mapping[str, Mapping[str, int]], destinations: Iterable[str]) -> list[Family]:
    names = sorted(set(outbox) | set(destinations))
    depth = Family("bridge_destination_queue_depth", "gauge", "Outbox rows waiting to be delivered, by destination.")
    rows = Family("bridge_destination_outbox_rows", "gauge", "Outbox rows in the store, by destination and status.")
    for dest in names:
        per = outbox.get(dest, {})
        depth.add({"destination": dest}, per.get("pending", 0))
        for status, n in sorted(per.items()):
            rows.add({"destination": dest, "status": status}, n)
    return [depth, rows]


def job_families(runs: Mapping[str, Mapping[str, int]], last_success: Mapping[str, float]) -> list[Family]:
    by_status = Family("bridge_job_runs", "gauge", "Job runs recorded in the store, by job and status.")
    for job in sorted(runs):
        for status, n in sorted(runs[job].items()):
            by_status.add({"job": job, "status": status}, n)
    success = Family("bridge_job_last_success_timestamp_seconds", "gauge",
                     "When the job's newest successful run finished (Unix time).")
    for job, at in sorted(last_success.items()):
        success.add({"job": job}, at)
    return [by_status, success]


def counter_families(combined: Mapping[str, Any], channels: Iterable[str], destinations: Iterable[str]) -> list[Family]:
    """The engine's counters (this process and its worker processes); configured channels and
    destinations start at zero, so ``rate()`` sees the first increase."""
    zero_for = {"channel": sorted(channels), "destination": sorted(destinations)}
    families = []
    for name, (label_names, help_text) in COUNTERS.items():
        series = dict(combined["counters"].get(name, {}))
        if len(label_names) == 1 and label_names[0] in zero_for:
            for value in zero_for[label_names[0]]:
                series.setdefault((value,), 0.0)
        family = Family(name, "counter", help_text)
        for key, value in sorted(series.items()):
            family.add(dict(zip(label_names, key)), value)
        families.append(family)
    return families


def histogram_families(combined: Mapping[str, Any]) -> list[Family]:
    families = []
    for name, (label_names, buckets, help_text) in HISTOGRAMS.items():
        family = Family(name, "histogram", help_text)
        for key, series in sorted(combined["histograms"].get(name, {}).items()):
            labels = dict(zip(label_names, key))
            running = 0.0
            for bound, count in zip(buckets, series):
                running += count
                family.add({**labels, "le": format_value(bound)}, running, "_bucket")
            family.add({**labels, "le": "+Inf"}, series[-1], "_bucket")
            family.add(labels, series[-2], "_sum")
            family.add(labels, series[-1], "_count")
        families.append(family)
    return families


def health_families(store: Store, config: Any, engine: Engine | None) -> list[Family]:
    """Destination state, listeners, pauses and open holds (bridge.core.health), and build info."""
    from bridge import __version__
    from bridge.core import health

    now = time.time()
    state = Family("bridge_destination_state", "gauge",
                   "1 for the destination's current state (flowing, retrying, failing, paused), 0 for the others.")
    oldest = Family("bridge_destination_oldest_waiting_timestamp_seconds", "gauge",
                    "When the oldest row waiting for the destination was queued (Unix time; absent when none waits).")
    success = Family("bridge_destination_last_success_timestamp_seconds", "gauge",
                     "When the destination last accepted a delivery (Unix time).")
    for dest in health.destinations(store, config, now=now):
        for name in health.STATES:
            state.add({"destination": dest.name, "state": name}, 1 if dest.state == name else 0)
        if dest.oldest_waiting_at is not None:
            oldest.add({"destination": dest.name}, dest.oldest_waiting_at)
        if dest.last_success_at is not None:
            success.add({"destination": dest.name}, dest.last_success_at)
    paused_channels = store.paused_channels()
    up = Family("bridge_channel_listener_up", "gauge",
                "1 when the channel's source listens in this process, 0 when it is down.")
    paused = Family("bridge_channel_paused", "gauge",
                    "1 when the channel is paused (workers do not take its messages).")
    for listener in health.listeners(config, paused_channels, engine):
        paused.add({"channel": listener.channel}, 1 if listener.paused else 0)
        if listener.listener != "not_here":
            up.add({"channel": listener.channel}, 1 if listener.listener == "up" else 0)
    holds = Family("bridge_holds_open", "gauge", "Held messages waiting for a review (open holds).")
    holds.add({}, len(store.holds("open")))
    build = Family("bridge_build_info", "gauge", "Always 1; the labels say which build answers.")
    build.add({"version": __version__, "python_version": platform.python_version()}, 1)
    return [state, oldest, success, up, paused, holds, build, *journal_families(engine)]


def journal_families(engine: Any) -> list[Family]:
    """Intake journals of this process (docs/mllp.md): what the mover has not yet moved into the store."""
    journals = getattr(engine, "journals", None) or {}
    if not journals:
        return []
    entries = Family("bridge_intake_journal_entries", "gauge",
                     "Acknowledged messages in the channel's intake journal not yet moved into the store.")
    size = Family("bridge_intake_journal_bytes", "gauge",
                  "Bytes of the channel's intake journal not yet moved into the store.")
    full = Family("bridge_intake_journal_full", "gauge",
                  "1 while the intake journal is at its max_bytes and the listener does not read.")
    for channel, journal in sorted(journals.items()):
        entries.add({"channel": channel}, journal.unmoved_entries)
        size.add({"channel": channel}, journal.unmoved_bytes)
        full.add({"channel": channel}, 1 if journal.full else 0)
    return [entries, size, full]


def render(store: Store, engine: Engine | None = None, config: Any = None) -> str:
    """The metrics page. With ``engine``, configured channels and destinations appear even at zero,
    and the counters and histograms of the engine (and its worker processes) are included. With a
    config (the engine's, or the admin app's), destination state, listener and pause gauges too."""
    config = config if config is not None else getattr(engine, "config", None)
    channels = config.channels if config is not None else {}
    destinations = config.destinations if config is not None else {}
    families = message_families(store.counts(), channels)
    families += outbox_families(store.outbox_counts(), destinations)
    families += job_families(store.job_run_counts(), store.last_job_success())
    if config is not None:
        families += health_families(store, config, engine)
    metrics = getattr(engine, "metrics", None)
    if isinstance(metrics, EngineMetrics):
        combined = metrics.combined()
        families += counter_families(combined, channels, destinations)
        families += histogram_families(combined)
    return "\n".join(f.text() for f in families) + "\n"

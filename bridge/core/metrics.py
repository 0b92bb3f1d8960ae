"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Two sources, chosen per metric for what each can answer honestly:

- **The store** (every process sharing it sees the same numbers): messages per channel and status,
  queue depth per channel and per destination, job runs per job and status. These are gauges —
  counts of rows that exist now — because retention pruning removes rows, and a counter must never
  go down.
- **The engine process** (in-process counters): the intake-to-delivery latency histogram. A
  Prometheus histogram's buckets are counters; computing them from stored rows would make them shrink
  when old rows are pruned, so each engine counts its own deliveries (``received_at`` of the message
  to the moment its outbox row was delivered) and Prometheus sums the engines. ``render(store)``
  without an engine therefore has no latency histogram.

``render(store, engine=None)`` is what ``/metrics`` serves.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.core.engine import Engine
    from bridge.core.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                                      3600.0)
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


# --- in-process histogram ------------------------------------------------------------------------


class Histogram:
    """A thread-safe histogram keyed by a tuple of label values (cumulative buckets on output)."""

    def __init__(self, label_names: Sequence[str], buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.label_names = tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], list[float]] = {}  # per-bucket counts..., sum, count

    def observe(self, labels: Sequence[str], value: float) -> None:
        key = tuple(str(v) for v in labels)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    series[index] += 1
                    break
            series[-2] += value
            series[-1] += 1

    def add_to(self, family: Family) -> None:
        with self._lock:
            snapshot = {k: list(v) for k, v in self._series.items()}
        for key, series in sorted(snapshot.items()):
            labels = dict(zip(self.label_names, key))
            running = 0.0
            for bound, count in zip(self.buckets, series):
                running += count
                family.add({**labels, "le": format_value(bound)}, running, "_bucket")
            family.add({**labels, "le": "+Inf"}, series[-1], "_bucket")
            family.add(labels, series[-2], "_sum")
            family.add(labels, series[-1], "_count")


class EngineMetrics:
    """What one engine process counts itself (see the module docstring for why)."""

    def __init__(self) -> None:
        self.delivery_latency = Histogram(("channel", "destination"))

    def delivered(self, store: Store, message_id: int, destination: str, at: float | None = None) -> None:
        """Record one delivered outbox row: seconds from the message's intake to now."""
        intake = store.message_intake(message_id)
        if intake is not None:
            channel, received_at = intake
            self.delivery_latency.observe((channel, destination), max(0.0, (at or time.time()) - received_at))


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


def render(store: Store, engine: Engine | None = None) -> str:
    """The metrics page. With ``engine``, configured channels and destinations appear even at zero,
    and the engine's in-process latency histogram is included."""
    channels = engine.config.channels if engine is not None else {}
    destinations = engine.config.destinations if engine is not None else {}
    families = message_families(store.counts(), channels)
    families += outbox_families(store.outbox_counts(), destinations)
    families += job_families(store.job_run_counts(), store.last_job_success())
    metrics = getattr(engine, "metrics", None)
    if isinstance(metrics, EngineMetrics):
        latency = Family("bridge_delivery_latency_seconds", "histogram",
                         "Seconds from a message's intake to the delivery of one of its outbox rows "
                         "(counted by this engine process).")
        metrics.delivery_latency.add_to(latency)
        families.append(latency)
    return "\n".join(f.text() for f in families) + "\n"

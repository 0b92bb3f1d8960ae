"""What an engine counts at the moment things happen: Prometheus counters and histograms.

Why count at the event and not read the store: rows are pruned by retention, so a count of rows
falls, and a Prometheus counter must never fall. Each process counts in memory what it did, right
after the store confirmed it (a message committed, a result written, an outcome settled), so work
whose lease was lost is not counted twice.

Several processes, several nodes. With ``engine: {processes: N}`` the workers and deliverers run in
child processes that have no web listener: each child writes a snapshot of its counts every
``SHARE_SECONDS`` (and when it stops) as ``worker-PID.json`` into a directory its parent made and
named in ``BRIDGE_METRICS_DIR``; the parent's ``/metrics`` adds them to its own. A child that died
leaves its last snapshot, so the sum never falls while the parent runs; the parent removes the
directory when it stops (a restart resets the counters, which Prometheus' ``rate()`` expects).
Across nodes nothing is shared: each node's ``/metrics`` reports that node's work, and Prometheus
adds the nodes up (``sum by (destination) (rate(...))``), the usual Prometheus way.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.core.store import Store
    from bridge.core.store.base import DeliveryOutcome, MessageClaim, ProcessingResult

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "BRIDGE_METRICS_DIR"
SHARE_SECONDS = 2.0
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024  # a worker's snapshot is a few KB; anything bigger is not ours
LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                                      3600.0)
ACK_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counter:
    """A thread-safe counter keyed by a tuple of label values; it only goes up."""

    def __init__(self, label_names: Sequence[str]) -> None:
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: Sequence[str], amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = tuple(str(v) for v in labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def snapshot(self) -> dict[tuple[str, ...], float]:
        with self._lock:
            return dict(self._values)


class Histogram:
    """A thread-safe histogram keyed by a tuple of label values (per-bucket counts, then sum, count)."""

    def __init__(self, label_names: Sequence[str], buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.label_names = tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: Sequence[str], value: float) -> None:
        key = tuple(str(v) for v in labels)
        index = bisect.bisect_left(self.buckets, value)  # the first bound >= value (len: only +Inf)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.buckets) + 3)
            series[index] += 1
            series[-2] += value
            series[-1] += 1

    def observer(self, labels: Sequence[str]) -> Callable[[float], None]:
        """``observe`` for one series, its key and list made once: for hot paths (a listener's ACKs)."""
        key = tuple(str(v) for v in labels)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 3))
        buckets, lock, find = self.buckets, self._lock, bisect.bisect_left

        def observe(value: float) -> None:
            index = find(buckets, value)
            with lock:
                series[index] += 1
                series[-2] += value
                series[-1] += 1

        return observe

    def snapshot(self) -> dict[tuple[str, ...], list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self._series.items()}


# name -> (label names, HELP): the counters every engine process keeps
COUNTERS: dict[str, tuple[tuple[str, ...], str]] = {
    "bridge_messages_received_total": (("channel",), "Messages committed to the store by the intake (duplicates not "
                                                     "included)."),
    "bridge_messages_duplicate_total": (("channel",), "Messages the intake recognised as resends of stored ones."),
    "bridge_messages_decoded_total": (("channel",), "Messages a worker decoded into records."),
    "bridge_messages_failed_total": (("channel", "stage"), "Messages that failed (stage: decode, map, ...): "
                                                            "kept and replayable."),
    "bridge_messages_routed_total": (("channel",), "Messages routed to at least one destination."),
    "bridge_deliveries_total": (("destination",), "Outbox rows delivered to the destination."),
    "bridge_delivery_attempts_total": (("destination",), "Sends attempted to the destination."),
    "bridge_delivery_failures_total": (("destination",), "Sends that failed (to be retried, or given up)."),
    "bridge_dead_letters_total": (("destination", "stage"), "Outbox rows that failed for good (stage encode: the "
                                                            "format refused it; send: its sends failed)."),
    "bridge_policy_decisions_total": (("channel", "outcome"), "Policy gate decisions, one per judged message."),
    "bridge_policy_rule_results_total": (("rule", "outcome"), "Rule results inside policy decisions."),
}
# name -> (label names, buckets, HELP)
HISTOGRAMS: dict[str, tuple[tuple[str, ...], tuple[float, ...], str]] = {
    "bridge_ack_latency_seconds": (("channel",), ACK_BUCKETS, "Seconds from a frame's arrival on a listener to its "
                                                              "acknowledgement being written."),
    "bridge_delivery_latency_seconds": (("channel", "destination"), LATENCY_BUCKETS,
                                        "Seconds from a message's intake to the delivery of one of its outbox rows."),
}


class EngineMetrics:
    """The counters and histograms of one engine process (see the module docstring)."""

    def __init__(self) -> None:
        self.counters = {name: Counter(labels) for name, (labels, _) in COUNTERS.items()}
        self.histograms = {name: Histogram(labels, buckets) for name, (labels, buckets, _) in HISTOGRAMS.items()}
        self.delivery_latency = self.histograms["bridge_delivery_latency_seconds"]
        self.share_dir: str | None = None  # the parent: where its worker processes write their snapshots
        self._share_target: Path | None = None  # a worker process: the file it writes its snapshot to

    def inc(self, name: str, *labels: str, amount: float = 1.0) -> None:
        self.counters[name].inc(labels, amount)

    # --- the events --------------------------------------------------------------------------

    def received(self, channel: str, stored: Iterable[Any]) -> None:
        """A batch the store committed: ``(id, duplicate)`` pairs, or the exception of one not stored."""
        new = duplicates = 0
        for outcome in stored:
            if isinstance(outcome, BaseException):
                continue
            if outcome[1]:
                duplicates += 1
            else:
                new += 1
        if new:
            self.inc("bridge_messages_received_total", channel, amount=new)
        if duplicates:
            self.inc("bridge_messages_duplicate_total", channel, amount=duplicates)

    def processed(self, claim: MessageClaim, result: ProcessingResult) -> None:
        """A worker's result, once the store wrote it."""
        channel = claim.channel
        kinds = [kind for kind, _ in result.events]
        if "decoded" in kinds:
            self.inc("bridge_messages_decoded_total", channel)
        if result.status == "failed":
            stage = next((k[:-len("_failed")] for k in kinds if k.endswith("_failed")), "unknown")
            self.inc("bridge_messages_failed_total", channel, stage)
        if result.status == "routed":
            self.inc("bridge_messages_routed_total", channel)
        for row in result.outbox:
            if getattr(row, "error", None):
                self.inc("bridge_dead_letters_total", row.destination, "encode")
        for kind, detail in result.events:
            if kind == "policy":
                self.inc("bridge_policy_decisions_total", channel, str(detail.get("outcome")))
                for rule in detail.get("rules") or ():
                    self.inc("bridge_policy_rule_results_total", str(rule.get("id")), str(rule.get("outcome")))

    def settled(self, store: Store, outcomes: Sequence[DeliveryOutcome], settled: Sequence[str]) -> None:
        """Delivery outcomes the store wrote (``lease_lost`` ones were not this process's to count)."""
        delivered = []
        for outcome, status in zip(outcomes, settled):
            if status == "lease_lost":
                continue
            destination = outcome.claim.row.destination
            self.inc("bridge_delivery_attempts_total", destination)
            if status == "delivered":
                self.inc("bridge_deliveries_total", destination)
                delivered.append((outcome.claim.row.message_id, destination))
            else:
                self.inc("bridge_delivery_failures_total", destination)
                if status == "dead":
                    self.inc("bridge_dead_letters_total", destination, "send")
        self.delivered_many(store, delivered)

    def delivered(self, store: Store, message_id: int, destination: str, at: float | None = None) -> None:
        """Record one delivered outbox row: seconds from the message's intake to now."""
        self.delivered_many(store, [(message_id, destination)], at)

    def delivered_many(self, store: Store, rows: Sequence[tuple[int, str]], at: float | None = None) -> None:
        """Record delivered outbox rows ``(message id, destination)``: their intake times are read in
        one query (a query per row was a round trip per message on PostgreSQL)."""
        if not rows:
            return
        intakes = store.message_intakes([message_id for message_id, _ in rows])
        now = at or time.time()
        for message_id, destination in rows:
            if (intake := intakes.get(message_id)) is not None:
                channel, received_at = intake
                self.delivery_latency.observe((channel, destination), max(0.0, now - received_at))

    def ack_observer(self, channel: str) -> Callable[[float], None]:
        """What a listener of ``channel`` calls with each answer's latency (SourceContext.observe_ack)."""
        return self.histograms["bridge_ack_latency_seconds"].observer((channel,))

    # --- sharing between processes ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """This process's counts as JSON-able data (label tuples become lists)."""
        return {
            "counters": {n: [[list(k), v] for k, v in c.snapshot().items()] for n, c in self.counters.items()},
            "histograms": {n: [[list(k), s] for k, s in h.snapshot().items()] for n, h in self.histograms.items()},
        }

    def combined(self) -> dict[str, Any]:
        """This process's counts plus the snapshots its worker processes shared."""
        return merge([self.snapshot(), *read_snapshots(self.share_dir)])

    def open_share_dir(self) -> str:
        """The parent, before starting worker processes: the directory they will write into."""
        self.share_dir = tempfile.mkdtemp(prefix="bridge-metrics-")
        return self.share_dir

    def close_share_dir(self) -> None:
        if self.share_dir:
            shutil.rmtree(self.share_dir, ignore_errors=True)
            self.share_dir = None

    def share_from_worker(self, stop: threading.Event, directory: str | None = None) -> threading.Thread | None:
        """In a worker process: write this process's snapshot every ``SHARE_SECONDS`` and once more
        when ``stop`` is set. Returns the thread (None when no directory was given)."""
        directory = directory or os.environ.get(METRICS_DIR_ENV)
        if not directory:
            return None
        target = self._share_target = Path(directory) / f"worker-{os.getpid()}.json"

        def loop() -> None:
            while not stop.wait(SHARE_SECONDS):
                self.write_snapshot(target)

        thread = threading.Thread(target=loop, name="metrics-share", daemon=True)
        thread.start()
        return thread

    def share_final(self) -> None:
        """In a worker process, after its threads stopped: the last counts, for the parent to keep."""
        if self._share_target is not None:
            self.write_snapshot(self._share_target)

    def write_snapshot(self, target: Path) -> None:
        """Atomically (write, then rename), so the parent never reads half a snapshot."""
        temporary = target.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(self.snapshot()), encoding="utf-8")
            os.replace(temporary, target)
        except OSError as exc:
            log.warning("metrics: could not share this worker's counts: %s", exc)


def read_snapshots(directory: str | None) -> list[dict[str, Any]]:
    """The snapshots worker processes wrote (unreadable or oversized files are skipped, and said)."""
    if not directory or not os.path.isdir(directory):
        return []
    out = []
    for path in sorted(Path(directory).glob("worker-*.json")):
        try:
            if path.stat().st_size > MAX_SNAPSHOT_BYTES:
                raise ValueError("too large")
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                out.append(data)
        except (OSError, ValueError) as exc:
            log.warning("metrics: skipped the snapshot %s: %s", path.name, exc)
    return out


def merge(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Add snapshots up, series by series: counters and histogram buckets are sums across processes."""
    counters: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in COUNTERS}
    histograms: dict[str, dict[tuple[str, ...], list[float]]] = {name: {} for name in HISTOGRAMS}
    for snap in snapshots:
        for name, series in (snap.get("counters") or {}).items():
            if name in counters:
                for labels, value in series:
                    key = tuple(labels)
                    counters[name][key] = counters[name].get(key, 0.0) + float(value)
        for name, series in (snap.get("histograms") or {}).items():
            if name in histograms:
                width = len(HISTOGRAMS[name][1]) + 3
                for labels, values in series:
                    if len(values) != width:
                        continue  # another version's buckets: not addable
                    total = histograms[name].setdefault(tuple(labels), [0.0] * width)
                    for index, value in enumerate(values):
                        total[index] += float(value)
    return {"counters": counters, "histograms": histograms}

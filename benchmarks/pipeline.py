"""End-to-end pipeline benchmark: ``bridge run`` receiving HL7v2 over MLLP and delivering FHIR files.

What it measures, in one run:

- ``loop``: a plain single-threaded decode (hl7v2) + encode (FHIR R4) loop over the same messages,
  in this process: the engine's own translation speed, the baseline.
- ``end to end``: ``bridge run`` as a real process (with ``engine.processes`` worker children) and an
  MLLP channel routing ADT^A04 to a FHIR file destination; ``--senders`` connections (4) each send a
  message and wait for its ACK before the next. Reported: delivered msg/s (first send to last
  delivery), the ratio to the loop, the intake rate, ACK p50/p99 while the engine processes, and the
  RSS of the engine's processes at the start, half way and after ``--messages`` messages.
- ``backlog``: messages preloaded into a stopped engine's store (``--backlog`` sizes, 1,000 and
  100,000 by default), then ``bridge run`` drains them; the drain rate (first to last delivery) of
  the large backlog should be within 20% of the small one.

The messages are the example ADT^A04 (examples/messages/adt-a04-telehealth.hl7) with a fresh control
id, patient (``--patients`` distinct MRNs) and visit number each. Usage::

    .venv/bin/python benchmarks/pipeline.py [--messages 5000] [--processes 2] [--backlog 1000 --backlog 100000]

Targets (2-core machine): delivered >= 0.5x the loop, ACK p99 <= 50 ms, the 100,000 backlog drains
within 20% of the 1,000 one, RSS flat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7"
SB, EB = b"\x0b", b"\x1c\x0d"


def messages(count: int, patients: int, tag: str) -> list[bytes]:
    """``count`` ADT^A04s from the example: control id, MRN (PID-3) and visit number (PV1-19) vary."""
    lines = EXAMPLE.read_bytes().decode("ascii").replace("\n", "\r").strip("\r").split("\r")
    out = []
    for n in range(count):
        mrn, visit = f"MRN{n % patients:08d}", f"V{tag}{n:08d}"
        segments = []
        for line in lines:
            fields = line.split("|")
            if fields[0] == "MSH":
                fields[9] = f"BENCH-{tag}-{n}"
            elif fields[0] == "PID":
                fields[3] = f"{mrn}^^^RIVERBEND^MR"
            elif fields[0] == "PV1":
                fields[19] = f"{visit}^^^RIVERBEND^VN"
            segments.append("|".join(fields))
        out.append(("\r".join(segments) + "\r").encode("ascii"))
    return out


# --- the baseline: decode + encode in one thread ---------------------------------------------------


def loop_rate(raws: Sequence[bytes]) -> float:
    from bridge.testing import plugin_manager

    plugins = plugin_manager()
    hl7, fhir = plugins.format("hl7v2"), plugins.format("fhir")
    started = time.perf_counter()
    for n, raw in enumerate(raws):
        # the same work as the engine's: decode, the message's envelope, encode (with the envelope)
        records = hl7.decode(raw, {})
        envelope = hl7.envelope(raw) if hl7.envelope is not None else None
        fhir.encode(records, {"message_control_id": f"TB{n}", "trace_id": f"{n:032x}", "config_dir": str(ROOT),
                              "source_envelope": envelope})
    return len(raws) / (time.perf_counter() - started)


# --- the engine as a real process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, port: int, args: argparse.Namespace) -> Path:
    config = folder / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///bridge.db
        engine: {{processes: {args.processes}, workers: {args.workers}, deliverers: {args.deliverers},
                  batch_size: {args.batch_size}}}
        channels:
          adt:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            routes: [{{to: [fhir-files]}}]
        destinations:
          fhir-files: {{url: "file://out", format: fhir}}
    """))
    return config


class Engine:
    """``bridge run`` on a config, with its store read for progress."""

    def __init__(self, config: Path):
        self.config = config
        self.process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)],
                                        cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env={**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"})
        self.db = config.parent / "bridge.db"

    def delivered(self) -> int:
        if not self.db.exists():
            return 0
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'").fetchone()[0]
        except sqlite3.OperationalError:  # not migrated yet
            return 0
        finally:
            conn.close()

    def delivered_span(self) -> tuple[float, float]:
        """Epoch seconds of the first and the last delivery, as the engine recorded them."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute("SELECT MIN(delivered_at), MAX(delivered_at) FROM outbox"
                                " WHERE status = 'delivered'").fetchone()
        finally:
            conn.close()

    def wait_delivered(self, count: int, timeout: float, on_progress=None) -> tuple[float, float]:
        """Wait until ``count`` outbox rows are delivered; returns the first and last delivery's epoch time."""
        wait_for_deliveries(count, timeout, self.delivered, [self.process], on_progress)
        return self.delivered_span()

    def rss_mb(self) -> float:
        """Resident memory of ``bridge run`` and its worker children, in MB."""
        return rss_mb([self.process.pid])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_for_deliveries(count: int, timeout: float, delivered: Callable[[], int],
                        engines: Sequence[subprocess.Popen], on_progress=None) -> None:
    """Poll ``delivered()`` until it reaches ``count``, backing off from 50 ms to 1 s.

    Delivery times come from the store (``delivered_at``), not from when this poll noticed, so the
    poll can back off: counting 100,000 rows twenty times a second took CPU from the engine it measured
    and kept a reader in the way of its WAL checkpoints."""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        done = delivered()
        if on_progress:
            on_progress(done)
        if done >= count:
            return
        for engine in engines:
            if engine.poll() is not None:
                raise SystemExit(f"bridge run exited: {engine.stderr.read().decode()[-2000:]}")
        time.sleep(min(1.0, 0.05 + (time.monotonic() - started) / 50))
    raise SystemExit(f"only {delivered()} of {count} delivered after {timeout:.0f} s")


def rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of these processes and their children, in MB."""
    total = 0
    for pid in [p for parent in pids for p in (parent, *children(parent))]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


async def send_all(port: int, raws: Sequence[bytes], senders: int) -> tuple[list[float], int, float]:
    """Each sender sends its share one at a time, waiting for the ACK; (latencies, non-AA, seconds)."""
    latencies: list[float] = []
    errors = 0

    async def sender(share: Sequence[bytes]) -> None:
        nonlocal errors
        for attempt in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"the MLLP listener on port {port} never accepted")
        for raw in share:
            began = time.perf_counter()
            writer.write(SB + raw + EB)
            frame = await reader.readuntil(EB)
            latencies.append(time.perf_counter() - began)
            errors += b"MSA|AA|" not in frame
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender(raws[i::senders]) for i in range(senders)))
    return latencies, errors, time.perf_counter() - started


def wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the MLLP listener on port {port} never came up")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else float("nan")


class DiskProbe:
    """The ACK's floor, measured beside it: an ACK waits for an ``fdatasync`` of the store's WAL that began
    after the message's commit, so its latency can never beat the disk's. This thread writes 4 KB and
    ``fdatasync``s a file in the store's folder every 20 ms while the senders run, and keeps each flush's
    duration (its own load on the disk is one small flush per 20 ms)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "disk-probe"
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)

    def __enter__(self) -> DiskProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self._stop.wait(0.02):
                os.write(fd, b"x" * 4096)
                began = time.perf_counter()
                os.fdatasync(fd)
                self.seconds.append(time.perf_counter() - began)
        finally:
            os.close(fd)


def end_to_end(args: argparse.Namespace, raws: Sequence[bytes]) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="pipeline-bench-", dir=args.dir))
    port = free_port()
    engine = Engine(write_config(folder, port, args))
    try:
        wait_listening(port)
        time.sleep(1.0)  # the worker children start and open the store
        rss_start = engine.rss_mb()
        started = time.time()
        with DiskProbe(folder) as disk:
            latencies, errors, send_seconds = asyncio.run(send_all(port, raws, args.senders))
        rss_half: list[float] = []
        _, finished = engine.wait_delivered(
            len(raws), args.timeout,
            lambda done: rss_half.append(engine.rss_mb()) if done >= len(raws) // 2 and not rss_half else None)
        rss_end = engine.rss_mb()
    finally:
        engine.stop()
    return {"delivered": len(raws) / (finished - started), "intake": len(raws) / send_seconds,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "non_aa": errors,
            "disk_p50": percentile(disk.seconds, 50), "disk_p99": percentile(disk.seconds, 99),
            "rss_start": rss_start, "rss_half": rss_half[0] if rss_half else float("nan"), "rss_end": rss_end}


def preload(config: Path, raws: Sequence[bytes]) -> None:
    """Store ``raws`` through the real intake (peek, order key, dedupe key) without running the engine."""
    from bridge.core.config import load_config
    from bridge.core.intake import Intake
    from bridge.core.store import open_store
    from bridge.testing import plugin_manager

    plugins = plugin_manager()
    settings = load_config(config, plugins)
    store = open_store(settings.store_url)
    store.max_batch = 2000
    intake = Intake(store, plugins.formats())
    for start in range(0, len(raws), 2000):
        intake.submit_many(settings.channels["adt"], [(raw, {}, None) for raw in raws[start:start + 2000]])
    store.close()


def drain_rate(args: argparse.Namespace, size: int) -> float:
    """Preload ``size`` messages, start ``bridge run``, and time first to last delivery."""
    folder = Path(tempfile.mkdtemp(prefix=f"pipeline-backlog-{size}-", dir=args.dir))
    config = write_config(folder, free_port(), args)
    preload(config, messages(size, args.patients, f"B{size}"))
    engine = Engine(config)
    try:
        first, last = engine.wait_delivered(size, args.timeout + size / 50)
    finally:
        engine.stop()
    return size / (last - first) if last > first else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="end-to-end messages (the issue asks 100000)")
    parser.add_argument("--loop-messages", type=int, default=2000, help="messages for the decode+encode loop")
    parser.add_argument("--patients", type=int, default=1000, help="distinct patients (order keys)")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2, help="engine.processes (worker children)")
    parser.add_argument("--workers", type=int, default=2, help="engine.workers per process")
    parser.add_argument("--deliverers", type=int, default=4,
                        help="engine.deliverers per process (the file destination waits on two fsyncs per file)")
    parser.add_argument("--batch-size", type=int, default=4, help="engine.batch_size (the engine's default)")
    parser.add_argument("--backlog", type=int, action="append",
                        help="backlog sizes to drain (default: 1000 and 100000; 0 to skip)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for deliveries")
    parser.add_argument("--dir", help="folder for the stores (default: the system's temporary folder)")
    args = parser.parse_args(argv)
    backlogs = [b for b in (args.backlog or [1000, 100000]) if b > 0]

    print(f"pipeline benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s); engine: "
          f"processes={args.processes} workers={args.workers} deliverers={args.deliverers} "
          f"batch_size={args.batch_size}; {args.senders} MLLP senders; {args.patients} patients")
    loop = loop_rate(messages(args.loop_messages, args.patients, "L"))
    print(f"decode+encode loop (1 thread)   : {loop:8.0f} msg/s   ({args.loop_messages} messages)")
    e2e = end_to_end(args, messages(args.messages, args.patients, "E"))
    print(f"end to end, delivered            : {e2e['delivered']:8.0f} msg/s   ({args.messages} messages)"
          f"   = {e2e['delivered'] / loop:.2f}x the loop (target >= 0.5x)")
    print(f"intake (ACKed)                   : {e2e['intake']:8.0f} msg/s   non-AA: {e2e['non_aa']:.0f}")
    print(f"ACK while processing             : p50 {e2e['p50']:.1f} ms, p99 {e2e['p99']:.1f} ms (target p99 <= 50 ms)")
    print(f"the disk's fdatasync meanwhile   : p50 {e2e['disk_p50']:.1f} ms, p99 {e2e['disk_p99']:.1f} ms"
          " (the floor under an ACK: it waits for one WAL flush begun after its commit)")
    print(f"RSS of bridge run + workers      : start {e2e['rss_start']:.0f} MB, half way {e2e['rss_half']:.0f} MB,"
          f" after {args.messages} {e2e['rss_end']:.0f} MB")
    rates = {size: drain_rate(args, size) for size in backlogs}
    for size, rate in rates.items():
        print(f"backlog of {size:>7} drains at     : {rate:8.0f} msg/s")
    if len(rates) >= 2:
        small, large = rates[min(rates)], rates[max(rates)]
        print(f"large / small backlog drain rate : {large / small:.2f} (target >= 0.80)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

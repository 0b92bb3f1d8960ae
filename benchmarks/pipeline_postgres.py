"""The pipeline benchmark on PostgreSQL: one node, then two nodes sharing one database.

Same measurement as ``benchmarks/pipeline.py`` (whose message generator, decode+encode loop, MLLP
senders and percentiles it reuses): ``bridge run`` receiving HL7v2 ADT^A04 over MLLP from
``--senders`` connections (each waits for its ACK) and delivering FHIR files, beside the plain
single-threaded decode + encode loop on the same messages in the same run. The store is a fresh
PostgreSQL database per run (created on ``--server``, dropped afterwards).

- ``one node``: one ``bridge run`` (with ``engine.processes`` worker children and
  ``engine.delivery_processes`` delivery children).
- ``two nodes``: two ``bridge run`` processes, one config, one database; their MLLP listeners share
  the port (``reuse_port``), so the kernel spreads the senders' connections between them.

Reported per run: delivered msg/s (first send to last delivery), the ratio to the loop, the intake
rate, ACK p50/p99 while processing, RSS of the nodes at the start and the end, and the CPU per
delivered message (user + system, from /proc, over the same span) of the nodes (with their worker
children), of every PostgreSQL server process on this host, and of this script (senders, poll),
beside the loop's time per message: on a 2-core host the three share the cores. Usage::

    .venv/bin/python benchmarks/pipeline_postgres.py [--messages 5000] [--processes 1] [--delivery-processes 1] \
        [--server postgresql://postgres@127.0.0.1:5432]

Targets (2-core machine): one node delivered >= 0.5x the loop; two nodes >= one node.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline  # noqa: E402  (the SQLite benchmark: messages, loop, senders, percentiles)


@contextmanager
def fresh_database(server: str):
    name = f"bridge_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_config(folder: Path, url: str, port: int, args: argparse.Namespace) -> Path:
    config = folder / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: {url}?pool_size={args.pool_size}
        engine: {{processes: {args.processes}, delivery_processes: {args.delivery_processes},
                  workers: {args.workers}, deliverers: {args.deliverers}, batch_size: {args.batch_size}}}
        channels:
          adt:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            options: {{reuse_port: true}}
            routes: [{{to: [fhir-files]}}]
        destinations:
          fhir-files: {{url: "file://out", format: fhir}}
    """))
    return config


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of these processes so far (from /proc; a process gone since counts nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def server_pids() -> list[int]:
    """Every PostgreSQL server process on this host (postmaster, backends, WAL writer, checkpointer...):
    the benchmark's server is local, and other databases' clients are paused while it runs."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class CPU:
    """CPU seconds used between ``start`` and ``stop`` by the nodes (with their worker children), the
    PostgreSQL server and this process (the MLLP senders and the delivery poll)."""

    def __init__(self, nodes: "Nodes"):
        self.nodes = nodes

    def sample(self) -> dict[str, float]:
        node_pids = [p for e in self.nodes.engines for p in (e.pid, *pipeline.children(e.pid))]
        return {"nodes": cpu_seconds(node_pids), "server": cpu_seconds(server_pids()),
                "senders": cpu_seconds([os.getpid()])}

    def start(self) -> None:
        self.started = self.sample()

    def stop(self) -> dict[str, float]:
        return {name: value - self.started[name] for name, value in self.sample().items()}


class Nodes:
    """``count`` ``bridge run`` processes on one config."""

    def __init__(self, config: Path, url: str, count: int):
        self.url = url
        self.engines = [subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(config)],
                                         cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         env={**os.environ, "BRIDGE_LOG_LEVEL": "WARNING"})
                        for _ in range(count)]

    def delivered(self) -> int:
        try:
            with psycopg.connect(self.url, connect_timeout=5) as conn:
                return conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'").fetchone()[0]
        except psycopg.Error:  # not migrated yet
            return 0

    def wait_delivered(self, count: int, timeout: float) -> float:
        """Wait until ``count`` rows are delivered; returns the last delivery's epoch time, from the store
        (so the poll can back off and leave the server's CPU to the engines; see pipeline.py)."""
        pipeline.wait_for_deliveries(count, timeout, self.delivered, self.engines)
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return conn.execute("SELECT MAX(delivered_at) FROM outbox WHERE status = 'delivered'").fetchone()[0]

    def rss_mb(self) -> float:
        return pipeline.rss_mb([engine.pid for engine in self.engines])

    def stop(self) -> None:
        for engine in self.engines:
            engine.terminate()
        for engine in self.engines:
            try:
                engine.wait(timeout=30)
            except subprocess.TimeoutExpired:
                engine.kill()


def run(args: argparse.Namespace, nodes: int, raws: Sequence[bytes]) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix=f"pipeline-pg-{nodes}-", dir=args.dir))
    port = pipeline.free_port()
    with fresh_database(args.server) as url:
        engines = Nodes(write_config(folder, url, port, args), url, nodes)
        try:
            pipeline.wait_listening(port)
            time.sleep(2.0)  # every node (and its worker children) is up and has migrated/opened the store
            rss_start = engines.rss_mb()
            cpu = CPU(engines)
            cpu.start()
            started = time.time()
            latencies, errors, send_seconds = asyncio.run(pipeline.send_all(port, raws, args.senders))
            finished = engines.wait_delivered(len(raws), args.timeout)
            rss_end = engines.rss_mb()
            used = cpu.stop()
        finally:
            engines.stop()
            shutil.rmtree(folder, ignore_errors=True)  # the delivered files: about 70 MB a run
    return {"delivered": len(raws) / (finished - started), "intake": len(raws) / send_seconds,
            "p50": pipeline.percentile(latencies, 50), "p99": pipeline.percentile(latencies, 99),
            "non_aa": errors, "rss_start": rss_start, "rss_end": rss_end,
            **{f"cpu_{name}": seconds * 1000 / len(raws) for name, seconds in used.items()}}


def report(label: str, result: dict[str, float], loop: float, count: int) -> None:
    print(f"{label:<11} delivered : {result['delivered']:8.0f} msg/s ({count} messages) = "
          f"{result['delivered'] / loop:.2f}x the loop; intake {result['intake']:.0f} msg/s, non-AA "
          f"{result['non_aa']:.0f}; ACK p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms; "
          f"RSS {result['rss_start']:.0f} -> {result['rss_end']:.0f} MB")
    print(f"{'':<11} CPU per message: nodes {result['cpu_nodes']:.2f} ms, PostgreSQL server "
          f"{result['cpu_server']:.2f} ms, senders {result['cpu_senders']:.2f} ms (loop: {1000 / loop:.2f} ms)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server",
                        default=os.environ.get("BRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
                        help="PostgreSQL server URL without a database (a fresh one is created per run)")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--loop-messages", type=int, default=2000)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=4)
    # one worker process of three worker threads per node, batches of 16: on a 2-core host that also
    # runs the server, two processes per node left two nodes slower than one (benchmarks/README.md)
    parser.add_argument("--processes", type=int, default=1, help="engine.processes per node")
    # the deliverers in a process of their own: beside three CPU-bound worker threads every system call
    # and round trip of a deliverer waited for the GIL, and delivering cost the workers a sixth of their
    # rate (docs/architecture.md, "Several processes"; benchmarks/README.md)
    parser.add_argument("--delivery-processes", type=int, default=1, help="engine.delivery_processes per node")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--deliverers", type=int, default=4, help="per process (the file destination fsyncs each file, and its folder once per batch)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="engine.batch_size (PostgreSQL's intake commits do not queue behind a batch)")
    parser.add_argument("--pool-size", type=int, default=6, help="connections per process (store URL pool_size)")
    parser.add_argument("--nodes", type=int, action="append", help="node counts to run (default: 1 and 2)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--dir")
    args = parser.parse_args(argv)
    print(f"pipeline benchmark on PostgreSQL: Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s); per node:"
          f" processes={args.processes} delivery_processes={args.delivery_processes} workers={args.workers}"
          f" deliverers={args.deliverers}"
          f" batch_size={args.batch_size} pool_size={args.pool_size}; {args.senders} MLLP senders")
    loop = pipeline.loop_rate(pipeline.messages(args.loop_messages, args.patients, "L"))
    print(f"decode+encode loop (1 thread): {loop:8.0f} msg/s ({args.loop_messages} messages)")
    results = {}
    for nodes in args.nodes or [1, 2]:
        results[nodes] = run(args, nodes, pipeline.messages(args.messages, args.patients, f"N{nodes}"))
        report(f"{nodes} node{'s' if nodes > 1 else ''}", results[nodes], loop, args.messages)
    if 1 in results and 2 in results:
        print(f"two nodes / one node: {results[2]['delivered'] / results[1]['delivered']:.2f} (target >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

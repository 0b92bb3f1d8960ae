"""MLLP listener benchmark: messages per second and ACK latency, side by side with two baselines.

Three servers, each in its own process, are driven in turn by the same asyncio load generator
(this process) with ``--connections`` concurrent connections, each sending one message and waiting
for its ACK before the next (how MLLP senders behave):

- ``ours``:   the Telemed Bridge MLLP listener with commit ACKs: every ACK is sent only after the
              message was committed to a SQLite store (WAL, synchronous=FULL) in a temporary folder.
- ``bare``:   a minimal asyncio MLLP server that answers each frame with an AA at once, storing
              nothing: the ceiling for Python asyncio on this machine.
- ``hl7apy``: hl7apy's own ``hl7apy.mllp.MLLPServer`` (a thread per connection), its handler parsing each
              message with ``parse_message`` as hl7apy's documentation does (``hl7apy-noparse``: the same
              server answering without parsing, on request with ``--only``). It closes the
              connection after one message, so its client reconnects for every message.
- ``ours-shm``: ours again with the SQLite file on tmpfs (``/dev/shm``), where fsync costs almost
              nothing: it separates the listener's own overhead from the disk's commit latency.
- ``floor``:  (on request with ``--only``) not a product: the least a listener that stores each frame
              durably must do, to show what any design can reach here. The bare server's framing
              and ACK, plus one row per frame in a narrow SQLite table (channel, time, bytes, dedupe
              key, origin; one unique index), inserted with one ``executemany`` per loop turn
              (``synchronous=NORMAL``), the WAL flushed with ``fdatasync`` on a thread, and the ACKs
              written once the flush is done; frames arriving during a flush form the next commit.
              No header read beyond MSH-3/4/10, no lanes, no telemetry, no error answers.
- ``journal``: ours with the channel's intake journal (``intake_journal:``, docs/mllp.md): the ACK after
              the journal segment's ``fdatasync``, and the journal mover in its own process (nice 10, as
              ``bridge run`` starts it) moving the entries into the SQLite store meanwhile. Its row adds
              the mover's CPU, the journal's flush process's CPU (its ``fdatasync`` calls) and the
              **store time**: how long after the last ACK the mover needed until
              every acknowledged message was in ``messages``, and the store rate (messages in the store
              over the drive plus that time), so the ACK rate is not mistaken for the store rate.
- ``floor-file``: (on request) the same floor with an append-only file instead of the SQLite table:
              each loop turn's frames as length-prefixed records in one ``write``, ``fdatasync`` on
              the thread: the cheapest durable write there is, without a store behind it.

Each row also shows the server's CPU (all its threads, from ``/proc``: cores busy and microseconds per
message) and the load generator's own CPU per message: on a machine whose cores the load generator
shares, their sum per message is what bounds a server's rate.

Usage: ``.venv/bin/python benchmarks/mllp.py [--seconds 5] [--connections 4]``. A run takes about
``4 × (seconds + 1)`` seconds. Targets: ours ≥ 50% of bare, ≥ 20× hl7apy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SB, EB = b"\x0b", b"\x1c\x0d"
KINDS = ("ours", "bare", "hl7apy", "ours-shm", "hl7apy-noparse", "ours-nopolicy", "floor", "floor-file", "journal",
         "journal-idle")
DEFAULT_KINDS = ("ours", "bare", "hl7apy")


def message(control_id: str) -> bytes:
    """A synthetic ADT^A04 of about 600 bytes (no real person)."""
    segments = [
        f"MSH|^~\\&|LOADGEN|CLINIC|BRIDGE|TB|20240102030405||ADT^A04^ADT_A01|{control_id}|P|2.5",
        "EVN|A04|20240102030405",
        "PID|1||MRN-BENCH-1^^^CLINIC^MR||Testpatient^Alex^J||19800101|U|||1 Test Street^^Testville^CA^90000",
        "PV1|1|O|TELE^^^CLINIC||||1234567890^Doctor^Test|||||||||||V-BENCH-1|||||||||||||||||||||||||20240102030405",
        "OBX|1|TX|NOTE^Visit note||" + "Synthetic benchmark text. " * 12,
    ]
    return ("\r".join(segments) + "\r").encode("ascii")


# --- servers (each runs in a child process: `benchmarks/mllp.py --serve KIND`) ---------------------


def serve_ours(base: str | None = None, policy_ack: bool = True) -> None:
    from bridge.testing import engine_from_dict, plugin_manager

    # The shipped plugins and defaults: the real hl7v2 format, and the telehealth policy gate, whose
    # check before the ACK (policy_ack) decodes each message. No workers run: this is the intake path.
    folder = tempfile.mkdtemp(prefix="mllp-bench-", dir=base)
    plugins = plugin_manager()
    channel = {"source": "mllp://127.0.0.1:0", "format": "hl7v2", "options": {"policy_ack": policy_ack}}
    engine = engine_from_dict({"channels": {"bench": channel}}, folder, plugins)
    engine.open_sources()
    source = engine.sources[0]
    source.start()
    print(f"PORT {source.port} STORE {engine.config.store_url}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    source.stop()
    engine.store.close()


def serve_journal(priority: str = "low") -> None:
    """``ours`` with an intake journal, and its mover process, as ``bridge run`` would start them."""
    from bridge.core.config import load_config
    from bridge.core.engine import Engine
    from bridge.core.journal import mover_command
    from bridge.testing import plugin_manager

    if os.environ.get("BENCH_SWITCH_INTERVAL"):  # diagnostics: the GIL hand-off between loop and flusher
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    folder = tempfile.mkdtemp(prefix="mllp-journal-bench-")
    path = os.path.join(folder, "bridge.yaml")
    with open(path, "w") as handle:
        handle.write("store: sqlite:///var/bridge.db\nchannels:\n  bench:\n    source: mllp://127.0.0.1:0\n"
                     f"    format: hl7v2\n    intake_journal: {{dir: var/journal, mover_priority: {priority}}}\n")
    plugins = plugin_manager()
    engine = Engine(load_config(path, plugins), plugins)
    engine.open_sources()
    command = mover_command(path)
    if os.environ.get("BENCH_MOVER_AFTER"):  # diagnostics: the mover starts only when asked to drain (no mover CPU)
        command = [sys.executable, "-c", "import sys; sys.stdin.readline(); import subprocess;"
                   f" subprocess.run({command!r})"]
    mover = subprocess.Popen(command, stdin=subprocess.PIPE)
    source = engine.sources[0]
    source.start()
    writer = engine.journals["bench"]
    flusher = writer._flusher.process.pid if writer._flusher is not None else 0  # the journal's flush process
    print(f"PORT {source.port} MOVER {mover.pid} FLUSHER {flusher}", flush=True)
    for line in sys.stdin:  # "DRAIN": report how long until every journaled message is in the store
        if line.strip() == "DRAIN":
            started = time.perf_counter()
            if mover.stdin:
                mover.stdin.write(b"go\n")
                mover.stdin.close()
            while True:
                writer._refresh()
                if writer.unmoved_entries == 0 and writer.unmoved_bytes == 0:
                    break
                time.sleep(0.01)
            stored = engine.store._read("SELECT COUNT(*) FROM messages")[0][0]
            print(f"DRAINED {time.perf_counter() - started:.3f} {stored}", flush=True)
            print(f"journal: {writer.flushes} flushes, {writer.flush_seconds:.2f} s flushing, "
                  f"{writer.lookup_seconds:.2f} s in dedupe look-ups", file=sys.stderr, flush=True)
    source.stop()
    mover.terminate()
    mover.wait(timeout=15)
    writer.close()
    engine.store.close()
    import shutil

    shutil.rmtree(folder, ignore_errors=True)  # its segments are zeroed in advance: 64 MiB each


def serve_bare() -> None:
    from bridge.plugins.hl7v2.ack import make_ack

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        while data := await reader.read(65536):
            pending += data
            while EB in pending:
                frame, pending = pending.split(EB, 1)
                writer.write(SB + make_ack(frame[frame.find(SB) + 1:], "AA").encode() + EB)
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())


def serve_floor(journal_file: bool = False) -> None:
    """The ``floor`` kinds (see the module docstring): a lower bound for any durable listener here.
    ``journal_file`` writes each turn's frames to an append-only file instead of the SQLite table."""
    import json
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    from bridge.plugins.hl7v2.ack import make_ack

    path = os.path.join(tempfile.mkdtemp(prefix="mllp-floor-"), "floor.db")
    journal_fd = os.open(path + ".journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("CREATE TABLE journal (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, received_at REAL NOT NULL,"
               " raw BLOB NOT NULL, dedupe_key TEXT, origin TEXT)")
    db.execute("CREATE UNIQUE INDEX journal_dedupe ON journal(dedupe_key) WHERE dedupe_key IS NOT NULL")
    insert = ("INSERT INTO journal (channel, received_at, raw, dedupe_key, origin) VALUES (?,?,?,?,?)"
              " ON CONFLICT(dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING")
    flusher = ThreadPoolExecutor(1)
    state: dict[str, Any] = {"waiting": [], "scheduled": False, "flushing": False}

    def flush_wal() -> None:
        if journal_file:
            os.fdatasync(journal_fd)
            return
        fd = os.open(path + "-wal", os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def commit() -> None:
        state["scheduled"] = False
        if state["flushing"] or not state["waiting"]:
            return  # the flush's end commits what arrived meanwhile
        batch, state["waiting"] = state["waiting"], []
        now = time.time()
        rows = []
        for protocol, raw in batch:
            msh = raw[:raw.find(b"\r")].split(b"|")
            rows.append(("bench", now, raw, b"bench|%s|%s|%s" % (msh[2], msh[3], msh[9]), protocol.origin))
        if journal_file:
            os.write(journal_fd, b"".join(journal_record(row) for row in rows))
        else:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, rows)
            db.execute("COMMIT")
        state["flushing"] = True
        flusher.submit(flush_wal).add_done_callback(lambda _: loop.call_soon_threadsafe(flushed, batch))

    def flushed(batch: list[Any]) -> None:
        state["flushing"] = False
        commit()
        for protocol, raw in batch:
            protocol.transport.write(SB + make_ack(raw, "AA").encode() + EB)

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport, self.pending = transport, b""
            self.origin = json.dumps({"transport": "mllp", "peer": str(transport.get_extra_info("peername"))})

        def data_received(self, data: bytes) -> None:
            self.pending += data
            while EB in self.pending:
                frame, self.pending = self.pending.split(EB, 1)
                state["waiting"].append((self, frame[frame.find(SB) + 1:]))
            if state["waiting"] and not state["scheduled"]:
                state["scheduled"] = True
                loop.call_soon(commit)

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Floor, "127.0.0.1", 0))
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop.run_until_complete(loop.run_in_executor(None, sys.stdin.read))
    server.close()


def journal_record(row: tuple[Any, ...]) -> bytes:
    """One length-prefixed record of the ``floor-file`` kind: a JSON header line, then the frame."""
    import json

    channel, received_at, raw, dedupe_key, origin = row
    body = json.dumps([channel, received_at, dedupe_key.decode(), origin]).encode() + b"\n" + raw
    return len(body).to_bytes(4, "big") + body


def serve_hl7apy(parse: bool = True) -> None:
    """hl7apy's MLLPServer as its documentation uses it: the handler parses the incoming message with
    ``parse_message`` and answers an ACK built from it. ``parse=False`` skips the parse (a server that
    only echoes ACKs), to show what hl7apy's transport costs on its own."""
    import threading

    from hl7apy.mllp import AbstractHandler, MLLPServer
    from hl7apy.parser import parse_message

    from bridge.plugins.hl7v2.ack import make_ack

    class AckHandler(AbstractHandler):
        def reply(self) -> str:
            if parse:
                incoming = parse_message(self.incoming_message.replace("\n", "\r"))
                control_id = incoming.msh.msh_10.to_er7()
                assert control_id  # the ACK answers the parsed message's MSH-10
            return "\x0b" + make_ack(self.incoming_message, "AA") + "\x1c\r"

    server = MLLPServer("127.0.0.1", 0, {"ADT^A04^ADT_A01": (AckHandler,), "ADT^A04": (AckHandler,)})
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


# --- load generator ------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    messages: int
    seconds: float
    latencies: list[float]
    errors: int
    cpu_seconds: float = 0.0  # the server process's CPU time (all its threads) while it was driven
    mover_cpu_seconds: float = 0.0  # journal: the mover process's CPU time, drive and drain
    flusher_cpu_seconds: float = 0.0  # journal: the listener's flush process's CPU time while driven
    drain_seconds: float = 0.0  # journal: from the last ACK until every message was in the store
    stored: int = 0  # journal: messages in the store once drained (warm-up included)
    wall_seconds: float = 0.0
    client_cpu_seconds: float = 0.0  # the load generator's own CPU time (this process) meanwhile

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def read_ack(reader: asyncio.StreamReader) -> bytes:
    frame = await reader.readuntil(EB)
    return frame[frame.find(SB) + 1:-2]


async def persistent_sender(port: int, n: int, stop_at: float, measure_from: float, out: Result) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    while (now := time.perf_counter()) < stop_at:
        i += 1
        writer.write(SB + message(f"L{n}-{i}-{os.getpid()}-{time.time_ns()}") + EB)
        ack = await read_ack(reader)
        record(out, ack, now, measure_from)
    writer.close()


async def connect_per_message_sender(port: int, n: int, stop_at: float, measure_from: float, out: Result) -> None:
    i = 0
    while (now := time.perf_counter()) < stop_at:
        i += 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(SB + message(f"H{n}-{i}") + EB)
        ack = await read_ack(reader)
        writer.close()
        record(out, ack, now, measure_from)


def record(out: Result, ack: bytes, started: float, measure_from: float) -> None:
    if started < measure_from:
        return  # warm-up
    out.latencies.append(time.perf_counter() - started)
    out.messages += 1
    if b"MSA|AA|" not in ack:
        out.errors += 1


async def drive(kind: str, port: int, connections: int, seconds: float, warmup: float) -> Result:
    result = Result(kind, 0, seconds, [], 0)
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    sender = connect_per_message_sender if kind.startswith("hl7apy") else persistent_sender
    await asyncio.gather(*(sender(port, n, stop_at, measure_from, result) for n in range(connections)))
    return result


def run_one(kind: str, connections: int, seconds: float, warmup: float) -> Result:
    child = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line.startswith("PORT "):
            raise SystemExit(f"{kind} server did not start (got {line!r})")
        port = int(line.split()[1])
        mover = int(line.split()[3]) if kind.startswith("journal") else None
        flusher = int(line.split()[5]) if kind.startswith("journal") and len(line.split()) > 5 else 0
        cpu, wall, client = server_cpu(child.pid), time.perf_counter(), time.process_time()
        mover_cpu = server_cpu(mover) if mover else 0.0
        flusher_cpu = server_cpu(flusher) if flusher else 0.0
        result = asyncio.run(drive(kind, port, connections, seconds, warmup))
        result.cpu_seconds, result.wall_seconds = server_cpu(child.pid) - cpu, time.perf_counter() - wall
        result.flusher_cpu_seconds = server_cpu(flusher) - flusher_cpu if flusher else 0.0
        result.client_cpu_seconds = time.process_time() - client
        if mover and child.stdin and child.stdout:
            child.stdin.write("DRAIN\n")
            child.stdin.flush()
            answer = child.stdout.readline().split()
            result.drain_seconds, result.stored = float(answer[1]), int(answer[2])
            result.mover_cpu_seconds = server_cpu(mover) - mover_cpu
        return result
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(results: Mapping[str, Result], connections: int) -> None:
    print(f"MLLP listener benchmark: {connections} concurrent connections, one message in flight each; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    print(f"{'server':<38} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'messages':>9} {'non-AA':>7}"
          f" {'cores':>6} {'us/msg':>7} {'client us/msg':>13}")
    labels = {"ours": "ours (commit ACK, SQLite FULL)", "bare": "bare asyncio (ACK, no store)",
              "hl7apy": "hl7apy MLLPServer, parsing (1 msg/conn)", "ours-shm": "ours, store on tmpfs (no real fsync)",
              "hl7apy-noparse": "hl7apy MLLPServer, no parse (1 msg/conn)",
              "ours-nopolicy": "ours, no policy check before the ACK",
              "floor": "floor (bare + narrow durable insert)",
              "floor-file": "floor, append-only file",
              "journal": "ours with the intake journal",
              "journal-idle": "the same, mover_priority: idle"}
    for kind, r in results.items():
        # CPU per message over the whole drive, warm-up included (its messages counted at the same rate)
        total = r.messages * r.wall_seconds / r.seconds if r.seconds else 0
        cores = r.cpu_seconds / r.wall_seconds if r.wall_seconds else 0.0
        per_message = r.cpu_seconds / total * 1e6 if total else 0.0
        client = r.client_cpu_seconds / total * 1e6 if total else 0.0
        print(f"{labels[kind]:<38} {r.rate:>9.0f} {r.percentile(50):>8.2f} {r.percentile(99):>8.2f} "
              f"{r.messages:>9} {r.errors:>7} {cores:>6.2f} {per_message:>7.1f} {client:>13.1f}")
    ours, bare, hl7, shm, _, _, floor, floor_file, _, _ = (results.get(k) for k in KINDS)
    for name in ("journal", "journal-idle"):
        journaled = results.get(name)
        if not journaled:
            continue
        total = journaled.messages * journaled.wall_seconds / journaled.seconds if journaled.seconds else 0
        mover = journaled.mover_cpu_seconds / journaled.stored * 1e6 if journaled.stored else 0.0
        flusher = journaled.flusher_cpu_seconds / total * 1e6 if total else 0.0
        store_rate = journaled.stored / (journaled.wall_seconds + journaled.drain_seconds)
        print(f"{name}: {journaled.stored} messages in the store {journaled.drain_seconds:.2f} s after the last ACK;"
              f" store rate {store_rate:.0f} msg/s over drive + drain; mover CPU {mover:.1f} us/msg;"
              f" flush process CPU {flusher:.1f} us/msg"
              f" (listener + flush process + mover {journaled.cpu_seconds / total * 1e6 + flusher + mover:.1f}"
              " us/msg)" if total else "")
        if bare and bare.rate:
            print(f"{name} / bare = {journaled.rate / bare.rate:6.1%}   (target >= 50%: the ACK rate)")
    if ours and bare and bare.rate:
        print(f"ours / bare   = {ours.rate / bare.rate:6.1%}   (target >= 50%)")
    if floor and bare and bare.rate:
        print(f"floor / bare  = {floor.rate / bare.rate:6.1%}   (the most any durable listener reached here)")
    if floor_file and bare and bare.rate:
        print(f"floor-file / bare = {floor_file.rate / bare.rate:6.1%}   (an append-only file, no store)")
    if ours and hl7 and hl7.rate:
        print(f"ours / hl7apy = {ours.rate / hl7.rate:6.1f}x  (target >= 20x)")
    if shm and bare and bare.rate:
        print(f"ours on tmpfs / bare = {shm.rate / bare.rate:6.1%}   (the listener's own cost, without fsync)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--only", choices=KINDS, action="append", help="run only these servers")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        servers = {"ours": serve_ours, "bare": serve_bare, "hl7apy": serve_hl7apy,
                   "ours-shm": lambda: serve_ours("/dev/shm"), "hl7apy-noparse": lambda: serve_hl7apy(False),
                   "ours-nopolicy": lambda: serve_ours(policy_ack=False), "floor": serve_floor,
                   "floor-file": lambda: serve_floor(journal_file=True), "journal": serve_journal,
                   "journal-idle": lambda: serve_journal("idle")}
        servers[args.serve]()
        return 0
    kinds = args.only or [*DEFAULT_KINDS, "ours-nopolicy", *(["ours-shm"] if os.path.isdir("/dev/shm") else [])]
    results = {kind: run_one(kind, args.connections, args.seconds, args.warmup) for kind in kinds}
    report(results, args.connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())

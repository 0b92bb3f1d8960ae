"""MLLP listener memory under connection floods and tiny frames (issue 16): RSS of the listening process.

The real listener (shipped plugins, SQLite store in a temporary folder, policy check before the ACK)
runs in a child process; this process attacks it over loopback and reads the child's ``VmRSS`` and
``VmHWM`` (peak) from ``/proc`` after each phase:

1. ``idle``: ``--idle`` connections (500) from one address (127.0.0.2) that send nothing, first
   with the channel's defaults (the per-peer limit refuses most of them), then with
   ``max_connections`` and ``max_connections_per_peer`` raised so that every one is held (what 500
   open connections cost).
2. ``frames``: ``--frames`` tiny frames (100,000 minimal valid ADT messages, about 90 bytes each,
   each stored and answered AA), sent by 4 connections that each keep 32 frames in flight.

Usage: ``.venv/bin/python benchmarks/mllp_memory.py [--idle 500] [--frames 100000]`` (Linux only).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

START, END = b"\x0b", b"\x1c\x0d"
ATTACKER = "127.0.0.2"


def tiny(control_id: str) -> bytes:
    """A minimal ADT^A04 that the intake stores (no real person)."""
    return (f"MSH|^~\\&|TINY|CLINIC|BRIDGE|TB|20240102030405||ADT^A04^ADT_A01|{control_id}|P|2.5\r"
            "PID|1||T1^^^TB^MR\r").encode("ascii")


def serve(options: Mapping[str, Any]) -> None:
    """The child: one channel with the shipped plugins, until stdin closes."""
    from bridge.testing import engine_from_dict, plugin_manager

    folder = tempfile.mkdtemp(prefix="mllp-memory-")
    channel = {"source": "mllp://127.0.0.1:0", "format": "hl7v2", "options": dict(options)}
    engine = engine_from_dict({"channels": {"memory": channel}}, folder, plugin_manager())
    engine.open_sources()
    source = engine.sources[0]
    source.start()
    print(f"PORT {source.port}", flush=True)
    sys.stdin.read()
    source.stop()
    engine.store.close()


class Child:
    """The listening process, its port and its memory figures."""

    def __init__(self, options: Mapping[str, Any]):
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(dict(options))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("PORT "):
            raise SystemExit(f"the listener did not start (got {line!r})")
        self.port = int(line.split()[1])

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB."""
        fields = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def open_idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((ATTACKER, 0))
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    return socks


def held(socks: list[socket.socket], settle: float = 1.0) -> int:
    """How many of these connections the listener kept (the others it closed at once)."""
    time.sleep(settle)
    kept = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            kept += sock.recv(1) != b""
        except BlockingIOError:
            kept += 1
        except OSError:
            pass
    return kept


def send_frames(port: int, total: int, connections: int = 4, window: int = 32) -> tuple[int, float]:
    """Send ``total`` tiny frames over ``connections``, ``window`` in flight each; (AA count, seconds)."""
    import selectors

    selector = selectors.DefaultSelector()
    per = total // connections
    state = {}
    for n in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state[sock] = {"n": n, "sent": 0, "acked": 0, "buffer": b"", "aa": 0}
        selector.register(sock, selectors.EVENT_READ)
    started = time.monotonic()
    for sock, st in state.items():
        _top_up(sock, st, per, window)
    while any(st["acked"] < per for st in state.values()):
        for key, _ in selector.select(timeout=30):
            sock, st = key.fileobj, state[key.fileobj]
            data = sock.recv(1 << 16)
            if not data:
                raise SystemExit("the listener closed a sending connection")
            st["buffer"] += data
            *answers, st["buffer"] = st["buffer"].split(END)
            st["acked"] += len(answers)
            st["aa"] += sum(b"MSA|AA|" in answer for answer in answers)
            _top_up(sock, st, per, window)
    elapsed = time.monotonic() - started
    for sock in state:
        sock.close()
    return sum(st["aa"] for st in state.values()), elapsed


def _top_up(sock: socket.socket, st: dict[str, Any], per: int, window: int) -> None:
    frames = []
    while st["sent"] < per and st["sent"] - st["acked"] < window:
        frames.append(START + tiny(f"T{st['n']}-{st['sent']}") + END)
        st["sent"] += 1
    if frames:
        sock.sendall(b"".join(frames))


def phase_idle(count: int, options: Mapping[str, Any], label: str) -> None:
    child = Child(options)
    try:
        before = child.memory_mb()[0]
        socks = open_idle(child.port, count)
        kept = held(socks)
        rss, peak = child.memory_mb()
        print(f"{label:<44} held {kept:>4}/{count}   RSS {before:6.1f} -> {rss:6.1f} MB   peak {peak:6.1f} MB"
              f"   ({(rss - before) * 1024 / max(kept, 1):.1f} KB per held connection)")
        for sock in socks:
            sock.close()
    finally:
        child.close()


def phase_frames(total: int) -> None:
    child = Child({})
    try:
        before = child.memory_mb()[0]
        accepted, elapsed = send_frames(child.port, total)
        rss, peak = child.memory_mb()
        print(f"{f'{total:,} tiny frames (4 conns, 32 in flight)':<44} AA {accepted:>6}   RSS {before:6.1f} -> "
              f"{rss:6.1f} MB   peak {peak:6.1f} MB   ({total / elapsed:,.0f} frames/s)")
    finally:
        child.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(json.loads(args.serve))
        return 0
    print(f"MLLP listener memory; Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    phase_idle(args.idle, {}, f"{args.idle} idle connections, defaults")
    room = args.idle + 10
    phase_idle(args.idle, {"max_connections": room, "max_connections_per_peer": room},
               f"{args.idle} idle connections, all held")
    phase_frames(args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""kill -9 of the listening `bridge run` and of its journal mover while MLLP senders send: every
acknowledged message ends up in the store exactly once (docs/mllp.md, "Intake journal").

Real processes (`bridge run` and the mover child it starts), real loopback sockets, a real SQLite
file. Senders behave like MLLP senders: one message in flight per connection, and a message whose
ACK did not come (the connection broke) is sent again on a new connection.
"""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bridge.core.store.sqlite import SQLiteStore
from tests.processes import alive, children_of, nice_of, wait_for
from tests.processes import start_engine as start

pytestmark = pytest.mark.slow
SB, EB = b"\x0b", b"\x1c\x0d"
SENDERS = 6


def message(control_id: str) -> bytes:
    return (f"MSH|^~\\&|CRASHAPP|CRASHFAC|BRIDGE|TB|20240102030405||ADT^A04^ADT_A01|{control_id}|P|2.5\r"
            "EVN|A04|20240102030405\rPID|1||P1^^^TB^MR||Testpatient^Alex\r").encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Senders:
    """SENDERS connections sending numbered messages until ``stop``; ``acked`` holds the AA'd ids."""

    def __init__(self, port: int):
        self.port = port
        self.acked: set[str] = set()
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(SENDERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def run(self, n: int) -> None:
        i, sock = 0, None
        while not self.stop.is_set():
            control = f"S{n}-{i}"
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(SB + message(control) + EB)
                data = b""
                while not data.endswith(EB):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionResetError
                    data += chunk
            except OSError:  # killed or restarting: send the same message again on a new connection
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
                continue
            assert b"MSA|AA|" + control.encode() in data, data
            with self.lock:
                self.acked.add(control)
                self.sent += 1
            i += 1
        if sock is not None:
            sock.close()


def flow(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: sqlite:///var/bridge.db
        engine: {{workers: 1, deliverers: 1, poll_seconds: 0.05}}
        channels:
          adt:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            intake_journal: {{dir: var/journal, segment_bytes: 65536}}
    """))
    return config, port


def mover_of(parent: int) -> int | None:
    for pid in children_of(parent):
        try:
            if b"journal-mover" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


def stored_counts(tmp_path: Path) -> dict[str, int]:
    store = SQLiteStore(str(tmp_path / "var" / "bridge.db"))
    try:
        rows = store._read("SELECT control_id, COUNT(*) FROM messages GROUP BY control_id")
        return {row[0]: row[1] for row in rows}
    finally:
        store.close()


def check_exactly_once(tmp_path: Path, acked: set[str]) -> None:
    assert wait_for(lambda: acked <= set(stored_counts(tmp_path)), 120), \
        f"{len(acked - set(stored_counts(tmp_path)))} acknowledged messages never reached the store"
    counts = stored_counts(tmp_path)
    assert not {c: n for c, n in counts.items() if n != 1}, "a message was stored twice"
    # the mover deletes a moved segment after the move's transaction, on its next pass: wait for it
    def segments() -> list[Path]:
        return sorted((tmp_path / "var" / "journal" / "adt").glob("*.seg"))

    assert wait_for(lambda: len(segments()) <= 2, 30), f"moved segments were not deleted: {len(segments())} left"


def test_kill_minus_9_of_the_listener_loses_no_acknowledged_message(tmp_path):
    config, port = flow(tmp_path)
    senders = Senders(port)
    first = start(config)
    try:
        assert wait_for(lambda: mover_of(first.pid) is not None, 60), "the journal mover should start"
        mover = mover_of(first.pid)
        senders.start()
        assert wait_for(lambda: senders.sent >= 300, 60), "the senders got too few ACKs"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    acked_at_kill = len(senders.acked)
    assert wait_for(lambda: not alive(mover), 30), "the mover outlived its parent"
    second = start(config)
    try:
        assert wait_for(lambda: len(senders.acked) >= acked_at_kill + 300, 120), "no ACKs after the restart"
        senders.finish()
        check_exactly_once(tmp_path, senders.acked)
    finally:
        senders.stop.set()
        second.terminate()
        _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()


def test_kill_minus_9_of_the_mover_loses_nothing_and_it_is_restarted_at_lower_priority(tmp_path):
    config, port = flow(tmp_path)
    senders = Senders(port)
    engine = start(config)
    try:
        assert wait_for(lambda: mover_of(engine.pid) is not None, 60), "the journal mover should start"
        mover = mover_of(engine.pid)
        assert mover is not None
        assert wait_for(lambda: nice_of(mover) == nice_of(engine.pid) + 10, 30), "the mover runs at nice +10"
        senders.start()
        for _ in range(3):  # kill it mid-move three times
            assert wait_for(lambda: senders.sent >= 200, 60)
            senders.sent = 0
            killed = mover_of(engine.pid)
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            assert wait_for(lambda: mover_of(engine.pid) not in (None, killed), 60), "the mover should be restarted"
        senders.finish()
        check_exactly_once(tmp_path, senders.acked)
        assert len(senders.acked) >= 600
    finally:
        senders.stop.set()
        engine.terminate()
        _, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err.decode()

"""Three `bridge run` processes, one config, one PostgreSQL database: they share the work.

Messages come in two ways at once: 300 HL7v2 ADT^A04 over MLLP (the three nodes listen on one port,
``reuse_port``, and the kernel spreads the senders' connections among them; each patient's messages
come from one sender, in sequence) and 600 files in one inbox (read by one node at a time). Mid-flow
one node is killed with kill -9 while it holds leases; the senders whose connection died send their
unacknowledged message again (at-least-once), the other nodes finish the dead node's batch once its
leases expire. Then: every message is stored, processed and delivered exactly once (fenced), per-key
order held in processing and in delivery, every node's listener accepted connections, and the
scheduled job ran at most once per slot.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from bridge.core.store import open_store
from tests.core.helpers import encounter_message
from tests.e2e.support import free_port, wait_for
from tests.pg import pg_url  # noqa: F401  (fixture)
from tests.processes import accepting_pid, listening_pids, read_mllp_frame
from tests.processes import start_engine as start_node

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ADT = (ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7").read_bytes()
FILES, MLLP_MESSAGES, SENDERS, NODES = 600, 300, 6, 3


def adt(n: int) -> bytes:
    """Message ``n``; its patient is one of two of sender ``n % SENDERS``. A patient's messages come from
    one sender, one after the other (each after the ACK of the one before): that is their order. (Two
    senders sending one patient's messages at the same moment give them no order to keep.)"""
    return ADT.replace(b"TV20261127-0001", f"NODES-{n:05d}".encode()).replace(
        b"MRN00012345", f"MRN{n % SENDERS}{n // SENDERS % 2}".encode())


class Sender(threading.Thread):
    """Sends its share of ADT messages, one connection per ten; on a broken connection it reconnects
    and sends the unacknowledged message again (the intake drops the duplicate if it was stored)."""

    def __init__(self, port: int, numbers: list[int], pids: list[int]):
        super().__init__(daemon=True)
        self.port, self.numbers, self.pids = port, numbers, pids
        self.accepted_by: list[int] = []
        self.acks: list[bytes] = []
        self.resent = 0

    def run(self) -> None:
        pending = list(self.numbers)
        while pending:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as conn:
                    for sent in range(10):
                        if not pending:
                            break
                        conn.sendall(b"\x0b" + adt(pending[0]) + b"\x1c\r")
                        self.acks.append(read_mllp_frame(conn))
                        pending.pop(0)
                        if sent == 0:  # answered, so surely accepted: by which node?
                            self.accepted_by.append(accepting_pid(self.port, conn.getsockname()[1], self.pids))
            except OSError:
                self.resent += 1
                time.sleep(0.1)


def test_three_nodes_share_the_work_and_a_kill_minus_9_loses_nothing(tmp_path, pg_url):  # noqa: F811
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: {pg_url}?pool_size=6
        engine: {{workers: 2, deliverers: 2, lease_seconds: 2, poll_seconds: 0.2, batch_size: 8}}
        channels:
          adt:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            options: {{reuse_port: true}}
            routes: [{{to: [out]}}]
          flow:
            source: file://inbox
            format: bridge
            options: {{poll_seconds: 0.05}}
            routes: [{{to: [out]}}]
        destinations:
          out: {{url: "file://outbox", format: bridge}}
        jobs:
          tick: {{type: prune, trigger: {{interval_seconds: 1}}}}
    """))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n in range(FILES):
        (inbox / f"msg-{n:04d}.json").write_bytes(encounter_message(n, patient=f"P{n % 13}"))

    nodes = [start_node(config, text=True) for _ in range(NODES)]
    pids = [p.pid for p in nodes]
    store = open_store(pg_url)
    try:
        assert wait_for(lambda: len(listening_pids(port, pids)) == NODES, 60), "not every node listens"
        senders = [Sender(port, list(range(s, MLLP_MESSAGES, SENDERS)), pids) for s in range(SENDERS)]
        for s in senders:
            s.start()
        victim = nodes[0]
        assert wait_for(lambda: victim.pid in {p for s in senders for p in s.accepted_by}, 60), \
            "the victim never accepted a connection"
        held = _kill_mid_batch(victim, store)
        for s in senders:
            s.join(timeout=180)
        assert all(not s.is_alive() for s in senders), "a sender is stuck"
        total = FILES + MLLP_MESSAGES
        assert wait_for(lambda: _delivered(store) == total, 240), store.counts()
    finally:
        for node in nodes[1:]:
            node.terminate()
        errors = [node.communicate(timeout=60)[1] for node in nodes[1:]]
    assert all(node.returncode == 0 for node in nodes[1:]), errors
    assert not any("Traceback" in e for e in errors), errors

    counts = store.counts()
    assert counts == {"adt": {"delivered": MLLP_MESSAGES}, "flow": {"delivered": FILES}}  # stored once each
    assert all(b"MSA|AA|" in ack for s in senders for ack in s.acks)
    with store._tx() as conn:
        _assert_processed_and_delivered_once(conn, held)
        _assert_order_per_key(conn)
        _assert_job_ran_once_per_slot(conn)
    # (None: the answering node was gone before /proc was read — the victim, killed right then)
    accepted = {pid for s in senders for pid in s.accepted_by if pid is not None}
    assert accepted == set(pids), f"listeners that accepted: {accepted}, nodes: {pids}"
    assert len(list((tmp_path / "outbox").glob("*.json"))) == FILES + MLLP_MESSAGES
    assert not list(inbox.glob("msg-*")), "every inbox file was taken in"
    store.close()


def _kill_mid_batch(victim: subprocess.Popen, store) -> int:
    """Freeze the victim (SIGSTOP) until it is caught holding leases, then kill -9 it; returns how many
    messages and outbox rows it held. (Between tries it runs on: SIGCONT.)"""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        victim.send_signal(signal.SIGSTOP)
        # A statement the victim sent just before it froze (a COMMIT that releases leases) still runs on
        # the server: count only once it has, so every lease counted is one another node must take over.
        time.sleep(0.3)
        held = _leases_held_by(store, victim.pid)
        if held:
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            return held
        victim.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("the victim was never caught holding a lease")


def _leases_held_by(store, pid: int) -> int:
    with store._tx() as conn:
        return conn.execute("SELECT (SELECT COUNT(*) FROM messages WHERE status = 'processing' AND lease_owner LIKE %s)"
                            " + (SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND lease_owner LIKE %s)",
                            (f"%:{pid}:%", f"%:{pid}:%")).fetchone()[0]


def _delivered(store) -> int:
    return sum(c.get("delivered", 0) for c in store.counts().values())


def _assert_processed_and_delivered_once(conn, held_by_the_victim: int) -> None:
    per_message = conn.execute("SELECT message_id, COUNT(*) FILTER (WHERE kind = 'queued'),"
                               " COUNT(*) FILTER (WHERE kind = 'delivered') FROM events GROUP BY 1").fetchall()
    assert len(per_message) == FILES + MLLP_MESSAGES
    assert {(queued, delivered) for _, queued, delivered in per_message} == {(1, 1)}
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM outbox").fetchone() == (
        FILES + MLLP_MESSAGES, FILES + MLLP_MESSAGES)
    assert conn.execute("SELECT COUNT(*) FROM outbox WHERE lease_owner IS NOT NULL").fetchone()[0] == 0
    # the killed node's leases expired and other nodes claimed that work again (a newer fencing token;
    # a file destination never fails, so a second attempt is a takeover)
    retaken = conn.execute("SELECT (SELECT COUNT(*) FROM messages WHERE lease_token > 1)"
                           " + (SELECT COUNT(*) FROM outbox WHERE attempts > 1)").fetchone()[0]
    assert retaken >= held_by_the_victim > 0
    assert conn.execute("SELECT (SELECT COUNT(*) FROM message_lanes) + (SELECT COUNT(*) FROM outbox_lanes)"
                        ).fetchone()[0] == 0  # no lane bookkeeping left behind


def _assert_order_per_key(conn) -> None:
    """Within each lane (channel, patient) messages were processed, and delivered, in arrival order."""
    rows = conn.execute(
        "SELECT m.channel, m.order_key, m.id, (SELECT MIN(at) FROM events e WHERE e.message_id = m.id"
        " AND e.kind = 'queued'), o.delivered_at FROM messages m JOIN outbox o ON o.message_id = m.id"
        " ORDER BY m.channel, m.order_key, m.id").fetchall()
    lanes = defaultdict(list)
    for channel, key, _, processed_at, delivered_at in rows:
        assert key is not None
        lanes[(channel, key)].append((processed_at, delivered_at))
    assert len(lanes) == 13 + 2 * SENDERS
    for lane, times in lanes.items():
        assert [t[0] for t in times] == sorted(t[0] for t in times), f"processing order broken in {lane}"
        assert [t[1] for t in times] == sorted(t[1] for t in times), f"delivery order broken in {lane}"


def _assert_job_ran_once_per_slot(conn) -> None:
    runs = conn.execute("SELECT slot, status, attempts FROM job_runs WHERE job = 'tick'").fetchall()
    assert runs, "the scheduled job never ran"
    assert len({r[0] for r in runs}) == len(runs)
    assert {r[1] for r in runs} <= {"succeeded", "running"}

"""Network faults between the engine and an MLLP peer (issue 16), shared by
``tests/faults/test_network.py`` and ``faults/network.py``.

The peer (:class:`~bridge.testing.fakes.FakeMllpPeer`) listens inside a network namespace reached over a
veth pair (:class:`tests.faults.netns.Link`); the engine runs in this process with its own threads and
a SQLite file, exactly as in the downstream matrix. A scenario submits messages, then disturbs the
link — a partition (the far end down: a blackhole, so connects and ACKs time out), or netem latency
and loss where the kernel has sch_netem — and heals it. :func:`check` asserts that every message was
delivered once the fault cleared, within its attempts and a time bound, that the peer holds each
message once (a resend carries the same MSH-10, so a receiver drops it), and that nothing more is sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bridge.core.engine import Engine
from bridge.testing import engine_from_dict
from bridge.testing.fakes import FakeMllpPeer
from tests.faults.netns import Forwarder, Link
from tests.fhir_rest.helpers import net_plugins, visit

ACK_TIMEOUT = 0.6
CONNECT_TIMEOUT = 0.6
RETRY = {"max_attempts": 40, "backoff": "exponential", "initial_seconds": 0.1, "max_seconds": 0.5, "jitter": 0}
DELIVERERS = 3
SLACK_SECONDS = 8.0


@dataclass
class NetResult:
    name: str
    messages: int
    fault_seconds: float
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: list[int] = field(default_factory=list)
    received: int = 0
    received_later: int = 0
    distinct: int = 0
    effects: int = 0
    elapsed: float = 0.0
    bound: float = 0.0

    def row(self) -> dict[str, Any]:
        return {"scenario": self.name, "messages": self.messages, "fault s": self.fault_seconds,
                "delivered": self.statuses.get("delivered", 0), "dead": self.statuses.get("dead", 0),
                "sent to peer": self.received, "distinct at peer": self.distinct,
                "max attempts": max(self.attempts, default=0), "elapsed": round(self.elapsed, 2),
                "bound": round(self.bound, 1)}


def config(url: str) -> dict[str, Any]:
    return {
        "engine": {"workers": 1, "deliverers": DELIVERERS, "batch_size": 1, "poll_seconds": 0.02, "lease_seconds": 60},
        "channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["peer"]}],
                            "order": {"by": "none"}}},
        "destinations": {"peer": {"url": url, "format": "hl7v2", "retry": dict(RETRY),
                                  "options": {"ack_timeout_seconds": ACK_TIMEOUT,
                                              "connect_timeout_seconds": CONNECT_TIMEOUT,
                                              "max_connections": DELIVERERS}}},
    }


@contextlib.contextmanager
def peer_across(link: Link) -> Iterator[FakeMllpPeer]:
    """A peer whose listening socket lives in the link's namespace (created there, served from here)."""
    peer = FakeMllpPeer(host=link.far)
    with link.inside():
        peer.__enter__()
    try:
        yield peer
    finally:
        peer.__exit__(None, None, None)


def bound_seconds(messages: int, fault_seconds: float) -> float:
    """The fault's span, then the longest backoff and one more try per round of deliverers, plus slack."""
    per_try = CONNECT_TIMEOUT + ACK_TIMEOUT
    rounds = -(-messages // DELIVERERS)
    return fault_seconds + RETRY["max_seconds"] + rounds * per_try + SLACK_SECONDS


def settled(engine: Engine, messages: int) -> list[Any] | None:
    rows = engine.store.outbox_rows(limit=messages + 10)
    done = [r for r in rows if r.status in ("delivered", "dead")]
    return rows if len(rows) == messages and len(done) == messages else None


Fault = Callable[[Callable[[], None]], float]


def run(name: str, link: Link, folder: Path, messages: int, fault: Fault) -> NetResult:
    """Submit half the visits and let them be delivered (the engine's connections are open), then let
    ``fault`` disturb the link, submit the other half while it lasts (``fault`` calls the function
    it is given) and heal it (returning how long it lasted); then wait for every outcome and check that
    the peer stays quiet."""
    folder.mkdir(parents=True, exist_ok=True)
    with peer_across(link) as peer:
        engine = engine_from_dict(config(peer.url), folder, net_plugins())
        engine.start_workers()
        try:
            first = deliver_first_half(engine, peer, messages)
            started = time.monotonic()
            fault_seconds = fault(lambda: [engine.submit("in", visit(n, mrn=f"MRN{n}"))
                                           for n in range(first + 1, messages + 1)])
            result = NetResult(name, messages, round(fault_seconds, 2), bound=bound_seconds(messages, fault_seconds))
            observe(engine, peer, result, started)
        finally:
            engine.stop()
    return result


def deliver_first_half(engine: Engine, peer: FakeMllpPeer, messages: int) -> int:
    """Submit the first half of the visits and wait until the peer accepted them (the engine's
    connections are open and warm before the fault); the number submitted."""
    first = messages // 2
    for n in range(1, first + 1):
        engine.submit("in", visit(n, mrn=f"MRN{n}"))
    while len(peer.accepted()) < first:
        time.sleep(0.02)
    return first


def observe(engine: Engine, peer: FakeMllpPeer, result: NetResult, started: float) -> None:
    """Wait for every outcome (within the bound and ten seconds more), record them and what the peer got."""
    rows = None
    while rows is None and time.monotonic() - started < result.bound + 10:
        rows = settled(engine, result.messages)
        time.sleep(0.05)
    result.elapsed = time.monotonic() - started
    rows = rows or engine.store.outbox_rows(limit=result.messages + 10)
    result.statuses = {s: sum(1 for r in rows if r.status == s) for s in {r.status for r in rows}}
    result.attempts = [r.attempts for r in rows]
    result.received = len(peer.received)
    time.sleep(1.0)
    result.received_later = len(peer.received)
    result.distinct = len({peer.control_id(m) for m in peer.received})
    result.effects = peer.effects()


def run_store_partition(name: str, link: Link, folder: Path, messages: int, seconds: float,
                        database_url: str) -> NetResult:
    """The engine reaches its PostgreSQL across the link (a forwarder in the namespace), the MLLP peer
    on loopback. Half the messages are delivered, the link is cut, the rest are submitted (the intake
    waits on the store), and the link heals ``seconds`` later: the engine must carry on by itself."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = urlsplit(database_url)
    forwarder = Forwarder(link, (parts.hostname or "127.0.0.1", parts.port or 5432))
    user = f"{parts.username}@" if parts.username else ""
    url = urlunsplit(parts._replace(netloc=f"{user}{link.far}:{forwarder.port}"))
    try:
        with FakeMllpPeer() as peer:
            engine = engine_from_dict({**config(peer.url), "store": url}, folder, net_plugins())
            engine.start_workers()
            try:
                first = deliver_first_half(engine, peer, messages)
                started = time.monotonic()
                rest = threading.Thread(target=lambda: [engine.submit("in", visit(n, mrn=f"MRN{n}"))
                                                        for n in range(first + 1, messages + 1)])
                link.partition(True)
                try:
                    rest.start()
                    time.sleep(seconds)
                finally:
                    link.partition(False)
                # TCP retransmits resume with backoff: up to about the partition's length again
                result = NetResult(name, messages, seconds, bound=2 * seconds + bound_seconds(messages, 0))
                rest.join(timeout=result.bound)
                observe(engine, peer, result, started)
            finally:
                engine.stop()
    finally:
        forwarder.close()
    return result


def partition(link: Link, seconds: float) -> Fault:
    """Cut the link, submit the rest (their sends meet the blackhole), heal it ``seconds`` later."""
    def fault(submit_rest: Callable[[], None]) -> float:
        link.partition(True)
        try:
            submit_rest()
            time.sleep(seconds)
        finally:
            link.partition(False)
        return seconds
    return fault


def flapping(link: Link, cuts: int, down: float, up: float) -> Fault:
    """Cut and heal the link ``cuts`` times (down ``down`` s, up ``up`` s), submitting the rest at the first cut."""
    def fault(submit_rest: Callable[[], None]) -> float:
        started = time.monotonic()
        for cut in range(cuts):
            link.partition(True)
            if cut == 0:
                submit_rest()
            link.partition(True)
            try:
                time.sleep(down)
            finally:
                link.partition(False)
            time.sleep(up)
        return time.monotonic() - started
    return fault


def impaired(link: Link, seconds: float, *spec: str) -> Fault:
    """netem ``spec`` (latency, loss) on the link for ``seconds`` while the rest is submitted, then cleared."""
    def fault(submit_rest: Callable[[], None]) -> float:
        link.netem(*spec)
        try:
            submit_rest()
            time.sleep(seconds)
        finally:
            link.netem()
        return seconds
    return fault


def check(result: NetResult) -> None:
    n = result.messages
    assert result.statuses == {"delivered": n}, f"{result.name}: outcomes {result.statuses}"
    assert max(result.attempts) <= RETRY["max_attempts"], f"{result.name}: attempts {result.attempts}"
    assert result.elapsed <= result.bound, f"{result.name}: {result.elapsed:.1f} s, bound {result.bound:.1f} s"
    assert result.distinct == n and result.effects == n, \
        f"{result.name}: the peer holds {result.distinct} distinct messages, accepted {result.effects}, of {n}"
    assert n <= result.received <= sum(result.attempts), \
        f"{result.name}: {result.received} sends for {sum(result.attempts)} attempts"
    assert result.received_later == result.received, f"{result.name}: sends went on after every outcome"

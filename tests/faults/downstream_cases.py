"""The downstream fault matrix (issue 16): a real engine delivering to a misbehaving peer on loopback.

Shared by ``tests/faults/test_downstream.py`` (small, in CI) and ``faults/downstream.py`` (larger,
results recorded in ``faults/results/downstream.md``). Each case runs ``messages`` telehealth visits
through an in-process :class:`~bridge.core.engine.Engine` (its own worker and deliverer threads, a
SQLite file) to one destination:

- ``fhir+http`` through a :class:`~bridge.testing.fakes.FaultyHttpFront` in front of a
  :class:`~bridge.testing.fakes.FakeFhirServer` (the front answers 500/503/429, hangs, drips the whole
  answer, resets, or forwards and then drops the answer);
- ``mllp`` to a :class:`~bridge.testing.fakes.FakeMllpPeer` answering AE, AR, late or never.

A case's fault hits the *first* try of each message (``first``: it must then be delivered, on its
second attempt unless a try timed out before it reached the peer) or *every* try (``every``: it must
be dead-lettered after exactly ``max_attempts``). The peer never sees more tries than attempts.
:func:`check` asserts the bounds: outcome and attempts per message, requests at the peer (no
unbounded resends: the count stays put after the outcomes are written), Retry-After between tries,
the elapsed time, and no duplicate resource at the FHIR server nor an effect the peer cannot
de-duplicate (a resend carries the same ``X-Request-Id`` / MSH-10).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.core.engine import Engine
from bridge.testing import engine_from_dict
from bridge.testing.fakes import FakeFhirServer, FakeMllpPeer, FaultyHttpFront
from tests.fhir_rest.helpers import net_plugins, visit

MAX_ATTEMPTS = 3
HTTP_TIMEOUT = 0.4  # the fhir+http destination's total timeout (status line, headers, body)
ACK_TIMEOUT = 0.4  # the MLLP destination's ack_timeout_seconds
CONNECT_TIMEOUT = 0.5
LATE_SECONDS = 2 * ACK_TIMEOUT  # a "late" MLLP peer answers after the sender's ACK timeout
RETRY_AFTER = 1.0  # the 429's Retry-After, far above the backoff so honouring it shows
BACKOFF = {"max_attempts": MAX_ATTEMPTS, "backoff": "exponential", "initial_seconds": 0.05, "max_seconds": 0.2,
           "jitter": 0}
DELIVERERS = 3
SLACK_SECONDS = 6.0  # scheduling on a loaded 2-core machine, polling, engine start and stop
FORWARDING = ("pass", "drip", "drop-answer")  # HTTP faults whose request reaches the FHIR server


@dataclass(frozen=True)
class Case:
    """One fault: where (``http``/``mllp``), what the peer does, on which tries, and what must follow."""

    peer: str
    fault: str
    tries: str  # "first" or "every"
    outcome: str  # what every message must end as: "delivered" or "dead"
    attempts: int  # the attempts each message must have used

    @property
    def name(self) -> str:
        return f"{self.peer}-{self.fault}-{self.tries}"


def matrix() -> list[Case]:
    """Every downstream fault, on the first try (then cleared) and on every try."""
    cases = []
    for peer, faults in (("http", ("500", "503", "429", "hang", "drip", "reset", "drop-answer")),
                         ("mllp", ("AE", "late", "silent"))):
        for fault in faults:
            cases.append(Case(peer, fault, "first", "delivered", 2))
            cases.append(Case(peer, fault, "every", "dead", MAX_ATTEMPTS))
    cases.append(Case("mllp", "AR", "every", "dead", 1))  # AR is permanent (ar: dead, the default)
    return cases


@dataclass
class Result:
    """What a case did, for assertions and for the recorded results."""

    case: Case
    messages: int
    statuses: Counter = field(default_factory=Counter)
    attempts: list[int] = field(default_factory=list)
    requests: int = 0  # requests (HTTP) or messages (MLLP) the peer received
    requests_later: int = 0  # the same count a while after every outcome was written
    tries: dict[Any, list[float]] = field(default_factory=dict)  # arrival times per delivery identity
    elapsed: float = 0.0
    bound: float = 0.0
    stored: dict[str, int] = field(default_factory=dict)  # FHIR server: resources per type
    forwarded: int = 0  # FHIR: distinct deliveries whose transaction reached the server
    effects: int = 0  # MLLP: distinct control ids the peer accepted

    def row(self) -> dict[str, Any]:
        return {"fault": self.case.name, "messages": self.messages, "delivered": self.statuses["delivered"],
                "dead": self.statuses["dead"], "requests": self.requests, "max_attempts": max(self.attempts),
                "elapsed": round(self.elapsed, 2), "bound": round(self.bound, 1), "peer holds": self.holds()}

    def holds(self) -> str:
        """What the peer ended up with: FHIR resources per type, or distinct MLLP messages accepted."""
        if self.case.peer == "http":
            return ", ".join(f"{n} {t}" for t, n in sorted(self.stored.items())) or "nothing"
        return f"{self.effects} distinct"


def bound_seconds(case: Case, messages: int) -> float:
    """How long the case may take at most: every attempt running to its timeout, the backoffs, any
    Retry-After, the messages sharing ``DELIVERERS`` deliverers, plus slack for a loaded machine."""
    per_try = CONNECT_TIMEOUT + (HTTP_TIMEOUT if case.peer == "http" else ACK_TIMEOUT)
    waits = sum(min(BACKOFF["initial_seconds"] * 2 ** i, BACKOFF["max_seconds"]) for i in range(case.attempts))
    waits += (case.attempts - 1) * RETRY_AFTER if case.fault == "429" else 0
    if case.fault == "drip":
        per_try += HTTP_TIMEOUT
    rounds = math.ceil(messages / DELIVERERS)
    return rounds * case.attempts * per_try + waits + SLACK_SECONDS


def faulty(case: Case) -> Any:
    """``fault_for``/``answer_for``: the case's fault on the tries it names, a normal answer otherwise."""
    normal = "pass" if case.peer == "http" else "AA"
    return lambda _request, seen_before: case.fault if case.tries == "every" or seen_before == 0 else normal


def engine_config(url: str, peer: str) -> dict[str, Any]:
    options: dict[str, Any] = ({"timeout": HTTP_TIMEOUT, "connect_timeout": CONNECT_TIMEOUT} if peer == "http" else
                               {"ack_timeout_seconds": ACK_TIMEOUT, "connect_timeout_seconds": CONNECT_TIMEOUT,
                                "max_connections": DELIVERERS})
    return {
        "engine": {"workers": 1, "deliverers": DELIVERERS, "batch_size": 1, "poll_seconds": 0.02,
                   "lease_seconds": 60},
        "channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["peer"]}],
                            "order": {"by": "none"}}},
        "destinations": {"peer": {"url": url, "format": "fhir" if peer == "http" else "hl7v2",
                                  "options": options, "retry": dict(BACKOFF)}},
    }


@contextlib.contextmanager
def running(config: dict[str, Any], folder: Path) -> Iterator[Engine]:
    engine = engine_from_dict(config, folder, net_plugins())
    engine.start_workers()
    try:
        yield engine
    finally:
        engine.stop()


def settled(engine: Engine, messages: int) -> list[Any] | None:
    rows = engine.store.outbox_rows(limit=messages + 10)
    done = [r for r in rows if r.status in ("delivered", "dead")]
    return rows if len(rows) == messages and len(done) == messages else None


def drive(engine: Engine, case: Case, messages: int, folder: Path, count: Any) -> Result:
    """Submit the visits, wait for every outcome (within the bound), then watch the peer stay quiet."""
    result = Result(case, messages, bound=bound_seconds(case, messages))
    started = time.monotonic()
    for n in range(1, messages + 1):
        engine.submit("in", visit(n, mrn=f"MRN{n}", status="finished"))
    rows = None
    while rows is None and time.monotonic() - started < result.bound + 10:
        rows = settled(engine, messages)
        time.sleep(0.02)
    result.elapsed = time.monotonic() - started
    rows = rows or engine.store.outbox_rows(limit=messages + 10)
    result.statuses = Counter(r.status for r in rows)
    result.attempts = [r.attempts for r in rows]
    result.requests = count()
    time.sleep(max(0.5, 3 * BACKOFF["max_seconds"]))  # a resend storm would show here
    result.requests_later = count()
    return result


def run_http(case: Case, messages: int, folder: Path) -> Result:
    with FakeFhirServer(validate=False) as server, FaultyHttpFront(
            server.url, fault_for=faulty(case), drip_seconds=0.05,
            retry_after=f"{RETRY_AFTER:g}" if case.fault == "429" else None) as front:
        with running(engine_config(f"fhir+{front.url}/fhir", "http"), folder) as engine:
            result = drive(engine, case, messages, folder, lambda: len(front.seen()))
        tries: dict[Any, list[float]] = defaultdict(list)
        for request in front.seen():
            tries[request.headers.get("X-Request-Id")].append(request.at)
        result.tries = dict(tries)
        result.stored = server.count()
        result.forwarded = len({r.headers.get("X-Request-Id") for r in front.seen() if r.fault in FORWARDING})
    return result


def run_mllp(case: Case, messages: int, folder: Path) -> Result:
    with FakeMllpPeer(answer_for=faulty(case), late_seconds=LATE_SECONDS) as peer:
        with running(engine_config(peer.url, "mllp"), folder) as engine:
            result = drive(engine, case, messages, folder, lambda: len(peer.received))
        tries: dict[Any, list[float]] = defaultdict(list)
        for message, at in zip(list(peer.received), list(peer.received_at)):
            tries[peer.control_id(message)].append(at)
        result.tries = dict(tries)
        result.effects = peer.effects()
    return result


def run(case: Case, messages: int, folder: Path) -> Result:
    folder.mkdir(parents=True, exist_ok=True)
    return (run_http if case.peer == "http" else run_mllp)(case, messages, folder)


def check(result: Result) -> None:
    """The bounds every fault must keep (see the module docstring)."""
    case, n = result.case, result.messages
    assert result.statuses == Counter({case.outcome: n}), f"{case.name}: outcomes {dict(result.statuses)}"
    if case.outcome == "delivered":  # a try that timed out before reaching the peer (a loaded machine) is one more
        assert all(case.attempts <= a <= MAX_ATTEMPTS for a in result.attempts), f"{case.name}: {result.attempts}"
    else:
        assert result.attempts == [case.attempts] * n, f"{case.name}: attempts {result.attempts}"
    assert n <= result.requests <= sum(result.attempts), \
        f"{case.name}: the peer saw {result.requests} tries for {sum(result.attempts)} attempts"
    assert result.requests_later == result.requests, f"{case.name}: sends went on after the outcomes were written"
    assert len(result.tries) == n and all(len(t) <= MAX_ATTEMPTS for t in result.tries.values()), \
        f"{case.name}: a resend did not carry its delivery's identity, or a delivery was sent too often"
    assert result.elapsed <= result.bound, f"{case.name}: took {result.elapsed:.1f} s, bound {result.bound:.1f} s"
    if case.fault == "429":
        gaps = [later - earlier for t in result.tries.values() for earlier, later in zip(t, t[1:])]
        assert min(gaps) >= RETRY_AFTER - 0.05, f"{case.name}: Retry-After {RETRY_AFTER} s not honoured: {gaps}"
    if case.peer == "http":
        expected = {t: result.forwarded for t in ("Patient", "Encounter")} if result.forwarded else {}
        assert result.stored == expected, f"{case.name}: FHIR server holds {result.stored}"
    else:
        accepted = n if case.outcome == "delivered" or case.fault == "late" else 0
        assert result.effects == accepted, f"{case.name}: {result.effects} distinct messages accepted"


class StallWatch:
    """Notices that this process stood still (a SIGSTOP, such as a shared machine's benchmark lock
    freezing every other job): a run whose timing bounds were measured across a stall says nothing,
    so the scripts run such a case again. ``stalled`` is the seconds lost, in gaps over ``threshold``."""

    def __init__(self, tick: float = 0.05, threshold: float = 0.5) -> None:
        self.tick, self.threshold = tick, threshold
        self.stalled = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)

    def _watch(self) -> None:
        while True:
            before = time.monotonic()
            if self._done.wait(self.tick):
                return
            gap = time.monotonic() - before - self.tick
            if gap > self.threshold:
                self.stalled += gap

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()


def unstalled(attempt: Any, tries: int = 4) -> tuple[Any, int]:
    """``attempt()`` again while it ran across a stall of over a second (at most ``tries`` runs);
    (its result, how many runs were thrown away)."""
    for thrown_away in range(tries):
        with StallWatch() as watch:
            result = attempt()
        if watch.stalled <= 1.0 or thrown_away == tries - 1:
            return result, thrown_away
    raise AssertionError("unreachable")

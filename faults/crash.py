"""Crash suite: kill -9 of `bridge run` at random moments under load; nothing ACKed may be lost.

Four MLLP senders push distinct HL7v2 ADT^A04 messages, one at a time each, as real senders do: a
sender whose connection dies (the engine was killed) reconnects and sends again what was not ACKed.
The engine delivers every message to a file destination (HL7v2) and to an HTTP destination (a FHIR
transaction receiver on loopback, in this process, that records every request it gets). Meanwhile
the engine is killed with SIGKILL ``--kills`` times at random moments and started again at once; with
``--nodes 3`` (PostgreSQL) three engines share one config and one MLLP port (``reuse_port``) and a
random one is killed each time.

Afterwards it counts, per message: ACKed, stored, delivered to each destination. It proves:
- lost = 0: every ACKed message is stored and delivered to both destinations;
- duplicates stored = 0: a message resent after a kill is recognised, not stored twice;
- a duplicate delivery (allowed: delivery is at-least-once) carries the same identity as the first
  (the FHIR entries' conditional keys; the HL7v2 file's name and MSH-10), so a receiver can drop it.

Run from the repository root, with the test extra installed:
    .venv/bin/python -m faults.crash                       # SQLite, 20 kills, 10,000 messages
    .venv/bin/python -m faults.crash --store postgresql    # a database of its own on 127.0.0.1:5432
    .venv/bin/python -m faults.crash --store postgresql --nodes 3
    .venv/bin/python -m faults.crash --kills 5 --messages 1000 --no-record
It prints a table and (unless --no-record) updates faults/results/crash.md with this mode's row.
The exit status is 1 when anything was lost, stored twice, or delivered again under another identity.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import hashlib
import json
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file (python faults/crash.py) as well as a module
    sys.path.insert(0, str(ROOT))

from werkzeug.wrappers import Request, Response  # noqa: E402

from bridge.testing.fakes.http import FakeHttpServer  # noqa: E402
from tests.processes import listening_pids, read_mllp_frame, start_engine  # noqa: E402

ADT = (ROOT / "examples" / "messages" / "adt-a04-telehealth.hl7").read_bytes()
RESULTS = ROOT / "faults" / "results" / "crash.md"
CHANNEL, FILE_DEST, HTTP_DEST = "adt", "file_out", "fhir_out"
VISIT = re.compile(rb"CRASH-V(\d{6})")


def message(n: int, senders: int) -> bytes:
    """Message ``n``: control id and visit number unique to it; its patient one of three of its sender's
    (a patient's messages come from one sender, in order)."""
    return (ADT.replace(b"TV20261127-0001", f"CRASH-{n:06d}".encode())
            .replace(b"V100234^", f"CRASH-V{n:06d}^".encode())
            .replace(b"MRN00012345", f"MRN{n % senders}{n // senders % 3}".encode()))


# --- the senders -------------------------------------------------------------------------------------


class Sender(threading.Thread):
    """Sends its messages one at a time, each after the ACK of the one before. When the connection
    dies or cannot be made, it reconnects and sends the unACKed message again; a negative ACK (the
    engine could not commit) is also sent again. Never gives up before ``deadline``."""

    def __init__(self, port: int, numbers: list[int], senders: int, deadline: float):
        super().__init__(daemon=True)
        self.port, self.numbers, self.senders, self.deadline = port, numbers, senders, deadline
        self.acked: set[int] = set()
        self.frames = 0      # frames written, first sends and resends
        self.resent = 0      # of those, sends of a message sent before
        self.nacks = 0       # answers other than AA
        self.lock = threading.Lock()

    def run(self) -> None:
        pending = list(self.numbers)
        tried: set[int] = set()
        while pending and time.monotonic() < self.deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    conn.settimeout(60)
                    while pending:
                        n = pending[0]
                        with self.lock:
                            self.frames += 1
                            self.resent += n in tried
                        tried.add(n)
                        conn.sendall(b"\x0b" + message(n, self.senders) + b"\x1c\r")
                        answer = read_mllp_frame(conn)
                        if f"MSA|AA|CRASH-{n:06d}".encode() not in answer:
                            with self.lock:
                                self.nacks += 1
                            time.sleep(0.2)
                            continue
                        with self.lock:
                            self.acked.add(n)
                        pending.pop(0)
            except OSError:
                time.sleep(0.05)


# --- the HTTP destination ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request the receiver got: the message it carries (its visit number), the identity a receiver
    deduplicates on (every entry's method, conditional URL and ifNoneExist), the body's hash and the
    engine's request id (tb-<message>-<outbox>)."""

    number: int
    identity: tuple[tuple[str, str, str], ...]
    body_sha256: str
    request_id: str


class FhirReceiver(FakeHttpServer):
    """A FHIR transaction endpoint that answers every entry 200 and records, not stores: the suite
    needs to know what arrived how often and under which identity, not to be a FHIR server."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Received] = []
        self.unreadable = 0

    @property
    def base(self) -> str:
        return f"fhir+{self.url}/fhir"

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        return self.record(request, body)(environ, start_response)

    def record(self, request: Request, body: bytes) -> Response:
        try:
            bundle = json.loads(body)
            entries = bundle["entry"]
            identity = tuple((e["request"]["method"], e["request"]["url"], e["request"].get("ifNoneExist", ""))
                             for e in entries)
            number = int(VISIT.search(body).group(1))
        except (ValueError, KeyError, TypeError, AttributeError):
            with self.lock:
                self.unreadable += 1
            return self.json(400, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "invalid", "diagnostics": "not a transaction Bundle of this suite"}]})
        with self.lock:
            self.received.append(Received(number, identity, hashlib.sha256(body).hexdigest(),
                                          request.headers.get("X-Request-Id", "")))
        return self.json(200, {"resourceType": "Bundle", "type": "transaction-response",
                               "entry": [{"response": {"status": "200 OK"}} for _ in entries]})

    def distinct(self) -> int:
        with self.lock:
            return len({r.number for r in self.received})


# --- the engines ------------------------------------------------------------------------------------


def write_config(folder: Path, store_url: str, port: int, receiver: FhirReceiver) -> Path:
    config = folder / "bridge.yaml"
    config.write_text(textwrap.dedent(f"""
        store: {store_url}
        engine: {{workers: 2, deliverers: 2, lease_seconds: 3, poll_seconds: 0.1, batch_size: 16}}
        channels:
          {CHANNEL}:
            source: mllp://127.0.0.1:{port}
            format: hl7v2
            timezone: America/Chicago
            options: {{reuse_port: true}}
            routes: [{{to: [{FILE_DEST}, {HTTP_DEST}]}}]
        destinations:
          {FILE_DEST}: {{url: "file://outbox", format: hl7v2}}
          {HTTP_DEST}:
            url: {receiver.base}
            format: fhir
            options: {{timeout: 20}}
            retry: {{max_attempts: 100, initial_seconds: 0.5, max_seconds: 2}}
    """))
    return config


class Nodes:
    """The engine processes of one run: started, killed, restarted; each one's stderr goes to a file."""

    def __init__(self, config: Path, count: int, port: int):
        self.config, self.port = config, port
        self.logs = config.parent / "logs"
        self.logs.mkdir(exist_ok=True)
        self.starts = 0
        self.start_failures: list[str] = []
        self.log_paths: dict[int, Path] = {}
        self.procs = [self.start() for _ in range(count)]

    def start(self) -> subprocess.Popen:
        self.starts += 1
        path = self.logs / f"start-{self.starts:03d}.log"
        with open(path, "wb") as log:
            proc = start_engine(self.config, stderr=log)
        self.log_paths[proc.pid] = path
        return proc

    def wait_listening(self, timeout: float = 600) -> None:
        """Until every node listens (generous: a shared machine may freeze the run for minutes). A node
        that exits while starting is started again, at most 3 times in a run; each such failure is
        counted and its log's last line kept (a PostgreSQL connect timeout on a loaded machine, so far)."""
        deadline = time.monotonic() + timeout
        while len(listening_pids(self.port, [p.pid for p in self.procs])) < len(self.procs):
            for index, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    self.start_failures.append(self._last_line(proc))
                    if len(self.start_failures) > 3:
                        raise RuntimeError(f"engines keep failing to start: {self.start_failures}")
                    self.procs[index] = self.start()
            if time.monotonic() > deadline:
                raise RuntimeError(f"engine not listening after {timeout:g} s; see {self.logs}")
            time.sleep(0.05)

    def _last_line(self, proc: subprocess.Popen) -> str:
        lines = [ln for ln in self.log_paths[proc.pid].read_text(errors="replace").splitlines() if ln.strip()]
        return f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"[:300]

    def kill_and_restart(self, index: int) -> None:
        victim = self.procs[index]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        self.procs[index] = self.start()
        self.wait_listening()

    def stop(self) -> list[int]:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=60))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes

    def tracebacks(self) -> int:
        return sum(path.read_bytes().count(b"Traceback") for path in self.logs.glob("*.log"))


# --- a run -------------------------------------------------------------------------------------------


@dataclass
class Plan:
    store: str = "sqlite"
    nodes: int = 1
    kills: int = 20
    messages: int = 10_000
    senders: int = 4
    seed: int | None = None
    deadline_seconds: float = 3600


@dataclass
class Result:
    mode: str
    kills: int
    messages: int
    frames_sent: int
    resent: int
    nacks: int
    acked: int
    stored: int
    duplicates_stored: int
    delivered: dict[str, int]
    lost: dict[str, int]
    duplicate_deliveries: dict[str, int]
    identities_match: bool
    http_bodies_identical: bool
    dead_or_pending: int
    clean_exits: bool
    tracebacks: int
    seconds: float
    seed: int
    kills_at: list[dict[str, Any]] = field(default_factory=list)
    start_failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def mode_name(plan: Plan) -> str:
    return f"{plan.store}" + (f", {plan.nodes} nodes" if plan.nodes > 1 else "")


@contextmanager
def store_url(plan: Plan, folder: Path) -> Iterator[str]:
    """SQLite: a file in the run's folder. PostgreSQL: a database of its own, dropped afterwards."""
    if plan.store == "sqlite":
        yield f"sqlite:///{folder}/var/bridge.db"
        return
    from tests.pg import database, server_problem

    problem = server_problem()
    if problem:
        raise RuntimeError(problem)
    with database() as url:
        yield f"{url}?pool_size=6"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(plan: Plan, folder: Path, progress: Callable[[str], None] = lambda line: None) -> Result:
    """One crash run in ``folder`` (which it fills: config, outbox, logs, the SQLite file)."""
    if plan.nodes > 1 and plan.store != "postgresql":
        raise ValueError("several nodes need a shared store: --store postgresql")
    seed = plan.seed if plan.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    began = time.monotonic()
    with ExitStack() as stack:
        receiver = stack.enter_context(FhirReceiver())
        url = stack.enter_context(store_url(plan, folder))
        port = free_port()
        config = write_config(folder, url, port, receiver)
        nodes = Nodes(config, plan.nodes, port)
        try:
            nodes.wait_listening()
            senders = start_senders(plan, port, began + plan.deadline_seconds)
            kills_at = kill_loop(plan, rng, nodes, senders, receiver, progress)
            finish(plan, senders, receiver, folder / "outbox", began, progress)
        finally:
            codes = nodes.stop()
        result = count(plan, url, senders, receiver, folder / "outbox", kills_at, seed)
        result.clean_exits = all(c == 0 for c in codes)
        result.tracebacks = nodes.tracebacks()
        result.start_failures = nodes.start_failures
    result.seconds = round(time.monotonic() - began, 1)
    if not result.clean_exits:
        result.problems.append(f"an engine did not stop cleanly: exit codes {codes}")
    return result


def start_senders(plan: Plan, port: int, deadline: float) -> list[Sender]:
    senders = [Sender(port, list(range(s, plan.messages, plan.senders)), plan.senders, deadline)
               for s in range(plan.senders)]
    for s in senders:
        s.start()
    return senders


def acked(senders: list[Sender]) -> int:
    return sum(len(s.acked) for s in senders)


def file_numbers(outbox: Path) -> dict[int, list[Path]]:
    """The message numbers in the outbox folder: number → its files (more than one: delivered again
    under another name)."""
    found: dict[int, list[Path]] = defaultdict(list)
    if outbox.exists():
        for path in outbox.iterdir():
            if path.name.endswith(".hl7"):
                match = VISIT.search(path.read_bytes())
                if match:
                    found[int(match.group(1))].append(path)
    return found


def progress_of(plan: Plan, senders: list[Sender], receiver: FhirReceiver) -> float:
    """How much of the run's work is done, 0 to 1: messages ACKed and messages delivered over HTTP."""
    return (acked(senders) + receiver.distinct()) / (2 * plan.messages)


def kill_loop(plan: Plan, rng: random.Random, nodes: Nodes, senders: list[Sender], receiver: FhirReceiver,
              progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Kills at random moments spread over the work: kill k comes when the work done passes the k-th of
    ``kills`` random points between 2 % and 97 % (taking in and delivering alike), at a random time
    (0.3-0.6 s of uptime at least) after the restart before it; a random node each time."""
    points = sorted(rng.uniform(0.02, 0.97) for _ in range(plan.kills))
    kills_at = []
    deadline = time.monotonic() + plan.deadline_seconds
    for k, point in enumerate(points):
        up = time.monotonic()
        time.sleep(rng.uniform(0.3, 0.6))
        while progress_of(plan, senders, receiver) < point and time.monotonic() < deadline:
            time.sleep(0.01)
        index = rng.randrange(len(nodes.procs))
        done = progress_of(plan, senders, receiver)
        kills_at.append({"kill": k + 1, "node": index, "uptime_s": round(time.monotonic() - up, 2),
                         "work_done": round(done, 3), "acked": acked(senders), "http_delivered": receiver.distinct()})
        progress(f"kill {k + 1}/{plan.kills}: node {index} after {time.monotonic() - up:.1f}s up, {done:.0%} of"
                 f" the work done ({acked(senders)} ACKed, {receiver.distinct()} delivered over HTTP)")
        nodes.kill_and_restart(index)
    return kills_at


def finish(plan: Plan, senders: list[Sender], receiver: FhirReceiver, outbox: Path, began: float,
           progress: Callable[[str], None]) -> None:
    """Waits until every sender is done and every ACKed message reached both destinations (or the
    deadline: what is missing then is counted as lost)."""
    deadline = began + plan.deadline_seconds
    for s in senders:
        s.join(timeout=max(deadline - time.monotonic(), 1))
    target = acked(senders)
    progress(f"senders done: {target} ACKed; waiting for deliveries")
    while time.monotonic() < deadline:
        if receiver.distinct() >= target and len(file_numbers(outbox)) >= target:
            return
        time.sleep(0.5)


def count(plan: Plan, url: str, senders: list[Sender], receiver: FhirReceiver, outbox: Path,
          kills_at: list[dict[str, Any]], seed: int) -> Result:
    """What arrived where, from the senders' ACKs, the store, the outbox folder and the receiver."""
    from bridge.core.store import open_store

    ack_set = set().union(*(s.acked for s in senders))
    store = open_store(url)
    try:
        stored_rows = store.search(channel=CHANNEL, limit=10 * plan.messages)
        outbox_rows = store.outbox_rows(limit=100 * plan.messages)
    finally:
        store.close()
    stored_ids = [m.control_id for m in stored_rows]
    stored = {int(c.split("-")[1]) for c in stored_ids if c}
    files = file_numbers(outbox)
    http: dict[int, list[Received]] = defaultdict(list)
    for r in receiver.received:
        http[r.number].append(r)

    result = Result(
        mode=mode_name(plan), kills=len(kills_at), messages=plan.messages,
        frames_sent=sum(s.frames for s in senders), resent=sum(s.resent for s in senders),
        nacks=sum(s.nacks for s in senders), acked=len(ack_set), stored=len(stored),
        duplicates_stored=len(stored_ids) - len(set(stored_ids)),
        delivered={"file": len(files), "http": len(http)},
        lost={"store": len(ack_set - stored), "file": len(ack_set - set(files)), "http": len(ack_set - set(http))},
        duplicate_deliveries={"file (other name)": sum(len(v) - 1 for v in files.values()),
                              "file (rewritten)": sum(r.attempts - 1 for r in outbox_rows
                                                      if r.destination == FILE_DEST and r.status == "delivered"),
                              "http": sum(len(v) - 1 for v in http.values())},
        identities_match=all(len({r.identity for r in v}) == 1 for v in http.values())
        and all(len({_hl7_identity(p) for p in v}) == 1 for v in files.values()),
        http_bodies_identical=all(len({r.body_sha256 for r in v}) == 1 for v in http.values()),
        dead_or_pending=sum(1 for r in outbox_rows if r.status != "delivered"),
        clean_exits=True, tracebacks=0, seconds=0.0, seed=seed, kills_at=kills_at)
    judge(result, plan, ack_set, receiver)
    return result


def _hl7_identity(path: Path) -> bytes:
    """The outbound HL7v2 message's control id (MSH-10): what its receiver deduplicates on."""
    msh = path.read_bytes().split(b"\r", 1)[0].split(b"|")
    return msh[9] if len(msh) > 9 else b""


def judge(result: Result, plan: Plan, ack_set: set[int], receiver: FhirReceiver) -> None:
    if result.acked < plan.messages:
        result.problems.append(f"only {result.acked} of {plan.messages} messages were ACKed before the deadline")
    if any(result.lost.values()):
        result.problems.append(f"lost: {result.lost}")
    if result.duplicates_stored:
        result.problems.append(f"{result.duplicates_stored} messages stored twice")
    if not result.identities_match:
        result.problems.append("a message was delivered again under another identity")
    if result.dead_or_pending:
        result.problems.append(f"{result.dead_or_pending} outbox rows not delivered")
    if receiver.unreadable:
        result.problems.append(f"{receiver.unreadable} HTTP requests the receiver could not read")
    if result.kills < plan.kills:
        result.problems.append(f"only {result.kills} of {plan.kills} kills")


# --- reporting ---------------------------------------------------------------------------------------

COLUMNS = ("mode", "kills", "messages", "ACKed", "stored", "delivered file / http", "lost",
           "duplicates stored", "duplicate deliveries file / http", "identities match", "resent frames",
           "run time")


def row(result: Result) -> list[str]:
    dup = result.duplicate_deliveries
    return [result.mode, str(result.kills), f"{result.messages:,}", f"{result.acked:,}", f"{result.stored:,}",
            f"{result.delivered['file']:,} / {result.delivered['http']:,}", str(sum(result.lost.values())),
            str(result.duplicates_stored),
            f"{dup['file (other name)']} (+{dup['file (rewritten)']} rewritten) / {dup['http']}",
            ("yes" if result.identities_match else "NO")
            + (" (HTTP bodies byte-identical)" if result.http_bodies_identical else ""),
            f"{result.resent:,}", f"{result.seconds:.0f} s"]


def table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def record(result: Result, path: Path = RESULTS) -> None:
    """Replace this mode's row in the results file (the other modes' rows stay; runs of several modes
    at once take turns through a lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "bridge-crash-results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _rewrite(result, path)


def _rewrite(result: Result, path: Path) -> None:
    rows: dict[str, list[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and len(cells) == len(COLUMNS) and cells[0] != "mode":
                rows[cells[0]] = cells
    rows[result.mode] = row(result)
    order = ["sqlite", "postgresql", "postgresql, 3 nodes"]
    ordered = sorted(rows.values(), key=lambda r: (order.index(r[0]) if r[0] in order else 99, r[0]))
    path.write_text(HEADER + table(ordered) + "\n\n" + FOOTER.format(
        updated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))


HEADER = """# Crash suite: latest full runs

`.venv/bin/python -m faults.crash [--store postgresql] [--nodes 3]` (see docs/operations.md, "Fault
suite: crashes"). Each row is the latest full run of its mode: 4 MLLP senders, kill -9 of `bridge run`
at random moments, deliveries to a file (HL7v2) and an HTTP (FHIR transaction) destination.

"""

FOOTER = """- *lost*: ACKed messages missing from the store, the outbox folder or the HTTP receiver (must be 0).
- *duplicates stored*: messages stored more than once (must be 0).
- *duplicate deliveries*: file: a second file for one message (other name) and files written again under
  the same name (outbox attempts after a kill); http: requests beyond the first per message. Allowed;
  *identities match* says each carried the first one's identity (FHIR entries' conditional keys; the
  file's name and MSH-10), so its receiver can drop it.
- *resent frames*: messages a sender sent again because its connection died before the ACK.
- *run time* is not a speed figure: the runs shared a 2-core machine with other work, which at times
  froze them for minutes (those freezes also expire leases, which adds duplicate deliveries).

Updated {updated}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--nodes", type=int, default=1, help="engine processes (more than 1: PostgreSQL)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--seed", type=int, help="repeat a run's kill moments and victims")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds before the run gives up")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (config, outbox, logs)")
    parser.add_argument("--no-record", action="store_true", help=f"do not update {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    plan = Plan(store=args.store, nodes=args.nodes, kills=args.kills, messages=args.messages,
                senders=args.senders, seed=args.seed, deadline_seconds=args.deadline)
    # a TERM (or Ctrl-C) unwinds: the engines are stopped and a PostgreSQL database is dropped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(tempfile.mkdtemp(prefix="bridge-crash-"))
    try:
        result = run(plan, folder, progress=lambda line: print(line, flush=True))
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"run folder kept: {folder}")
    print(table([row(result)]))
    print(json.dumps({k: v for k, v in asdict(result).items() if k != "kills_at"}, indent=1))
    if not args.no_record:
        record(result)
    for problem in result.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

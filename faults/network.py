"""Network faults at a larger size, with results recorded (issue 16); needs root, ip and tc.

Runs the scenarios of ``tests/faults/network_cases.py`` (the CI test runs a 2 s MLLP partition, a 3 s
PostgreSQL partition and, where the kernel has sch_netem, latency and loss) longer and with more
messages: partitions between the engine and an MLLP peer in a network namespace (2 s and 15 s, and a
flapping link), partitions between the node and its PostgreSQL (3 s and 20 s), netem latency and loss
(recorded as skipped, with the reason, where the kernel has no sch_netem). Each row says whether the
bounds held: every message delivered once the fault cleared, within max_attempts and a time bound,
each held once at the peer, nothing sent afterwards. Writes ``faults/results/network.md``.

    sudo .venv/bin/python faults/network.py [--messages 30] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faults.rows import judged_row, print_row, table_lines  # noqa: E402
from tests import pg  # noqa: E402
from tests.faults import netns  # noqa: E402
from tests.faults import downstream_cases as stall  # noqa: E402
from tests.faults import network_cases as cases  # noqa: E402

HEADER = ("scenario", "messages", "fault s", "delivered", "dead", "sent to peer", "distinct at peer",
          "max attempts", "elapsed", "bound", "bounds held", "reruns")


def scenarios(link: netns.Link, messages: int, netem: str | None):
    """(name, runner) pairs; a runner takes a folder and returns a NetResult (or a skip reason)."""
    yield "MLLP peer: partition 2 s", lambda d: cases.run("MLLP peer: partition 2 s", link, d, messages,
                                                          cases.partition(link, 2.0))
    yield "MLLP peer: partition 15 s", lambda d: cases.run("MLLP peer: partition 15 s", link, d, messages,
                                                           cases.partition(link, 15.0))
    yield "MLLP peer: 5 cuts of 1 s", lambda d: cases.run("MLLP peer: 5 cuts of 1 s", link, d, messages,
                                                          cases.flapping(link, 5, 1.0, 1.0))
    for seconds in (3.0, 20.0):
        name = f"PostgreSQL: partition {seconds:g} s"
        yield name, lambda d, s=seconds, n=name: with_database(n, link, d, messages, s)
    for spec in (("delay", "150ms", "50ms"), ("loss", "25%"), ("delay", "100ms", "loss", "10%")):
        name = f"MLLP peer: netem {' '.join(spec)} for 5 s"
        yield name, (lambda d, s=spec, n=name: netem or cases.run(n, link, d, messages, cases.impaired(link, 5.0, *s)))


def with_database(name: str, link: netns.Link, folder: Path, messages: int, seconds: float):
    problem = pg.server_problem()
    if problem:
        return problem
    with pg.database() as url:
        return cases.run_store_partition(name, link, folder, messages, seconds, url)


def run_all(messages: int) -> list[dict]:
    rows = []
    netem = netns.unavailable(need_netem=True)
    with netns.Link() as link, tempfile.TemporaryDirectory(prefix="tb-network-") as tmp:
        for index, (name, runner) in enumerate(scenarios(link, messages, netem)):
            outcome, thrown_away = stall.unstalled(lambda runner=runner, index=index: runner(
                Path(tmp) / f"{index}-{os.urandom(3).hex()}"))
            if isinstance(outcome, str):
                row = {k: "" for k in HEADER} | {"scenario": name, "bounds held": f"skipped: {outcome}", "reruns": ""}
            else:
                row = judged_row(outcome, cases.check, thrown_away)
            print_row(HEADER, row)
            rows.append(row)
    return rows


def markdown(rows: list[dict], messages: int) -> str:
    retry = cases.RETRY
    lines = [
        "# Network faults: results",
        "",
        f"Produced by `faults/network.py --messages {messages}` as root on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} CPUs shared with "
        "other work). The peer listens in a network namespace reached over a veth pair; a partition takes "
        "the far end down, so what the engine sends is dropped silently (connects and ACKs time out). For "
        "PostgreSQL, the node's store connections go through a forwarder in the namespace to the local "
        "server. Half the messages are delivered first (connections open), the rest arrive during the "
        "fault. `fault s` is how long the fault lasted; `elapsed` runs from its start to the last outcome. "
        "`sent to peer` above `distinct at peer` are resends carrying the same MSH-10 (a send lost in the "
        "partition, or one whose ACK was), which a receiver drops. `reruns` counts runs thrown away because this "
        "process was stopped for over a second meanwhile (the shared machine freezes other jobs while one "
        "measures speed). "
        f"Settings: max_attempts {retry['max_attempts']}, backoff {retry['initial_seconds']} s doubling to "
        f"{retry['max_seconds']} s, ACK timeout {cases.ACK_TIMEOUT} s, connect timeout {cases.CONNECT_TIMEOUT} s, "
        f"{cases.DELIVERERS} deliverers.",
        "",
        *table_lines(HEADER, rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "faults" / "results" / "network.md")
    args = parser.parse_args()
    reason = netns.unavailable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    rows = run_all(args.messages)
    args.out.write_text(markdown(rows, args.messages))
    return 0 if all(row["bounds held"] in ("yes",) or row["bounds held"].startswith("skipped") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

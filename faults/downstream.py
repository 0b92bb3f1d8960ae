"""The downstream fault matrix at a larger size, with its results recorded (issue 16).

Runs every case of ``tests/faults/downstream_cases.py`` (the CI test runs them with 4 messages) with
``--messages`` visits each through a real in-process engine to a faulty peer on loopback, checks the
same bounds, and writes a Markdown table (messages, delivered, dead-lettered, requests the peer saw,
the most attempts any message used, elapsed and its bound) to ``faults/results/downstream.md``.

    .venv/bin/python faults/downstream.py [--messages 30] [--only http-hang] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faults.rows import judged_row, print_row, table_lines  # noqa: E402
from tests.faults import downstream_cases as cases  # noqa: E402

HEADER = ("fault", "messages", "delivered", "dead", "requests", "max_attempts", "elapsed", "bound", "peer holds",
          "bounds held", "reruns")


def run_all(messages: int, only: str | None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="tb-downstream-") as tmp:
        for case in cases.matrix():
            if only and only not in case.name:
                continue
            result, thrown_away = cases.unstalled(
                lambda case=case: cases.run(case, messages, Path(tmp) / f"{case.name}-{os.urandom(3).hex()}"))
            row = judged_row(result, cases.check, thrown_away)
            print_row(HEADER, row)
            rows.append(row)
    return rows


def markdown(rows: list[dict], messages: int) -> str:
    settings = (f"max_attempts {cases.MAX_ATTEMPTS}, backoff {cases.BACKOFF['initial_seconds']} s doubling to "
                f"{cases.BACKOFF['max_seconds']} s, HTTP total timeout {cases.HTTP_TIMEOUT} s, MLLP ACK timeout "
                f"{cases.ACK_TIMEOUT} s (a late peer answers after {cases.LATE_SECONDS} s), connect timeout "
                f"{cases.CONNECT_TIMEOUT} s, Retry-After {cases.RETRY_AFTER:g} s, {cases.DELIVERERS} deliverers")
    lines = [
        "# Downstream faults: results",
        "",
        f"Produced by `faults/downstream.py --messages {messages}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC ({platform.node() or 'host'}, "
        f"{os.cpu_count()} CPUs shared with other work, so elapsed times are upper figures). A fault on the "
        "`first` try of each message must end with every message delivered on its second attempt; on "
        "`every` try, with every message dead-lettered after exactly max_attempts (AR: after one, it is "
        "permanent). `requests` counts what reached the peer (HTTP requests, MLLP messages) and must be "
        "messages x attempts; it was read again after the outcomes were written and had not grown. `peer holds` "
        "is what the receiver kept: one Patient and one Encounter per message whose transaction reached the "
        "FHIR server (a retry after a dropped answer matched the conditional keys), or the distinct MSH-10s an "
        "MLLP peer accepted (a late AA is an accept the engine could not see). `reruns` counts runs of the case "
        "thrown away because this process was stopped for over a second meanwhile (the shared machine freezes "
        "other jobs while one measures speed), which would make its timing meaningless. "
        f"Settings: {settings}.",
        "",
        *table_lines(HEADER, rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--out", type=Path, default=ROOT / "faults" / "results" / "downstream.md")
    args = parser.parse_args()
    rows = run_all(args.messages, args.only)
    args.out.write_text(markdown(rows, args.messages))
    return 0 if all(row["bounds held"] == "yes" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

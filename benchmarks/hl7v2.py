"""HL7v2 decode speed: our decode to records, side by side with hl7apy and python-hl7, one run.

The messages are the ADT (A01/A03/A04/A08/A11), RDE^O11, ORU^R01 and VXU^V04 messages of the test
corpus (tests/fixtures/hl7v2/corpus) that all three parsers accept, so every parser gets the same
input; types are taken in turn (at most ``PER_TYPE`` each), so results and immunizations weigh in
the mix and the many ADT files do not crowd them out. A type our decoder refuses on this checkout is
left out of the mix (the header line lists the types measured).
Ours decodes raw bytes all the way to canonical records (line endings, BOM, escapes, mapping);
the baselines get text already normalised to CR segment endings (they mis-parse LF files), and
only parse: they build no records, so the comparison favours them.

Run:  .venv/bin/python benchmarks/hl7v2.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hl7  # noqa: E402
from hl7apy.parser import parse_message  # noqa: E402

from bridge.plugins.hl7v2.codec import decode  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "hl7v2" / "corpus"
WANTED = ("ADT^A01", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A11", "RDE^O11", "ORU^R01", "VXU^V04")
PER_TYPE = 12


def as_cr_text(raw: bytes) -> str:
    text = raw.decode("utf-8-sig", "replace")
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r") + "\r"


def message_type(raw: bytes) -> str:
    first = as_cr_text(raw).split("\r", 1)[0]
    fields = first.split("|")
    return "^".join(fields[8].split("^")[:2]) if len(fields) > 8 else ""


def corpus_messages(limit: int = 60) -> list[bytes]:
    """Corpus messages of the wanted types that our decoder, hl7apy and python-hl7 all parse, the
    types taken in turn (ADT, RDE, ORU, VXU…) up to ``PER_TYPE`` each and ``limit`` in all."""
    by_type: dict[str, list[bytes]] = {}
    for path in sorted(CORPUS.rglob("*.hl7")):
        raw = path.read_bytes()
        kind = message_type(raw)
        if kind not in WANTED or len(by_type.get(kind, ())) >= PER_TYPE:
            continue
        try:
            decode(raw, {})
            parse_message(as_cr_text(raw), find_groups=False)
            hl7.parse(as_cr_text(raw))
        except Exception:  # a message one parser refuses is left out for all
            continue
        by_type.setdefault(kind, []).append(raw)
    chosen: list[bytes] = []
    queues = [by_type[k] for k in WANTED if k in by_type]
    while queues and len(chosen) < limit:
        for queue in list(queues):
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
        queues = [q for q in queues if q]
    return chosen


def rate(run: Callable[[], None], count: int, seconds: float) -> float:
    """Messages per second of ``run`` (which handles ``count`` messages), over about ``seconds``."""
    rounds, start = 0, time.perf_counter()
    while True:
        run()
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return rounds * count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per parser")
    args = parser.parse_args()
    messages = corpus_messages()
    texts = [as_cr_text(m) for m in messages]
    n = len(messages)
    kinds = sorted({message_type(m) for m in messages})
    print(f"{n} messages ({', '.join(kinds)}), {sum(map(len, messages)) // n} bytes on average")

    def ours() -> None:
        for raw in messages:
            decode(raw, {})

    def hl7apy_parse() -> None:
        for text in texts:
            parse_message(text)

    def python_hl7() -> None:
        for text in texts:
            hl7.parse(text)

    results = {
        "telemed-bridge decode to records": rate(ours, n, args.seconds),
        "hl7apy 1.3.5 parse_message": rate(hl7apy_parse, n, args.seconds),
        "python-hl7 hl7.parse": rate(python_hl7, n, args.seconds),
    }
    base = results["telemed-bridge decode to records"]
    print(f"{'parser':36} {'msg/s':>10} {'ours is x faster':>17}")
    for name, value in results.items():
        print(f"{name:36} {value:10,.0f} {base / value:17.1f}")


if __name__ == "__main__":
    main()

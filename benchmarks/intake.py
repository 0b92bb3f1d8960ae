"""Intake throughput versus bare SQLite inserts of the same bytes at the same durability.

Both sides commit every message on its own (WAL, synchronous=FULL): that is what a sender waiting
for its ACK costs. The intake additionally reads the header, computes the sha256 and dedupe key,
writes the dedupe row and the timeline event, so the ratio shows what the engine's bookkeeping costs.
Rounds alternate between the two so disk noise hits both alike.

    python benchmarks/intake.py [--messages 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.core.config import ChannelConfig  # noqa: E402
from bridge.core.intake import Intake  # noqa: E402
from bridge.core.plugin_manager import load_plugins  # noqa: E402
from bridge.core.store.sqlite import SQLiteStore  # noqa: E402


def messages(count: int) -> list[bytes]:
    template = json.loads((ROOT / "examples" / "messages" / "encounter.json").read_text())
    out = []
    for n in range(count):
        template["message_id"] = f"bench-{n}"
        template["records"][0]["id"] = f"TV-{n}"
        out.append(json.dumps(template).encode())
    return out


def bare_inserts(folder: Path, payloads: list[bytes]) -> float:
    conn = sqlite3.connect(folder / "bare.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, raw BLOB NOT NULL)")
    start = time.perf_counter()
    for raw in payloads:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO messages (raw) VALUES (?)", (raw,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(payloads) / elapsed


def intake(folder: Path, payloads: list[bytes], round_no: int) -> float:
    store = SQLiteStore(str(folder / "intake.db"))
    plugins = load_plugins(entry_points=False)
    channel = ChannelConfig(name=f"bench-{round_no}", source="file://x", format="bridge")
    engine_intake = Intake(store, plugins.formats())
    start = time.perf_counter()
    for raw in payloads:
        receipt = engine_intake.submit(channel, raw, {"file": "bench"})
        assert receipt.accepted and not receipt.duplicate
    elapsed = time.perf_counter() - start
    store.close()
    return len(payloads) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    payloads = messages(args.messages)
    bare, ours = [], []
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        folder = Path(tmp)
        for round_no in range(args.rounds):
            bare.append(bare_inserts(folder, payloads))
            ours.append(intake(folder, payloads, round_no))
    b, o = statistics.median(bare), statistics.median(ours)
    size = sum(map(len, payloads)) / len(payloads)
    print(f"messages per round: {args.messages} (avg {size:.0f} bytes), rounds: {args.rounds}, "
          f"durability: WAL + synchronous=FULL, one commit per message")
    print(f"bare SQLite inserts : {b:10.0f} msg/s   (rounds: {', '.join(f'{x:.0f}' for x in bare)})")
    print(f"bridge intake       : {o:10.0f} msg/s   (rounds: {', '.join(f'{x:.0f}' for x in ours)})")
    print(f"intake / bare       : {o / b:10.1%}   (target >= 50%)")


if __name__ == "__main__":
    main()

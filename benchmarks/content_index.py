"""What the content index (migration 11) costs, and how fast a content search answers.

The SQLite store fills its FTS5 index in batches (``index_content``, the engine's indexer thread),
not in the intake's commit. This compares, rounds alternating in one run: the intake alone (as it
is), the intake with an FTS5 insert trigger (the index written in every commit, the design this
replaced), and the batched indexer's rate over what the intake stored. Messages are received
``--batch`` per transaction (as the MLLP listener's shared commits do); put the folder on tmpfs
(``--folder /dev/shm``) to compare CPU without the disk's flush. Then content searches on the
indexed store: a word in one message, and a word in every message (newest 50 of them).

    python benchmarks/content_index.py [--messages 5000] [--rounds 3] [--batch 16] [--folder DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.core.store.sqlite import SQLiteStore  # noqa: E402

ADT = ("MSH|^~\\&|TELEVISIT|CLINIC|EHR|HOSP|20260301120000||ADT^A04^ADT_A01|C{n}|P|2.5\r"
       "EVN|A04|20260301120000\r"
       "PID|1||MRN{n:08d}^^^HOSP^MR||Testpatient{n}^Jane^Q||19800101|F|||12 Main St^^Springfield^IL^62701\r"
       "PV1|1|O|TELE^^^CLINIC||||1234^Welby^Marcus|||||||||||V{n}\r")


def messages(count: int) -> list[bytes]:
    return [ADT.format(n=n).encode() for n in range(count)]


def receive_all(store: SQLiteStore, payloads: list[bytes], batch: int, channel: str) -> float:
    start = time.perf_counter()
    for first in range(0, len(payloads), batch):
        with store._tx() as conn:
            for raw in payloads[first:first + batch]:
                store._insert(conn, channel, "hl7v2", raw, None, {"message_type": "ADT^A04"}, {}, None)
    return len(payloads) / (time.perf_counter() - start)


def with_insert_trigger(path: Path) -> SQLiteStore:
    """The per-commit design: every message's raw input indexed in the transaction that stores it."""
    store = SQLiteStore(str(path))
    with store._tx() as conn:
        conn.execute("CREATE TRIGGER bench_index AFTER INSERT ON messages BEGIN INSERT INTO message_text(rowid, body)"
                     " VALUES (new.id, substr(CAST(new.raw AS TEXT), 1, 262144)); END")
        conn.execute("UPDATE content_index SET last_id = 1e18 WHERE name = 'messages'")  # the trigger does it
    return store


def index_all(store: SQLiteStore) -> float:
    start, done = time.perf_counter(), 0
    while indexed := store.index_content():
        done += indexed
    return done / (time.perf_counter() - start)


def search_ms(store: SQLiteStore, text: str, repeat: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        store.search(text=text, limit=50)
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    payloads = messages(args.messages)
    plain_rates, trigger_rates, index_rates = [], [], []
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        plain, triggered = SQLiteStore(str(Path(tmp) / "plain.db")), with_insert_trigger(Path(tmp) / "trigger.db")
        for round_no in range(args.rounds):
            plain_rates.append(receive_all(plain, payloads, args.batch, f"r{round_no}"))
            trigger_rates.append(receive_all(triggered, payloads, args.batch, f"r{round_no}"))
            index_rates.append(index_all(plain))
        stored = args.messages * args.rounds
        rare, common = search_ms(plain, f"Testpatient{args.messages // 2}"), search_ms(plain, "Springfield")
        plain.close()
        triggered.close()
    p, t, i = (statistics.median(r) for r in (plain_rates, trigger_rates, index_rates))
    print(f"messages per round: {args.messages} HL7v2 ADT^A04 ({len(payloads[0])} bytes), rounds: {args.rounds}, "
          f"{args.batch} per commit, folder: {args.folder or 'default temp'}")
    print(f"intake (index off the commit)  : {p:9.0f} msg/s  (rounds: {', '.join(f'{x:.0f}' for x in plain_rates)})")
    print(f"intake with an index trigger   : {t:9.0f} msg/s  (rounds: {', '.join(f'{x:.0f}' for x in trigger_rates)})"
          f"  = {t / p:.1%} of the intake")
    print(f"batched indexer (2000 a batch) : {i:9.0f} msg/s  (rounds: {', '.join(f'{x:.0f}' for x in index_rates)})")
    print(f"content search over {stored} messages, page of 50: one match {rare:.2f} ms, "
          f"every message matches {common:.2f} ms")


if __name__ == "__main__":
    main()

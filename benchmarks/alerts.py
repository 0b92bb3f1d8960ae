"""One alert round's cost against a SQLite store holding a day's worth of finished work.

Builds a store with N delivered messages and outbox rows (plus a small backlog), then alternates, in
the same run, two ways of reading what the channel conditions need: the dashboard's ``channel_stats``
(every message's status counted, once for the error rate and once for the backlog), which the alert
conditions used first, and the reads they use now (``channel_backlog`` through the queue index,
``channel_errors`` through the received-time index). Then it times a whole round of seven rules.

    .venv/bin/python benchmarks/alerts.py [--rows 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time

from bridge.core.alerts import AlertMonitor
from bridge.core.config import parse_config
from bridge.core.store import open_store
from bridge.testing import plugin_manager

RULES = {"a": {"when": "destination_failing", "minutes": 5}, "b": {"when": "channel_error_rate", "percent": 10},
         "c": {"when": "backlog", "minutes": 5}, "d": {"when": "hold_waiting", "hours": 4},
         "e": {"when": "listener_down"}, "f": {"when": "certificate_expiring", "days": 30},
         "g": {"when": "job_failing"}}


class Discard:
    name = "webhook"

    def send(self, notice) -> None:
        pass


def build(folder: str, rows: int):
    config = parse_config({
        "store": "sqlite:///bridge.db",
        "channels": {"in": {"source": "file://inbox", "format": "bridge", "routes": [{"to": ["out"]}]}},
        "destinations": {"out": {"url": "file://outbox", "format": "bridge"}},
        "alerts": {"notify": {"webhook": {"url": "http://127.0.0.1:9/h"}}, "rules": RULES}},
        config_dir=folder, plugins=plugin_manager())
    store = open_store(config.store_url)
    now = time.time()
    with sqlite3.connect(os.path.join(folder, "bridge.db")) as conn:
        conn.executemany(
            "INSERT INTO messages (id, channel, format, status, received_at, updated_at, raw, sha256, size)"
            " VALUES (?, 'in', 'bridge', ?, ?, ?, x'00', '', 1)",
            [(i, "received" if i > rows - 20 else "delivered", now - 86400 + i * 86400 / rows, now)
             for i in range(1, rows + 1)])
        conn.executemany(
            "INSERT INTO outbox (message_id, destination, status, payload, media_type, file_extension,"
            " next_attempt_at, created_at, delivered_at) VALUES (?, 'out', 'delivered', x'00', 't', 'x', 0, ?, ?)",
            [(i, now - 86400 + i * 86400 / rows, now - 86400 + i * 86400 / rows) for i in range(1, rows + 1)])
    return store, config, now


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store, config, now = build(folder, args.rows)
        before, after = [], []
        for _ in range(args.rounds):  # alternating, so both see the same machine
            before.append(timed(lambda: (store.channel_stats(now - 3600), store.channel_stats(now))))
            after.append(timed(lambda: (store.channel_errors(now - 3600), store.channel_backlog())))
        monitor = AlertMonitor(store, config, notifiers={"webhook": Discard()})
        rounds = [timed(monitor.evaluate_once) for _ in range(args.rounds)]
        store.close()
    print(f"store: {args.rows} messages and outbox rows (20 waiting), SQLite, {args.rounds} rounds")
    print(f"channel reads, channel_stats x2       : {statistics.median(before):7.1f} ms median"
          f"  ({min(before):.1f}-{max(before):.1f})")
    print(f"channel reads, backlog + errors reads : {statistics.median(after):7.1f} ms median"
          f"  ({min(after):.1f}-{max(after):.1f})")
    print(f"a whole round, seven rules            : {statistics.median(rounds):7.1f} ms median"
          f"  ({min(rounds):.1f}-{max(rounds):.1f})")


if __name__ == "__main__":
    main()

"""``bridge store copy``: move a SQLite store into an empty PostgreSQL database.

Every table is copied in id order, column by column, in one PostgreSQL transaction: a copy that
fails leaves the target as empty as it was. Values are copied as they are stored — timestamps as the
same floats, JSON as the same text — so the audit log's hash chain verifies on the copy. The lane
bookkeeping is not copied (each backend keeps its own): the target rebuilds its lanes from the
messages and outbox rows, and its id sequences continue after the copied ids.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from bridge.errors import StoreError

from .postgres import PostgresStore, redact_url
from .sqlite import SQLiteStore, sqlite_path

# Parents before children (foreign keys), so each table's rows find the rows they point at.
TABLES = ("messages", "events", "outbox", "holds", "prescriptions", "prescription_events", "watermarks",
          "job_runs", "users", "api_tokens", "channel_state", "alerts", "audit_log")
# Tables keyed by name rather than id: copied in key order.
NAME_KEYED = {"prescriptions": "number", "watermarks": "name", "users": "name", "api_tokens": "name",
              "channel_state": "channel", "alerts": "rule, subject"}
IDENTITY_TABLES = ("messages", "events", "outbox", "holds", "prescription_events", "job_runs", "audit_log")
BATCH = 1000


def copy_store(source_url: str, target_url: str,
               progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every row of a SQLite store into an empty PostgreSQL store; returns rows per table."""
    if not source_url.startswith("sqlite:///"):
        raise StoreError(f"--from must be a SQLite store URL (sqlite:///path), got {source_url!r}")
    if not target_url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"--to must be a PostgreSQL store URL (postgresql://user@host:port/db),"
                         f" got {redact_url(target_url)!r}")
    SQLiteStore(source_url).close()  # the source at the current schema, as `bridge run` would bring it
    source = sqlite3.connect(f"file:{sqlite_path(source_url)}?mode=ro", uri=True)
    target = PostgresStore(target_url)
    try:
        counts = _copy(source, target, progress)
    finally:
        source.close()
    try:
        target.rebuild_lanes()
    finally:
        target.close()
    return counts


def _copy(source: sqlite3.Connection, target: PostgresStore,
          progress: Callable[[str, int], None] | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    with target._tx() as conn:
        _refuse_non_empty(conn, target.url)
        for table in TABLES:
            columns = _shared_columns(source, conn, table)
            written = [c for c in columns if c != "lane_head"] + (["unordered"] if table == "outbox" else [])
            sql = f"INSERT INTO {table} ({', '.join(written)}) VALUES ({', '.join(['%s'] * len(written))})"
            counts[table] = 0
            for rows in _batches(source, table, columns):
                conn.cursor().executemany(sql, rows)
                counts[table] += len(rows)
                if progress:
                    progress(table, counts[table])
        for table in IDENTITY_TABLES:  # new rows continue after the copied ids
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                         f" COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")
    return counts


def _refuse_non_empty(conn: Any, url: str) -> None:
    busy = [t for t in TABLES if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0]]
    if busy:
        raise StoreError(f"the target store {url} is not empty (rows in {', '.join(busy)}): copy only into a new,"
                         " empty database")


def _shared_columns(source: sqlite3.Connection, conn: Any, table: str) -> list[str]:
    """The columns both backends have, in the source's order (lane markers are backend-specific)."""
    theirs = [r[1] for r in source.execute(f"PRAGMA table_info({table})")]
    ours = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                       " WHERE table_schema = current_schema() AND table_name = %s", (table,))}
    shared = [c for c in theirs if c in ours]
    if table == "outbox" and "lane_head" in theirs:
        shared.append("lane_head")  # read as the source's marker, written as ``unordered`` (see _row)
    return shared


def _batches(source: sqlite3.Connection, table: str, columns: list[str]) -> Iterator[list[tuple]]:
    order = NAME_KEYED.get(table, "id")
    cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
    while rows := cursor.fetchmany(BATCH):
        yield [_row(table, columns, row) for row in rows]


def _row(table: str, columns: list[str], row: tuple) -> tuple:
    if table != "outbox":
        return row
    if "lane_head" not in columns:
        return (*row, 0)
    # SQLite's lane_head 2 marks a rotate row that failed and stepped aside: ``unordered`` here
    marker = row[columns.index("lane_head")]
    return (*(v for c, v in zip(columns, row) if c != "lane_head"), 1 if marker == 2 else 0)

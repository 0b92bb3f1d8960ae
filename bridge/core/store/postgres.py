"""The PostgreSQL store: several engine processes (nodes) on several hosts share one database.

Why it looks the way it does:
- A connection pool (psycopg_pool) instead of SQLite's one-connection-per-thread and group commit:
  PostgreSQL has no single writer, so concurrent receivers simply commit in parallel.
- Claims lock their rows with ``FOR UPDATE SKIP LOCKED``: two nodes never wait on, nor take, the
  same row; every claim bumps the row's ``lease_token`` and every later write is fenced by it, so a
  node whose lease expired (it paused, or was killed) cannot overwrite the new owner's result.
- The audit chain is appended under a transaction-scoped advisory lock: one writer at a time reads
  the chain head and appends, so concurrent writers on any node never fork the chain.
- Each change is one transaction (``_tx``), as in the SQLite store.

The URL is ``postgresql://user[:password]@host[:port]/database``; ``?pool_size=N`` (default 10)
sets the connection pool's size and is not passed to the server.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from . import prescription_writes
from bridge.errors import BridgeError, StoreError

from . import postgres_replay as replays
from .base import (
    AuditEntry,
    NewOutbox,
    OutboxRow,
    PrescriptionEventIn,
    ProcessingResult,
    Store,
)
from .postgres_admin import PgAdminTables
from .postgres_queue import ROLLED_BACK, PgQueue, lane_key
from .alert_tables import AlertTables
from .postgres_schema import MIGRATIONS
from .operator_actions import OperatorActions
from .destination_reads import DestinationReads
from .reads import StoreReads, fold_accents
from .sqlite import GENESIS_HASH, audit_hash

# Advisory lock keys (one namespace per purpose): the audit chain head, migrations.
AUDIT_LOCK = 0x62726964_00000001
MIGRATION_LOCK = 0x62726964_00000002
DEFAULT_POOL_SIZE = 10
# Content search (migrations 13, 14): only the first 256 KiB of a payload is searchable, and its words are
# its runs of letters and digits, lowercased. For an ASCII payload these bytes map letters to lowercase,
# keep digits and turn everything else into a space: the same words as bridge_words() on the server.
SEARCHABLE_BYTES = 262144
_ASCII_WORD_BYTES = bytes(c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32
                          for c in range(256))


def payload_words(payload: bytes) -> str | None:
    """The distinct search words of an outbox payload, space-separated, as ``bridge_words`` (migration
    13) finds them; None where only the server may split it the same way: a payload that is not plain
    ASCII (the server's idea of a Unicode letter decides), or that holds a NUL byte (which the server
    reads as escaped text, ``\\000``). Splitting here is a byte translation and a split in C (about
    0.06 ms for a 16 KB FHIR bundle, against 0.5 ms of server CPU for the regular expression)."""
    if not isinstance(payload, (bytes, bytearray)):  # (None fails the row's NOT NULL, as it should)
        return None
    head = payload[:SEARCHABLE_BYTES]
    if not head.isascii() or b"\x00" in head:
        return None
    return b" ".join(set(head.translate(_ASCII_WORD_BYTES).split())).decode("ascii")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def split_url(url: str) -> tuple[str, int]:
    """``(conninfo URL for psycopg, pool size)``: ``pool_size`` is ours, not a libpq parameter."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    pool_size = DEFAULT_POOL_SIZE
    kept = []
    for key, value in query:
        if key == "pool_size":
            if not value.isdigit() or int(value) < 1:
                raise StoreError(f"store URL option pool_size must be a whole number >= 1, got {value!r}")
            pool_size = int(value)
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), pool_size


_SECRET_PARAMETERS = {"password", "sslpassword", "passfile"}  # libpq parameters a URL query may carry


def redact_url(url: str) -> str:
    """The URL without its secrets, for messages and logs: the password in the authority part and in
    the query (``?password=…``, which libpq accepts too) are shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key in _SECRET_PARAMETERS for key, _ in query):
        parts = parts._replace(query="&".join(
            f"{key}=***" if key in _SECRET_PARAMETERS else urlencode([(key, value)]) for key, value in query))
    return urlunsplit(parts)


class PostgresStore(PgQueue, OperatorActions, PgAdminTables, AlertTables, StoreReads, DestinationReads,
                    Store):
    placeholder = "%s"  # psycopg's paramstyle, for the shared reads (reads.StoreReads)
    minute_bucket_sql = "FLOOR((received_at - ?) / 60)"  # PostgreSQL's CAST rounds; admin_tables' reads
    shared_by_nodes = True  # idle workers wait on the NOTIFY hint, which any node's commits send
    def __init__(self, url: str, *, pool_size: int | None = None, connect_timeout: float = 10.0):
        conninfo, url_pool_size = split_url(url)
        self.url = redact_url(url)
        self._conninfo = conninfo
        self._listener_lock = threading.Lock()
        self._wake: Any = None
        self._closed = False
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=pool_size or url_pool_size, open=False,
                                    kwargs={"autocommit": False}, name="bridge-store")
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to store {self.url}: no connection within {connect_timeout:g} s"
                             " (is the server running, and does the database exist?)") from exc
        self._migrate()

    # --- connections and transactions -------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection: committed when the block ends, rolled back when it
        raises. A lost connection becomes a StoreError; constraint errors pass through unchanged, and so
        does a deadlock or serialization failure, which the queue's batches retry (see ``_retrying``)."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except ROLLED_BACK:
            raise
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreError(f"store unavailable: {exc}") from exc

    def _read(self, sql: str, params: Any = ()) -> list[tuple]:
        """One query outside a transaction (autocommit: one round trip, not BEGIN + query + COMMIT)."""
        with self._tx() as conn:
            conn.autocommit = True
            try:
                return conn.execute(sql, params).fetchall()
            except psycopg.DatabaseError as exc:
                raise StoreError(f"store read failed: {exc}") from exc
            finally:
                conn.autocommit = False

    def _migrate(self) -> None:
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))  # nodes starting together
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                         " description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, description, sql in MIGRATIONS:
                if version in done:
                    continue
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)", (version, description, time.time()))

    def schema_version(self) -> int:
        return int(self._read("SELECT MAX(version) FROM schema_migrations")[0][0] or 0)

    def _content_clause(self, terms):
        """Full text over ``content_words`` (migration 13: one tsvector per message input and per outbox
        payload, its lowercased runs of letters and digits, written when the row is inserted): every
        word required, ``:*`` for a prefix. A search word with ``_`` is split there as the payload
        was; the parts are letters and digits only, so none is tsquery syntax."""
        lexemes = []
        for word, prefix in terms:
            parts = [part for part in re.split(r"[\W_]+", word) if part]
            for n, part in enumerate(parts):
                mark = ":*" if prefix and n == len(parts) - 1 else ""
                # as typed, or without its accents (migration 15 folds the stored words; a database
                # that is not UTF8 keeps them, and a search with accents must still find those)
                forms = [f"'{form}'{mark}" for form in dict.fromkeys((part, fold_accents(part)))]
                lexemes.append(forms[0] if len(forms) == 1 else f"({' | '.join(forms)})")
        if not lexemes:  # only underscores: no word, nothing can match
            return "FALSE", []
        # one id set read through the GIN index (bitmap scan), not a condition walked row by row
        return "id IN (SELECT message_id FROM content_words WHERE words @@ ?::tsquery)", [" & ".join(lexemes)]

    def close(self) -> None:
        with self._listener_lock:
            self._closed = True
            if self._wake is not None:
                self._wake.stop()
                self._wake = None
        self._pool.close()

    # --- intake --------------------------------------------------------------------------------

    def receive(self, channel, fmt, raw, *, dedupe_key, header, origin, error=None):
        (result,) = self.receive_many([(channel, fmt, raw, dedupe_key, header, origin, error)])
        if isinstance(result, BaseException):
            raise result
        return result

    def receive_many(self, items):
        """All items in one transaction; if that fails, each item alone, so a bad item never fails its
        neighbours. (No group commit: concurrent receivers commit in parallel on pooled connections.)"""
        items = [tuple(item) for item in items]
        try:
            with self._tx() as conn:
                lanes: list[tuple[str, str | None, int]] = []
                results = [self._insert(conn, *item, lanes=lanes) for item in items]
                for channel, order_key, message_id in sorted(lanes, key=lambda lane: (
                        lane[0], lane_key(lane[1], lane[2]))):  # lane rows are locked in sorted order
                    self._enter_message_lane(conn, channel, order_key, message_id)
                if lanes:
                    self._notify(conn)
                return results
        except Exception as exc:
            if len(items) == 1:
                return [exc if isinstance(exc, StoreError) else StoreError(f"could not store message: {exc}")]
        return [self.receive_many([item])[0] for item in items]

    def _insert(self, conn, channel, fmt, raw, dedupe_key, header, origin, error,
                lanes: list[tuple[str, str | None, int]] | None = None) -> tuple[int, bool]:
        """Store one message (or record a duplicate). A queued message enters its lane now, or, with
        ``lanes``, is appended there for the caller to enter with the rest of its batch."""
        now = time.time()
        status = "failed" if error else "received"
        row = conn.execute(
            "INSERT INTO messages (channel, format, status, received_at, updated_at, raw, sha256, size,"
            " origin, dedupe_key, control_id, sending_application, sending_facility, message_type,"
            " trace_id, error, order_key) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id",
            (channel, fmt, status, now, now, raw, hashlib.sha256(raw).hexdigest() if raw is not None else None,
             len(raw) if raw is not None else None, _json(dict(origin)), dedupe_key or None,
             header.get("control_id"), header.get("sending_application"), header.get("sending_facility"),
             header.get("message_type"), header.get("trace_id"), error, header.get("order_key")),
        ).fetchone()
        if row is None:  # seen before (possibly by another node, which committed first)
            first = conn.execute("SELECT id FROM messages WHERE dedupe_key = %s", (dedupe_key,)).fetchone()[0]
            self._event(conn, first, "duplicate", {"origin": dict(origin)}, now)
            return first, True
        if error:
            self._event(conn, row[0], "failed", {"error": error}, now)
        elif lanes is not None:
            lanes.append((channel, header.get("order_key"), row[0]))
        else:
            self._enter_message_lane(conn, channel, header.get("order_key"), row[0])
        return row[0], False

    # --- processing ----------------------------------------------------------------------------

    def _write_result(self, conn, message_id: int, root: int, result: ProcessingResult, now: float,
                      events: list[tuple], outbox: list[tuple]) -> None:
        """Hold and prescription changes of one processed message; its timeline events are appended to
        ``events`` and its outbox rows to ``outbox`` (the batch writes those together, see
        ``_insert_outbox``). ``root``: its replay chain's first message."""
        for kind, detail in result.events:
            events.append((message_id, now, kind, _json(dict(detail))))
        for item in result.outbox:
            # a replay's row carries the identity (file name, idempotency key) of the chain's first row
            first = replays.original_row(conn, root, item.destination) if root != message_id else None
            if item.error is not None:  # this destination's encoder refused: a dead letter, never claimed
                self._insert_encode_failure(conn, message_id, item, first, now, events)
                continue
            outbox.append((message_id, item.destination, "pending", item.payload, item.media_type,
                           item.file_extension, item.order_key, item.order_mode, now, now, item.control_id,
                           item.message_type, *(first or (None, None))))
        if result.hold_reasons is not None:
            self._open_hold(conn, message_id, result.keys.get("prescription_number"), result.hold_reasons, now)
        for number in result.prescriptions:
            conn.execute("INSERT INTO prescriptions (number, state, message_id, trace_id, created_at, updated_at)"
                         " VALUES (%s, 'created', %s, %s, %s, %s) ON CONFLICT (number) DO NOTHING",
                         (number, message_id, result.trace_id, now, now))
        for event in result.prescription_events:
            self._apply_inbound_event(conn, message_id, event, now)

    @staticmethod
    def _insert_encode_failure(conn, message_id: int, item: NewOutbox, first: tuple[int, int] | None,
                               now: float, events: list[tuple]) -> None:
        """A destination whose encoder refused the message gets a dead letter at once (never claimed,
        ``attempts`` 0, empty payload, in no lane, so it holds up no one): it fails alone, is listed with
        its reason, and a replay to it keeps this row's identity and resolves it once delivered. The
        batch settles the message after its other rows are written (``_finish_processing_batch``)."""
        (outbox_id,) = conn.execute(
            "INSERT INTO outbox (message_id, destination, status, payload, media_type, file_extension,"
            " order_key, order_mode, next_attempt_at, created_at, last_error, original_message_id,"
            " original_outbox_id) VALUES (%s,%s,'dead',%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (message_id, item.destination, b"", item.media_type, item.file_extension, item.order_key,
             item.order_mode, now, now, item.error, *(first or (None, None)))).fetchone()
        events.append((message_id, now, "encode_failed", _json({"destination": item.destination,
                                                                "outbox_id": outbox_id, "error": item.error})))

    def _open_hold(self, conn, message_id: int, prescription: str | None, reasons: Any, now: float) -> None:
        """One open hold per prescription: a later held message for it waits behind the open one. Two
        nodes holding messages of one prescription at once are serialized by a lock on its number."""
        if prescription:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("hold:" + prescription,))
        ahead = replays.open_hold_for(conn, prescription, message_id) if prescription else None
        conn.execute("INSERT INTO holds (message_id, status, created_at, reasons) VALUES (%s,%s,%s,%s)",
                     (message_id, "waiting" if ahead else "open", now, _json(list(reasons))))
        if ahead:
            self._event(conn, message_id, "hold_waiting", {"behind_message": ahead[1], "note": (
                "the prescription already has a hold; this one opens when that is released or rejected")}, now)
            self._event(conn, ahead[1], "hold_queued", {"message": message_id}, now)

    # --- prescription lifecycle -----------------------------------------------------------------

    def _apply_inbound_event(self, conn, message_id: int, event: PrescriptionEventIn, now: float) -> None:
        prescription_writes.apply_inbound_event(conn, message_id, event, now, self._event)

    def _apply_outbound(self, conn, row: OutboxRow, now: float) -> None:
        prescription_writes.apply_outbound(conn, row, now, self._event)

    # --- delivery ------------------------------------------------------------------------------

    def _resolve_dead_letters(self, conn, row: OutboxRow, now: float) -> None:
        """A replay delivered where its chain had dead-lettered: those dead letters are resolved. A row
        that is its chain's first for the destination (no original row) has nothing before it."""
        if row.original_message_id is None:
            return
        for dead in replays.dead_letters_resolved_by(conn, row.id, row.message_id, row.destination):
            self._event(conn, dead.message_id, "dead_letter_resolved", {
                "outbox_id": dead.id, "destination": row.destination, "by_message": row.message_id,
                "by_outbox_id": row.id}, now)
            self._event(conn, row.message_id, "resolves_dead_letter", {
                "message": dead.message_id, "outbox_id": dead.id, "destination": row.destination}, now)
            self._settle_message(conn, dead.message_id, now)

    def _settle_message(self, conn, message_id: int, now: float) -> None:
        self._settle_messages(conn, [message_id], now)

    @staticmethod
    def _settle_messages(conn, message_ids: list[int], now: float) -> None:
        """Each message's status follows its outbox rows. The message rows are locked first (in id
        order), so two nodes settling the last two rows of one message cannot both see the other's
        row still pending: the second waits, then sees the first's commit."""
        conn.execute("SELECT 1 FROM messages WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (message_ids,))
        conn.execute(
            "UPDATE messages m SET status = s.final, updated_at = %s FROM ("
            "  SELECT message_id, CASE WHEN bool_or(status = 'dead') THEN 'dead'"
            "    WHEN bool_or(status = 'resolved') THEN 'resolved' ELSE 'delivered' END AS final"
            "  FROM outbox WHERE message_id = ANY(%s) GROUP BY message_id"
            "  HAVING NOT bool_or(status = 'pending')) s"
            " WHERE m.id = ANY(%s) AND m.id = s.message_id AND m.status IN ('routed', 'dead')",
            (now, message_ids, message_ids))  # (id = ANY: the primary key, whatever the statistics say)

    def _insert_outbox(self, conn, rows: list[tuple], now: float, events: list[tuple]) -> None:
        """A batch's outbox rows in one statement, then their lanes (entered in sorted order,
        as every multi-lane lock is taken) and their ``queued`` events."""
        if not rows:
            return
        columns = [list(column) for column in zip(*rows)]
        columns.append([payload_words(row[3]) for row in rows])
        # The rows and their content_words in one statement: the words split here where that gives the
        # server's words (NULL: bridge_words on the server); 'given' tells migration 14's trigger that
        # this statement indexed its rows (the setting ends with the transaction, and is cleared next).
        conn.execute("SELECT set_config('bridge.outbox_words', 'given', true)")
        returned = conn.execute(
            "WITH r AS (SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bytea[], %b::text[],"
            " %b::text[], %b::text[], %b::text[], %b::float8[], %b::float8[], %b::text[], %b::text[], %b::bigint[],"
            " %b::bigint[], %b::text[]) AS r(message_id, destination, status, payload, media_type, file_extension,"
            " order_key, order_mode, next_attempt_at, created_at, control_id, message_type, original_message_id,"
            " original_outbox_id, words)),"
            " w AS (INSERT INTO content_words (message_id, words) SELECT message_id,"
            " COALESCE(array_to_tsvector(string_to_array(words, ' ')), bridge_words(payload)) FROM r"
            " WHERE length(payload) > 0)"
            " INSERT INTO outbox (message_id, destination, status, payload, media_type, file_extension,"
            " order_key, order_mode, next_attempt_at, created_at, control_id, message_type,"
            " original_message_id, original_outbox_id) SELECT message_id, destination, status, payload, media_type,"
            " file_extension, order_key, order_mode, next_attempt_at, created_at, control_id, message_type,"
            " original_message_id, original_outbox_id FROM r RETURNING id, message_id, destination",
            columns, binary=True).fetchall()  # (binary: see _events)
        conn.execute("SELECT set_config('bridge.outbox_words', '', true)")
        by_row = {(message_id, destination): outbox_id for outbox_id, message_id, destination in returned}
        ids = [by_row[(row[0], row[1])] for row in rows]  # (a message has one row per destination)
        lanes = sorted((row[1], lane_key(row[6], outbox_id), outbox_id) for row, outbox_id in zip(rows, ids))
        firsts = [lane for n, lane in enumerate(lanes) if n == 0 or lane[:2] != lanes[n - 1][:2]]
        # One statement for the batch (it was a statement per row): a new lane's head is its first row
        # of the batch; an existing lane's row is only locked. Rows go in in this sorted order.
        conn.execute(
            "INSERT INTO outbox_lanes (destination, lane_key, head_id, due_at)"
            " SELECT destination, lane_key, head_id, %b::float8 FROM unnest(%b::text[], %b::text[], %b::bigint[])"
            " WITH ORDINALITY AS f(destination, lane_key, head_id, n) ORDER BY n"
            " ON CONFLICT (destination, lane_key) DO UPDATE SET head_id = outbox_lanes.head_id WHERE false",
            [now, *(list(column) for column in zip(*firsts))])
        for row, outbox_id in zip(rows, ids):
            events.append((row[0], now, "queued", _json({"destination": row[1], "outbox_id": outbox_id,
                                                         "bytes": len(row[3])})))

    @staticmethod
    def _events(conn, events: list[tuple]) -> None:
        """Timeline events ``(message id, at, kind, detail JSON)`` in one statement (a statement per row
        costs the server a parse, plan and execute each). Array parameters go in binary, which takes a
        ``%b`` placeholder (``binary=True`` only asks for binary *results*): with ``%s`` psycopg writes
        a text-format array element by element in Python, hex-escaping each bytea and regex-quoting each
        string (a batch of 16 FHIR bundles and their records JSON cost 10-20 ms of the worker process's
        GIL, a sixth of its GIL time in the pipeline benchmark); the binary form is a copy."""
        if events:
            conn.execute("INSERT INTO events (message_id, at, kind, detail)"
                         " SELECT * FROM unnest(%b::bigint[], %b::float8[], %b::text[], %b::text[])",
                         [list(column) for column in zip(*events)], binary=True)

    # --- reading -------------------------------------------------------------------------------

    def find_traces(self, lookups):
        """Every message's trace in one statement (the same rules as ``find_trace``, per row)."""
        if not lookups:
            return []
        rows = self._read(
            "SELECT f.i, COALESCE("
            " (SELECT m.trace_id FROM outbox o JOIN messages m ON m.id = o.message_id"
            "   WHERE o.control_id = f.relates_to AND m.trace_id IS NOT NULL ORDER BY o.id LIMIT 1),"
            " (SELECT trace_id FROM messages WHERE encounter_id = f.encounter AND trace_id IS NOT NULL"
            "   ORDER BY id LIMIT 1),"
            " (SELECT trace_id FROM messages WHERE prescription_number = f.rx AND trace_id IS NOT NULL"
            "   ORDER BY id LIMIT 1))"
            " FROM unnest(%b::int[], %b::text[], %b::text[], %b::text[]) AS f(i, relates_to, encounter, rx)",
            (list(range(len(lookups))), [k.get("relates_to") or None for k in lookups],
             [k.get("encounter_id") or None for k in lookups], [k.get("prescription_number") or None for k in lookups]))
        found = dict(rows)
        return [found.get(i) for i in range(len(lookups))]

    # --- operator actions -----------------------------------------------------------------------

    _row_lock = " FOR UPDATE"

    def _lock_replay_chain(self, conn, root: int) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"replay:{root}",))

    def _insert_replay(self, conn, row: Mapping[str, Any]) -> int:
        columns = {**row, "status": "received"}
        new_id = conn.execute(f"INSERT INTO messages ({', '.join(columns)}) VALUES"
                              f" ({', '.join(['%s'] * len(columns))}) RETURNING id", tuple(columns.values())).fetchone()[0]
        self._enter_message_lane(conn, row["channel"], row["order_key"], new_id)
        self._notify(conn)
        return new_id

    def _requeue_released(self, conn, message_id: int, now: float) -> None:
        """It enters its lane again: behind the head in flight, if any."""
        channel, order_key = conn.execute(
            "UPDATE messages SET status='received', policy_override=1, updated_at=%s"
            " WHERE id=%s RETURNING channel, order_key", (now, message_id)).fetchone()
        self._enter_message_lane(conn, channel, order_key, message_id)
        self._notify(conn)

    # --- audit ---------------------------------------------------------------------------------

    def _audit(self, conn, actor, action, target, detail, now) -> AuditEntry:
        """Append under the chain lock: the head read and the insert happen while no other writer (on
        any node) can append, and the lock is held until this transaction commits or rolls back."""
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        prev = conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = prev[0] if prev else GENESIS_HASH
        body = _json(dict(detail))
        digest = audit_hash(prev_hash, now, actor, action, target, body)
        entry_id = conn.execute("INSERT INTO audit_log (at, actor, action, target, detail, prev_hash, hash)"
                                " VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                                (now, actor, action, target, body, prev_hash, digest)).fetchone()[0]
        return AuditEntry(entry_id, now, actor, action, target, json.loads(body), prev_hash, digest)

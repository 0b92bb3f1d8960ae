"""The embedded store: one SQLite file, WAL journal, ``synchronous=FULL``.

``synchronous=FULL`` makes every commit durable across power loss before ``receive`` returns, which
is what lets a source acknowledge its sender. Each thread gets its own connection; writes run in
``BEGIN IMMEDIATE`` transactions so two workers never claim the same row.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from bridge.errors import BridgeError, LeaseLost, StoreError

from . import prescription_writes

from .base import (
    AuditEntry,
    DeliveryOutcome,
    MessageClaim,
    NewOutbox,
    OutboxClaim,
    OutboxRow,
    PrescriptionEventIn,
    ProcessingResult,
    Store,
)
from .admin_tables import AdminTables
from .ops_tables import OpsTables
from . import sqlite_queue as queue
from . import sqlite_replay as replays
from .operator_actions import OperatorActions
from .destination_reads import DestinationReads
from .reads import OUTBOX_COLUMNS, StoreReads
from .alert_tables import AlertTables
from .journal_positions import JournalPositions
from .sqlite_schema import MIGRATIONS

CONTENT_INDEX_BYTES = 262144  # the first 256 KiB of a payload is searchable (as in migration 11)
from .wal_sync import WalSync

GENESIS_HASH = "0" * 64
_OUTBOX_COLUMNS = OUTBOX_COLUMNS
_OUTBOX_WIDTH = 19
_WAKE_POLL_SECONDS = 0.005  # how often an idle worker process looks for another process's commit
T = TypeVar("T")
_INTAKE_CHECKPOINT_PAGES = 10000  # SQLite's default is 1000: queue connections checkpoint first
# a listener that commits on its loop never checkpoints; its flusher does, once the WAL passes this
# (SQLite's own default point, 1000 pages): a WAL rewritten in place, not grown, flushes faster
_FLUSHER_CHECKPOINT_BYTES = 1000 * 4096
_GIVE_WAY_SECONDS = 0.05  # the longest queue work waits for intake commits before it goes anyway


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class IntakePriority:
    """Lets the intake's commit (which a sender waits on) go before queue work, across processes.

    SQLite has one writer and no queue: whoever retries first wins. An intake commit holds an
    exclusive ``flock`` on a side file (``<store>-intake``) while it waits for and runs its
    transaction; a claim or settlement first checks that lock without blocking and, while it is
    held, waits (at most ``_GIVE_WAY_SECONDS``, so steady intake cannot starve the queue). Queue work
    never holds the lock, so an intake commit waits only for the one transaction already running.
    """

    def __init__(self, path: str | None):
        self.path = path
        self._local = threading.local()

    def _fd(self) -> int | None:
        """This thread's descriptor of the side file (flock conflicts between descriptors, so threads
        of one process give way to each other too). It closes with the thread or the store."""
        if self.path is None:
            return None
        holder = getattr(self._local, "holder", None)
        if holder is None:
            holder = self._local.holder = _Descriptor(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        return holder.fd

    def close(self) -> None:
        self._local = threading.local()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        fd = self._fd()
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def try_hold(self) -> bool:
        """Take the intake lock only if it is free at once (a commit on an event loop must not wait)."""
        fd = self._fd()
        if fd is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        fd = self._fd()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def give_way(self) -> None:
        fd = self._fd()
        if fd is None:
            return
        deadline = time.monotonic() + _GIVE_WAY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.0005)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


_ORIGIN_JSON: dict[tuple[Any, ...], str] = {}
_ORIGIN_JSON_MAX = 4096


def _origin_json(origin: Mapping[str, Any]) -> str:
    """``_json(origin)``, remembered per distinct origin.

    Every frame of an MLLP connection carries the same origin (transport, peer), and ``json.dumps``
    with sorted keys was ~9 % of the listener's loop with 32 senders (benchmarks/mllp.py). The key
    holds each value's type as well as the value, since ``1``, ``1.0`` and ``True`` are equal as
    dict keys but not as JSON. Bounded: the cache is emptied when it reaches ``_ORIGIN_JSON_MAX``.
    """
    try:
        key = tuple((name, value.__class__, value) for name, value in origin.items())
        cached = _ORIGIN_JSON.get(key)
    except TypeError:  # an unhashable value (a list): written as is, not remembered
        return _json(dict(origin))
    if cached is None:
        if len(_ORIGIN_JSON) >= _ORIGIN_JSON_MAX:
            _ORIGIN_JSON.clear()
        cached = _ORIGIN_JSON[key] = _json(dict(origin))
    return cached


def sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a SQLite URL: {url!r}")
    return url[len("sqlite:///"):]


class SQLiteStore(JournalPositions, OperatorActions, AdminTables, OpsTables, AlertTables, StoreReads, DestinationReads, Store):
    def __init__(self, url_or_path: str, *, busy_timeout: float = 30.0):
        path = sqlite_path(url_or_path) if url_or_path.startswith("sqlite:") else url_or_path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        self._group = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False
        self.max_batch = 64
        self._priority = IntakePriority(None if path == ":memory:" else path + "-intake")
        self._wal_sync = None if path == ":memory:" else WalSync(
            path, checkpoint=self._checkpoint_passive, checkpoint_bytes=_FLUSHER_CHECKPOINT_BYTES)
        self._migrate()

    # --- connections and transactions -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection. It closes when the thread ends (short-lived threads, such as a
        threaded web server's, would otherwise leak a connection and two file descriptors each)."""
        holder = getattr(self._local, "holder", None)
        if holder is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                       check_same_thread=False)
                # several processes opening one store at once (nodes, worker children) can meet a lock
                # here that SQLite reports without calling its busy handler: retried like any statement
                for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"):
                    self._when_not_busy(lambda pragma=pragma: conn.execute(pragma))
                # no busy handler: _begin and _read wait in short steps of their own
                conn.execute("PRAGMA busy_timeout=0")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open store {self.path}: {exc}") from exc
            holder = self._local.holder = _Connection(conn)
            with self._all_lock:
                self._all.add(holder)
        return holder.conn

    @contextmanager
    def _tx(self, *, queue_work: bool = False, replayable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``queue_work`` (claims and settlements) first gives way to an
        intake commit that is waiting (see :class:`IntakePriority`).

        ``replayable`` commits without waiting for the disk (``synchronous=NORMAL``): only for
        transactions whose loss in a power cut is harmless because the engine does the work again
        with the same identities — a claim (the lease is simply gone) and a delivery's outcome (the
        row is sent again under the same file name and idempotency key: at-least-once, as after a
        crash). Processing results (which create outbox rows and so the identities a receiver sees)
        also commit this way, and are flushed outside the write lock before any deliverer sends what
        they made (see :meth:`finish_processing_many`).
        Everything else waits for the disk (``FULL``); the intake flushes after its commit in the same
        way (:mod:`wal_sync`). The WAL is one file written in order, so the next durable commit or
        flush makes every earlier commit durable too."""
        conn = self._conn()
        self._synchronous(conn, "NORMAL" if replayable else "FULL")
        if queue_work:
            self._priority.give_way()
        self._begin(conn)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError(f"commit failed: {exc}") from exc

    def _synchronous(self, conn: sqlite3.Connection, mode: str) -> None:
        holder = self._local.holder
        if holder.synchronous != mode:
            conn.execute(f"PRAGMA synchronous={mode}")
            holder.synchronous = mode

    def _as_intake(self, conn: sqlite3.Connection) -> None:
        """A connection that commits for senders leaves WAL checkpoints to the queue's connections
        (a checkpoint in a sender's commit would delay its ACK): it checkpoints only when the WAL has
        grown ten times past the usual point, i.e. when no worker commits (all paused)."""
        holder = self._local.holder
        if not holder.intake:
            conn.execute(f"PRAGMA wal_autocheckpoint={_INTAKE_CHECKPOINT_PAGES}")
            holder.intake = True

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, retried every few milliseconds while another writer holds the lock.

        SQLite's own busy handler sleeps in steps that grow to 100 ms, so a sender's commit could wait
        far longer than the transaction ahead of it took; this loop never sleeps more than 2 ms."""
        try:
            self._when_not_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.Error as exc:
            raise StoreError(f"store unavailable: {exc}") from exc

    def _when_not_busy(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying in steps of at most 2 ms while the database is busy (up to
        ``busy_timeout`` seconds)."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.0002
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.002)

    def _read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        conn = self._conn()
        conn.row_factory = sqlite3.Row
        try:
            return self._when_not_busy(lambda: conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, description, sql in MIGRATIONS:
                if version in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, description, time.time()))

    def schema_version(self) -> int:
        return int(self._read("SELECT MAX(version) FROM schema_migrations")[0][0] or 0)

    indexes_content_later = True  # see index_content

    def index_content(self, limit: int = 2000) -> int:
        """Index the raw input and outbox payloads stored since the last call (FTS5, migration 11):
        a batch per transaction costs a fraction of an index insert in every intake commit. A write
        that waits behind an intake commit, like the queue's, and commits without waiting for the disk
        (``replayable``): the index is derived from rows already stored, and a power cut that loses
        this commit loses its ``last_id`` with it, so the next call indexes the same rows again. A
        commit that waited for the disk held SQLite's one writer lock through an fsync, in the way
        of the intake's commit that a sender waits on."""
        behind = self._read("SELECT (SELECT MAX(id) FROM messages) > (SELECT last_id FROM content_index WHERE"
                            " name='messages') OR (SELECT MAX(id) FROM outbox) > (SELECT last_id FROM"
                            " content_index WHERE name='outbox')")[0][0]
        if not behind:  # the usual answer when idle: no write transaction at all
            return 0
        done = 0
        with self._tx(queue_work=True, replayable=True) as conn:
            for table, index, column in (("messages", "message_text", "raw"), ("outbox", "outbox_text", "payload")):
                (last,) = conn.execute("SELECT last_id FROM content_index WHERE name=?", (table,)).fetchone()
                top = conn.execute(f"SELECT MAX(id) FROM (SELECT id FROM {table} WHERE id > ? ORDER BY id LIMIT ?)",
                                   (last, limit)).fetchone()[0]
                if top is None:
                    continue
                cur = conn.execute(f"INSERT INTO {index}(rowid, body) SELECT id, substr(CAST({column} AS TEXT), 1,"
                                   f" {CONTENT_INDEX_BYTES}) FROM {table} WHERE id > ? AND id <= ?", (last, top))
                conn.execute("UPDATE content_index SET last_id=? WHERE name=?", (top, table))
                done += cur.rowcount
        return done

    def _content_clause(self, terms):
        """FTS5 over the raw input (message_text) and outbox payloads (outbox_text): each word quoted
        (so nothing in it is FTS5 syntax), a prefix marked with ``*``, all of them required."""
        query = " ".join(f'"{word}"' + ("*" if prefix else "") for word, prefix in terms)
        return ("(id IN (SELECT rowid FROM message_text WHERE message_text MATCH ?)"
                " OR id IN (SELECT o.message_id FROM outbox o WHERE o.id IN"
                " (SELECT rowid FROM outbox_text WHERE outbox_text MATCH ?)))", [query, query])

    def close(self) -> None:
        with self._all_lock:
            for holder in list(self._all):
                holder.close()
            self._all = weakref.WeakSet()
        self._local = threading.local()
        self._priority.close()

    # --- intake --------------------------------------------------------------------------------

    def receive(self, channel, fmt, raw, *, dedupe_key, header, origin, error=None):
        (result,) = self.receive_many([(channel, fmt, raw, dedupe_key, header, origin, error)])
        if isinstance(result, BaseException):
            raise result
        return result

    def receive_many(self, items):
        """Group commit: messages arriving together share one transaction and one fsync.

        Callers queue their messages; the first queued caller while no commit runs becomes the
        leader and commits everything queued (up to ``max_batch``) in one transaction, then the next
        waiting caller leads. Every caller returns only after its own messages are durable; a lone
        caller commits at once. Results are ``(message id, duplicate)`` or the StoreError for an
        item that could not be stored (a bad item never fails its neighbours).
        """
        mine = [_Pending(tuple(item)) for item in items]
        with self._group:
            self._queue.extend(mine)
        while True:
            with self._group:
                while not all(p.done for p in mine) and (self._committing or self._queue[0] not in mine):
                    self._group.wait()
                if all(p.done for p in mine):
                    return [p.outcome() for p in mine]
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                self._committing = True
            try:
                self._commit_batch(batch)
            except BaseException as exc:  # never leave a follower waiting for a result that will not come
                failure = exc if isinstance(exc, StoreError) else StoreError(f"could not store message: {exc}")
                with self._group:
                    self._queue = [p for p in self._queue if p not in mine]  # ours that never got a turn
                for p in (*batch, *mine):
                    if not p.done:
                        p.fail(failure)
                raise
            finally:
                with self._group:
                    self._committing = False
                    self._group.notify_all()

    def receive_now(self, items):
        """Commit on the caller's thread if the writer is free at once, without waiting for the disk
        (see :mod:`wal_sync`): ``(results, wait_until_on_disk)``, or None when another commit runs,
        another process holds the intake lock or SQLite's write lock, or a row failed (the caller
        then uses :meth:`receive_many`, which waits its turn and isolates a bad row)."""
        if self._wal_sync is None:
            return None
        with self._group:
            if self._committing or self._queue:
                return None
            self._committing = True
        try:
            committed = self._commit_unflushed(items)
        finally:
            with self._group:
                self._committing = False
                self._group.notify_all()
        if committed is None:
            return None
        results, number = committed
        wal_sync = self._wal_sync
        return results, lambda: wal_sync.wait(number)

    def _commit_unflushed(self, items) -> tuple[list[tuple[int, bool]], int] | None:
        self._wal_sync.check()
        if not self._priority.try_hold():
            return None
        try:
            conn = self._conn()
            holder = self._local.holder
            if not holder.flushed_later:  # this connection never checkpoints: see WalSync's checkpoint
                conn.execute("PRAGMA wal_autocheckpoint=0")
                holder.flushed_later = True
            self._synchronous(conn, "NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return None  # busy: the caller waits its turn on another thread
            try:
                results = [self._insert(conn, *item) for item in items]
                conn.execute("COMMIT")
            except Exception:  # a bad row or a failed commit: nothing stays; the careful path reports it
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                return None
            return results, self._wal_sync.committed()
        finally:
            self._priority.release()

    def _checkpoint_passive(self) -> None:
        """Copy the WAL into the database without blocking writers (the flusher's thread runs it when
        the listener's own commits, which never checkpoint, have grown the WAL)."""
        self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            if self._wal_sync is not None:
                self._wal_sync.check()  # the disk refused a flush: nothing more is acknowledged
            self._as_intake(self._conn())
            with self._priority.waiting(), self._tx() as conn:
                results = [self._insert(conn, *p.args) for p in batch]
        except Exception as exc:
            if len(batch) == 1:
                batch[0].fail(exc if isinstance(exc, StoreError) else StoreError(f"could not store message: {exc}"))
                return
            for p in batch:  # one bad row must not fail its neighbours: retry each on its own
                self._commit_batch([p])
            return
        for p, result in zip(batch, results):
            p.succeed(result)

    def _insert(self, conn, channel, fmt, raw, dedupe_key, header, origin, error,
                received_at=None) -> tuple[int, bool]:
        """One statement per new message: the dedupe check is the unique index's conflict, and the
        lane head marker is chosen inside the INSERT (a resend costs a second look-up instead).
        ``received_at``: when an intake journal took the message (default: now)."""
        now = time.time()
        received = now if received_at is None else received_at
        status = "failed" if error else "received"
        order_key = header.get("order_key")
        cur = conn.execute(
            "INSERT INTO messages (channel, format, status, received_at, updated_at, raw, sha256, size,"
            " origin, dedupe_key, control_id, sending_application, sending_facility, message_type,"
            " trace_id, error, order_key, lane_head) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
            f" {queue.NEW_LANE_HEAD_SQL}) ON CONFLICT(dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
            (channel, fmt, status, received, now, raw, hashlib.sha256(raw).hexdigest(), len(raw),
             _origin_json(origin), dedupe_key, header.get("control_id"),
             header.get("sending_application"), header.get("sending_facility"),
             header.get("message_type"), header.get("trace_id"), error, order_key,
             *queue.new_lane_head_args(channel, order_key, can_lead=not error)),
        )
        if cur.rowcount == 0:  # the dedupe key is taken: a resend of a stored message
            (message_id,) = conn.execute("SELECT id FROM messages WHERE dedupe_key = ?", (dedupe_key,)).fetchone()
            self._event(conn, message_id, "duplicate", {"origin": dict(origin)}, now)
            return message_id, True
        message_id = cur.lastrowid
        # The "received" event is not stored: events() derives it from the message row, which
        # saves the sender's commit a row and an index entry.
        if error:
            self._event(conn, message_id, "failed", {"error": error}, now)
        return message_id, False

    # --- processing ----------------------------------------------------------------------------

    def claim_messages(self, owner, lease_seconds, limit):
        now = time.time()
        if not queue.claimable_heads(self._conn(), 1, now):  # a read first: idle workers take no write lock
            return []
        with self._tx(queue_work=True, replayable=True) as conn:
            ids = queue.claimable_heads(conn, limit, now)
            if not ids:
                return []
            queue.lease_messages(conn, ids, owner, now + lease_seconds, now)
            rows = conn.execute(
                "SELECT id, channel, format, raw, lease_token, trace_id, control_id, policy_override, replay_root,"
                f" replay_destinations, order_key FROM messages WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY id",
                ids).fetchall()
        return [MessageClaim(id=r[0], channel=r[1], format=r[2], raw=r[3], token=r[4], trace_id=r[5],
                             control_id=r[6], policy_override=bool(r[7]), replay_root=r[8],
                             replay_destinations=tuple(json.loads(r[9])) if r[9] else None, order_key=r[10])
                for r in rows]

    def finish_processing_many(self, results):
        """Commits without waiting for the disk (``synchronous=NORMAL``): a FULL commit held SQLite's
        one writer lock through an fsync (4-12 ms here, 50 ms at p99 on a busy disk) that the intake's
        commit, other workers and deliverers all waited behind. The result is on the disk before
        anything it made is sent: a delivery claim flushes the WAL before its rows go out
        (:meth:`_flush_after_commit`), and so does the intake's next acknowledged commit. A power cut
        before that loses the result, not the message: its lease runs out and a worker processes it
        again, nothing having left the engine with the lost outbox rows' identities."""
        now = time.time()
        lost: list[LeaseLost | None] = []
        with self._tx(queue_work=True, replayable=self._wal_sync is not None) as conn:
            for claim, result in results:
                try:
                    self._write_result(conn, claim, result, now)
                except LeaseLost as exc:
                    lost.append(exc)
                else:
                    lost.append(None)
        return lost

    def _flush_after_commit(self) -> None:
        """Wait for a WAL flush that began after this thread's last commit returned (shared with
        every other commit before it, of any process: the WAL is one file written in order).

        Processing results commit without a flush, so a result's outbox rows can be visible before
        they are on the disk. A deliverer therefore calls this after its claim committed and before
        sending: the claim came after the result it saw, so the flush covers that result, and nothing
        leaves the engine whose outbox row a power cut could still undo."""
        if self._wal_sync is not None:
            self._wal_sync.wait(self._wal_sync.committed())

    def _write_result(self, conn: sqlite3.Connection, claim: MessageClaim, result: ProcessingResult,
                      now: float) -> None:
        cur = conn.execute(
            "UPDATE messages SET status=?, records=?, error=?, trace_id=COALESCE(?, trace_id),"
            " patient_id=?, encounter_id=?, prescription_number=?, ncpdp_message_id=?,"
            " lease_owner=NULL, lease_expires=NULL, lane_head=0, updated_at=?"
            " WHERE id=? AND lease_token=? AND status='processing'",
            (result.status, _json(result.records) if result.records is not None else None, result.error,
             result.trace_id, result.keys.get("patient_id"), result.keys.get("encounter_id"),
             result.keys.get("prescription_number"), result.keys.get("ncpdp_message_id"),
             now, claim.id, claim.token),
        )
        if cur.rowcount != 1:
            raise LeaseLost(f"message {claim.id}: lease lost before its result was written")
        channel, order_key = conn.execute("SELECT channel, order_key FROM messages WHERE id=?", (claim.id,)).fetchone()
        queue.leave_message_lane(conn, channel, order_key)
        for kind, detail in result.events:
            self._event(conn, claim.id, kind, detail, now)
        root = replays.chain_root(conn, claim.id)
        for item in result.outbox:
            # a replay's row carries the identity (file name, idempotency key) of the chain's first row
            first = replays.original_row(conn, root, item.destination) if root != claim.id else None
            if item.error is not None:  # this destination's encoder refused: a dead letter, never claimed
                self._insert_encode_failure(conn, claim.id, item, first, now)
                continue
            head = int(queue.outbox_lane_is_free(conn, item.destination, item.order_key))
            ob = conn.execute(
                "INSERT INTO outbox (message_id, destination, status, payload, media_type, file_extension,"
                " order_key, order_mode, next_attempt_at, created_at, control_id, message_type,"
                " original_message_id, original_outbox_id, lane_head) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (claim.id, item.destination, "pending", item.payload, item.media_type, item.file_extension,
                 item.order_key, item.order_mode, now, now, item.control_id, item.message_type,
                 *(first or (None, None)), head),
            )
            self._event(conn, claim.id, "queued", {"destination": item.destination, "outbox_id": ob.lastrowid,
                                                    "bytes": len(item.payload)}, now)
        if any(item.error is not None for item in result.outbox):
            self._settle_message(conn, claim.id, now)  # every row may be settled already (all dead)
        if result.hold_reasons is not None:
            self._open_hold(conn, claim.id, result.keys.get("prescription_number"), result.hold_reasons, now)
        for number in result.prescriptions:
            conn.execute("INSERT INTO prescriptions (number, state, message_id, trace_id, created_at, updated_at)"
                         " VALUES (?, 'created', ?, ?, ?, ?) ON CONFLICT(number) DO NOTHING",
                         (number, claim.id, result.trace_id, now, now))
        for event in result.prescription_events:
            self._apply_inbound_event(conn, claim.id, event, now)

    def wait_for_work(self, timeout):
        """Watch ``PRAGMA data_version``, which changes when another connection (any thread or
        process) commits: a worker process wakes within milliseconds of the intake's commit."""
        conn = self._conn()
        seen = conn.execute("PRAGMA data_version").fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_WAKE_POLL_SECONDS, left))
            if conn.execute("PRAGMA data_version").fetchone()[0] != seen:
                return True

    def _insert_encode_failure(self, conn: sqlite3.Connection, message_id: int, item: NewOutbox,
                               first: tuple[int, int] | None, now: float) -> None:
        """A destination whose encoder refused the message gets a dead letter at once (never claimed,
        ``attempts`` 0, empty payload): it fails alone, is listed with its reason, and a replay to it
        keeps this row's identity and resolves it once delivered."""
        ob = conn.execute(
            "INSERT INTO outbox (message_id, destination, status, payload, media_type, file_extension,"
            " order_key, order_mode, next_attempt_at, created_at, last_error, original_message_id,"
            " original_outbox_id) VALUES (?,?,'dead',?,?,?,?,?,?,?,?,?,?)",
            (message_id, item.destination, b"", item.media_type, item.file_extension, item.order_key,
             item.order_mode, now, now, item.error, *(first or (None, None))),
        )
        self._event(conn, message_id, "encode_failed", {"destination": item.destination, "outbox_id": ob.lastrowid,
                                                        "error": item.error}, now)

    def _open_hold(self, conn: sqlite3.Connection, message_id: int, prescription: str | None,
                   reasons: Any, now: float) -> None:
        """One open hold per prescription: a later held message for it waits behind the open one."""
        ahead = replays.open_hold_for(conn, prescription, message_id) if prescription else None
        conn.execute("INSERT INTO holds (message_id, status, created_at, reasons) VALUES (?,?,?,?)",
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

    def claim_deliveries(self, owner, lease_seconds, limit, now=None):
        now = time.time() if now is None else now
        if not queue.due_outbox_heads(self._conn(), 1, now):  # a read first: idle deliverers take no write lock
            return []
        with self._tx(queue_work=True, replayable=True) as conn:
            ids = queue.due_outbox_heads(conn, limit, now)
            if not ids:
                return []
            queue.lease_outbox(conn, ids, owner, now + lease_seconds)
            rows = conn.execute(
                f"SELECT {', '.join('o.' + c.strip() for c in _OUTBOX_COLUMNS.split(','))}, o.payload, o.lease_token,"
                " m.trace_id FROM outbox o JOIN messages m ON m.id = o.message_id"
                f" WHERE o.id IN ({', '.join('?' * len(ids))})", ids).fetchall()
        self._flush_after_commit()  # the results that made these rows are on the disk before any send
        by_id = {r[0]: r for r in rows}
        return [OutboxClaim(row=OutboxRow(*r[:_OUTBOX_WIDTH]), payload=r[_OUTBOX_WIDTH], token=r[_OUTBOX_WIDTH + 1],
                            trace_id=r[_OUTBOX_WIDTH + 2]) for r in (by_id[i] for i in ids)]

    def renew_deliveries(self, claims, lease_seconds):
        if not claims:
            return []
        until = time.time() + lease_seconds
        with self._tx(queue_work=True) as conn:
            return [conn.execute("UPDATE outbox SET lease_expires = ? WHERE id = ? AND lease_token = ?"
                                 " AND status = 'pending' AND lease_expires IS NOT NULL",
                                 (until, c.row.id, c.token)).rowcount == 1 for c in claims]

    def finish_deliveries(self, outcomes):
        for item in outcomes:
            if item.outcome not in ("delivered", "retry", "dead"):
                raise ValueError(f"unknown delivery outcome {item.outcome!r}")
        now = time.time()
        results: list[int | None | LeaseLost] = []
        with self._tx(queue_work=True, replayable=True) as conn:
            for item in outcomes:
                try:
                    results.append(self._write_outcome(conn, item, now))
                except LeaseLost as exc:
                    results.append(exc)
            self._record_attempts(conn, [o for o, r in zip(outcomes, results) if not isinstance(r, LeaseLost)], now)
        return results

    def _write_outcome(self, conn: sqlite3.Connection, item: DeliveryOutcome, now: float) -> int | None:
        claim, outcome, detail, next_attempt_at = item.claim, item.outcome, item.detail, item.next_attempt_at
        row = claim.row
        status = {"delivered": "delivered", "retry": "pending", "dead": "dead"}[outcome]
        cur = conn.execute(
            "UPDATE outbox SET status=?, last_error=?, next_attempt_at=COALESCE(?, next_attempt_at),"
            " delivered_at=?, lease_owner=NULL, lease_expires=NULL WHERE id=? AND lease_token=?",
            (status, None if outcome == "delivered" else detail, next_attempt_at,
             now if outcome == "delivered" else None, row.id, claim.token),
        )
        if cur.rowcount != 1:
            raise LeaseLost(f"outbox row {row.id}: lease lost before the outcome was written")
        queue.settle_outbox_lane(conn, row.id, status)
        event = {"delivered": "delivered", "retry": "delivery_failed", "dead": "dead_letter"}[outcome]
        info: dict[str, Any] = {"destination": row.destination, "outbox_id": row.id,
                                "attempt": row.attempts, "detail": detail}
        if outcome == "retry":
            info["next_attempt_at"] = next_attempt_at
        reply_id = None
        if item.reply is not None:
            channel, fmt, raw = item.reply
            origin = {"reply_to_message": row.message_id, "outbox_id": row.id, "destination": row.destination}
            reply_id, _ = self._insert(conn, channel, fmt, raw, None, {}, origin, None)
            info["reply_message"] = reply_id
        self._event(conn, row.message_id, event, info, now)
        if outcome == "delivered":
            self._apply_outbound(conn, row, now)
            self._resolve_dead_letters(conn, row, now)
        self._settle_message(conn, row.message_id, now)
        return reply_id

    def _resolve_dead_letters(self, conn: sqlite3.Connection, row: OutboxRow, now: float) -> None:
        """A replay delivered where its chain had dead-lettered: those dead letters are resolved, linked
        both ways on the timelines, and their messages stop counting as dead."""
        for dead in replays.dead_letters_resolved_by(conn, row.id, row.message_id, row.destination):
            self._event(conn, dead.message_id, "dead_letter_resolved", {
                "outbox_id": dead.id, "destination": row.destination, "by_message": row.message_id,
                "by_outbox_id": row.id}, now)
            self._event(conn, row.message_id, "resolves_dead_letter", {
                "message": dead.message_id, "outbox_id": dead.id, "destination": row.destination}, now)
            self._settle_message(conn, dead.message_id, now)

    def _settle_message(self, conn: sqlite3.Connection, message_id: int, now: float) -> None:
        statuses = [r[0] for r in conn.execute("SELECT status FROM outbox WHERE message_id=?", (message_id,))]
        if not statuses or "pending" in statuses:
            return
        final = "dead" if "dead" in statuses else "resolved" if "resolved" in statuses else "delivered"
        conn.execute("UPDATE messages SET status=?, updated_at=? WHERE id=? AND status IN ('routed', 'dead')",
                     (final, now, message_id))

    # --- reading -------------------------------------------------------------------------------

    # --- operator actions -----------------------------------------------------------------------

    def _insert_replay(self, conn: sqlite3.Connection, row: Mapping[str, Any]) -> int:
        head = queue.new_lane_head(conn, row["channel"], row["order_key"])
        columns = {**row, "status": "received", "lane_head": head}
        return conn.execute(f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                            tuple(columns.values())).lastrowid

    def _park_channel(self, conn: sqlite3.Connection, channel: str, paused: bool) -> None:
        queue.park_channel(conn, channel, paused)

    def _requeue_released(self, conn: sqlite3.Connection, message_id: int, now: float) -> None:
        conn.execute("UPDATE messages SET status='received', policy_override=1, updated_at=? WHERE id=?",
                     (now, message_id))
        queue.enter_message_lane(conn, message_id)

    # --- audit ---------------------------------------------------------------------------------

    def _audit(self, conn, actor, action, target, detail, now) -> AuditEntry:
        prev = conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = prev[0] if prev else GENESIS_HASH
        body = _json(dict(detail))
        digest = audit_hash(prev_hash, now, actor, action, target, body)
        cur = conn.execute("INSERT INTO audit_log (at, actor, action, target, detail, prev_hash, hash)"
                           " VALUES (?,?,?,?,?,?,?)", (now, actor, action, target, body, prev_hash, digest))
        return AuditEntry(cur.lastrowid, now, actor, action, target, json.loads(body), prev_hash, digest)


class _Connection:
    """Owns one thread's connection: held only by that thread's local storage, so it is collected,
    and the connection closed, when the thread ends."""

    __slots__ = ("conn", "synchronous", "intake", "flushed_later", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.synchronous = "FULL"
        self.intake = False
        self.flushed_later = False

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def __del__(self) -> None:
        self.close()


class _Descriptor:
    """Owns one thread's file descriptor; closes it when collected (the thread or the store ended)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class _Pending:
    """One caller's message waiting in the group commit queue."""

    __slots__ = ("args", "done", "_result", "_error")

    def __init__(self, args: tuple) -> None:
        self.args = args
        self.done = False
        self._result: tuple[int, bool] | None = None
        self._error: BaseException | None = None

    def succeed(self, result: tuple[int, bool]) -> None:
        self._result, self.done = result, True

    def fail(self, error: BaseException) -> None:
        self._error, self.done = error, True

    def result(self) -> tuple[int, bool]:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def outcome(self) -> tuple[int, bool] | BaseException:
        return self._error if self._error is not None else self._result


def audit_hash(prev_hash: str, at: float, actor: str, action: str, target: str, detail_json: str) -> str:
    """Each entry's hash covers the previous hash, so changing any entry breaks every later one."""
    material = "\x1f".join((prev_hash, repr(at), actor, action, target, detail_json))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _statements(sql: str) -> Iterator[str]:
    """Split a migration into statements, keeping trigger bodies (which contain ';') whole."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def new_trace_id() -> str:
    return uuid.uuid4().hex
